"""``edgevlm doctor``'s checks: what this device can do, and what it lacks to run an engine.

Each check is one function returning a :class:`Check` (found / missing / not needed, what
was found, and the fix as a command or package name). Nothing here imports onnxruntime,
OpenCV, tensorrt or torch at module level: a device without them is exactly what doctor must
describe, so optional things are probed lazily (``importlib.util.find_spec``, a guarded
import, or a subprocess with a short timeout) and their absence is a result, not a crash.
"""

from __future__ import annotations

import contextlib
import glob
import importlib.util
import json
import logging
import os
import platform
import re
import shutil
import subprocess
from dataclasses import asdict, dataclass

from edgevlm.errors import EdgeVLMError
from edgevlm.runtime.cpu_isa import (CPU_TARGET_ENV, TARGETS, cpu_features, detected_cpu_target,  # cpu_features: re-exported
                                     read_cpuinfo, this_cpu_target)
from edgevlm.runtime.steppers import device_graphs

PROBE_TIMEOUT_S = 5.0  # nvidia-smi / nvcc / gst-inspect: a hung driver must not hang doctor
GPU_PROVIDERS = ("cuda", "tensorrt")
# Which onnxruntime execution provider each --provider needs first (the backend's own table,
# repeated here so that doctor can name it without importing onnxruntime).
PROVIDER_EP = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider",
               "tensorrt": "TensorrtExecutionProvider"}
JETSON_ORT_FIX = "pip install onnxruntime-gpu from the Jetson AI Lab index for JetPack 6"
X86_ORT_FIX = "pip uninstall onnxruntime && pip install onnxruntime-gpu"


@dataclass(frozen=True)
class Check:
    """One line of the report. ``ok``: True found, False missing, None not needed here.
    ``needed``: the chosen engine + provider cannot run while this one is False."""

    name: str
    ok: bool | None
    detail: str
    fix: str = ""
    needed: bool = False

    @property
    def label(self) -> str:
        if self.ok is None:
            return "n/a"
        if self.ok:
            return "OK"
        return "MISSING" if self.needed else "WARN"

    def to_json(self) -> dict:
        return asdict(self)


# --------------------------------------------------------------------------- probes
def _one_line(text: str) -> str:
    """First non-empty line of a message: the report is one line per check."""
    return next((line.strip() for line in str(text).splitlines() if line.strip()), "")


def _probe(*command: str) -> tuple[int, str] | None:
    """Run ``command``; (exit code, stdout+stderr), or None when it is not installed or hangs."""
    if shutil.which(command[0]) is None:
        return None
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=PROBE_TIMEOUT_S)
    except (subprocess.SubprocessError, OSError):
        return None
    return done.returncode, (done.stdout + done.stderr).strip()


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read().replace("\x00", "").strip()  # device-tree strings end in NUL
    except OSError:
        return None


def is_jetson() -> bool:
    """L4T (JetPack) writes /etc/nv_tegra_release; the device tree names the board."""
    model = _read("/proc/device-tree/model") or ""
    return os.path.exists("/etc/nv_tegra_release") or "jetson" in model.lower()


# --------------------------------------------------------------------------- informational
def check_python() -> Check:
    """Python, edgevlm and the OS: what a bug report needs first."""
    from importlib import metadata

    try:  # from the install's metadata: the runtime may not import the edgevlm package itself
        version = metadata.version("edgevlm")
    except metadata.PackageNotFoundError:
        version = "not installed (running from a source tree)"
    return Check("python", True, f"Python {platform.python_version()}, edgevlm {version}, "
                                 f"{platform.system()} {platform.machine()}")


