"""Question-answer pairs from human captions, in the manner of COCO-QA (Ren et al., 2015).

Deterministic: the same captions give the same questions (the only randomness, choosing
an absent object for a "no" question, is seeded by the image id). Types:

- object:   "a man rides a bike"            -> "what is the man riding?"        / "bike"
- number:   "two dogs play in the grass"    -> "how many dogs are in the grass?" / "two"; for
            evaluation (``absent_counts``) also, as many per noun, "how many dogs are
            there?" / "none" about photos without a dog;
- color:    "a black dog runs"              -> "what color is the dog?"          / "black"
- location: "a boy is playing in the park"  -> "where is the boy playing?"       / "park"
- yesno:    an object in the captions       -> "is there a dog?" / "yes", and, as many,
            an object absent from all of the image's captions, synonyms included
            -> "is there a horse?" / "no" (balanced negatives: the hallucination probe).

Rules over a small lexicon, not a parser: captions are short, formulaic English, and a
rule that fires only on an unambiguous pattern keeps the answers right.
"""

from __future__ import annotations

import random
import re

NUMBERS = ["two", "three", "four", "five", "six", "seven", "eight", "nine", "ten"]
COLORS = ["black", "white", "brown", "red", "blue", "green", "yellow", "orange", "pink", "purple", "gray", "grey", "tan"]
SUBJECTS = ["man", "woman", "boy", "girl", "child", "dog", "person", "kid", "baby", "player", "biker", "skier",
            "surfer", "skateboarder", "cyclist", "puppy", "lady", "guy", "rider", "swimmer", "climber", "snowboarder",
            "cat", "horse", "bird", "team", "crowd", "couple", "family", "group"]
PLURAL_SUBJECTS = ["men", "women", "boys", "girls", "children", "dogs", "people", "kids", "players", "puppies",
                   "friends", "ladies", "guys", "horses", "birds"]
VERBS = {  # third person -> -ing form
    "rides": "riding", "holds": "holding", "carries": "carrying", "throws": "throwing", "catches": "catching",
    "chases": "chasing", "wears": "wearing", "eats": "eating", "pulls": "pulling", "kicks": "kicking",
    "climbs": "climbing", "pushes": "pushing", "watches": "watching", "hugs": "hugging", "plays": "playing",
    "drinks": "drinking", "grabs": "grabbing", "bites": "biting", "fetches": "fetching", "retrieves": "retrieving",
    "swings": "swinging", "uses": "using", "paddles": "paddling", "walks": "walking", "feeds": "feeding",
    "kisses": "kissing", "drives": "driving", "sleds": "sledding", "flies": "flying",
}
OBJECTS = ["ball", "bike", "bicycle", "frisbee", "stick", "skateboard", "surfboard", "toy", "kite", "rope",
           "bag", "camera", "umbrella", "horse", "hat", "helmet", "shirt", "jacket", "snowboard", "wave", "rock",
           "wall", "sign", "flag", "cup", "book", "guitar", "leash", "net", "bat", "racket", "tire", "stroller",
           "sled", "boat", "kayak", "raft", "pole", "log", "tree", "fence", "ladder", "swing", "slide", "microphone",
           "drink", "sandwich", "bone", "hoop", "ramp", "ribbon", "balloon", "paper", "baby", "dog", "puppy"]
LOCATIONS = ["grass", "park", "beach", "water", "snow", "street", "field", "pool", "sand", "ocean", "road",
             "sidewalk", "yard", "lake", "river", "mountain", "stage", "playground", "dirt", "mud", "forest",
             "woods", "city", "crowd", "air", "rain", "fountain", "wave", "waves", "hill", "track", "court", "floor",
             "stairs", "steps", "bench", "couch", "bed", "shore", "trail", "path", "leaves", "rocks", "building",
             "market", "restaurant", "kitchen", "room", "tent", "boat", "bridge", "slide", "swing", "trampoline",
             "field", "lawn", "meadow", "garden", "desert", "cliff", "ice", "surf", "puddle", "alley"]
PLURALS = r"\w+s|children|people|men|women"
MOTION = {  # third person -> -ing, for location questions
    "runs": "running", "walks": "walking", "jumps": "jumping", "plays": "playing", "sits": "sitting",
    "swims": "swimming", "stands": "standing", "lies": "lying", "rides": "riding", "climbs": "climbing",
    "lays": "laying", "waits": "waiting", "skis": "skiing", "surfs": "surfing", "splashes": "splashing",
}
MASS_NOUNS = {"snow", "water"}
# Plural-looking words after a number that are not countable things in the picture.
NOT_COUNTED = {"is", "was", "has", "this", "its", "his", "us", "as", "years", "times", "ways", "pieces", "sides",
               "colors", "kinds", "types", "sets", "pairs"}
