"""The runner contract every backend implements (Polygraphy's runners are the model).

A backend runs an engine's graphs by name. It is opened once (sessions, device buffers)
and closed when done, best as a context manager; ``run`` checks every feed's name, dtype
and shape against the manifest before the backend sees it, so a wrong feed is one line
naming the input on every backend alike. The decoding state (the self-attention cache) is
the backend's too: ``decoder_stepper`` hands out a stepper that keeps it where the backend
computes — numpy on the host here, device memory on a GPU backend.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np

from edgevlm.errors import EdgeVLMError
from edgevlm.runtime.kv_cache import KVCache
from edgevlm.runtime.manifest import Manifest, TensorSpec
from edgevlm.runtime.steppers import CacheStepper, step_graph
from edgevlm.runtime.token_embeddings import TOKEN_EMBEDDINGS, TokenEmbeddings

PROVIDERS = ("cpu", "cuda", "tensorrt")  # onnxruntime execution providers (an ORT backend option)


@dataclass(frozen=True)
class BackendOptions:
    provider: str = "cpu"  # onnxruntime's execution provider; other backends may ignore it
    threads: int | None = None  # intra-op threads (None: up to 4)
    spinning: bool = False  # busy-wait worker threads between runs (benchmarks only)
    # decoder cache as device-resident OrtValues with IO binding (ORT backend; None: on for
    # cuda/tensorrt, off for cpu, where numpy is as fast; True on cpu runs the same code in host memory)
    io_binding: bool | None = None


class _FeedCheck:
    """One graph's input table, compiled once: checking costs microseconds per decoder step."""

    def __init__(self, graph: str, specs: tuple[TensorSpec, ...]):
        self.graph, self.specs = graph, specs
        self.names = frozenset(spec.name for spec in specs)
        self.rules = [(spec.name, np.dtype(spec.dtype), len(spec.shape),
                       [(axis, dim) for axis, dim in enumerate(spec.shape)]) for spec in specs]

    def __call__(self, feeds: dict) -> None:
        if feeds.keys() != self.names:
            missing, extra = sorted(self.names - set(feeds)), sorted(set(feeds) - self.names)
            raise EdgeVLMError(f"{self.graph}: expected inputs {sorted(self.names)}; missing {missing}, unexpected {extra}")
        dynamic: dict[str, tuple[str, int]] = {}
        for name, dtype, ndim, dims in self.rules:
            array = feeds[name]
            if not isinstance(array, np.ndarray) or array.dtype != dtype or array.ndim != ndim:
                got = f"{array.dtype} {array.shape}" if isinstance(array, np.ndarray) else type(array).__name__
                raise EdgeVLMError(f"{self.graph}.{name}: expected {dtype} with {ndim} dims {self._shape(name)}, got {got}")
            for axis, want in dims:
                size = array.shape[axis]
                if isinstance(want, str):  # a dynamic axis: the same size wherever it is named
                    seen = dynamic.setdefault(want, (name, size))
                    if seen[1] != size:
                        raise EdgeVLMError(f"{self.graph}.{name}: axis {want!r} is {size} but {seen[1]} in {seen[0]}")
                elif size != want:
                    raise EdgeVLMError(f"{self.graph}.{name}: expected shape {self._shape(name)}, got {array.shape}")

    def _shape(self, name: str) -> list:
        return next(list(spec.shape) for spec in self.specs if spec.name == name)