def check_cpu() -> Check:
    """CPU model, instruction sets and the INT8 target they make it (runtime/cpu_isa.py):
    int8 engines are fast with VNNI/AMX/dotprod, and an engine made for another target warns."""
    model, found = cpu_features(read_cpuinfo())
    model = model or platform.processor() or platform.machine()
    what = f"{model}, {os.cpu_count()} cores; {', '.join(found) or 'no AVX2/VNNI/dotprod'}"
    detected = detected_cpu_target()
    unset = f"unset {CPU_TARGET_ENV} (or set one of {', '.join(TARGETS)})"
    try:
        target = this_cpu_target()
    except EdgeVLMError as exc:
        return Check("cpu", False, f"{what}; {_one_line(exc)}", unset, needed=True)  # no engine opens
    if target != detected:  # EDGEVLM_CPU_TARGET: engines for another CPU run here (runtime/cpu_isa.py)
        return Check("cpu", False, f"{what}; INT8 target {target} from {CPU_TARGET_ENV} (detected: "
                                  f"{detected or 'unknown'})", unset)
    return Check("cpu", True, f"{what}; INT8 target {target or 'unknown'}")


def _absent(name: str, detail: str, provider: str, needed: bool, fix: str) -> Check:
    """A thing that is not here: missing (with its fix) when ``provider`` needs it, else n/a."""
    if not needed:
        return Check(name, None, f"{detail}; not needed for --provider {provider}")
    return Check(name, False, detail, fix, needed=True)


# --------------------------------------------------------------------------- onnxruntime
def _ort_fix() -> str:
    return JETSON_ORT_FIX if is_jetson() else X86_ORT_FIX


def check_onnxruntime(provider: str) -> Check:
    """onnxruntime's version and providers; the one ``provider`` needs must be among them."""
    wanted = PROVIDER_EP[provider]
    if importlib.util.find_spec("onnxruntime") is None:
        fix = "pip install onnxruntime" if provider == "cpu" else _ort_fix()
        return Check("onnxruntime", False, "onnxruntime is not installed", fix, needed=True)
    try:
        import onnxruntime
    except Exception as exc:  # a broken install (missing CUDA libraries, ABI mismatch) raises anything
        return Check("onnxruntime", False, f"import onnxruntime failed: {_one_line(exc)}", _ort_fix(), needed=True)
    available = onnxruntime.get_available_providers()
    detail = f"onnxruntime {onnxruntime.__version__}, providers: {', '.join(available)}"
    if wanted in available:
        return Check("onnxruntime", True, f"{detail} ({wanted} for --provider {provider})", needed=True)
    return Check("onnxruntime", False, f"{wanted} is missing (--provider {provider} needs it; onnxruntime "
                                       f"{onnxruntime.__version__} has {', '.join(available)})", _ort_fix(), needed=True)


def check_tensorrt(provider: str) -> Check:
    """The ``tensorrt`` Python module (TensorRT's libraries); only --provider tensorrt needs it."""
    needed = provider == "tensorrt"
    fix = "sudo apt-get install python3-libnvinfer (JetPack)" if is_jetson() else "pip install tensorrt"
    if importlib.util.find_spec("tensorrt") is None:
        return _absent("tensorrt", "the tensorrt Python module is not installed", provider, needed, fix)
    try:
        import tensorrt
    except Exception as exc:
        return Check("tensorrt", False if needed else None, f"import tensorrt failed: {_one_line(exc)}",
                     fix if needed else "", needed)
    return Check("tensorrt", True, f"TensorRT {getattr(tensorrt, '__version__', '?')}", needed=needed)


# --------------------------------------------------------------------------- GPU and CUDA
def _gpu_found() -> str | None:
    """The GPU in one line (nvidia-smi on x86/dGPU, the device tree on a Jetson), or None."""
    smi = _probe("nvidia-smi", "--query-gpu=name,compute_cap,driver_version", "--format=csv,noheader")
    if smi and smi[0] == 0 and smi[1]:
        return "; ".join(line.strip() for line in smi[1].splitlines() if line.strip())
    if is_jetson():
        model = _read("/proc/device-tree/model") or "Jetson"
        release = _read("/etc/nv_tegra_release") or ""
        l4t = re.match(r"#\s*(R\d+)\s*\(release\),\s*REVISION:\s*([\d.]+)", release)
        return f"{model}" + (f", L4T {l4t.group(1)}.{l4t.group(2)}" if l4t else "")
    return None