# Categories for existence questions, with every word that counts as "present".
CATEGORIES = {
    "dog": ["dog", "dogs", "puppy", "puppies"], "cat": ["cat", "cats", "kitten"],
    "horse": ["horse", "horses", "pony"], "bike": ["bike", "bikes", "bicycle", "bicycles", "cyclist", "biker"],
    "car": ["car", "cars", "truck", "vehicle"], "ball": ["ball", "balls", "football", "soccer", "basketball"],
    "boat": ["boat", "boats", "kayak", "canoe"], "frisbee": ["frisbee", "frisbees"],
    "skateboard": ["skateboard", "skateboarder", "skateboarding"], "surfboard": ["surfboard", "surfer", "surfing"],
    "child": ["child", "children", "kid", "kids", "boy", "boys", "girl", "girls", "baby", "toddler"],
    "man": ["man", "men", "guy", "guys"], "woman": ["woman", "women", "lady", "ladies"],
    "snow": ["snow", "snowy", "skier", "skiing", "snowboard"], "water": ["water", "pool", "lake", "ocean", "river", "sea"],
    "bird": ["bird", "birds", "duck", "ducks"], "umbrella": ["umbrella", "umbrellas"], "hat": ["hat", "hats", "cap"],
}


def _words(caption: str) -> list[str]:
    return re.findall(r"[a-z]+", caption.lower())


def _plural(noun: str) -> str:
    return noun[:-1] if noun.endswith("s") else noun


def object_questions(caption: str) -> list[tuple[str, str]]:
    text = " ".join(_words(caption))
    out = []
    subjects, verbs = "|".join(SUBJECTS), "|".join(list(VERBS) + list(VERBS.values()))
    for match in re.finditer(rf"\b(?:a|an|the) (?:\w+ )?({subjects}) (?:is )?({verbs}) (?:a|an|the) (?:(?:{'|'.join(COLORS)}) )?({'|'.join(OBJECTS)})\b", text):
        subject, verb, obj = match.groups()
        out.append((f"what is the {subject} {VERBS.get(verb, verb)}?", obj))
    return out


def number_questions(caption: str) -> list[tuple[str, str]]:
    """"two dogs play in the grass" -> "how many dogs are in the grass?"; without a place,
    "three people stand" -> "how many people are there?"."""
    text = " ".join(_words(caption))
    out = []
    adjectives = "|".join(COLORS + ["little", "small", "big", "young", "large", "older", "old", "other"])
    for match in re.finditer(rf"\b({'|'.join(NUMBERS)}) (?:(?:{adjectives}) )?({PLURALS})\b", text):
        number, noun = match.groups()
        if noun in NOT_COUNTED:
            continue
        place = re.match(rf"(?: \w+){{0,3}}? (in|on|at) the ({'|'.join(LOCATIONS)})\b", text[match.end():])
        if place:
            out.append((f"how many {noun} are {place.group(1)} the {place.group(2)}?", number))
        else:
            out.append((f"how many {noun} are there?", number))
    return out


def color_questions(caption: str) -> list[tuple[str, str]]:
    text = " ".join(_words(caption))
    out = []
    nouns = "|".join(SUBJECTS + OBJECTS + ["car", "shirt", "dress", "jacket", "coat", "pants", "shorts"])
    for match in re.finditer(rf"\b(?:a|an|the) ({'|'.join(COLORS)}) ({nouns})\b", text):
        color, noun = match.groups()
        out.append((f"what color is the {noun}?", "gray" if color == "grey" else color))
    return out


def location_questions(caption: str) -> list[tuple[str, str]]:
    text = " ".join(_words(caption))
    out = []
    verbs = "|".join(["\\w+ing"] + list(MOTION))
    preps = "in|on|at|through|across|along|into|near|by"
    for match in re.finditer(rf"\b(?:a|an|the) ({'|'.join(SUBJECTS)}) (?:is )?({verbs}) (?:\w+ )?(?:{preps}) the ({'|'.join(LOCATIONS)})\b", text):
        subject, verb, place = match.groups()
        out.append((f"where is the {subject} {MOTION.get(verb, verb)}?", place))
    plural_verbs = "|".join(["\\w+ing"] + [v[:-1] if not v.endswith("es") else v[:-2] for v in MOTION])
    for match in re.finditer(rf"\b(?:{'|'.join(NUMBERS)}|the|some|many|several) ({'|'.join(PLURAL_SUBJECTS)}) (?:are )?({plural_verbs}) (?:\w+ )?(?:{preps}) the ({'|'.join(LOCATIONS)})\b", text):
        subject, verb, place = match.groups()
        out.append((f"where are the {subject} {_ing(verb)}?", place))
    return out


