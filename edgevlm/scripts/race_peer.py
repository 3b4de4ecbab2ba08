"""One peer of the HF speed race, in a process of its own, run by the peer's python.

    PYTHON edgevlm/scripts/race_peer.py             # a worker: JSON lines on stdin/stdout
    PYTHON edgevlm/scripts/race_peer.py prepare PEER MODEL_DIR WORK_DIR   # export/quantize, print the folder

The coordinator (edgevlm/scripts/hf_race.py) starts one worker per peer, each with its own
interpreter: the transformers peer runs in edgevlm's venv (transformers 5.x), the optimum
peers in the optimum venv (transformers<4.58, see optimum_env.sh). So this file imports only
the standard library at the top; torch, transformers and optimum are imported inside the
peer that needs them.

Protocol, one JSON object per line each way:

    {"cmd": "load", "peer": NAME, "model_dir": DIR, "work_dir": DIR, "threads": 2}
        -> {"ok": true, "load_s", "prepare_s", "rss_mb", "engine_bytes", "versions", ...}
    {"cmd": "caption", "image": PATH}      -> {"ok": true, "ms": .., "ids": [20 ints]}
    {"cmd": "quit"}                        -> {"ok": true, "peak_rss_mb": VmHWM}
    any failure                            -> {"ok": false, "error": "...", "traceback": "..."}

What ``ms`` covers, the same for every peer: from the image path to the 20 generated ids,
i.e. JPEG decode (PIL), the HF ViTImageProcessor in its slow PIL form (resize, rescale,
normalise), the vision encoder, and 20 greedy decoder steps. Generation is forced to exactly
20 new tokens (eos banned until then: HF's min_new_tokens; num_beams 1, no sampling), so
every peer does the same work whatever its weights make it say. ``ids`` are those 20 tokens
without the decoder-start token.

Export and quantization (optimum peers) happen in a child process (``prepare``), cached in
WORK_DIR under the sha256 of the model's safetensors, so a second run reuses them and the
worker's peak RSS is that of loading and captioning, not of the torch export.

Adding a peer is one small class registered in PEERS: ``load(model_dir, work_dir, threads)``
returns extra fields for the reply (at least ``engine_bytes``), ``caption(image_path)``
returns the 20 ids. Our engines are ``EdgevlmPeer``: the engine folder is WORK_DIR/<peer name>
(``edgevlm export MODEL --out WORK_DIR/edgevlm-fp32``, ``edgevlm quantize ... --out
WORK_DIR/edgevlm-int8``); it runs in edgevlm's venv with its own torch-free preprocessing.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
import traceback

NEW_TOKENS = 20  # every peer generates exactly this many tokens per caption
SAFETENSORS_HASH_CHUNK = 1 << 24

# Never reach the Hugging Face hub: every peer reads local folders only.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


# --- process facts ---------------------------------------------------------------------
def proc_status_mb(field: str) -> float:
    """A memory line of /proc/self/status (VmRSS, VmHWM) in MiB."""
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024.0
    raise RuntimeError(f"no {field} in /proc/self/status")


def folder_bytes(path: str, names: list[str] | None = None) -> int:
    """Bytes of the named files in ``path`` (all regular files when ``names`` is None)."""
    names = names if names is not None else os.listdir(path)
    return sum(os.path.getsize(os.path.join(path, n)) for n in names if os.path.isfile(os.path.join(path, n)))


def safetensors_sha256(model_dir: str) -> str:
    """sha256 over the folder's *.safetensors files in name order: the export cache's key."""
    names = sorted(n for n in os.listdir(model_dir) if n.endswith(".safetensors"))
    if not names:
        raise FileNotFoundError(f"no *.safetensors in {model_dir}")
    digest = hashlib.sha256()
    for name in names:
        with open(os.path.join(model_dir, name), "rb") as f:
            while chunk := f.read(SAFETENSORS_HASH_CHUNK):
                digest.update(chunk)
    return digest.hexdigest()


def versions(*packages: str) -> dict:
    from importlib import metadata

    out = {}
    for package in packages:
        try:
            out[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            pass
    return out


# --- shared preprocessing ----------------------------------------------------------------
def slow_image_processor(model_dir: str):
    """The model folder's ViTImageProcessor in its slow (PIL + numpy) form, in either
    transformers: 5.x calls it the "pil" backend, 4.x ``use_fast=False``."""
    import transformers
    from transformers import AutoImageProcessor

    major = int(transformers.__version__.split(".")[0])
    slow = {"backend": "pil"} if major >= 5 else {"use_fast": False}
    return AutoImageProcessor.from_pretrained(model_dir, **slow)


def pixel_values(processor, image_path: str, tensors: str):
    """Image file -> (1,3,224,224) pixel values ("pt" torch tensor or "np" array)."""
    from PIL import Image

    with Image.open(image_path) as image:
        rgb = image.convert("RGB")
    return processor(images=rgb, return_tensors=tensors)["pixel_values"]


def new_token_ids(sequences) -> list[int]:
    """generate()'s (1, 1+20) output -> the 20 new ids (decoder-start token dropped)."""
    ids = [int(i) for i in sequences[0].tolist()[1:]]
    if len(ids) != NEW_TOKENS:
        raise RuntimeError(f"generated {len(ids)} tokens, not {NEW_TOKENS}: the forcing did not hold")
    return ids