def check_gpu(provider: str) -> Check:
    """An NVIDIA GPU with a working driver; only the cuda and tensorrt providers need one."""
    needed = provider in GPU_PROVIDERS
    found = _gpu_found()
    if found:
        return Check("gpu", True, found, needed=needed)
    smi = _probe("nvidia-smi", "-L")
    why = f"nvidia-smi failed: {_one_line(smi[1])}" if smi else "no nvidia-smi and not a Jetson"
    fix = "flash JetPack 6 with NVIDIA SDK Manager" if is_jetson() else \
        "install the NVIDIA driver (nvidia-smi must list the GPU), or use --provider cpu"
    return _absent("gpu", f"no NVIDIA GPU ({why})", provider, needed, fix)


def _cuda_version() -> str | None:
    """CUDA's version: nvcc, the toolkit's version.json (JetPack ships it), or pip's runtime."""
    nvcc = _probe("nvcc", "--version") or (_probe("/usr/local/cuda/bin/nvcc", "--version")
                                           if os.path.exists("/usr/local/cuda/bin/nvcc") else None)
    if nvcc and nvcc[0] == 0:
        match = re.search(r"release ([\d.]+)", nvcc[1])
        if match:
            return f"CUDA {match.group(1)} (nvcc)"
    for path in sorted(glob.glob("/usr/local/cuda*/version.json")):
        try:
            with open(path, encoding="utf-8") as f:
                return f"CUDA {json.load(f)['cuda']['version']} ({path})"
        except (OSError, ValueError, KeyError, TypeError):
            continue
    from importlib import metadata

    for dist in metadata.distributions():  # onnxruntime-gpu can run on pip's CUDA runtime alone
        name = (dist.metadata["Name"] or "").lower()
        if name.startswith("nvidia-cuda-runtime"):
            return f"CUDA runtime {dist.version} ({name}, pip)"
    return None


def check_cuda(provider: str) -> Check:
    """The CUDA version; the cuda and tensorrt providers need CUDA's libraries."""
    needed = provider in GPU_PROVIDERS
    found = _cuda_version()
    if found:
        return Check("cuda", True, found, needed=needed)
    fix = "sudo apt-get install nvidia-jetpack" if is_jetson() else \
        "install the CUDA toolkit matching onnxruntime-gpu (or pip install nvidia-cuda-runtime-cu12)"
    return _absent("cuda", "CUDA not found (no nvcc, no /usr/local/cuda*/version.json)", provider, needed, fix)


# --------------------------------------------------------------------------- OpenCV and cameras
_VIDEO_IO = {"gstreamer": "GStreamer", "v4l/v4l2": "V4L/V4L2", "ffmpeg": "FFMPEG"}


def opencv_video_io(build_info: str) -> dict[str, bool | None]:
    """``cv2.getBuildInformation()`` -> {"GStreamer", "V4L/V4L2", "FFMPEG": built in?}; None
    where the text does not say (an old or unusual build)."""
    found: dict[str, bool | None] = dict.fromkeys(_VIDEO_IO.values())
    for line in build_info.splitlines():
        key, sep, value = line.partition(":")
        label = _VIDEO_IO.get(key.strip().lower())
        if sep and label and found[label] is None:
            found[label] = value.strip().upper().startswith("YES")
    return found


def check_opencv() -> Check:
    """OpenCV's video back-ends: GStreamer for CSI cameras and RTSP pipelines, V4L2 for USB
    cameras, FFmpeg for files and URLs. OpenCV itself decodes every image, so it is needed."""
    if importlib.util.find_spec("cv2") is None:
        return Check("opencv", False, "OpenCV (cv2) is not installed", "pip install opencv-python-headless", True)
    try:
        import cv2
    except Exception as exc:
        return Check("opencv", False, f"import cv2 failed: {_one_line(exc)}", "pip install opencv-python-headless", True)
    io = opencv_video_io(cv2.getBuildInformation())
    detail = f"OpenCV {cv2.__version__}: " + ", ".join(
        f"{name} {'?' if built is None else 'YES' if built else 'NO'}" for name, built in io.items())
    if io["GStreamer"]:
        return Check("opencv", True, detail, needed=True)
    fix = ("use JetPack's OpenCV, built with GStreamer (pip uninstall opencv-python-headless so it is not shadowed)"
           if is_jetson() else "an OpenCV built with -DWITH_GSTREAMER=ON")
    return Check("opencv", False, f"{detail} (no GStreamer: no CSI cameras or GStreamer pipelines; files, "
                                  "/dev/videoN and rtsp:// via FFmpeg still work)", fix)