def _ing(verb: str) -> str:
    """Plural present ("play", "run", "sit") or -ing form -> -ing form."""
    if verb.endswith("ing"):
        return verb
    for third, ing in MOTION.items():
        if third.startswith(verb) and len(third) - len(verb) <= 2:
            return ing
    return verb + "ing"


# Words that leave a category's absence unknown: "a person skis" may be a man, a woman or a
# child, so no "no" question is asked about any of them (a wrong "no" label teaches the model
# to deny what is there, the very failure the yes/no probe measures).
UNCERTAIN = {
    "man": {"person", "people", "persons", "player", "players", "crowd", "skier", "skiers", "surfer", "biker",
            "bikers", "cyclist", "rider", "riders", "climber", "swimmer", "someone", "team", "group", "family",
            "couple", "adult", "adults", "skateboarder", "snowboarder", "runner", "runners", "hiker", "hikers",
            "performer", "worker", "workers", "athlete", "dancer", "dancers", "spectators", "audience", "football"},
    "dog": {"animal", "animals", "pet"}, "cat": {"animal", "animals", "pet"}, "horse": {"animal", "animals"},
    "bird": {"animal", "animals"},
    "water": {"beach", "wave", "waves", "surf", "swimming", "swims", "swim", "splash", "splashes", "splashing",
              "wet", "fountain", "puddle", "shore", "stream", "creek", "pond", "wading", "boat", "kayak", "canoe",
              "raft", "sprinkler", "hose", "rain", "surfing", "surfer", "ocean"},
    "snow": {"ski", "skis", "skier", "skiing", "sled", "sledding", "snowboarder", "winter", "ice", "snowy"},
    "car": {"traffic", "street", "road", "parking", "vehicles", "jeep", "van", "bus"},
    "hat": {"helmet", "hood", "cap", "bandana", "headband"},
    "ball": {"soccer", "football", "basketball", "volleyball", "tennis", "baseball", "rugby", "game"},
    "bike": {"motorcycle", "motorbike", "dirt", "rider", "bmx", "cycling"},
    "boat": {"water", "lake", "river", "ocean", "sea", "dock"},
}
UNCERTAIN["woman"] = UNCERTAIN["child"] = UNCERTAIN["man"]
# "Is there a person?" is what a blind user asks first: every word for a human counts.
CATEGORIES["person"] = sorted(set(CATEGORIES["man"] + CATEGORIES["woman"] + CATEGORIES["child"])
                              | UNCERTAIN["man"] - {"football", "team", "group", "family", "couple", "crowd"}
                              | {"people", "persons", "someone", "crowd", "team", "family", "couple"})


def existence_questions(captions: list[str], seed: int) -> list[tuple[str, str]]:
    """One "yes" and one "no" question per image when both kinds exist (balanced), each in
    one of several phrasings: people ask "do you see a dog?" as often as "is there a dog?",
    and a model trained on one wording answers the others poorly."""
    present_words = {w for c in captions for w in _words(c)}
    present = sorted(c for c, words in CATEGORIES.items() if present_words & set(words))
    absent = sorted(c for c, words in CATEGORIES.items()
                    if not present_words & set(words) and not present_words & UNCERTAIN.get(c, set()))
    if not present or not absent:
        return []
    rng = random.Random(seed)
    yes, no = rng.choice(present), rng.choice(absent)  # drawn first: the same objects as the one-wording version
    return [(_ask_existence(yes, rng), "yes"), (_ask_existence(no, rng), "no")]


PLURAL_NOUNS = {"man": "men", "woman": "women", "child": "children", "person": "people", "water": "water",
                "snow": "snow"}
# {a} = the article ("" for mass nouns), {x} = the noun, {xs} = its plural. The plain
# "is there" form stays the most common, as it is the most common way to ask.
EXISTENCE_TEMPLATES = ("is there {a}{x}?", "is there {a}{x}?", "are there any {xs}?", "do you see {a}{x}?",
                       "can you see {a}{x}?", "is there {a}{x} in the picture?")