def forced_generation() -> dict:
    """generate() arguments that make every peer do the same work: 20 greedy tokens."""
    return {"min_new_tokens": NEW_TOKENS, "max_new_tokens": NEW_TOKENS, "num_beams": 1, "do_sample": False}


# --- peers --------------------------------------------------------------------------------
class Peer:
    """One way of captioning. ``prepare`` (optional) builds cached artifacts and returns
    their folder; it runs in a child process so its memory never counts in the worker's
    peak RSS, and the worker sets ``prepared_dir`` to that folder before ``load``."""

    needs_prepare = False
    prepared_dir: str | None = None

    def prepare(self, model_dir: str, work_dir: str) -> str:
        raise NotImplementedError(f"{type(self).__name__} has nothing to prepare")

    def load(self, model_dir: str, work_dir: str, threads: int) -> dict:
        raise NotImplementedError

    def caption(self, image_path: str) -> list[int]:
        raise NotImplementedError


class TransformersPeer(Peer):
    """transformers' own VisionEncoderDecoderModel.generate() with its KV cache, torch CPU."""

    def load(self, model_dir: str, work_dir: str, threads: int) -> dict:
        import torch
        from transformers import VisionEncoderDecoderModel

        torch.set_num_threads(threads)
        self.torch = torch
        self.model = VisionEncoderDecoderModel.from_pretrained(model_dir).eval()
        self.processor = slow_image_processor(model_dir)
        weights = [n for n in os.listdir(model_dir) if n.endswith(".safetensors")]
        return {"engine_bytes": folder_bytes(model_dir, weights), "torch_threads": torch.get_num_threads(),
                "versions": versions("torch", "transformers")}

    def caption(self, image_path: str) -> list[int]:
        with self.torch.inference_mode():
            pixels = pixel_values(self.processor, image_path, "pt")
            return new_token_ids(self.model.generate(pixels, use_cache=True, **forced_generation()))


def quantization_target() -> str:
    """The AutoQuantizationConfig this CPU gets: avx512_vnni when /proc/cpuinfo has it, else
    avx512 (plain AVX-512), else avx2."""
    with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
        flags = next((line.split(":", 1)[1].split() for line in f if line.startswith("flags")), [])
    if "avx512_vnni" in flags:
        return "avx512_vnni"
    if "avx512f" in flags:
        return "avx512"
    return "avx2"


