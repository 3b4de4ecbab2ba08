"""VQA-style question-answer pairs from human captions (``edgevlm.data.vqa_questions``).

    python -m edgevlm.scripts.vqa_questions CAPTIONS.json OUT.json

Writes the questions and prints the count per type. For evaluation: every counted noun
also gets as many "how many X are there?" -> "none" questions about photos without one
(``--no-absent-counts`` leaves them out, as training does).
"""

from __future__ import annotations

import argparse
import json
from collections import Counter

from edgevlm.data.coco import load_coco_captions
from edgevlm.data.vqa_questions import generate_questions
from edgevlm.fileio import write_json


def main() -> None:
    parser = argparse.ArgumentParser(description="COCO captions -> VQA-style questions (deterministic)")
    parser.add_argument("captions")
    parser.add_argument("out")
    parser.add_argument("--no-absent-counts", action="store_true",
                        help='leave out the "how many X are there?" -> "none" questions (as training does)')
    args = parser.parse_args()
    items = load_coco_captions(args.captions, check_files=False)
    questions = generate_questions([{"image_id": i.image_id, "file_name": i.path.rsplit("/", 1)[-1],
                                     "captions": list(i.captions)} for i in items],
                                   absent_counts=not args.no_absent_counts)
    write_json(args.out, questions)
    print(json.dumps({"questions": len(questions), "by_type": dict(Counter(q["type"] for q in questions))}))


if __name__ == "__main__":
    main()