def noun_forms(category: str) -> tuple[str, str]:
    """-> (article with its space, "" for mass nouns; plural): "a ", "dogs"; "", "water"."""
    article = "" if category in MASS_NOUNS else ("an " if category[0] in "aeiou" else "a ")
    return article, PLURAL_NOUNS.get(category, category + "s")


def _ask_existence(category: str, rng: random.Random) -> str:
    article, plural = noun_forms(category)
    return rng.choice(EXISTENCE_TEMPLATES).format(a=article, x=category, xs=plural)


EXTRACTORS = {"object": object_questions, "number": number_questions, "color": color_questions,
              "location": location_questions}


def absent_count_questions(images: list[dict], counts: list[dict]) -> list[tuple[dict, str, list[str]]]:
    """images (as generate_questions takes them) and their "how many" questions ``counts``
    -> (image, "how many dogs are there?", ["none", "zero"]) for as many other images per
    counted noun as it has count questions, each an image where every concept naming the
    noun (the runtime's rule, ``ExistenceQuestions.counted_concepts``) is absent
    (object_lexicon.image_labels). "zero" is right too: VQAv2-trained models say "0".

    Without them every "how many dogs" question has a dog to count, and "two" for everything
    scores 77% on Flickr8k: a number a blind guesser reaches. Nouns no concept names
    ("balloons") get none: nothing at run time could say they are absent either.
    Deterministic: each noun's images are drawn by a generator seeded with the noun (string
    seeds are hashed with SHA-512, not Python's per-process hash)."""
    from edgevlm.data.object_lexicon import CATEGORIES as CONCEPTS, image_labels
    from edgevlm.runtime.grounding import ExistenceQuestions

    lexicon = ExistenceQuestions(tuple(CONCEPTS), tuple(tuple(words) for words in CONCEPTS.values()))
    per_noun: dict[str, int] = {}
    for question in counts:
        noun = question["question"].split()[2]
        per_noun[noun] = per_noun.get(noun, 0) + 1
    labels = [image_labels(image["captions"]) for image in images]
    out = []
    for noun, wanted in sorted(per_noun.items()):
        concepts = [lexicon.names[k] for k in lexicon.counted_concepts(f"how many {noun} are there?")]
        if not concepts:
            continue
        candidates = [i for i, known in enumerate(labels) if all(known.get(c) is False for c in concepts)]
        for i in sorted(random.Random(f"none {noun}").sample(candidates, min(wanted, len(candidates)))):
            out.append((images[i], f"how many {noun} are there?", ["none", "zero"]))
    return out


def generate_questions(images: list[dict], absent_counts: bool = False) -> list[dict]:
    """images: [{"image_id", "file_name", "captions": [...]}] -> VQA-style question dicts.

    Each question appears once per image; an answer counts if at least two of the image's
    captions support it, or if only one caption could produce the question at all.
    ``absent_counts``: add as many "how many X are there?" -> "none" questions per counted
    noun (``absent_count_questions``), for evaluation sets; training leaves them out (the
    concept head, not the decoder, answers "none").
    """
    questions = []
    for image in images:
        per_question: dict[tuple[str, str], list[str]] = {}
        for caption in image["captions"]:
            for kind, extract in EXTRACTORS.items():
                for question, answer in dict(extract(caption)).items():
                    per_question.setdefault((kind, question), []).append(answer)
        pairs = []
        for (kind, q), answers in sorted(per_question.items()):
            # sorted(set(...)): a 2-2 tie goes to the alphabetically first answer, not to the
            # set's order, which changes with PYTHONHASHSEED (the same captions gave other files).
            best = max(sorted(set(answers)), key=answers.count)
            if len(set(answers)) == 1 or answers.count(best) >= 2:
                pairs.append((kind, q, best))
        pairs += [("yesno", q, a) for q, a in existence_questions(image["captions"], image["image_id"])]
        for kind, question, answer in pairs:
            questions.append({"question_id": len(questions) + 1, "image_id": image["image_id"],
                              "image": image["file_name"], "question": question, "answers": [answer], "type": kind})
    if absent_counts:
        for image, question, answers in absent_count_questions(images, [q for q in questions if q["type"] == "number"]):
            questions.append({"question_id": len(questions) + 1, "image_id": image["image_id"],
                              "image": image["file_name"], "question": question, "answers": answers, "type": "number"})
    return questions