def check_cameras() -> Check:
    """USB/V4L2 cameras: /dev/video*. None is a warning: files and URLs still work."""
    devices = sorted(glob.glob("/dev/video*"), key=lambda p: (len(p), p))
    if devices:
        return Check("cameras", True, ", ".join(devices))
    return Check("cameras", False, "no /dev/video* devices (files, rtsp:// and http:// sources still work)",
                 "plug in a USB (UVC) camera; in a container pass --device /dev/video0")


def check_csi_camera() -> Check:
    """A CSI camera on a Jetson goes through the nvarguscamerasrc GStreamer element."""
    if not is_jetson():
        return Check("csi camera", None, "not a Jetson (CSI cameras via nvarguscamerasrc)")
    inspect = _probe("gst-inspect-1.0", "nvarguscamerasrc")
    if inspect is None:
        return Check("csi camera", None, "gst-inspect-1.0 not found, cannot look for nvarguscamerasrc",
                     "sudo apt-get install gstreamer1.0-tools")
    if inspect[0] == 0:
        return Check("csi camera", True, "nvarguscamerasrc (GStreamer) is installed")
    return Check("csi camera", False, "GStreamer has no nvarguscamerasrc element",
                 "sudo apt-get install nvidia-l4t-gstreamer (JetPack)")


# --------------------------------------------------------------------------- speech
def check_espeak() -> Check:
    """espeak-ng speaks the narration; without it narration is text only."""
    from edgevlm.runtime.narration.speech import find_espeak

    path = find_espeak()
    if path is None:
        return Check("espeak-ng", False, "espeak-ng not on PATH (narration would be text only)",
                     "sudo apt-get install espeak-ng")
    version = _probe(path, "--version")
    found = " ".join(_one_line(version[1]).split()) if version and version[1] else path  # espeak pads with spaces
    return Check("espeak-ng", True, found)


def check_audio() -> Check:
    """A sound device and a player for it (the same detection narration uses). Missing is a
    warning: narration still writes WAV files with --audio-out."""
    from edgevlm.runtime.narration.speech import audio_player

    player = audio_player()
    cards = sorted(os.listdir("/dev/snd")) if os.path.isdir("/dev/snd") else []
    if player:
        where = "PULSE_SERVER" if os.environ.get("PULSE_SERVER") and not cards else "/dev/snd"
        return Check("audio", True, f"{player[0]} plays to {where}")
    if not cards and not os.environ.get("PULSE_SERVER"):
        return Check("audio", False, "no sound device (/dev/snd missing or empty); speech only to WAV files "
                                     "(--audio-out)", "connect a speaker or headphones; in a container pass --device /dev/snd")
    return Check("audio", False, "a sound device but no player (paplay, aplay, pw-play); speech only to WAV files "
                                 "(--audio-out)", "sudo apt-get install alsa-utils")


# --------------------------------------------------------------------------- the engine
def check_graph_cache(provider: str) -> Check:
    """Where CPU engines keep their optimized graphs between starts (optimized_graphs.py);
    without a writable folder every start optimizes them again (~0.1 s for the shipped engine)."""
    from edgevlm.fileio import check_writable
    from edgevlm.runtime.engine_cache import GRAPH_CACHE_SWITCH, graph_cache_enabled, graph_cache_folder
    from edgevlm.runtime.optimized_graphs import WEIGHTS_SUFFIX

    if provider != "cpu":
        return Check("graph-cache", None, "kept for the CPU provider only")
    if not graph_cache_enabled():
        return Check("graph-cache", None, f"off ({GRAPH_CACHE_SWITCH}={os.environ.get(GRAPH_CACHE_SWITCH)})")
    folder = graph_cache_folder()
    try:
        names = [n for n in os.listdir(folder) if n.endswith(".onnx")]
        size = sum(os.path.getsize(os.path.join(folder, n)) for n in os.listdir(folder)
                   if n.endswith((".onnx", WEIGHTS_SUFFIX))) / 1e6  # graphs and their weights files
        state = f"{len(names)} optimized graph(s), {size:.1f} MB"
    except OSError:  # not made yet (or a copy replaced while we looked): nothing to count
        state = "empty (the first engine start fills it)"
    try:  # the folder, or the nearest existing folder above it where it would be made
        check_writable(folder, inside=True, flag="the graph cache")
    except EdgeVLMError:
        return Check("graph-cache", False, f"{folder} cannot be written: every start optimizes its graphs again",
                     "set EDGEVLM_CACHE_DIR to a writable folder")
    return Check("graph-cache", True, f"{folder}: {state}")


