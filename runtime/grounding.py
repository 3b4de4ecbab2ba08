"""What the concept head's probabilities mean to questions and captions (torch-free).

- ``ExistenceQuestions`` tells whether a question only asks whether something is in view
  ("is there a car?", "do you see any dogs?", "is a bench visible?") and about which
  concept; such questions are answered from the head, everything else by the decoder.
- ``presupposition`` finds what a question takes to be there: what "how many" counts, or
  the thing "what color is the dog?" asks about; ``grounded_answer`` weighs the decoder's
  answer by the head's P(present), and says "none" to a count where the head finds nothing.
  The decoder only ever learnt counts and colours of things a caption named, so on its own
  it answered "two" and "black" about a photo without a dog.
- ``caption_bias`` bans, per image, the words of concepts the head is sure are absent, so
  a caption cannot name a dog the picture gives no evidence of.

Rules over words, not a parser: a question is an existence question only when every word
besides the one object is a function word or a word about seeing/being there ("is the dog
here?" is one; "is the dog black?" presupposes the dog and asks about colour).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

YES_NO_OPENERS = frozenset({"is", "are", "was", "were", "do", "does", "did", "can", "could", "will", "would",
                            "have", "has", "any", "anything", "see"})
# Words that may surround the object in an existence question: how people ask whether
# something is there, in many phrasings (none of them names a property or an action).
EXISTENCE_WORDS = frozenset("""
    is are was were do does did can could will would have has there here any anything some a an the this that these
    i you we me my us in on at of front around near nearby visible see seeing seen spot notice find show shows showing
    picture image photo photograph frame scene view shot camera sight look looking somewhere anywhere please tell
    if whether there's theres in it its one ones at all
""".split())


# Words that make a noun definite: "the dog" in a question takes a dog to be there.
DEFINITE = frozenset({"the", "this", "that", "these", "those", "his", "her", "their", "its", "my", "your"})
# Definite phrases that place, not name, a thing: "on the left of the bench" is about the bench.
PLACE_WORDS = frozenset("""
    left right side front back top bottom middle center centre corner edge end picture image photo photograph
    camera background foreground scene view frame shot distance
""".split())
# Words between "how many" (or a definite word) and the noun that only describe it.
COUNT_MODIFIERS = frozenset("""
    black white brown red blue green yellow orange pink purple gray grey tan dark light colored coloured and
    little small big large tiny young old older other different more
""".split())


# Words for a person that the lexicon lacks, read as one of the person concept's words, so
# "is anyone there?" is the head's question, not an unknown object.
WORD_ALIASES = {"anyone": "someone", "anybody": "someone", "somebody": "someone", "human": "person",
                "humans": "people"}
# Words that make a question ask whether something is in view: "is there ...", "do you see ...".
EXISTENCE_CUES = frozenset({"there", "theres", "see", "seeing", "seen", "spot", "notice", "find", "show", "shows",
                            "showing", "visible"})
# Words that name no particular kind of thing ("is there an animal?" may be any of several the
# head knows; "is there anything else?"): such questions stay the decoder's, not unknown objects.
GENERAL_WORDS = frozenset("""
    animal animals pet pets creature creatures thing things object objects something everything nothing else
    someone everyone nobody anyone anybody somebody
