"""onnxruntime graphs optimized once per machine, then loaded as they are (issue 12's cold start).

An ``InferenceSession`` made at ``ORT_ENABLE_ALL`` re-runs onnxruntime's graph optimizers on
every start. On the shipped INT8 engine that was ~115 ms of a ~0.45 s cold start (vision 68,
cross_kv 17, decoder_step 31 ms, 2-core AVX2 EPYC), against ~40 ms to load the same graphs
already optimized, with optimization off (``/work/runs/s24/sess_time.py``). onnxruntime can
save the graph it optimized (its documented "offline mode", ``SessionOptions.
optimized_model_filepath``), but warns that the result may hold layouts made for this CPU
(NCHWc blocks sized by its vector width) and must only run where it was made.

So the saved graphs are a per-machine cache, not part of the engine. Each file is named by
everything its content depends on: the source graph's sha256 (the manifest's, checked when
the engine loaded), onnxruntime's version, the optimization level, and the CPU (machine,
model and every flag). A change in any of them is a new name, never a stale graph. Files are
written beside their final name and renamed into place, so a killed process never leaves a
half-written graph under a real name; a cached file onnxruntime cannot read is rewritten once,
then given up (``open_cpu_session``). The cache lives in the user cache folder (the engine
folder may be read-only), keeps at most ``CACHE_LIMIT_BYTES``; ``EDGEVLM_GRAPH_CACHE=0``
turns it off.

Each copy keeps its weights in a file beside it (``<name>.data``, onnxruntime's
``session.optimized_model_external_initializers_file_name``), not inside the graph: a graph
that embeds its weights is parsed into memory whole, and the session holds its own copy
besides, so peak memory paid for the weights twice. Loading the race's ViT-GPT-2 INT8 graphs
(vision 86 MB, decoder_step 139 MB of weights) cost 153 and 219 MB of RSS embedded, 98 and 182
MB from a weights file, and loaded ~2x faster (/work/runs/s27/opt_mem.py, AVX-512 VNNI EPYC).
The weights file is written first and renamed into place before its graph, from a staging
folder of their own, so a graph under its real name always finds its whole weights file.
"""

from __future__ import annotations

import functools
import os
import platform
import shutil
import time
import uuid
import zlib
from typing import Callable

import onnxruntime as ort

from edgevlm.runtime.cpu_isa import parse_cpuinfo, read_cpuinfo
from edgevlm.runtime.engine_cache import graph_cache_enabled, graph_cache_folder

# Bigger graphs (Hugging Face checkpoints of hundreds of MB) spend their start reading weights,
# not optimizing: a second copy of them would cost more disk than it saves time.
MAX_CACHED_BYTES = 256 * 1024 * 1024
# Every engine opened leaves copies (quantize --auto-exclude opens one per candidate): past this
# total the copies used least recently are deleted. Loading a copy marks it used.
CACHE_LIMIT_BYTES = 1024 * 1024 * 1024
# Beside a copy's name: its copy failed to load once (rewritten), or twice (no more copies).
FAILED, REFUSED = ".failed", ".refused"
# A copy's weights (initializers of at least WEIGHTS_MIN_BYTES) live in "<copy>.data" beside it.
WEIGHTS_SUFFIX, WEIGHTS_MIN_BYTES = ".data", 1024
PARTIAL = ".partial"  # a staging folder (or, from earlier versions, a file) being written
COPY_FORMAT = "weights-file"  # part of each copy's name: the copy's layout on disk
ORPHAN_AGE_S = 3600.0  # a weights file without its graph for this long is removed (as stale partials are)


@functools.lru_cache(maxsize=1)
def machine_fingerprint() -> str:
    """What an optimized graph's layouts may depend on: machine type, CPU model and flags."""
    model, flags = parse_cpuinfo(read_cpuinfo())
    return f"{platform.machine()}|{model}|{' '.join(sorted(flags))}"


def optimized_graph_path(source_sha256: str, level: ort.GraphOptimizationLevel) -> str:
    """Where the optimized copy of the graph with this sha256 lives for this machine."""
    # COPY_FORMAT: copies made before weights files (embedded weights) get other names, so they
    # are not loaded (and kept in use) forever; the pruning removes them as they age out
    # The source's whole sha256 names it; crc32, not hashlib, only tells this machine's
    # onnxruntime versions and levels apart (hashlib would load OpenSSL: 3.2 MB of peak RSS,
    # runtime/file_records.py)
    key = zlib.crc32(f"ort {ort.__version__}|{int(level)}|{machine_fingerprint()}|{COPY_FORMAT}".encode())
    return os.path.join(graph_cache_folder(), f"{source_sha256}-{key:08x}.onnx")


