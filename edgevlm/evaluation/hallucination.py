"""Caption hallucination and consistency metrics (torch-free), all on the object lexicon's
categories (``edgevlm.data.object_lexicon``), so a hallucinated "puppy", the question "is
there a dog?" and the concept head all mean the same thing.

- ``chair``: CHAIR-i / CHAIR-s (Rohrbach et al., 2018, "Object Hallucination in Image
  Captioning") against the human reference captions of each image.
- ``repeated_word_rate``: captions that stutter ("on a green green grass").
- ``consistency``: does the model's own VQA head say "yes" to the objects its caption names?
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Hashable

from edgevlm.data.object_lexicon import PLURAL_ONLY, mentioned, noun_forms, uncertain, words

MAX_REPEAT_EXAMPLES = 5
MAX_INCONSISTENT_EXAMPLES = 10
# The categories a blind user most needs to be right about ("is someone there?", "is a dog
# near me?"), and the ones captioners invent most often.
PERSON_DOG = ("person", "dog")


def chair(generated: dict[Hashable, str], references: dict[Hashable, list[str]]) -> dict:
    """CHAIR over the lexicon's categories: generated[key] is one caption per image,
    references[key] that image's human captions (a missing or empty list is an error).

    A mention is a category the generated caption names, counted once per caption. It is
    *supported* when a reference names the category, *open* when none names it but one
    leaves it open (``object_lexicon.uncertain``: "a person" may be a man), and otherwise
    *hallucinated*. Open mentions count as mentioned but not hallucinated, so these rates are
    conservative (a lower bound: the lexicon leaves many categories open).

    People sub-categories count on their own: "a man ..." on an image whose references say
    "a woman ..." mentions {person, man}; person is supported, man is hallucinated (a gender
    error, not an invented person) unless a reference leaves it open.

    Returns:
        chair_i: hallucinated mentions / mentions (0.0 when there are no mentions)
        chair_s: captions with >= 1 hallucinated mention / captions
        captions, captions_hallucinated, mentions, mentions_supported, mentions_open,
        mentions_hallucinated: the counts behind them
        hallucinated_by_category: {category: hallucinated mentions}, most first
        mentions_by_category: {category: mentions}, most first
        person_dog_captions: captions naming person or dog
        person_dog_hallucinated: those where the person or dog mention is hallucinated
        person_dog_hallucination_rate: the second / the first
    """
    mentions, hallucinated_by = Counter(), Counter()
    supported = open_ = captions_hallucinated = person_dog = person_dog_hallucinated = 0
    for key, caption in generated.items():
        refs = references.get(key)
        if not refs:
            raise ValueError(f"chair: no reference captions for generated key {key!r}")
        named = set().union(*(mentioned(r) for r in refs))
        left_open = set().union(*(uncertain(r) for r in refs)) - named
        cats = mentioned(caption)
        invented = cats - named - left_open
        mentions.update(cats)
        hallucinated_by.update(invented)
        supported += len(cats & named)
        open_ += len(cats & left_open)
        captions_hallucinated += bool(invented)
        if cats.intersection(PERSON_DOG):
            person_dog += 1
            person_dog_hallucinated += bool(invented.intersection(PERSON_DOG))
    total_mentions = sum(mentions.values())
    total_hallucinated = sum(hallucinated_by.values())
    return {
        "chair_i": total_hallucinated / max(total_mentions, 1),
        "chair_s": captions_hallucinated / max(len(generated), 1),
        "captions": len(generated),
        "captions_hallucinated": captions_hallucinated,
        "mentions": total_mentions,
        "mentions_supported": supported,
        "mentions_open": open_,
        "mentions_hallucinated": total_hallucinated,
        "hallucinated_by_category": _most_first(hallucinated_by),
        "mentions_by_category": _most_first(mentions),
        "person_dog_captions": person_dog,
        "person_dog_hallucinated": person_dog_hallucinated,
        "person_dog_hallucination_rate": person_dog_hallucinated / max(person_dog, 1),
    }


def repeated_word_rate(captions: list[str]) -> dict:
    """Share of captions with the same word twice in a row ("green green"), on the
    lexicon's word tokens (lower case, punctuation dropped, so "green, green" counts too).

    Returns rate (0.0 for no captions), captions, repeated (count), examples (up to
    ``MAX_REPEAT_EXAMPLES`` of the repeating captions, in input order).
    """
    repeating = [c for c in captions if _has_repeat(words(c))]
    return {
        "rate": len(repeating) / max(len(captions), 1),
        "captions": len(captions),
        "repeated": len(repeating),
        "examples": repeating[:MAX_REPEAT_EXAMPLES],
    }


def _has_repeat(tokens: list[str]) -> bool:
    return any(a == b for a, b in zip(tokens, tokens[1:]))


def existence_question(category: str) -> str:
    """The yes/no question about one category: "is there a dog?", "is there an umbrella?",
    "is there water?" (mass noun), "are there stairs?" (plural-only name)."""
    article, singular, _ = noun_forms(category)
    if category in PLURAL_ONLY:
        return f"are there {singular}?"
    return f"is there {article}{singular}?"


Ask = Callable[[Hashable, list[str]], list[tuple[str, float, bool]]]


def consistency(captions: dict[Hashable, str], ask: Ask) -> dict:
    """Self-consistency: for each category a caption names, ``existence_question`` is asked
    about that key's image. ``ask(key, questions)`` gets all of one image's questions in one
    call and returns, per question and in order, (answer text, probability, abstained).
    An answer is "yes" when its first word is "yes"; captions naming no category are not asked.

    Returns:
        consistency: non-abstained "yes" answers / questions (an abstention is not a yes)
        answered_consistency: "yes" / answered questions
        abstention_rate: abstained / questions
        questions, answered, yes, abstained: the counts (rates are 0.0 over zero questions)
        captions, captions_asked: captions, and those naming at least one category
        by_category: {category: {questions, consistency, answered_consistency,
        abstention_rate}}, most asked first
        inconsistent_examples: up to ``MAX_INCONSISTENT_EXAMPLES`` answered non-"yes"
        answers as {key, caption, question, answer}
    """
    per_category: dict[str, list[int]] = {}  # category -> [questions, answered, yes]
    examples: list[dict] = []
    asked = 0
    for key, caption in captions.items():
        cats = sorted(mentioned(caption))
        if not cats:
            continue
        asked += 1
        questions = [existence_question(c) for c in cats]
        answers = ask(key, questions)
        if len(answers) != len(questions):
            raise ValueError(f"consistency: ask({key!r}) returned {len(answers)} answers to {len(questions)} questions")
        for category, question, (text, _probability, abstained) in zip(cats, questions, answers):
            said_yes = not abstained and words(text)[:1] == ["yes"]
            counts = per_category.setdefault(category, [0, 0, 0])
            counts[0] += 1
            counts[1] += not abstained
            counts[2] += said_yes
            if not abstained and not said_yes and len(examples) < MAX_INCONSISTENT_EXAMPLES:
                examples.append({"key": key, "caption": caption, "question": question, "answer": text})
    total = [sum(c[i] for c in per_category.values()) for i in range(3)]
    by_category = sorted(per_category.items(), key=lambda item: (-item[1][0], item[0]))
    return {
        **_rates(*total),
        "questions": total[0],
        "answered": total[1],
        "yes": total[2],
        "abstained": total[0] - total[1],
        "captions": len(captions),
        "captions_asked": asked,
        "by_category": {name: {"questions": c[0], **_rates(*c)} for name, c in by_category},
        "inconsistent_examples": examples,
    }


def _rates(questions: int, answered: int, yes: int) -> dict:
    return {
        "consistency": yes / max(questions, 1),
        "answered_consistency": yes / max(answered, 1),
        "abstention_rate": (questions - answered) / max(questions, 1),
    }


def _most_first(counts: Counter) -> dict[str, int]:
    """Counts as a dict, largest first, ties by name (stable JSON output)."""
    return dict(sorted(counts.items(), key=lambda item: (-item[1], item[0])))
