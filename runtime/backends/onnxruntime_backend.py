"""onnxruntime backend: one InferenceSession per graph, on the execution provider the
options name (``cpu``, ``cuda``, ``tensorrt``). On cuda/tensorrt (or with
``BackendOptions.io_binding``) the decoder runs with IO binding over a device-resident
cache (ort_device_stepper.py); otherwise over the base class's numpy cache."""

from __future__ import annotations

import functools
import os

import numpy as np
import onnxruntime as ort

from edgevlm.errors import EdgeVLMError
from edgevlm.runtime.backends.base import Backend
from edgevlm.runtime.backends.graph_threads import SessionThreading, graph_threading, wide_step_threading
from edgevlm.runtime.backends.ort_device_cache import CacheGraphs, Device, DeviceKVCache
from edgevlm.runtime.backends.ort_device_stepper import DecodeState, DeviceCacheStepper
from edgevlm.runtime.backends.ort_load_errors import load_error_line
from edgevlm.runtime.engine_cache import device_facts, tensorrt_provider_options
from edgevlm.runtime.heap_release import release_freed_heap
from edgevlm.runtime.optimized_graphs import open_cpu_session
from edgevlm.runtime.steppers import STEP_GRAPH
from edgevlm.runtime.token_embeddings import STEP_EMBEDS_INPUT

_ORT_TYPES = {"tensor(float)": "float32", "tensor(float16)": "float16", "tensor(int64)": "int64",
              "tensor(int32)": "int32", "tensor(int8)": "int8", "tensor(uint8)": "uint8", "tensor(bool)": "bool"}
_ORT_PROVIDERS = {
    "cpu": ["CPUExecutionProvider"],
    "cuda": ["CUDAExecutionProvider", "CPUExecutionProvider"],
    "tensorrt": ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"],
}
# The cache graphs (Slice/Concat, Gather: device memcpys) run on CUDA under tensorrt too:
# TensorRT would build an engine for every new shape of them, and graphs loaded from bytes
# never reuse its engine cache (onnxruntime#18272). CUDA and TensorRT EP share device memory.
_CACHE_GRAPH_PROVIDERS = {"cpu": ["CPUExecutionProvider"], "cuda": _ORT_PROVIDERS["cuda"],
                          "tensorrt": _ORT_PROVIDERS["cuda"]}
_DEVICES = {"cpu": Device("cpu"), "cuda": Device("cuda", 0), "tensorrt": Device("cuda", 0)}  # sessions use GPU 0


def session_options(threads: int | None, spinning: bool = False, spin_only_in_runs: bool = False) -> ort.SessionOptions:
    """``spin_only_in_runs``: with ``spinning``, the workers stop spinning when a run ends
    (onnxruntime's session.force_spinning_stop), so nothing burns a core between frames."""
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.intra_op_num_threads = threads or min(os.cpu_count() or 1, 4)
    options.inter_op_num_threads = 1
    # Spinning threads burn the cores between the many tiny per-token runs, and the camera,
    # speech and Python threads need those cores: off unless a benchmark shows otherwise.
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    if spinning and spin_only_in_runs:
        options.add_session_config_entry("session.force_spinning_stop", "1")
    options.log_severity_level = 3
    return options


@functools.lru_cache(maxsize=1)
def shared_cpu_arena() -> bool:
    """One CPU memory arena for every session of this process (onnxruntime's "share allocators
    between sessions": an allocator registered on the environment, used by sessions that set
    ``session.use_env_allocators``). With an arena per session, memory the cross K/V graph
    frees (its per-layer K/V before they are stacked) stays with that session and cannot hold
    the decoder's buffers. Peak RSS (2-core AVX2 EPYC, /work/runs/s24/arena_strategy.py and
    bench_child_ab2.py): the 239M-parameter race engine 440 MB against 481-483 MB over 8
    captions; the shipped engine, bench's child (4 sample photos), 125.7 MB against 127.6 MB.
    Growing by what is asked instead of the next power of two saved 7 MB more on the race but
    cost the shipped engine 4 MB. Greedy captions equal in time (41.8 against 42.0 ms, one
    process, interleaved: shared_arena3.py) and in ids. False when this onnxruntime cannot
    register one (the sessions then keep their own arenas)."""
    info = ort.OrtMemoryInfo("Cpu", ort.OrtAllocatorType.ORT_ARENA_ALLOCATOR, 0, ort.OrtMemType.DEFAULT)
    try:
        # max_mem 0: no limit; extend strategy 0: kNextPowerOfTwo; chunk sizes: onnxruntime's defaults
        ort.create_and_register_allocator(info, ort.OrtArenaCfg(0, 0, -1, -1))
    except Exception as exc:  # noqa: BLE001 - registered already by the host application, or unsupported
        return "already" in str(exc).lower()
    return True


