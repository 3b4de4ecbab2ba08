"""Score search settings (beam size, n-gram guard, length penalty) on a dev split.

    python -m edgevlm.scripts.tune_search --model DIR --data captions_dev.json

Encoder features are computed once (cached like training's), then each setting decodes
every image; prints one JSON line per setting with BLEU-4, CIDEr, mean length and seconds.
Tune on dev only: the test split is withheld.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import time

import torch

from edgevlm.data.coco import load_coco_captions
from edgevlm.metrics.caption_metrics import score_captions
from edgevlm.generate import generate_from_features, search_settings
from edgevlm.model_io import load_model
from edgevlm.features import cached_features


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True)
    parser.add_argument("--data", required=True)
    parser.add_argument("--beams", default="1,3")
    parser.add_argument("--no-repeat", default="0,2,3")
    parser.add_argument("--length-penalty", default="0,0.5,1")
    parser.add_argument("--cache-dir", default=os.path.expanduser("~/.cache/edgevlm/features"))
    args = parser.parse_args()
    torch.set_num_threads(2)
    model, tokenizer = load_model(args.model)
    items = [i for i in load_coco_captions(args.data) if i.captions]
    split = os.path.splitext(os.path.basename(args.data))[0].removeprefix("captions_")  # "dev": training's cache
    features = cached_features([i.path for i in items], model.encoder, model.cfg, args.cache_dir, split)
    refs = {i: list(item.captions) for i, item in enumerate(items)}
    grid = itertools.product([int(b) for b in args.beams.split(",")], [int(n) for n in args.no_repeat.split(",")],
                             [float(a) for a in args.length_penalty.split(",")])
    for beam, no_repeat, penalty in grid:
        if beam == 1 and penalty != float(args.length_penalty.split(",")[0]):
            continue  # the length penalty only ranks finished beams
        started = time.time()
        settings = search_settings(model.cfg, beam, no_repeat_ngram=no_repeat, length_penalty=penalty)
        ids = generate_from_features(model, features, settings)
        scores = score_captions(refs, {i: tokenizer.decode(t) for i, t in enumerate(ids)}, only=("BLEU", "CIDEr"))
        print(json.dumps({"beam": beam, "no_repeat_ngram": no_repeat, "length_penalty": penalty,
                          "BLEU-4": round(scores["BLEU-4"], 4), "CIDEr": round(scores["CIDEr"], 4),
                          "mean_length": round(scores["mean_length"], 2), "seconds": round(time.time() - started, 1)}),
              flush=True)


if __name__ == "__main__":
    main()
