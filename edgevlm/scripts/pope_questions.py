"""POPE-style object-existence questions from human captions (``edgevlm.data.pope_questions``).

    python -m edgevlm.scripts.pope_questions CAPTIONS.json OUT.json [--per-category N] [--outside-lexicon]

``--outside-lexicon``: about things no concept names (edgevlm/data/unknown_objects.py), to see
that the engine says it cannot tell rather than guess.

Writes the questions and prints the counts per sampling (one JSON object).
"""

from __future__ import annotations

import argparse
import json
import os

from edgevlm.data.coco import default_images_dir, load_coco_captions
from edgevlm.data.pope_questions import MIN_YES, PER_CATEGORY, pope_questions, summary
from edgevlm.data.unknown_objects import OUTSIDE_LEXICON
from edgevlm.errors import EdgeVLMError
from edgevlm.fileio import write_json


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="COCO captions -> POPE-style yes/no questions (deterministic)")
    parser.add_argument("captions")
    parser.add_argument("out")
    parser.add_argument("--per-category", type=int, default=PER_CATEGORY,
                        help=f"most 'yes' (and 'no') questions per category and sampling (default {PER_CATEGORY})")
    parser.add_argument("--outside-lexicon", action="store_true",
                        help="ask about things no concept names (edgevlm/data/unknown_objects.py) instead")
    args = parser.parse_args(argv)
    try:
        if os.path.abspath(args.out) == os.path.abspath(args.captions):
            raise EdgeVLMError(f"OUT {args.out} is the captions file itself; name another file")
        items = load_coco_captions(args.captions, check_files=False)
        images_dir = default_images_dir(args.captions)
        entries, left_out = pope_questions(
            [{"image_id": i.image_id, "file_name": os.path.relpath(i.path, images_dir), "captions": i.captions}
             for i in items], args.per_category, categories=OUTSIDE_LEXICON if args.outside_lexicon else None)
        if not entries:
            raise EdgeVLMError(f"{args.captions}: no category has {MIN_YES} images with it and {MIN_YES} without; "
                               "use a larger caption file")
        write_json(args.out, entries)
    except EdgeVLMError as exc:
        raise SystemExit(f"error: {exc}") from None
    print(json.dumps(summary(entries, left_out), indent=1))


if __name__ == "__main__":
    main()