def open_cpu_session(path: str, source_sha256: str, make_options: Callable[[], ort.SessionOptions],
                     providers: list) -> ort.InferenceSession:
    """An InferenceSession for the graph at ``path`` on the CPU provider: from this machine's
    optimized copy when there is one (optimization off: it is done), else from ``path``, saving
    the optimized copy on the way. ``make_options`` gives fresh options (this sets fields on them).

    A copy that fails to load is deleted and written again (a damaged file), but a second
    failure marks its key ``.refused``: an onnxruntime that cannot read what it wrote then
    optimizes in memory, as without the cache, instead of writing and failing at every start."""
    options = make_options()
    if not graph_cache_enabled() or os.path.getsize(path) > MAX_CACHED_BYTES:
        return ort.InferenceSession(path, options, providers=providers)
    cached = optimized_graph_path(source_sha256, options.graph_optimization_level)
    folder = os.path.dirname(cached)
    if os.path.exists(cached + REFUSED):
        return ort.InferenceSession(path, options, providers=providers)
    if os.path.isfile(cached):
        optimized = make_options()
        optimized.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        try:
            session = ort.InferenceSession(cached, optimized, providers=providers)
        except MemoryError:
            raise
        except Exception:  # damaged (rewrite it, once), or this machine cannot load its copies back
            _remove(cached)
            if os.path.exists(cached + FAILED):
                _mark(cached + REFUSED)
                return ort.InferenceSession(path, options, providers=providers)
            _mark(cached + FAILED)
        else:
            _mark_used(cached)
            _remove(cached + FAILED)
            return session
    try:
        os.makedirs(folder, exist_ok=True)
        if not os.access(folder, os.W_OK | os.X_OK):
            raise PermissionError(folder)
        _remove_stale_partials(folder)
    except OSError:  # no writable cache: optimize in memory, as without the cache
        return ort.InferenceSession(path, options, providers=providers)
    # unique per process and thread (and per container sharing the folder with the same pid)
    staging = f"{cached}.{os.getpid()}-{uuid.uuid4().hex[:12]}{PARTIAL}"
    name = os.path.basename(cached)
    try:
        os.mkdir(staging)
    except OSError:
        return ort.InferenceSession(path, options, providers=providers)
    # onnxruntime writes the weights file beside the graph and names it inside the graph,
    # relative to it: both are written under their final names, in the staging folder
    options.optimized_model_filepath = os.path.join(staging, name)
    options.add_session_config_entry("session.optimized_model_external_initializers_file_name", name + WEIGHTS_SUFFIX)
    options.add_session_config_entry("session.optimized_model_external_initializers_min_size_in_bytes",
                                     str(WEIGHTS_MIN_BYTES))
    try:
        try:
            session = ort.InferenceSession(path, options, providers=providers)
        except Exception:  # perhaps only the copy could not be written (a full disk): once more without it
            return ort.InferenceSession(path, make_options(), providers=providers)
        try:
            # weights first: a graph under its real name always finds its whole weights file. A
            # process writing the same key meanwhile writes the same bytes (same graph, onnxruntime
            # and CPU), and a reader holding the file it replaced keeps reading that one.
            if os.path.isfile(os.path.join(staging, name + WEIGHTS_SUFFIX)):
                os.replace(os.path.join(staging, name + WEIGHTS_SUFFIX), cached + WEIGHTS_SUFFIX)
            os.replace(os.path.join(staging, name), cached)
            _prune(folder, keep=cached)
        except OSError:  # the session is made; only its copy could not be kept
            pass
        return session
    finally:  # whatever happened, SIGTERM's SystemExit included, no partial copy stays
        shutil.rmtree(staging, ignore_errors=True)


def _mark(path: str) -> None:
    try:
        with open(path, "w", encoding="utf-8") as f:
            f.write("this machine's onnxruntime could not load its optimized copy of this graph\n")
    except OSError:
        pass


def _remove_stale_partials(folder: str, older_than_s: float = 3600.0) -> None:
    """Partial copies a killed process (SIGKILL, power loss) left more than an hour ago."""
    now = time.time()
    for name in os.listdir(folder):
        path = os.path.join(folder, name)
        try:
            if name.endswith(PARTIAL) and now - os.path.getmtime(path) > older_than_s:
                if os.path.isdir(path):
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    os.remove(path)
        except OSError:  # another process removed or replaced it first
            pass


def _mark_used(path: str) -> None:
    try:
        os.utime(path)
    except OSError:  # a read-only cache still serves its copies
        pass


def _prune(folder: str, keep: str, limit: int | None = None) -> None:
    """Delete the least recently used copies (a graph and its weights file) until the folder
    holds at most ``limit`` bytes; a weights file whose graph is gone goes too."""
    limit = CACHE_LIMIT_BYTES if limit is None else limit
    names = set(os.listdir(folder))
    copies = []
    for name in names:
        path = os.path.join(folder, name)
        if name.endswith(WEIGHTS_SUFFIX) and name[:-len(WEIGHTS_SUFFIX)] not in names:
            # its graph was removed by hand, or is about to be renamed in by another process
            # (weights go first): only an hour-old orphan is one for sure
            if _age_s(path) > ORPHAN_AGE_S:
                _remove(path)
        elif name.endswith(".onnx") and path != keep:
            try:
                info = os.stat(path)
            except OSError:  # removed by another process meanwhile
                continue
            copies.append((info.st_mtime, info.st_size + _size(path + WEIGHTS_SUFFIX), path))
    total = sum(size for _, size, _ in copies) + os.path.getsize(keep) + _size(keep + WEIGHTS_SUFFIX)
    for _, size, path in sorted(copies):
        if total <= limit:
            break
        _remove(path)
        total -= size


def _age_s(path: str) -> float:
    try:
        return time.time() - os.path.getmtime(path)
    except OSError:  # removed meanwhile
        return 0.0


def _size(path: str) -> int:
    try:
        return os.path.getsize(path)
    except OSError:  # a copy whose weights all fit inside it, or removed meanwhile
        return 0


def _remove(path: str) -> None:
    """Remove a file; a copy's graph (``.onnx``) goes with its weights file."""
    for name in (path, path + WEIGHTS_SUFFIX) if path.endswith(".onnx") else (path,):
        try:
            os.remove(name)
        except OSError:
            pass
