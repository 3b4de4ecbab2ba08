"""Things no concept of ``object_lexicon`` names, for existence questions the engine cannot
answer from what it sees: a probe of whether it says so.

Our decoder learnt "is there a X?" only for the lexicon's categories (the training
questions are generated for them), and answered it about anything else from its prior: "is
there a cup?" -> "no" (p 0.96) on a photo of a cup. The engine now says "I'm not sure: I
have not learned to recognise a cup" instead (runtime/grounding.ExistenceQuestions.
unknown_object). ``python -m edgevlm.scripts.pope_questions CAPTIONS OUT --outside-lexicon``
asks POPE-style questions about these things, for ``edgevlm eval --pope`` to show what the
user hears: every answer "I'm not sure", none wrong.

Chosen as the concrete nouns most often named by most of a Flickr8k dev photo's captions
that no lexicon word names (counted per image, 3 of 5 captions), singular and plural; none
is a word of a concept (tests/data/test_unknown_objects.py). Left out: "pool" (the water
concept's word) and "camera" (a word about seeing: "in front of the camera").
"""

from __future__ import annotations

OUTSIDE_LEXICON: dict[str, tuple[str, ...]] = {
    "field": ("field", "fields"), "wave": ("wave", "waves"), "ramp": ("ramp", "ramps"), "swing": ("swing", "swings"),
    "bag": ("bag", "bags"), "leash": ("leash", "leashes"), "guitar": ("guitar", "guitars"),
    "sled": ("sled", "sleds"), "wetsuit": ("wetsuit", "wetsuits"),
    "pole": ("pole", "poles"), "bridge": ("bridge", "bridges"), "dock": ("dock", "docks"),
    "blanket": ("blanket", "blankets"), "cow": ("cow", "cows"), "ladder": ("ladder", "ladders"),
    "tent": ("tent", "tents"), "cup": ("cup", "cups"), "kite": ("kite", "kites"),
}