""".split())
# After these the words that follow describe, not name ("do you see anything dangerous?").
PRONOUN_HEADS = frozenset({"anything", "something", "it", "this", "that"})
UNKNOWN_PHRASE_WORDS = 4  # "a cup of coffee": longer runs are clauses, not a thing's name
# What an answer about a thing the engine never learnt is worth: nothing either way (the
# decoder's own answers to such questions were right 50-51% of the time: ``unknown_object``).
UNKNOWN_OBJECT_PROBABILITY = 0.5


@dataclass(frozen=True)
class ExistenceQuestions:
    """concept names and their words (the manifest's ``concepts``)."""

    names: tuple[str, ...]
    words: tuple[tuple[str, ...], ...]

    @classmethod
    def from_manifest(cls, concepts) -> "ExistenceQuestions":
        """From the manifest's ``concepts`` section (runtime.manifest.Concepts)."""
        names = tuple(concepts.names)
        return cls(names, tuple(tuple(concepts.words[n]) for n in names))

    def concept_of(self, question: str) -> int | None:
        """The concept an existence question asks about, or None for any other question."""
        tokens = question_words(question)
        if not tokens or tokens[0] not in YES_NO_OPENERS:
            return None
        found = [(i, self._concepts_named(t)) for i, t in enumerate(tokens) if self._concepts_named(t)]
        if len({tokens[i] for i, _ in found}) != 1:  # no object, or two ("is the man riding a horse?")
            return None
        index, candidates = found[0]
        # "is the dog black?" asks about colour ("black" is no existence word); "is the dog
        # here?" and "do you see the dog?" ask whether it is there, definite or not.
        if any(t not in EXISTENCE_WORDS for i, t in enumerate(tokens) if i != index):
            return None
        return self._narrowest(tokens[index], candidates)

    def unknown_object(self, question: str) -> str | None:
        """What an existence question asks about when no concept names it, as asked ("is
        there a cup?" -> "a cup", "do you see his phone?" -> "his phone", "can you see the
        sky?" -> "the sky"), else None: for a question about a concept, for any other kind of
        question, and for words that name no particular thing ("an animal", "anything red").

        Why: our decoder learnt existence only for the concepts' categories (its training
        questions are generated for them), so "is there a cup?" got its prior, "no" at p 0.96,
        on a photo of a cup. On POPE-style dev questions about ten things outside the lexicon
        (``pope_questions --outside-lexicon``: field, wave, ramp, swing, bag, ...) it said "yes"
        to 1-3% of them, macro balanced accuracy 0.49-0.50 (a blind guesser: 0.50), and was
        wrong at p >= 0.9 on 31-33% of them (/work/runs/s40/outside_before.py). Such a
        question gets "I'm not sure" and why (engine.unknown_object_answer)."""
        tokens = question_words(question)
        if not tokens or tokens[0] not in YES_NO_OPENERS or not EXISTENCE_CUES.intersection(tokens):
            return None
        if self.concept_of(question) is not None:
            return None
        content = [i for i, t in enumerate(tokens) if t not in EXISTENCE_WORDS]
        if not content or content[0] == 0:  # nothing named, or no opener before it
            return None
        start, end = content[0], content[-1] + 1
        words = tokens[start:end]
        # one run of words ("of" may join them: "a cup of coffee"), naming no concept
        if (len(words) > UNKNOWN_PHRASE_WORDS or any(i not in content and tokens[i] != "of" for i in range(start, end))
                or any(self._concepts_of_word(w) or w in GENERAL_WORDS for w in words)
                or words[-1] in COUNT_MODIFIERS or tokens[start - 1] in PRONOUN_HEADS):
            return None
        article = [tokens[start - 1]] if tokens[start - 1] in ("a", "an", "the") else []
        return " ".join(article + words)

    def counted_concepts(self, question: str) -> tuple[int, ...]:
        """The concepts that name what a "how many" question counts ("can you tell me how
        many black and white dogs are in the snow?" -> (dog,); "how many men" -> (person,
        man): every group naming the word, so that "none" needs all of them absent), or ()
        for any other question, for a counted word no concept names ("how many balloons"),
        and for two things counted at once ("how many dogs and cats")."""
        return self._counted(question_words(question)) or ()

    def _counted(self, tokens: list[str]) -> tuple[int, ...] | None:
        """``counted_concepts`` of a question's words, but None where no "how many" is asked
        (and () where one is, of nothing a concept names)."""
        starts = [i for i in range(len(tokens) - 1) if tokens[i : i + 2] == ["how", "many"]]
        if not starts:
            return None
        words = tokens[starts[0] + 2 :]
        while words and words[0] in COUNT_MODIFIERS:  # "black and white", "little", "other"
            words = words[1:]
        if not words:
            return ()
        if len(words) > 2 and words[1] in ("and", "or") and self._concepts_of_word(words[2]):
            return ()  # "how many dogs and cats": one count of two things; the decoder's
        return tuple(self._concepts_of_word(words[0]))

    def reads_head(self, question: str) -> bool:
        """Is ``question`` answered with the concept head's help: an existence question, or
        one taking something to be there ("how many dogs", "what color is the dog?")?"""
        return self.concept_of(question) is not None or self.presupposition(question) is not None

    def presupposition(self, question: str) -> "Presupposed | None":
        """What a question (not an existence one) takes to be in view, or None where no
        concept names it: what "how many" counts (absent answer "none"), else the thing
        named by the first definite phrase ("what color is the dog?", "is his hat red?",
        "what is on the left of the bench?": past "the left", "the picture" and such; no
        absent answer, below). A first definite phrase naming something else ("is the
        rocket on the street?") grounds nothing: the question is about the rocket."""
        tokens = question_words(question)
        counted = self._counted(tokens)
        if counted is not None:  # a "how many" question; () counts something no concept names
            return Presupposed(counted, NONE_ANSWER) if counted else None
        for i, token in enumerate(tokens):
            if token not in DEFINITE:
                continue
            j = i + 1
            while j < len(tokens) and tokens[j] in COUNT_MODIFIERS:  # "the black and white dog"
                j += 1
            if j == len(tokens) or tokens[j] in PLACE_WORDS:
                continue
            concepts = self._concepts_of_word(tokens[j])
            if not concepts:
                return None
            # No "I don't see the dog": on dev questions about things that are there the head
            # said absent for 67 of 627 (jacket 19 of 32, hats, toys: clothing and small
            # things), against 10 of 431 counted people and animals. The answer's probability
            # is still weighed by P(present), so doubt becomes "I'm not sure".
            return Presupposed(tuple(concepts), None)
        return None

    def _concepts_of_word(self, word: str) -> list[int]:
        """Concepts naming ``word``, or else its singular ("greyhounds" -> "greyhound")."""
        for form in (word, word[:-3] + "y" if word.endswith("ies") else None,
                     word[:-2] if word.endswith("es") else None, word[:-1] if word.endswith("s") else None):
            found = self._concepts_named(form) if form else []
            if found:
                return found
        return []

    def _narrowest(self, token: str, candidates: list[int]) -> int:
        # "man" names both "person" and "man": the narrowest group is what was asked.
        return min(candidates, key=lambda k: (self.names[k] != token, len(self.words[k])))

    def _concepts_named(self, token: str) -> list[int]:
        token = WORD_ALIASES.get(token, token)
        return [k for k, group in enumerate(self.words) if token in group]


def concept_token_ids(tokenizer, words: tuple[tuple[str, ...], ...]) -> list[list[int]]:
    """Per concept, the token ids of its words (a CaptionTokenizer; words outside the
    vocabulary are dropped: they cannot be generated anyway). Engine and PyTorch model both
    build their caption bans here."""
    vocab = tokenizer.tokenizer
    return [[i for i in (vocab.token_to_id(w) for w in group) if i is not None] for group in words]


def existence_answer(p_present: float) -> tuple[str, float]:
    """P(concept present) -> ("yes" or "no", the probability of that answer)."""
    return ("yes", p_present) if p_present >= 0.5 else ("no", 1.0 - p_present)


NONE_ANSWER = "none"


@dataclass(frozen=True)
class Presupposed:
    """What a question takes to be in view: the concepts naming it (it is there if any
    is), and what to answer when the head finds it absent (None: nothing, only doubt)."""

    concepts: tuple[int, ...]
    absent_answer: str | None  # "none" for counts


def question_words(question: str) -> list[str]:
    """"Is the man's dog here?" -> ["is", "the", "mans", "dog", "here"]: lower-case words,
    a possessive joined to its noun (read by its singular, ``_concepts_of_word``)."""
    return re.findall(r"[a-z]+", question.lower().replace("'s", "s"))


def grounded_answer(p_present: float, answer: str, probability: float,
                    absent_answer: str | None) -> tuple[str, float, str]:
    """P(the presupposed thing is present), the decoder's answer with its probability and
    the answer for its absence -> (answer, probability, source): ``absent_answer`` from the
    concept head, or the decoder's.

    The decoder's answer presupposes the thing is there (it was only trained on photos
    whose captions named it), so it is P(answer | present), and P(answer) = P(present) x
    P(answer | present): an answer about something the head doubts comes with a lower
    probability and may fall below the "I'm not sure" threshold. A "no" ("is the dog
    black?") is also right when the thing is not there: P(no) = 1 - P(present) + P(present)
    x P(no | present). The absent answer (probability 1 - P(present)) exactly where "is
    there a ...?" says "no" (P(present) < 0.5), so the two never disagree; there 1 -
    P(present) > 0.5 > P(answer) anyway."""
    if absent_answer is not None and p_present < 0.5:
        return absent_answer, 1.0 - p_present, "concepts"
    if answer == "no":
        return answer, 1.0 - p_present + p_present * probability, "decoder"
    return answer, p_present * probability, "decoder"


def caption_bias(probs: np.ndarray, ban_below: float, concept_token_ids: list[list[int]], vocab_size: int) -> np.ndarray:
    """probs (B,K) concept probabilities -> additive logit bias (B,V): -inf on every token
    that names a concept whose probability is below ``ban_below`` in that image (a word in
    two groups, "cyclist" = person + bike, is banned when either is absent)."""
    bias = np.zeros((probs.shape[0], vocab_size), np.float64)
    for image, row in enumerate(probs):
        for k in np.flatnonzero(row < ban_below):
            bias[image, concept_token_ids[k]] = -np.inf
    return bias