@contextlib.contextmanager
def _quiet(logger_name: str):
    """Silence one logger for the duration."""
    logger = logging.getLogger(logger_name)
    was, logger.disabled = logger.disabled, True
    try:
        yield
    finally:
        logger.disabled = was


def check_engine(engine_dir: str | None, provider: str, backend: str = "onnxruntime") -> Check:
    """The engine's manifest and files (sha256 verified), then its onnxruntime sessions
    actually opened on ``provider``: the only proof that it runs here. With the native
    TensorRT backend the sessions are not its concern: ``check_plans`` looks at its plans."""
    from edgevlm.paths import resolve_engine
    from edgevlm.runtime.manifest import load_manifest

    # The manifest's own errors already say "re-export the engine": the fix gives the command.
    fix = "`edgevlm export MODEL_DIR --out DIR`, then pass --engine DIR"
    try:
        engine_dir = resolve_engine(engine_dir)
        manifest = load_manifest(engine_dir, verify=True, use_records=False)  # the check: every byte hashed
    except EdgeVLMError as exc:
        return Check("engine", False, _one_line(exc), fix, needed=True)
    what = (f"{engine_dir}: {manifest.model.family}, {manifest.precision}, "
            f"graphs {', '.join(manifest.graphs)}")
    if backend == "tensorrt":
        return Check("engine", True, f"{what}; files verified (--backend tensorrt runs its plans: see plans)",
                     needed=True)
    # Every engine in the folder, not only the one this CPU runs: the folder is copied to
    # machines with other CPUs, which run its variants (runtime/cpu_variants.py). A GPU
    # provider runs only the top engine (variants are CPU int8 layouts).
    from edgevlm.runtime.cpu_variants import runs_variants

    on_cpu = runs_variants(provider, backend)
    folders = {manifest.cpu_target or "top": engine_dir}
    if on_cpu:
        folders |= {target: os.path.join(engine_dir, folder) for target, folder in manifest.cpu_variants.items()}
    for target, folder in folders.items():
        try:
            from edgevlm.runtime.engine import CaptionEngine  # inside: a broken install is this check's result

            if folder != engine_dir:  # the top engine's files were verified just above
                load_manifest(folder, verify=True, use_records=False)
            with _quiet("edgevlm.runtime.cpu_variants"):  # "made for another CPU": expected for all but one here
                engine = CaptionEngine(folder, provider, verify=False, pick_variant=False)
            try:
                engine.backend.open_deferred()  # every graph, also those made on first use (a question's decoder)
            finally:
                engine.close()
        except Exception as exc:  # onnxruntime and a broken install raise their own types
            provider_fix = _ort_fix() if provider != "cpu" else fix
            where = "" if folder == engine_dir else f" (the {target} variant, {folder})"
            return Check("engine", False, f"{what}; cannot open{where} on --provider {provider}: {_one_line(exc)}",
                         provider_fix, needed=True)
    variants = ""
    if manifest.cpu_variants:
        variants = (f" and its {', '.join(manifest.cpu_variants)} variant" if on_cpu else
                    f" (its {', '.join(manifest.cpu_variants)} variants run only on --provider cpu)")
    return Check("engine", True, f"{what}; sessions open on {PROVIDER_EP[provider]}{variants}", needed=True)