def cpu_session_options(threads: int | None, spinning: bool = False, spin_only_in_runs: bool = False) -> ort.SessionOptions:
    """``session_options`` for the CPU provider, on the process's shared CPU arena."""
    options = session_options(threads, spinning, spin_only_in_runs)
    if shared_cpu_arena():
        options.add_session_config_entry("session.use_env_allocators", "1")
    return options


class OnnxRuntimeBackend(Backend):
    name = "onnxruntime"

    def _open(self) -> None:
        provider = self.options.provider
        wanted = _ORT_PROVIDERS[provider]
        available = ort.get_available_providers()
        if wanted[0] not in available:
            raise EdgeVLMError(
                f"provider {provider!r} needs onnxruntime's {wanted[0]}, which this install lacks "
                f"(available: {', '.join(available)}); install onnxruntime-gpu or use --provider cpu"
            )
        self.sessions: dict[str, ort.InferenceSession] = {}
        self._decode_states: dict[int, DecodeState] = {}  # rows -> device cache + buffers (io_binding)
        self._wide_rows: dict[int, bool] = {}  # step rows -> do they run on the wide step session?
        self._wide_step: ort.InferenceSession | None = None
        self._cache_graphs: CacheGraphs | None = None
        self.output_names = {graph: list(spec.output_names) for graph, spec in self.manifest.graphs.items()}
        self._providers = wanted
        self._facts = device_facts() if provider == "tensorrt" else None
        # Where decoder_step runs the tokens (CPU), "decoder" serves only question prompts: its
        # session (the slowest to make, ~0.1 s, and ~5-8 MB) is made on first use, so that a
        # captioning process never pays for it. The file's sha256 was checked with the manifest.
        self._deferred = {"decoder"} if STEP_GRAPH in self.manifest.graphs and not self.io_binding else set()
        for graph in self.manifest.graphs:
            if graph == STEP_GRAPH and self.io_binding:
                continue  # the device stepper runs every token on "decoder": no session (nor TensorRT build) for it
            if graph not in self._deferred:
                self._open_session(graph)
        release_freed_heap()  # the graphs' parse buffers, freed by now (heap_release.py)

    def open_deferred(self) -> None:
        for graph in sorted(self._deferred - set(self.sessions)):
            self._open_session(graph)
        release_freed_heap()

    def _open_session(self, graph: str, plan: SessionThreading | None = None) -> ort.InferenceSession:
        """``graph``'s session, kept in ``sessions``; with a threading ``plan`` (CPU), one
        more session of it with those threads, returned but not kept (the caller keeps it)."""
        kept = plan is None
        path, wanted = self.manifest.graph_path(graph), self._providers
        providers = wanted
        if self._facts is not None:  # its own engine cache, keyed so it can never be stale (engine_cache.py)
            providers = [(wanted[0], tensorrt_provider_options(self.manifest, graph, self._facts)), *wanted[1:]]
        try:
            if self.options.provider == "cpu":
                # threads and spinning per graph (graph_threads.py)
                plan = plan or graph_threading(self.manifest, graph, self.options.threads, self.options.spinning)
                sha256 = self.manifest.files[self.manifest.graphs[graph].file].sha256
                session = open_cpu_session(
                    path, sha256, lambda: cpu_session_options(plan.threads, plan.spinning, plan.spin_only_in_runs),
                    providers)
            else:
                session = ort.InferenceSession(path, session_options(self.options.threads, self.options.spinning),
                                               providers=providers)
        except Exception as exc:  # onnxruntime raises its own exception types for bad files
            raise EdgeVLMError(load_error_line(path, exc)) from exc
        self._check_graph_matches_manifest(graph, session)
        if kept:
            self.sessions[graph] = session
        return session

    def _check_graph_matches_manifest(self, graph: str, session: ort.InferenceSession) -> None:
        """The ONNX file's own inputs and outputs must be the manifest's (names and element
        types): the manifest is what feeds are checked against, so it must not lie."""
        spec = self.manifest.graph(graph)
        for kind, declared, actual in (("inputs", spec.inputs, session.get_inputs()),
                                       ("outputs", spec.outputs, session.get_outputs())):
            have = {arg.name: _ORT_TYPES.get(arg.type, arg.type) for arg in actual}
            want = {s.name: s.dtype for s in declared}
            if have != want:
                raise EdgeVLMError(f"{self.manifest.graph_path(graph)}: its {kind} {have} differ from the manifest's "
                                   f"graphs.{graph}.{kind} {want}; re-export the engine")

    def _close(self) -> None:
        self.sessions.clear()
        self._wide_rows.clear()
        self._wide_step = None
        self._decode_states.clear()
        self._cache_graphs = None

    @property
    def io_binding(self) -> bool:
        """Does the decoder run with IO binding on a device-resident cache?"""
        wanted = self.options.io_binding
        return self.options.provider != "cpu" if wanted is None else wanted

    def decoder_stepper(self, cross_k, cross_v):
        """The IO-binding stepper (cache, cross K/V on the device; logits back) where
        ``io_binding`` is on, else the base class's numpy-cache stepper."""
        if not self.io_binding:
            return super().decoder_stepper(cross_k, cross_v)
        if not self.is_open:
            raise EdgeVLMError(f"the {self.name} backend is closed; open it (or use it in a `with` block) first")
        spec = self.manifest.graph("decoder")
        takes_prefix_len = spec.takes("prefix_len")
        rows = cross_k.shape[1]
        state = self._decode_state(rows)
        self._check_device_feeds(state, cross_k, cross_v, takes_prefix_len)
        return DeviceCacheStepper(state, cross_k, cross_v, takes_prefix_len)

    def _decode_state(self, rows: int) -> DecodeState:
        """The device cache and step buffers for ``rows`` decoder rows, made on first use."""
        states = self._decode_states
        if rows not in states:
            m, spec = self.manifest.model, self.manifest.graph("decoder")
            dtypes = {t.name: t.dtype for t in (*spec.inputs, *spec.outputs)}
            if self._cache_graphs is None:  # two tiny sessions, shared by every row count
                self._cache_graphs = CacheGraphs(dtypes["cache_k"], _CACHE_GRAPH_PROVIDERS[self.options.provider],
                                                 session_options(1))
            device = _DEVICES[self.options.provider]
            cache = DeviceKVCache(self._cache_graphs, device,
                                  (m.n_layers, rows, m.n_heads, m.cache_capacity, m.head_dim), dtypes["cache_k"])
            states[rows] = DecodeState(self.sessions["decoder"], cache, m.vocab_size, dtypes["logits"], dtypes["new_k"])
        return states[rows]

    def _check_device_feeds(self, state: DecodeState, cross_k, cross_v, takes_prefix_len: bool) -> None:
        """The manifest's feed check, once per stepper: the device buffers' shapes and dtypes
        as zero-stride numpy stand-ins (nothing allocated), the cross K/V as given."""
        def like(shape, dtype):
            return np.broadcast_to(np.zeros((), dtype), shape)

        cache = like(state.cache.shape, state.cache.dtype)
        feeds = {"input_ids": state.tokens, "position": state.position, "cache_k": cache, "cache_v": cache,
                 "cross_k": cross_k, "cross_v": cross_v}
        if takes_prefix_len:
            feeds["prefix_len"] = state.prefix_len
        self.check_feeds("decoder", feeds)

    def _step_session(self, feeds: dict[str, np.ndarray]) -> ort.InferenceSession | None:
        """The session for a CPU step of this many rows where it is not the step graph's own:
        a wide beam's steps run on every thread (graph_threads.wide_step_threading), on a
        second session of the graph made on first use; None: the step graph's session."""
        rows = len(feeds["input_ids"] if "input_ids" in feeds else feeds[STEP_EMBEDS_INPUT])
        wide = self._wide_rows.get(rows)
        if wide is None:
            plan = None
            if self.options.provider == "cpu" and not self.io_binding:
                plan = wide_step_threading(self.manifest, rows, self.options.threads, self.options.spinning)
            wide = plan is not None
            if wide and self._wide_step is None:
                self._wide_step = self._open_session(STEP_GRAPH, plan)  # raises before anything is remembered
            self._wide_rows[rows] = wide
        return self._wide_step if wide else None

    def _run(self, graph: str, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        session = self._step_session(feeds) if graph == STEP_GRAPH else None
        session = session or self.sessions.get(graph) or self._open_session(graph)  # deferred ones open on first use
        outputs = session.run(self.output_names[graph], feeds)
        return dict(zip(self.output_names[graph], outputs))
