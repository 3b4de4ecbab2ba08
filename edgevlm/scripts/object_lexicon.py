"""Per category of ``edgevlm.data.object_lexicon``, the images of a caption file where it is
present, absent and open: the counts the category list was chosen from.

    python -m edgevlm.scripts.object_lexicon CAPTIONS.json
"""

from __future__ import annotations

import argparse
import json
from collections import Counter

from edgevlm.data.coco import load_coco_captions
from edgevlm.data.object_lexicon import CATEGORIES, image_labels


def main() -> None:
    parser = argparse.ArgumentParser(description="per-category label counts of a COCO caption file")
    parser.add_argument("captions")
    args = parser.parse_args()
    present, absent = Counter(), Counter()
    items = load_coco_captions(args.captions, check_files=False)
    for item in items:
        for name, is_present in image_labels(list(item.captions)).items():
            (present if is_present else absent)[name] += 1
    print(json.dumps({name: {"present": present[name], "absent": absent[name],
                             "open": len(items) - present[name] - absent[name]} for name in CATEGORIES}, indent=1))


if __name__ == "__main__":
    main()
