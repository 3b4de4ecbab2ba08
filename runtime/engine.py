"""The captioning and VQA engine: manifest + backend + tokenizer + numpy KV cache + search.

Per image: the vision graph once, the cross-K/V graph once, then one decoder-graph run per
generated token on a cache that was allocated once and is written in place. A question is
one more decoder run first: its prompt prefilled into the cache as a prefix-LM prefix.
Not thread-safe: one engine per thread (the caches are reused).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgevlm.errors import EdgeVLMError

from edgevlm.runtime.backends import create_backend
from edgevlm.runtime.kv_cache import KVCache
from edgevlm.runtime.manifest import load_manifest
from edgevlm.runtime.preprocess import preprocess_bgr
from edgevlm.runtime.search import SearchSettings, answer_search, beam_search
from edgevlm.runtime.text import MAX_ANSWER_TOKENS, CaptionTokenizer


class GraphStepper:
    """Stepper over the decoder graph; rows = images x beams, image-major."""

    def __init__(self, backend, cache: KVCache, cross_k: np.ndarray, cross_v: np.ndarray):
        self.backend, self.cache = backend, cache
        self.cross_k, self.cross_v = cross_k, cross_v
        self._position = np.zeros((), np.int64)  # reused 0-d feeds
        self._prefix_len = np.zeros((), np.int64)
        # Engines exported before VQA have no prefix_len input; captioning needs none.
        manifest = getattr(backend, "manifest", None)
        self._has_prefix = manifest is not None and any(
            spec["name"] == "prefix_len" for spec in manifest.graph("decoder")["inputs"])

    def _run(self, tokens: np.ndarray, position: int, prefix_len: int) -> np.ndarray:
        """tokens (R,T) at ``position`` -> logits (R,T,V); their K/V written into the cache."""
        self._position[()] = position
        feeds = {"input_ids": tokens, "position": self._position, "cache_k": self.cache.k, "cache_v": self.cache.v,
                 "cross_k": self.cross_k, "cross_v": self.cross_v}
        if self._has_prefix:
            self._prefix_len[()] = prefix_len
            feeds["prefix_len"] = self._prefix_len
        out = self.backend.run("decoder", feeds)
        self.cache.write(position, out["new_k"], out["new_v"])
        return out["logits"]

    def step(self, tokens: np.ndarray, position: int) -> np.ndarray:
        return self._run(tokens.reshape(-1, 1), position, 0)[:, 0]

    def prefill(self, prompts: np.ndarray) -> np.ndarray:
        if not self._has_prefix:
            raise EdgeVLMError("this engine's decoder graph has no prefix_len input (exported before VQA); "
                               "re-export it with `edgevlm export MODEL_DIR --out DIR`")
        return self._run(np.ascontiguousarray(prompts, np.int64), 0, prompts.shape[1])[:, -1]

    def reorder(self, rows: np.ndarray) -> None:
        self.cache.reorder(rows)


NOT_SURE = "I'm not sure"
DEFAULT_ABSTAIN_BELOW = 0.5  # when the manifest has no tuned threshold: answer if more likely right than wrong


@dataclass(frozen=True)
class VQAAnswer:
    text: str  # what to tell the user: the answer, or "I'm not sure"
    answer: str  # the model's best answer, even when it abstained
    probability: float  # P(answer | image, question), 0..1
    abstained: bool


class CaptionEngine:
    def __init__(self, engine_dir: str, provider: str = "cpu", threads: int | None = None, verify: bool = True,
                 spinning: bool = False):
        self.manifest = load_manifest(engine_dir, verify=verify)
        self.backend = create_backend(self.manifest, provider, threads, spinning)
        self.tokenizer = CaptionTokenizer.load(self.manifest.path("tokenizer"))
        self._caches: dict[int, KVCache] = {}  # rows -> cache, reused across captions

    # --- stages -----------------------------------------------------------------------
    def preprocess(self, image_bgr: np.ndarray) -> np.ndarray:
        """(H,W,3) uint8 BGR -> (3,S,S) float32, as in training."""
        p = self.manifest.preprocess
        return preprocess_bgr(image_bgr, p["image_size"], p["mean"], p["std"], p["interpolation"])

    def encode(self, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """pixels (B,3,S,S) -> visual tokens (B,N,d), pooled embedding (B,C)."""
        out = self.backend.run("vision", {"pixels": np.ascontiguousarray(pixels, np.float32)})
        return out["visual_tokens"], out["pooled"]

    def cross_kv(self, visual: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """visual tokens (B,N,d) -> cross_k, cross_v (L,B,H,N,hd)."""
        out = self.backend.run("cross_kv", {"visual_tokens": visual})
        return out["cross_k"], out["cross_v"]

    def settings(self, beam_size: int | None = None, **overrides) -> SearchSettings:
        g = self.manifest.generation
        values = dict(beam_size=beam_size or g["beam_size"], max_new_tokens=g["max_new_tokens"],
                      no_repeat_ngram=g["no_repeat_ngram"], length_penalty=g["length_penalty"],
                      banned_ids=tuple(g["banned_ids"]))
        values.update(overrides)
        return SearchSettings(**values)

    def cache_for(self, rows: int) -> KVCache:
        if rows not in self._caches:
            m = self.manifest.model
            self._caches[rows] = KVCache(m["n_layers"], rows, m["n_heads"], m["cache_capacity"], m["head_dim"])
        return self._caches[rows]

    def generate(self, visual: np.ndarray, settings: SearchSettings) -> list[list[int]]:
        """visual tokens (B,N,d) -> token ids per image (no bos/eos)."""
        cross_k, cross_v = self.cross_kv(visual)
        if settings.beam_size > 1:  # beams never leave their image: expand once, never reorder
            cross_k = np.repeat(cross_k, settings.beam_size, axis=1)
            cross_v = np.repeat(cross_v, settings.beam_size, axis=1)
        stepper = GraphStepper(self.backend, self.cache_for(cross_k.shape[1]), cross_k, cross_v)
        tokens = self.manifest.tokens
        return beam_search(stepper, visual.shape[0], tokens["bos"], tokens["eos"], settings)

    # --- whole captions ---------------------------------------------------------------
    def caption_pixels(self, pixels: np.ndarray, beam_size: int | None = None) -> list[str]:
        visual, _ = self.encode(pixels)
        return [self.tokenizer.decode(ids) for ids in self.generate(visual, self.settings(beam_size))]

    def caption_images(self, images_bgr: list[np.ndarray], beam_size: int | None = None) -> list[str]:
        return self.caption_pixels(np.stack([self.preprocess(image) for image in images_bgr]), beam_size)

    # --- questions --------------------------------------------------------------------
    @property
    def answers_questions(self) -> bool:
        return "vqa" in self.manifest.data.get("tasks", ["caption"])

    @property
    def abstain_below(self) -> float:
        """Answers less probable than this become "I'm not sure" (tuned on dev: see eval --vqa)."""
        return float(self.manifest.data.get("vqa", {}).get("abstain_below", DEFAULT_ABSTAIN_BELOW))

    def answer_visual(self, visual: np.ndarray, questions: list[str], abstain_below: float | None = None) -> list[VQAAnswer]:
        """visual tokens (1,N,d) of one image -> an answer per question. The cross K/V is
        computed once for all of them; each question is prefilled, then answered greedily."""
        if not self.answers_questions:
            raise EdgeVLMError(f"the engine {self.manifest.root} answers no questions (a captioning-only model); "
                               "use a VQA engine such as the shipped default")
        threshold = self.abstain_below if abstain_below is None else abstain_below
        cross_k, cross_v = self.cross_kv(visual)
        capacity = self.manifest.model["cache_capacity"]
        banned = tuple(self.manifest.generation["banned_ids"])  # [SEP] among them for VQA engines
        answers = []
        for question in questions:
            prompt = self.tokenizer.question_prompt(question, capacity)
            stepper = GraphStepper(self.backend, self.cache_for(1), cross_k, cross_v)
            found = answer_search(stepper, np.array([prompt], np.int64), self.manifest.tokens["eos"],
                                  min(MAX_ANSWER_TOKENS, capacity - len(prompt)), banned)[0]
            text = self.tokenizer.decode(found.ids)
            abstained = found.probability < threshold or not text
            answers.append(VQAAnswer(NOT_SURE if abstained else text, text, found.probability, abstained))
        return answers

    def answer_image(self, image_bgr: np.ndarray, questions: list[str], abstain_below: float | None = None) -> list[VQAAnswer]:
        """(H,W,3) uint8 BGR photo or frame -> an answer per question."""
        visual, _ = self.encode(self.preprocess(image_bgr)[None])
        return self.answer_visual(visual, questions, abstain_below)
