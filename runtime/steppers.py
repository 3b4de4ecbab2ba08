"""The decoder stepper over a backend's decoder graph and a host-side KV cache.

The search (runtime/search.py) drives any stepper; this one feeds the decoder graph the
cache that ``KVCache`` keeps in numpy and writes each run's new K/V rows back in place.
It is told whether the graph takes ``prefix_len`` (from the manifest): our VQA decoder does
(a question is a both-ways prefix); GIT's does not (its prompts are causal). Where the
engine has the optional ``decoder_step`` graph (one token per row, static shapes: about half
the per-step time on CPU, export/step_graph.py), single-token steps run it and prefill keeps
the general graph; the two share the cache layout, so a search may mix them freely.
"""

from __future__ import annotations

import numpy as np

from edgevlm.runtime.kv_cache import KVCache
from edgevlm.runtime.token_embeddings import STEP_EMBEDS_INPUT


STEP_GRAPH = "decoder_step"  # the optional single-token graph; "decoder" runs everything else
# The step graph takes these one layer at a time ("cross_k_0" ... "cross_k_{L-1}"): indexing a
# stacked (L,...) input inside the graph copied all of it every step (onnxruntime's Split: for
# a ViT-GPT-2 engine 14.5 MB of cross K/V per token). Engines exported before take them stacked.
LAYERED_STEP_INPUTS = ("cache_k", "cache_v", "cross_k", "cross_v")


def layer_input(name: str, layer: int) -> str:
    """The step graph's input for one layer of a stacked tensor: ("cross_k", 3) -> "cross_k_3"."""
    return f"{name}_{layer}"


def per_layer(name: str, stacked) -> dict:
    """A stacked (L,...) tensor as the step graph's L inputs: {"name_i": stacked[i]} (views)."""
    return {layer_input(name, i): stacked[i] for i in range(len(stacked))}


def takes_layers(manifest, graph: str = STEP_GRAPH) -> bool:
    """Does ``graph`` take the cache and cross K/V one layer at a time (else stacked)?"""
    return manifest.graph(graph).takes(layer_input("cache_k", 0))


def device_graphs(manifest) -> list[str]:
    """The graphs a GPU backend builds and runs: all but ``decoder_step``, which exists to cut
    onnxruntime's per-node cost on CPU; on a GPU the device stepper runs "decoder" for steps
    too, so a TensorRT plan of it would be built for nothing."""
    return [graph for graph in manifest.graphs if graph != STEP_GRAPH]


def step_graph(manifest) -> str:
    """The graph a single-token step runs on this engine: ``decoder_step`` where exported."""
    return STEP_GRAPH if STEP_GRAPH in manifest.graphs else "decoder"


class CacheStepper:
    """Stepper over the decoder graph; rows = images x beams, image-major. ``step_graph``:
    the graph single-token steps run ("decoder", or "decoder_step": the same inputs less
    ``prefix_len``, tokens = 1, or, in VED engines, the token's embedding row in place of its
    id: runtime/token_embeddings.py)."""

    def __init__(self, backend, cache: KVCache, cross_k: np.ndarray, cross_v: np.ndarray, takes_prefix_len: bool,
                 step_graph: str = "decoder"):
        self.backend, self.cache = backend, cache
        self.cross_k, self.cross_v = cross_k, cross_v
        self.takes_prefix_len = takes_prefix_len
        self.step_graph = step_graph
        self._layered = step_graph != "decoder" and takes_layers(backend.manifest, step_graph)
        # cross K/V as the step graph takes them: per layer (views, no copies: (L,R,...)[i] is
        # contiguous) or stacked (older engines)
        cross = (per_layer("cross_k", cross_k) | per_layer("cross_v", cross_v) if self._layered
                 else {"cross_k": cross_k, "cross_v": cross_v})
        self._step_feeds = {"position": np.zeros((), np.int64), **cross}
        # a step graph that takes the token's embedding row instead of its id (VED engines:
        # runtime/token_embeddings.py), read here from the engine's rows file
        self._embeddings = (backend.token_embeddings()
                            if step_graph != "decoder" and backend.manifest.graph(step_graph).takes(STEP_EMBEDS_INPUT)
                            else None)
        self._checked_rows: tuple | None = None  # the token rows' shape when the step feeds were last checked
        self._position = np.zeros((), np.int64)  # reused 0-d feeds
        self._prefix_len = np.zeros((), np.int64)

    def _run(self, tokens: np.ndarray, position: int, prefix_len: int) -> np.ndarray:
        """tokens (R,T) at ``position`` -> logits (R,T,V); their K/V written into the cache."""
        self._position[()] = position
        feeds = {"input_ids": tokens, "position": self._position, "cache_k": self.cache.k, "cache_v": self.cache.v,
                 "cross_k": self.cross_k, "cross_v": self.cross_v}
        if self.takes_prefix_len:
            self._prefix_len[()] = prefix_len
            feeds["prefix_len"] = self._prefix_len
        out = self.backend.run("decoder", feeds)
        self.cache.write(position, out["new_k"], out["new_v"])
        return out["logits"]

    def step(self, tokens: np.ndarray, position: int) -> np.ndarray:
        """tokens (R,) int64 at ``position`` -> next-token logits (R, V)."""
        if self.step_graph == "decoder":
            return self._run(tokens.reshape(-1, 1), position, 0)[:, 0]
        feeds = self._step_feeds  # no prefix_len: at T = 1 the token sees itself either way
        feeds["position"][()] = position
        ids = tokens.reshape(-1, 1)
        if self._embeddings is not None:
            feeds[STEP_EMBEDS_INPUT] = self._embeddings.rows(ids)
        else:
            feeds["input_ids"] = ids
        if self._layered:  # views of the cache as it is now (reorder may have replaced its arrays)
            feeds |= per_layer("cache_k", self.cache.k) | per_layer("cache_v", self.cache.v)
        else:
            feeds["cache_k"], feeds["cache_v"] = self.cache.k, self.cache.v
        if ids.dtype == np.int64 and ids.shape == self._checked_rows:
            # the arrays the first step's check passed, or views of the same cache: same dtypes and shapes
            out = self.backend.run_prechecked(self.step_graph, feeds)
        else:
            out = self.backend.run(self.step_graph, feeds)
            self._checked_rows = ids.shape
        self.cache.write(position, out["new_k"], out["new_v"])
        return out["logits"][:, 0]

    def prefill(self, prompts: np.ndarray) -> np.ndarray:
        """prompts (R,P) at positions 0..P-1 in one run -> logits after the last (R, V). A decoder
        with ``prefix_len`` (ours) sees the prompt as a prefix-LM prefix, both ways; one without it
        (GIT's) causally, as its model was trained."""
        if prompts.shape[1] == 1 and self.step_graph != "decoder":
            # A caption's [bos]: one token sees only itself, so the step graph serves and
            # captioning never opens "decoder" (made on first use where decoder_step exists).
            return self.step(np.ascontiguousarray(prompts[:, 0], np.int64), 0)
        return self._run(np.ascontiguousarray(prompts, np.int64), 0, prompts.shape[1])[:, -1]

    def reorder(self, rows: np.ndarray) -> None:
        self.cache.reorder(rows)