class Backend(ABC):
    """Runs the manifest's graphs: ``with SomeBackend(manifest, options) as b: b.run(graph, feeds)``."""

    name: str = "base"

    def __init__(self, manifest: Manifest, options: BackendOptions | None = None):
        self.manifest = manifest
        self.options = options or BackendOptions()
        self._checks = {graph: _FeedCheck(graph, spec.inputs) for graph, spec in manifest.graphs.items()}
        self._caches: dict[int, KVCache] = {}  # rows -> self-attention cache, reused across searches
        self._token_embeddings: TokenEmbeddings | None = None
        self.is_open = False

    # --- lifecycle --------------------------------------------------------------------
    def open(self) -> "Backend":
        if not self.is_open:
            self._open()
            self.is_open = True
        return self

    def open_deferred(self) -> None:
        """Make whatever this backend otherwise makes on first use (``doctor`` checks that
        every graph loads, not only those captioning touches). Nothing to do by default."""

    def close(self) -> None:
        if self.is_open:
            self._close()
            self._caches.clear()
            self.is_open = False
        if self._token_embeddings is not None:
            self._token_embeddings.close()
            self._token_embeddings = None

    def token_embeddings(self) -> TokenEmbeddings:
        """The rows a step graph that takes ``word_embeds`` is fed (the engine's
        token_embeddings file), opened on first use."""
        if self._token_embeddings is None:
            if TOKEN_EMBEDDINGS not in self.manifest.files:
                raise EdgeVLMError(f"{self.manifest.root}: its step graph takes word embeddings but the engine lists "
                                   f"no {TOKEN_EMBEDDINGS} file; re-export the engine")
            rows, m = TokenEmbeddings(self.manifest.path(TOKEN_EMBEDDINGS)), self.manifest.model
            if (rows.vocab_size, rows.d) != (m.vocab_size, m.d_model):
                rows.close()
                raise EdgeVLMError(f"{rows.path} holds {rows.vocab_size} x {rows.d} rows, the model {m.vocab_size} x "
                                   f"{m.d_model}; re-export the engine")
            self._token_embeddings = rows
        return self._token_embeddings

    def __enter__(self) -> "Backend":
        return self.open()

    def __exit__(self, *exc) -> None:
        self.close()

    # --- the contract -----------------------------------------------------------------
    def input_metadata(self, graph: str) -> tuple[TensorSpec, ...]:
        return self.manifest.graph(graph).inputs

    def output_metadata(self, graph: str) -> tuple[TensorSpec, ...]:
        return self.manifest.graph(graph).outputs

    def run(self, graph: str, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run ``graph`` -> {output name: array}; feeds checked against the manifest first."""
        if not self.is_open:
            raise EdgeVLMError(f"the {self.name} backend is closed; open it (or use it in a `with` block) first")
        self.check_feeds(graph, feeds)
        return self._run(graph, feeds)

    def run_prechecked(self, graph: str, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """``run`` without the feed check, for a caller re-running ``graph`` on feeds ``run``
        checked before that are the same arrays, or arrays of the same dtypes and shapes (a
        stepper's cache views and token rows): the check costs ~1 us per input, 18-50 inputs
        per decoder step."""
        if not self.is_open:
            raise EdgeVLMError(f"the {self.name} backend is closed; open it (or use it in a `with` block) first")
        return self._run(graph, feeds)

    def check_feeds(self, graph: str, feeds: dict[str, np.ndarray]) -> None:
        """Raise EdgeVLMError naming the input unless ``feeds`` match the manifest's ``graph``
        inputs (a device stepper checks zero-stride stand-ins once, not every step)."""
        check = self._checks.get(graph)
        if check is None:
            raise EdgeVLMError(f"this engine has no graph {graph!r} (it has {sorted(self._checks)})")
        check(feeds)

    def decoder_stepper(self, cross_k, cross_v):
        """A stepper over the decoder graph for rows = cross_k.shape[1] (images x beams),
        with its self-attention cache. The default keeps the cache in host numpy (reused
        across searches of the same row count); a GPU backend overrides this."""
        rows = cross_k.shape[1]
        cache = self._caches.get(rows)
        if cache is None:
            m = self.manifest.model
            cache = self._caches[rows] = KVCache(m.n_layers, rows, m.n_heads, m.cache_capacity, m.head_dim)
        return CacheStepper(self, cache, cross_k, cross_v, takes_prefix_len=self.manifest.graph("decoder").takes("prefix_len"),
                            step_graph=step_graph(self.manifest))

    # --- what a backend implements ----------------------------------------------------
    @abstractmethod
    def _open(self) -> None:
        """Load the graphs (sessions, engines, buffers)."""

    @abstractmethod
    def _close(self) -> None:
        """Free what ``_open`` made."""

    @abstractmethod
    def _run(self, graph: str, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Execute a graph on checked feeds -> every output by name."""