class OptimumPeer(Peer):
    """optimum-onnx's ORTModelForVision2Seq: encoder_model.onnx, decoder_model.onnx (first
    step) and decoder_with_past_model.onnx (later steps), as ``from_pretrained(export=True,
    use_cache=True)`` makes them; INT8 by optimum's ORTQuantizer, dynamic, per-tensor
    (``per_channel=False``, the optimum docs' recipe) with this CPU's AutoQuantizationConfig."""

    needs_prepare = True
    int8 = False
    FILES = ("encoder_model", "decoder_model", "decoder_with_past_model")

    # cache layout: WORK_DIR/optimum/<sha256[:16]>/{fp32,int8-<target>}/ (+ cache.json)
    def variant(self) -> str:
        return f"int8-{quantization_target()}" if self.int8 else "fp32"

    def file_names(self) -> dict:
        suffix = "_quantized" if self.int8 else ""
        return {f"{role}_file_name": f"{name}{suffix}.onnx"
                for role, name in zip(("encoder", "decoder", "decoder_with_past"), self.FILES)}

    def prepare(self, model_dir: str, work_dir: str) -> str:
        key = safetensors_sha256(model_dir)  # ~1 s per GB: hashed once per prepare
        return self._prepare(model_dir, os.path.join(work_dir, "optimum", key[:16]), key)

    def _prepare(self, model_dir: str, root: str, key: str) -> str:
        final = os.path.join(root, self.variant())
        if os.path.isdir(final):
            return final
        os.makedirs(root, exist_ok=True)
        staging = f"{final}.tmp{os.getpid()}"  # renamed into place only when complete
        shutil.rmtree(staging, ignore_errors=True)
        if self.int8:
            self._quantize(OptimumPeer()._prepare(model_dir, root, key), staging)
        else:
            self._export(model_dir, staging)
        with open(os.path.join(staging, "cache.json"), "w", encoding="utf-8") as f:
            json.dump({"model_dir": os.path.abspath(model_dir), "safetensors_sha256": key, "variant": self.variant(),
                       "versions": versions("optimum", "optimum-onnx", "onnxruntime", "transformers", "torch")},
                      f, indent=2)
        try:
            os.rename(staging, final)
        except OSError:  # another run finished the same variant first: keep theirs
            if not os.path.isdir(final):
                raise
            shutil.rmtree(staging, ignore_errors=True)
        return final

    @staticmethod
    def _export(model_dir: str, out_dir: str) -> None:
        """What ORTModelForVision2Seq.from_pretrained(export=True, use_cache=True) runs, but
        straight into ``out_dir`` (from_pretrained would export to a temp folder, open three
        sessions, then copy)."""
        from optimum.exporters.onnx import main_export
        from optimum.exporters.tasks import TasksManager
        from optimum.onnxruntime import ORTModelForVision2Seq
        from optimum.utils.save_utils import maybe_save_preprocessors

        task = TasksManager._infer_task_from_model_or_model_class(model_class=ORTModelForVision2Seq.auto_model_class)
        main_export(model_name_or_path=model_dir, output=out_dir, task=f"{task}-with-past", do_validation=False,
                    no_post_process=True, library_name=ORTModelForVision2Seq._library_name)
        maybe_save_preprocessors(model_dir, out_dir)

    def _quantize(self, fp32_dir: str, out_dir: str) -> None:
        from optimum.onnxruntime import AutoQuantizationConfig, ORTQuantizer

        config = getattr(AutoQuantizationConfig, quantization_target())(is_static=False, per_channel=False)
        for name in self.FILES:
            quantizer = ORTQuantizer.from_pretrained(fp32_dir, file_name=f"{name}.onnx")
            quantizer.quantize(save_dir=out_dir, quantization_config=config)
        # the quantizer writes config.json and the preprocessor; generate() also wants this
        shutil.copy(os.path.join(fp32_dir, "generation_config.json"), out_dir)

    def load(self, model_dir: str, work_dir: str, threads: int) -> dict:
        import onnxruntime
        import torch
        from optimum.onnxruntime import ORTModelForVision2Seq

        torch.set_num_threads(threads)  # optimum glues the sessions with torch tensors
        self.torch = torch
        folder = self.prepared_dir or self.prepare(model_dir, work_dir)
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        names = self.file_names()
        self.model = ORTModelForVision2Seq.from_pretrained(folder, use_cache=True, provider="CPUExecutionProvider",
                                                           session_options=options, **names)
        self.processor = slow_image_processor(model_dir)
        onnx_files = [n for n in os.listdir(folder) if any(n.startswith(f[:-5]) for f in names.values())]
        return {"engine_bytes": folder_bytes(folder, onnx_files), "engine_dir": folder,
                "quantization": self.variant(), "versions": versions("optimum", "optimum-onnx", "onnxruntime",
                                                                     "transformers", "torch")}

    def caption(self, image_path: str) -> list[int]:
        with self.torch.inference_mode():
            pixels = pixel_values(self.processor, image_path, "pt")
            return new_token_ids(self.model.generate(pixel_values=pixels, **forced_generation()))


class OptimumInt8Peer(OptimumPeer):
    """The same, with optimum's dynamic INT8 quantization of all three graphs."""

    int8 = True


