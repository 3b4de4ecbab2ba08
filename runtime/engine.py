"""The captioning and VQA engine: manifest + family + backend + tokenizer + search.

Per image: the vision graph once, the cross-K/V graph once, then one decoder-graph run per
generated token on a cache that was allocated once and is written in place (the backend's
stepper owns it). A question is one more decoder run first: its prompt prefilled into the
cache as a prefix-LM prefix. Not thread-safe: one engine per thread (the caches are reused).
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass

import numpy as np

from edgevlm.errors import EdgeVLMError

from edgevlm.runtime.backends import DEFAULT_BACKEND, BackendOptions, create_backend
from edgevlm.runtime.families import runtime_family
from edgevlm.runtime.frame_quality import assess_frame
from edgevlm.runtime.grounding import (UNKNOWN_OBJECT_PROBABILITY, ExistenceQuestions, caption_bias,
                                      concept_token_ids, existence_answer, grounded_answer)
from edgevlm.runtime.engine_profiles import MAX_IMAGES
from edgevlm.runtime.mirror_view import Unmirror, merged_candidates, unmirror_for, with_mirror_view
from edgevlm.runtime.pixel_layout import mirror_pixels, pixel_dtype
from edgevlm.runtime.blas_threads import single_thread_numpy_blas
from edgevlm.runtime.cpu_variants import load_for_this_cpu, runs_variants
from edgevlm.runtime.caption_memory import CaptionMemory
from edgevlm.runtime.search import SearchSettings, answer_search, beam_search, nbest_search
from edgevlm.runtime.search_hf import HFGeneration, hf_answers, hf_generate
from edgevlm.runtime.text import MAX_ANSWER_TOKENS


NOT_SURE = "I'm not sure"
UNFAMILIAR = "I'm not sure what this is. My best guess: {caption}"
HF_MAX_ANSWER_TOKENS = 8  # Hugging Face VQA answers: a few words and eos
DEFAULT_ABSTAIN_BELOW = 0.5  # when the manifest has no tuned threshold: answer if more likely right than wrong
# Photos searched with their mirror images in one run: 2 x 2 views fit TensorRT's encoder
# profiles (MAX_IMAGES images; the decoder's 64 rows at beam 16).
MIRROR_IMAGES = MAX_IMAGES // 2


@dataclass(frozen=True)
class VQAAnswer:
    text: str  # what to tell the user: the answer, or "I'm not sure"
    answer: str  # the model's best answer, even when it abstained
    probability: float  # P(answer | image, question), 0..1
    abstained: bool
    # "decoder", "concepts" (the concept head: existence, "none"), "frame" (nothing to see) or
    # "unknown_object" (an existence question about a thing the engine never learnt)
    source: str = "decoder"


def nothing_to_see(quality) -> VQAAnswer:
    """The answer to any question about a frame assess_frame found unusable: its reason."""
    return VQAAnswer(quality.message, "", 0.0, True, "frame")


# On an image unlike the photos the model learnt from (novelty above the manifest's
# ``unfamiliar_above``, where a caption is said as a guess), an answer that something is there
# is said only at p >= this, whatever the threshold; a denial ("no", "none") keeps its own.
# The head's probabilities are calibrated on photos like its training ones, not on these: on
# the out-of-domain set (`edgevlm eval --ood`, 88 images, 69 of them unfamiliar) "is there a
# person?" was "yes" on 8 images at p 0.62-0.77, and the shipped coffee photo got "is there
# a cat?" -> "yes" (0.87). The 1.8% of dev photos that are unfamiliar answer as well as the
# rest (existence 0.917 vs 0.906), so the bar is the plain "sure" (metrics.calibration's
# SURE_ABOVE), not one tuned on them: it held back 10 right and 1 wrong "yes" of their 60
# existence questions (/work/runs/s40/novel_pope.py).
UNFAMILIAR_SURE_ABOVE = 0.9
DENIALS = frozenset({"no", "none"})  # the decoder's and the head's answers saying nothing is there


def unless_sure(answer: VQAAnswer) -> VQAAnswer:
    """An answer on an unfamiliar image: "I'm not sure" where it says something is there at
    p < UNFAMILIAR_SURE_ABOVE; any other answer as it is."""
    if (answer.abstained or answer.source not in ("concepts", "decoder") or answer.answer in DENIALS
            or answer.probability >= UNFAMILIAR_SURE_ABOVE):
        return answer
    return dataclasses.replace(answer, text=NOT_SURE, abstained=True)


def unknown_object_answer(thing: str) -> VQAAnswer:
    """"is there a cup?" to an engine whose concepts hold no cup: "I'm not sure" and why,
    whatever the threshold (there is no answer to give), without running the decoder."""
    return VQAAnswer(f"{NOT_SURE}: I have not learned to recognise {thing}", "", UNKNOWN_OBJECT_PROBABILITY, True,
                     "unknown_object")


@dataclass(frozen=True)
class Sight:
    """One vision-graph run: visual tokens (B,N,d), pooled (B,C), and, where the engine has
    them, concept probabilities (B,K) and novelty scores (B,)."""

    visual: np.ndarray
    pooled: np.ndarray
    concepts: np.ndarray | None = None
    novelty: np.ndarray | None = None
    mirror: "Sight | None" = None  # the same photos mirrored left-right, where a caller saw them too
    views_averaged: bool = False  # concepts are already both views' (question_sight's)


@dataclass(frozen=True)
class Description:
    text: str  # what to tell the user
    caption: str  # the model's caption ("" when the frame had nothing to see)
    hedged: bool  # unfamiliar image: the caption is said as a guess
    issue: str | None = None  # frame problem ("dark", "covered", ...) when nothing could be seen


class CaptionEngine:
    """An engine folder, opened: ``with CaptionEngine(dir) as engine: engine.caption_images(...)``
    (or call ``close()``; the backend's sessions are freed then)."""

    def __init__(self, engine_dir: str, provider: str = "cpu", threads: int | None = None, verify: bool = True,
                 spinning: bool = False, backend: str = DEFAULT_BACKEND, io_binding: bool | None = None,
                 use_memory: bool = True, pick_variant: bool = True):
        # The engine made for this CPU's int8 kernels: a listed variant, else ENGINE_DIR itself,
        # with one warning per process when it was made for another CPU (cpu_variants.py).
        # pick_variant False: ENGINE_DIR itself (doctor opens each engine of a folder).
        self.manifest = load_for_this_cpu(engine_dir, verify=verify, pick=pick_variant,
                                          on_cpu=runs_variants(provider, backend))
        single_thread_numpy_blas()  # its idle threads would spin on the cores the graphs need (blas_threads.py)
        self.family = runtime_family(self.manifest.model.family)
        self.family.check(self.manifest)
        self.tokenizer = self.family.load_tokenizer(self.manifest)
        self.backend = create_backend(self.manifest, backend, BackendOptions(provider, threads, spinning, io_binding))
        concepts = self.manifest.concepts
        self.existence = ExistenceQuestions.from_manifest(concepts) if concepts else None
        self._concept_ids = concept_token_ids(self.tokenizer, self.existence.words) if self.existence else []
        # use_memory False: beams are never re-ranked, and the default beam is generation's
        self.use_memory = use_memory
        self._memory: CaptionMemory | None = None  # read on the first beam caption (greedy never needs it)

    @property
    def reranks(self) -> bool:
        """Are beam captions re-ranked by a caption memory (runtime/caption_memory.py)?"""
        return self.use_memory and self.manifest.caption_memory is not None

    @property
    def caption_memory(self) -> CaptionMemory | None:
        """The photos and captions beam candidates are re-ranked against (None: not used)."""
        settings = self.manifest.caption_memory
        if self.reranks and self._memory is None:
            path = self.manifest.path(settings.file)
            memory = CaptionMemory.load(path)
            pooled = self.manifest.graph("vision").outputs
            width = next((spec.shape[-1] for spec in pooled if spec.name == "pooled"), None)
            if (len(memory.captions), memory.keys.shape[1]) != (settings.images, settings.dims) or \
                    memory.embedding_width != width:
                raise EdgeVLMError(f"{path} holds {len(memory.captions)} photos of {memory.keys.shape[1]} dims from "
                                   f"{memory.embedding_width}-wide embeddings, not the manifest's {settings.images} "
                                   f"photos, {settings.dims} dims from {width}; rebuild it with `edgevlm memory`")
            self._memory = memory
        return self._memory

    def close(self) -> None:
        self.backend.close()

    def __enter__(self) -> "CaptionEngine":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # --- stages -----------------------------------------------------------------------
    def preprocess(self, image_bgr: np.ndarray) -> np.ndarray:
        """(H,W,3) uint8 BGR -> the vision graph's pixels for one photo: (3,S,S) float32, as
        in training, or another layout the manifest names (runtime/pixel_layout.py)."""
        return self.family.preprocess(image_bgr, self.manifest)

    def see(self, pixels: np.ndarray) -> Sight:
        """pixels (B,3,S,S), or (B, ...) in the manifest's layout -> every vision-graph output."""
        layout = self.manifest.preprocess.layout
        dtype = pixel_dtype(layout)
        if dtype == np.uint8 and pixels.dtype != np.uint8:  # a cast would make garbage, not an error
            raise EdgeVLMError(f"{self.manifest.root} takes {layout} pixels (uint8), got {pixels.dtype}: make them "
                               "with this engine's preprocess()")
        out = self.backend.run("vision", {"pixels": np.ascontiguousarray(pixels, dtype)})
        return Sight(out["visual_tokens"], out["pooled"], out.get("concept_probs"), out.get("novelty"))

    def with_mirror(self, sight: Sight | None, pixels: np.ndarray) -> Sight:
        """``sight`` of pixels (B,3,S,S), or None -> the Sight with ``mirror``: the vision
        graph's outputs on the photos mirrored left-right. Without ``sight``, up to
        MIRROR_IMAGES photos and their mirror images are seen in one run (11.5 against 13.1
        ms for one photo, AVX2 EPYC; outputs identical: the vision graph's INT8 is static);
        with it, one more run (none when the mirror is already there)."""
        mirrored = mirror_pixels(pixels, self.manifest.preprocess.layout)
        if sight is None and len(pixels) <= MIRROR_IMAGES:
            both, count = self.see(np.concatenate([pixels, mirrored])), len(pixels)
            views = [Sight(*(None if x is None else x[part] for x in (both.visual, both.pooled, both.concepts,
                                                                         both.novelty)))
                     for part in (slice(0, count), slice(count, None))]
            return dataclasses.replace(views[0], mirror=views[1])
        sight = sight if sight is not None else self.see(pixels)
        return sight if sight.mirror is not None else dataclasses.replace(sight, mirror=self.see(mirrored))

    def mirrors_captions(self, beam_size: int | None = None) -> bool:
        """Does a caption at ``beam_size`` (None: the default) search the photo and its mirror
        image, the whole beam each, the caption memory choosing among both views' captions
        (runtime/mirror_view.py)? Wherever the memory re-ranks the search."""
        return self._reranks(self.settings(beam_size))

    def caption_sight(self, pixels: np.ndarray, beam_size: int | None = None) -> Sight:
        """pixels (B,3,S,S) -> the Sight a caption at ``beam_size`` is searched on: with the
        mirror images where ``mirrors_captions``, else the photos' alone."""
        return self.with_mirror(None, pixels) if self.mirrors_captions(beam_size) else self.see(pixels)

    def _reranks(self, settings: SearchSettings | HFGeneration) -> bool:
        """Does the caption memory choose among this search's finished captions (ours, a beam
        of at least 2)?"""
        return self.reranks and isinstance(settings, SearchSettings) and settings.beam_size >= 2

    def encode(self, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """pixels (B,3,S,S) -> visual tokens (B,N,d), pooled embedding (B,C)."""
        sight = self.see(pixels)
        return sight.visual, sight.pooled

    def cross_kv(self, visual: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """visual tokens (B,N,d) -> cross_k, cross_v (L,B,H,N,hd)."""
        out = self.backend.run("cross_kv", {"visual_tokens": visual})
        return out["cross_k"], out["cross_v"]

    def settings(self, beam_size: int | None = None, **overrides) -> SearchSettings | HFGeneration:
        """The search settings of this engine (``beam_size`` None: its default, the caption
        memory's beam where it re-ranks). A Hugging Face
        checkpoint's are generate()'s (HFGeneration; overrides name its fields), ours SearchSettings."""
        hf = self.manifest.hf_generation
        if hf is not None:
            return dataclasses.replace(hf, **({"num_beams": beam_size} if beam_size else {}), **overrides)
        if beam_size is None and self.reranks:  # re-ranking wants more candidates than a plain beam
            beam_size = self.manifest.caption_memory.beam_size
        return self.manifest.generation.settings(beam_size, **overrides)

    def generate(self, visual: np.ndarray, settings: SearchSettings | HFGeneration,
                 concepts: np.ndarray | None = None, pooled: np.ndarray | None = None,
                 mirror: Sight | None = None) -> list[list[int]]:
        """visual tokens (B,N,d) -> token ids per image (no bos/eos). With concept
        probabilities (B,K), words of concepts the head is sure are absent are never said.
        With a beam, the pooled embeddings (B,C) and a caption memory in the engine, the
        finished caption that agrees most with the nearest photos' captions is chosen
        (runtime/caption_memory.py); with the ``mirror`` Sight too, the beam searches each
        view and the memory chooses among both (runtime/mirror_view.py). HFGeneration settings
        search exactly as transformers' generate() does."""
        self.check_captions()
        reranked = pooled is not None and self._reranks(settings)
        if reranked and mirror is not None:
            return [ids for start in range(0, visual.shape[0], MIRROR_IMAGES)
                    for ids in self._generate_both_views(*(None if x is None else x[start : start + MIRROR_IMAGES]
                                                           for x in (visual, concepts, pooled, mirror.visual,
                                                                     mirror.concepts)), settings)]
        bias = self._caption_bias(concepts)
        beams = settings.num_beams if isinstance(settings, HFGeneration) else settings.beam_size
        stepper = self._stepper(visual, beams)
        tokens = self.manifest.special_tokens
        if isinstance(settings, HFGeneration):
            return hf_generate(stepper, np.full((visual.shape[0], 1), tokens.bos, np.int64), settings)
        if not reranked:
            return beam_search(stepper, visual.shape[0], tokens.bos, tokens.eos, settings, bias)
        found = nbest_search(stepper, visual.shape[0], tokens.bos, tokens.eos, settings, bias)
        return [self._memory_choice(pooled[image], candidates) for image, candidates in enumerate(found)]

    def _generate_both_views(self, visual: np.ndarray, concepts: np.ndarray | None, pooled: np.ndarray,
                             mirror_visual: np.ndarray, mirror_concepts: np.ndarray | None,
                             settings: SearchSettings) -> list[list[int]]:
        """``generate`` on B <= MIRROR_IMAGES photos (visual (B,N,d), concepts (B,K), pooled
        (B,C)) and their mirror images' (visual, concepts) at once: 2B images at the whole beam
        (twice the decoder rows: half the beam each measured no better than one view), bans
        from both views' concepts, then per photo the memory's choice among both views'
        captions."""
        count = visual.shape[0]
        both = None if concepts is None or mirror_concepts is None else with_mirror_view(concepts, mirror_concepts)
        bias = self._caption_bias(None if both is None else np.concatenate([both, both]))
        stepper = self._stepper(np.concatenate([visual, mirror_visual]), settings.beam_size)
        tokens = self.manifest.special_tokens
        found = nbest_search(stepper, 2 * count, tokens.bos, tokens.eos, settings, bias)
        return [self._memory_choice(pooled[image], merged_candidates(found[image], found[count + image], self._unmirror))
                for image in range(count)]

    def _caption_bias(self, concepts: np.ndarray | None) -> np.ndarray | None:
        """concept probabilities (B,K) -> the word bans' logit bias (B,V), or None."""
        if concepts is None or self.existence is None:
            return None
        return caption_bias(concepts, self.manifest.concepts.ban_below, self._concept_ids,
                            self.manifest.model.vocab_size)

    def _stepper(self, visual: np.ndarray, beams: int):
        """visual tokens (B,N,d) -> a decoder stepper over B x ``beams`` rows, the image's
        cross K/V computed once and repeated per beam (beams never leave their image: never
        reordered)."""
        cross_k, cross_v = self.cross_kv(visual)
        if beams > 1:
            cross_k = np.repeat(cross_k, beams, axis=1)
            cross_v = np.repeat(cross_v, beams, axis=1)
        return self.backend.decoder_stepper(cross_k, cross_v)

    def _memory_choice(self, pooled: np.ndarray, candidates: list[tuple[float, list[int]]]) -> list[int]:
        """One photo's pooled embedding (C,) and finished captions (score, ids) -> the ids the
        caption memory chooses."""
        memory = self.manifest.caption_memory
        texts = [self.tokenizer.decode(ids) for _, ids in candidates]
        best = self.caption_memory.choose(pooled, texts, [score for score, _ in candidates], memory.neighbours,
                                          memory.logprob_weight)
        return candidates[best][1]

    @functools.cached_property
    def _unmirror(self) -> Unmirror:
        """"on the left" in the mirror view's captions -> "on the right" (made on first use:
        only our own family's captions are ever searched on two views)."""
        return unmirror_for(self.tokenizer)

    def check_captions(self) -> None:
        """Refuse, in one line, to caption with an engine that only answers questions."""
        if "caption" not in self.manifest.tasks:
            raise EdgeVLMError(f"the engine {self.manifest.root} answers questions only (a {self.manifest.model.family} "
                               "model); caption with a captioning engine, e.g. the shipped default")

    # --- whole captions ---------------------------------------------------------------
    @property
    def unfamiliar_above(self) -> float:
        """Novelty above which a caption is said as a guess (0 or absent: never)."""
        novelty = self.manifest.novelty
        return novelty.unfamiliar_above if novelty else 0.0

    def describe_sight(self, sight: Sight, beam_size: int | None = None,
                       settings: SearchSettings | HFGeneration | None = None) -> list[Description]:
        """One Description per image of ``sight``: the grounded caption, hedged when the
        image is unlike anything the model was trained on."""
        ids = self.generate(sight.visual, settings or self.settings(beam_size), sight.concepts, sight.pooled,
                            sight.mirror)
        out = []
        for i, row in enumerate(ids):
            caption = self.tokenizer.decode(row)
            hedged = self.unfamiliar(sight, i)
            out.append(Description(UNFAMILIAR.format(caption=caption) if hedged else caption, caption, hedged))
        return out

    def describe_images(self, images_bgr: list[np.ndarray], beam_size: int | None = None) -> list[Description]:
        """(H,W,3) uint8 BGR frames -> what to say about each. A frame with nothing to see
        (too dark, blown out, covered, blurred, blank) is reported as such, never captioned."""
        quality = [assess_frame(image) for image in images_bgr]
        usable = [i for i, q in enumerate(quality) if q.usable]
        out = [Description(q.message, "", False, q.issue) for q in quality]
        if usable:
            sight = self.caption_sight(np.stack([self.preprocess(images_bgr[i]) for i in usable]), beam_size)
            for i, description in zip(usable, self.describe_sight(sight, beam_size)):
                out[i] = description
        return out

    def caption_pixels(self, pixels: np.ndarray, beam_size: int | None = None) -> list[str]:
        """The model's captions (grounded, never hedged): what metrics and parity checks read."""
        return [d.caption for d in self.describe_sight(self.caption_sight(pixels, beam_size), beam_size)]

    def caption_images(self, images_bgr: list[np.ndarray], beam_size: int | None = None) -> list[str]:
        """What to say about each frame (``describe_images``'s text)."""
        return [d.text for d in self.describe_images(images_bgr, beam_size)]

    # --- questions --------------------------------------------------------------------
    @property
    def answers_questions(self) -> bool:
        return "vqa" in self.manifest.tasks

    @property
    def abstain_below(self) -> float:
        """Answers less probable than this become "I'm not sure" (tuned on dev: see eval --vqa)."""
        vqa = self.manifest.vqa
        return vqa.abstain_below if vqa else DEFAULT_ABSTAIN_BELOW

    @property
    def existence_abstain_below(self) -> float:
        """Existence answers less probable than this become "I'm not sure" (the concept head's
        own threshold; see eval --pope --tune-abstention)."""
        return self.manifest.concepts.abstain_below

    def answered_by_concepts(self, question: str) -> bool:
        """Does the concept head (not the decoder) answer ``question`` whatever the image
        (an existence question)? A "how many" question depends on the image: its answer's
        ``source`` says which answered ("concepts" for "none")."""
        return self.existence is not None and self.existence.concept_of(question) is not None

    def reads_concepts(self, question: str) -> bool:
        """Is ``question`` answered with the concept head's help: an existence question, or
        one taking something to be there ("how many dogs", "what color is the dog?")?"""
        return self.existence is not None and self.existence.reads_head(question)

    def question_sight(self, pixels: np.ndarray, questions: list[str], sight: Sight | None = None) -> Sight:
        """pixels (1,3,S,S) of one photo -> the Sight its questions are answered from:
        ``sight`` (the vision graph's on these pixels; run now when None) whose concept
        probabilities, when a question reads them, are averaged with the mirrored photo's
        (mirror_view.with_mirror_view): both views in one vision run, or one more, only for
        such questions. A Sight it returned comes back as it is."""
        if sight is not None and sight.views_averaged:
            return sight
        if not any(self.reads_concepts(q) for q in questions):
            return sight if sight is not None else self.see(pixels)
        sight = self.with_mirror(sight, pixels)
        if sight.concepts is None:
            return sight
        # the mirror is dropped: its concepts are in the average, and captions of this Sight are one view's
        return dataclasses.replace(sight, concepts=with_mirror_view(sight.concepts, sight.mirror.concepts), mirror=None,
                                   views_averaged=True)

    def answer_sight(self, sight: Sight, questions: list[str], abstain_below: float | None = None) -> list[VQAAnswer]:
        """One image's Sight (from ``question_sight``) -> an answer per question: existence
        questions from the concept head (when the engine has one), questions about something
        they take to be there ("how many dogs", "what color is the dog?") from the decoder
        weighed by the head's P(present), with "none" to a count of nothing
        (grounding.grounded_answer), "I'm not sure" and why to an existence question about a
        thing no concept names (unknown_object_answer), the rest from the decoder. On an
        unfamiliar image only sure answers say something is there (unless_sure)."""
        answers: list[VQAAnswer | None] = [None] * len(questions)
        presupposed: dict[int, tuple[float, str | None]] = {}  # index -> (P(it is there), answer if not)
        if self.existence is not None and sight.concepts is not None:
            for i, question in enumerate(questions):
                k = self.existence.concept_of(question)
                if k is not None:
                    answers[i] = self._existence_answer(float(sight.concepts[0, k]), abstain_below)
                elif (found := self.existence.presupposition(question)) is not None:
                    # There if any concept naming it is ("men": man or person).
                    presupposed[i] = float(sight.concepts[0, list(found.concepts)].max()), found.absent_answer
                elif (thing := self.existence.unknown_object(question)) is not None:
                    answers[i] = unknown_object_answer(thing)
        rest = [i for i, a in enumerate(answers) if a is None]
        if rest:
            for i, answer in zip(rest, self.answer_visual(sight.visual, [questions[i] for i in rest], abstain_below)):
                answers[i] = self._grounded(*presupposed[i], answer, abstain_below) if i in presupposed else answer
        return [unless_sure(a) for a in answers] if self.unfamiliar(sight) else answers

    def unfamiliar(self, sight: Sight, image: int = 0) -> bool:
        """Is image ``image`` of ``sight`` unlike the photos the model learnt from (its novelty
        above the manifest's limit)? Its caption is then said as a guess, and its answers that
        something is there only when sure (unless_sure)."""
        limit = self.unfamiliar_above
        return bool(limit > 0 and sight.novelty is not None and sight.novelty[image] > limit)

    def _grounded(self, p_present: float, absent_answer: str | None, decoded: VQAAnswer,
                  abstain_below: float | None) -> VQAAnswer:
        """An answer about something the question takes to be there ("how many dogs",
        "what color is the dog?"): the decoder's, weighed by the concept head
        (grounding.grounded_answer), each below its own threshold "I'm not sure" (the
        existence threshold for "none", the decoder's for its own answer; ``abstain_below``
        for both when given)."""
        answer, probability, source = grounded_answer(p_present, decoded.answer, decoded.probability, absent_answer)
        if source == "concepts":
            threshold = self.existence_abstain_below if abstain_below is None else abstain_below
        else:
            threshold = self.abstain_below if abstain_below is None else abstain_below
        abstained = probability < threshold or not answer
        return VQAAnswer(NOT_SURE if abstained else answer, answer, probability, abstained, source)

    def _existence_answer(self, p_present: float, abstain_below: float | None) -> VQAAnswer:
        """P(concept present) -> "yes"/"no" with the probability of that answer; below the
        tuned threshold (or ``abstain_below`` when given) "I'm not sure"."""
        answer, probability = existence_answer(p_present)
        threshold = self.existence_abstain_below if abstain_below is None else abstain_below
        abstained = probability < threshold
        return VQAAnswer(NOT_SURE if abstained else answer, answer, probability, abstained, "concepts")

    def answer_visual(self, visual: np.ndarray, questions: list[str], abstain_below: float | None = None) -> list[VQAAnswer]:
        """visual tokens (1,N,d) of one image -> an answer per question from the decoder. The
        cross K/V is computed once for all of them; each question is prefilled, then answered
        greedily."""
        if not self.answers_questions:
            raise EdgeVLMError(f"the engine {self.manifest.root} answers no questions (a captioning-only model); "
                               "use a VQA engine such as the shipped default")
        threshold = self.abstain_below if abstain_below is None else abstain_below
        if self.manifest.hf_generation is not None:
            cross: dict = {}  # the image's K/V, computed once for every question that reads it
            return [self._hf_answer(visual, question, threshold, cross) for question in questions]
        cross_k, cross_v = self.cross_kv(visual)
        capacity = self.manifest.model.cache_capacity
        banned = self.manifest.generation.banned_ids  # [SEP] among them for VQA engines
        answers = []
        for question in questions:
            prompt = self.tokenizer.question_prompt(question, capacity)
            stepper = self.backend.decoder_stepper(cross_k, cross_v)
            found = answer_search(stepper, np.array([prompt], np.int64), self.manifest.special_tokens.eos,
                                  min(MAX_ANSWER_TOKENS, capacity - len(prompt)), banned)[0]
            text = self.tokenizer.decode(found.ids)
            abstained = found.probability < threshold or not text
            answers.append(VQAAnswer(NOT_SURE if abstained else text, text, found.probability, abstained))
        return answers

    def hf_question_ids(self, question: str) -> list[int]:
        """The ids a Hugging Face VQA family is asked ``question`` with, cut to what fits."""
        if self.family.answer_context is not None:  # BLIP: its own graph, up to the model's positions
            return self.tokenizer.question_prompt(question, self.manifest.model.max_len, answer_room=0)
        # GIT: the question shares the cache with its answer
        return self.tokenizer.question_prompt(question, self.manifest.model.cache_capacity,
                                              answer_room=HF_MAX_ANSWER_TOKENS)

    def hf_answer_inputs(self, visual: np.ndarray, question: str, cross: dict) -> tuple:
        """A Hugging Face VQA family's (cross_k, cross_v, decoder prompt (1,P), settings) for one
        question: GIT continues the question prompt over the image's K/V (computed once into
        ``cross``), BLIP encodes the question against the image and answers from its bos."""
        capacity = self.manifest.model.cache_capacity
        prompt = self.hf_question_ids(question)
        if self.family.answer_context is not None:  # BLIP: the question is encoded, the answer starts from bos
            cross_k, cross_v, prompt = self.family.answer_context(self, visual, prompt)
        else:
            if "kv" not in cross:
                cross["kv"] = self.cross_kv(visual)
            cross_k, cross_v = cross["kv"]
        hf = self.manifest.hf_generation
        room = min(hf.max_new_tokens_for(len(prompt)), capacity - len(prompt), HF_MAX_ANSWER_TOKENS)
        settings = dataclasses.replace(hf, num_beams=1, max_length=None, max_new_tokens=max(1, room))
        return cross_k, cross_v, np.array([prompt], np.int64), settings

    def _hf_answer(self, visual: np.ndarray, question: str, threshold: float, cross: dict) -> VQAAnswer:
        """Greedy, as generate() answers; the probability is that of the answer tokens and eos."""
        cross_k, cross_v, prompt, settings = self.hf_answer_inputs(visual, question, cross)
        found = hf_answers(self.backend.decoder_stepper(cross_k, cross_v), prompt, settings)[0]
        text = self.tokenizer.decode(found.ids)
        probability = found.probability if found.finished else 0.0  # no eos within the limit: not an answer
        abstained = probability < threshold or not text
        return VQAAnswer(NOT_SURE if abstained else text, text, probability, abstained)

    def answer_image(self, image_bgr: np.ndarray, questions: list[str], abstain_below: float | None = None) -> list[VQAAnswer]:
        """(H,W,3) uint8 BGR photo or frame -> an answer per question. A frame with nothing to
        see gets the reason ("It is too dark to see.") as every answer."""
        quality = assess_frame(image_bgr)
        if not quality.usable:
            return [nothing_to_see(quality) for _ in questions]
        pixels = self.preprocess(image_bgr)[None]
        return self.answer_sight(self.question_sight(pixels, questions), questions, abstain_below)