def check_plans(engine_dir: str | None, tensorrt_found: bool) -> Check:
    """--backend tensorrt: a native plan for every graph in the engine folder (``edgevlm
    build``), each current for this TensorRT and GPU (``engine_cache.check_plan``: source
    sha256, TensorRT version, GPU, the plan's size and sha256; nothing is deserialized).
    Without TensorRT only their presence can be told: n/a when all are there."""
    from edgevlm.paths import resolve_engine
    from edgevlm.runtime.engine_cache import plan_problems
    from edgevlm.runtime.manifest import load_manifest

    try:
        engine_dir = resolve_engine(engine_dir)
        manifest = load_manifest(engine_dir, verify=False)
    except EdgeVLMError as exc:  # the engine check names it, with its fix
        return Check("plans", None, f"no engine to look in ({_one_line(exc)})")
    build = f"edgevlm build {engine_dir} (or run with --rebuild)"
    entries = manifest.plans or {}
    missing = [graph for graph in device_graphs(manifest) if graph not in entries]
    if missing:
        from edgevlm.runtime.tensorrt_build import check_precision_request

        try:  # the shipped CPU INT8 engine cannot be built at all: say so rather than `edgevlm build`
            check_precision_request(manifest, None)
        except EdgeVLMError as exc:
            build = _one_line(exc).split("; ", 1)[-1]
        return Check("plans", False, f"no TensorRT plan for {', '.join(missing)} in {engine_dir}", build, needed=True)
    if not tensorrt_found:
        return Check("plans", None, f"{len(entries)} plans in {engine_dir}; whether they are current here needs "
                                    "TensorRT (see tensorrt)")
    from edgevlm.runtime.tensorrt_support import Cuda, import_tensorrt, native_facts

    try:
        facts = native_facts(import_tensorrt(), Cuda())
    except EdgeVLMError as exc:
        return Check("plans", False, f"cannot tell whether the plans are current: {_one_line(exc)}",
                     "pip install cuda-python (the release matching your CUDA major version)", needed=True)
    try:
        stale = plan_problems(manifest, facts, use_records=False)  # none missing by now; every byte hashed
    except EdgeVLMError as exc:  # a plan path leading outside the folder
        return Check("plans", False, f"stale: {_one_line(exc)}", build, needed=True)
    if stale:
        return Check("plans", False, "stale: " + "; ".join(f"{g}: {'; '.join(why)}" for g, why in stale.items()),
                     build, needed=True)
    return Check("plans", True, f"{len(device_graphs(manifest))} plans current for TensorRT {facts.trt_version} on {facts.gpu_name} "
                                f"(sm {facts.compute_capability})", needed=True)


# --------------------------------------------------------------------------- all of it
BACKENDS = ("onnxruntime", "tensorrt")


def run_checks(engine_dir: str | None, provider: str, backend: str = "onnxruntime") -> list[Check]:
    """Every check, in the order a fix should be made (the provider before the GPU before
    the engine that needs both), so the first missing one is the one to fix first. The
    native TensorRT backend (``backend="tensorrt"``) needs TensorRT, the GPU and CUDA
    whatever ``provider`` says, and its plans."""
    if provider not in PROVIDER_EP:
        raise EdgeVLMError(f"unknown provider {provider!r}; one of {list(PROVIDER_EP)}")
    if backend not in BACKENDS:
        raise EdgeVLMError(f"unknown backend {backend!r}; one of {list(BACKENDS)}")
    gpu_need = "tensorrt" if backend == "tensorrt" else provider  # what the GPU checks are asked for
    trt = check_tensorrt(gpu_need)
    checks = [check_python(), check_cpu(), check_onnxruntime(provider), trt,
              check_gpu(gpu_need), check_cuda(gpu_need), check_opencv(), check_cameras(), check_csi_camera(),
              check_espeak(), check_audio(), check_engine(engine_dir, provider, backend), check_graph_cache(provider)]
    if backend == "tensorrt":
        checks.append(check_plans(engine_dir, tensorrt_found=trt.ok is True))
    return checks


def blocking(checks: list[Check]) -> list[Check]:
    """The needed checks that failed: any one means the engine cannot run here."""
    return [check for check in checks if check.needed and check.ok is False]


def runs_here(checks: list[Check]) -> bool:
    return not blocking(checks)
