"""Write the out-of-domain image set (``edgevlm.data.ood_images``), and/or measure
``edgevlm.runtime.frame_quality`` on real and bad frames.

    python -m edgevlm.scripts.ood_images OUT_DIR
    python -m edgevlm.scripts.ood_images --check-quality [--data DIR]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
from collections import Counter

from edgevlm.data import ood_images
from edgevlm.errors import EdgeVLMError
from edgevlm.evaluation.frame_quality_check import check_quality


def main(argv: list[str] | None = None) -> None:
    # The set's own docstring is the help: what the groups are and what ood.json holds.
    parser = argparse.ArgumentParser(description=ood_images.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out_dir", nargs="?", help="folder to write the JPEGs and ood.json into")
    parser.add_argument("--check-quality", action="store_true",
                        help="measure edgevlm.runtime.frame_quality on real and bad frames; print the rates")
    parser.add_argument("--data", default=os.path.join("..", "shared", "data"),
                        help="folder holding flickr8k/ and video/ (default ../shared/data)")
    args = parser.parse_args(argv)
    if not args.out_dir and not args.check_quality:
        parser.error("give OUT_DIR, --check-quality, or both")
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        if args.out_dir:
            entries = ood_images.write_ood_set(args.out_dir)
            print(json.dumps({"out_dir": args.out_dir, "groups": dict(Counter(e["group"] for e in entries))}))
        if args.check_quality:
            print(json.dumps(check_quality(args.data), indent=1))
    except EdgeVLMError as exc:
        raise SystemExit(f"error: {exc}") from exc


if __name__ == "__main__":
    main()
