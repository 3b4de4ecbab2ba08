"""How much a yes/no answer depends on the wording of the question (torch-free).

    python -m edgevlm.scripts.vqa_wording --vqa vqa_dev.json --images DIR [--engine DIR] [--limit 400]

Takes the yes/no questions of a VQA file (the generator's), recovers each one's object,
asks about it in every wording of ``edgevlm.evaluation.vqa_wording`` about the same photo,
and prints the accuracy per wording. The last two wordings are never generated for
training: they measure how well the model carries over to phrasings it has not seen.
"""

from __future__ import annotations

import argparse
import json
import random

from edgevlm.evaluation.vqa_eval import load_qa
from edgevlm.evaluation.vqa_wording import recover_object, wording_accuracy
from edgevlm.paths import resolve_engine
from edgevlm.runtime.engine import CaptionEngine


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--vqa", required=True)
    parser.add_argument("--images", default=None)
    parser.add_argument("--engine", default=None)
    parser.add_argument("--limit", type=int, default=400, help="yes/no questions sampled (seed 0)")
    args = parser.parse_args()
    entries = [e for e in load_qa(args.vqa, args.images) if e["type"] == "yesno" and recover_object(e["question"])]
    random.Random(0).shuffle(entries)
    engine = CaptionEngine(resolve_engine(args.engine))
    for row in wording_accuracy(engine, entries[: args.limit]):
        print(json.dumps(row))


if __name__ == "__main__":
    main()