class EdgevlmPeer(Peer):
    """Our engine (torch-free runtime): the image read and preprocessed by the engine itself
    (the slow processor's output, bit for bit), vision, cross K/V once, 20 decoder steps on
    the fixed-capacity cache; forced to 20 tokens the way the others are (min_new_tokens)."""

    name = "edgevlm"

    def load(self, model_dir: str, work_dir: str, threads: int) -> dict:
        from edgevlm.runtime.engine import CaptionEngine
        from edgevlm.runtime.preprocess import read_image_bgr

        engine_dir = os.path.join(work_dir, self.name)
        if not os.path.isdir(engine_dir):
            raise FileNotFoundError(f"no engine at {engine_dir}: export (and quantize) {model_dir} there first")
        self.engine = CaptionEngine(engine_dir, threads=threads)
        self.read = read_image_bgr
        self.settings = self.engine.settings(1, min_new_tokens=NEW_TOKENS, max_new_tokens=NEW_TOKENS)
        return {"engine_bytes": folder_bytes(engine_dir), "precision": self.engine.manifest.precision,
                "versions": versions("onnxruntime", "numpy")}

    def caption(self, image_path: str) -> list[int]:
        pixels = self.engine.preprocess(self.read(image_path))[None]
        return self.engine.generate(self.engine.see(pixels).visual, self.settings)[0]


class EdgevlmFP32Peer(EdgevlmPeer):
    name = "edgevlm-fp32"


class EdgevlmInt8Peer(EdgevlmPeer):
    name = "edgevlm-int8"


PEERS = {
    "transformers": TransformersPeer,
    "optimum-fp32": OptimumPeer,
    "optimum-int8": OptimumInt8Peer,
    "edgevlm-fp32": EdgevlmFP32Peer,
    "edgevlm-int8": EdgevlmInt8Peer,
}


def make_peer(name: str) -> Peer:
    if name not in PEERS:
        raise ValueError(f"unknown peer {name!r}; known: {', '.join(PEERS)}")
    return PEERS[name]()


# --- worker loop ---------------------------------------------------------------------------
class Worker:
    """Answers the coordinator's commands for one peer."""

    def __init__(self):
        self.peer: Peer | None = None

    def load(self, msg: dict) -> dict:
        peer = make_peer(msg["peer"])
        model_dir, work_dir, threads = msg["model_dir"], msg["work_dir"], int(msg["threads"])
        prepare_s = 0.0
        if peer.needs_prepare:  # in a child: the export's memory must not become ours
            start = time.perf_counter()
            done = subprocess.run([sys.executable, os.path.abspath(__file__), "prepare", msg["peer"], model_dir,
                                   work_dir], check=True, stdout=subprocess.PIPE, text=True)
            peer.prepared_dir = done.stdout.strip().splitlines()[-1]
            prepare_s = time.perf_counter() - start
        start = time.perf_counter()
        extra = peer.load(model_dir, work_dir, threads)
        load_s = time.perf_counter() - start
        self.peer = peer
        return {"load_s": load_s, "prepare_s": prepare_s, "rss_mb": proc_status_mb("VmRSS"),
                "python": sys.executable, **extra}

    def caption(self, msg: dict) -> dict:
        if self.peer is None:
            raise RuntimeError("caption before load")
        start = time.perf_counter()
        ids = self.peer.caption(msg["image"])
        return {"ms": (time.perf_counter() - start) * 1000.0, "ids": ids}

    def handle(self, msg: dict) -> dict:
        cmd = msg.get("cmd")
        if cmd == "load":
            return self.load(msg)
        if cmd == "caption":
            return self.caption(msg)
        if cmd == "quit":
            return {"peak_rss_mb": proc_status_mb("VmHWM")}
        raise ValueError(f"unknown cmd {cmd!r}")


def private_stdout():
    """A line-buffered copy of stdout for our own output; fd 1 itself is pointed at stderr,
    so a library that prints (from Python or C) cannot corrupt what we send."""
    private = os.fdopen(os.dup(1), "w", buffering=1, encoding="utf-8")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return private


def serve() -> None:
    """The JSON-lines loop, replies on the private stdout."""
    protocol = private_stdout()
    worker = Worker()
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            msg = json.loads(line)
            reply = {"ok": True, **worker.handle(msg)}
        except Exception as exc:  # report and keep serving: the coordinator decides
            msg = {}
            reply = {"ok": False, "error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()}
        protocol.write(json.dumps(reply) + "\n")
        if msg.get("cmd") == "quit":
            break


def main() -> None:
    if len(sys.argv) == 5 and sys.argv[1] == "prepare":
        _, _, peer, model_dir, work_dir = sys.argv
        out = private_stdout()
        out.write(make_peer(peer).prepare(model_dir, work_dir) + "\n")  # the folder, for the worker
    elif len(sys.argv) == 1:
        serve()
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
