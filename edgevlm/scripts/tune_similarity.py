"""Measure the caption-similarity threshold that separates "same scene" from "different
scene" on real human captions.

    python -m edgevlm.scripts.tune_similarity --data ../shared/data/flickr8k/captions_dev.json

Positive pairs: two captions of the same image. Negative pairs: captions of two different
images that share at least one content word ("a black dog runs on grass" vs "a dog swims"):
the hard case for narration, where consecutive scenes share their subject. Prints, per
threshold, the share of each side classified right and the balanced accuracy; the best
threshold is the last line.
"""

from __future__ import annotations

import argparse
import json
import random

from edgevlm.data.coco import load_coco_captions
from edgevlm.runtime.narration.similarity import caption_similarity, content_words


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True)
    parser.add_argument("--pairs", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    items = [i for i in load_coco_captions(args.data, check_files=False) if len(i.captions) >= 2]
    rng = random.Random(args.seed)
    same, different = [], []
    for _ in range(args.pairs):
        item = rng.choice(items)
        a, b = rng.sample(item.captions, 2)
        same.append(caption_similarity(a, b))
        while True:  # a different image whose caption shares a content word
            x, y = rng.sample(items, 2)
            cx, cy = rng.choice(x.captions), rng.choice(y.captions)
            if content_words(cx) & content_words(cy):
                break
        different.append(caption_similarity(cx, cy))
    best = None
    for step in range(1, 20):
        threshold = step / 20
        tpr = sum(s >= threshold for s in same) / len(same)
        tnr = sum(d < threshold for d in different) / len(different)
        row = {"threshold": threshold, "same_detected": round(tpr, 4), "different_kept": round(tnr, 4),
               "balanced_accuracy": round((tpr + tnr) / 2, 4)}
        print(json.dumps(row))
        if best is None or row["balanced_accuracy"] > best["balanced_accuracy"]:
            best = row
    print(json.dumps({"best": best}))


if __name__ == "__main__":
    main()
