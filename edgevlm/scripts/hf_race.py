"""Side-by-side speed race of captioning runtimes on one HF VisionEncoderDecoder checkpoint.

    python -m edgevlm.scripts.hf_race --model MODEL_DIR --images IMG [IMG ...] --rounds N \\
        --peer transformers=.venv/bin/python \\
        --peer optimum-fp32=/work/runs/optimum-venv/bin/python \\
        --peer optimum-int8=/work/runs/optimum-venv/bin/python \\
        [--threads 2] [--work-dir runs/hf-race] [--vs optimum-int8 --vs optimum-fp32] [--json OUT]

Each peer is a worker process (edgevlm/scripts/race_peer.py) started with the python named
after ``=``, so peers needing different library versions race in one run. The workers are
loaded one at a time (export/quantize first when not cached, then load, then one untimed
warm-up caption), so no two loads overlap in memory. Then ``--rounds`` interleaved rounds:
in round r every peer captions every image once, the peer order rotated by r, so drift in
the machine (other jobs, thermal, page cache) lands on every peer alike.

Per caption the time is image path -> 20 generated ids inside the worker (JPEG decode,
ViTImageProcessor, vision, 20 greedy tokens: race_peer.py says exactly). The table gives
per peer: p50 and p90 ms per caption, load and prepare seconds, RSS after load and peak RSS
(VmHWM) at the end, engine size on disk, speed relative to each ``--vs`` peer (their p50 /
this p50: 2.0x = twice as fast), and whether its ids equal the ``--reference`` peer's for
every image (random-init FP32 peers should agree; INT8 may not). It also prints the CPU
and the decode floor from ``floor_ms``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field

import numpy as np

from edgevlm.errors import EdgeVLMError
from edgevlm.fileio import write_json

PEER_SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "race_peer.py")
NEW_TOKENS = 20  # race_peer.NEW_TOKENS (not imported: the coordinator must not need the peers' libraries)
ISA_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_tile", "amx_int8", "amx_bf16")


# --- the machine -------------------------------------------------------------------------------
def cpu_info() -> dict:
    """CPU model, logical CPUs, and which of the instruction sets that matter for INT8/FP32
    GEMMs /proc/cpuinfo lists."""
    model, flags = "unknown", set()
    with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
        for line in f:
            key, _, value = line.partition(":")
            key = key.strip()
            if key == "model name" and model == "unknown":
                model = value.strip()
            elif key == "flags" and not flags:
                flags = set(value.split())
    return {"model": model, "cpus": os.cpu_count(), "isa": {flag: flag in flags for flag in ISA_FLAGS}}


def copy_bandwidth_gbs(threads: int, mib: int = 256, repeats: int = 7) -> float:
    """Sustained memory bandwidth, STREAM-"Copy" style, in GB/s (1e9 bytes), with ``threads``
    Python threads each copying its own slice of a ``mib`` MiB float32 array into a second
    one with np.copyto (which releases the GIL for plain dtypes, so the copies run in
    parallel like a runtime's intra-op threads). Both arrays are 8x a 32 MiB L3 and are
    touched before timing (no page faults inside). Bytes counted per copy: read + write
    (2x the array), STREAM's convention, which ignores write-allocate traffic. The best of
    ``repeats`` is taken, as STREAM does: a floor wants what the memory can do."""
    n = mib * (1 << 20) // 4
    src = np.ones(n, np.float32)
    dst = np.zeros(n, np.float32)
    bounds = np.linspace(0, n, threads + 1).astype(int)
    slices = [(src[a:b], dst[a:b]) for a, b in zip(bounds[:-1], bounds[1:])]
    best = float("inf")
    for _ in range(repeats):
        barrier = threading.Barrier(threads + 1)

        def copy(pair):
            barrier.wait()
            np.copyto(pair[1], pair[0])

        workers = [threading.Thread(target=copy, args=(pair,)) for pair in slices]
        for w in workers:
            w.start()
        barrier.wait()
        start = time.perf_counter()
        for w in workers:
            w.join()
        best = min(best, time.perf_counter() - start)
    return 2 * src.nbytes / best / 1e9


def best_bandwidth_gbs(threads: int) -> tuple[float, int]:
    """The best copy bandwidth with 1..``threads`` threads, and the count that got it. A
    runtime with ``threads`` threads can always do at least what fewer threads do, and on a
    machine shared with other jobs a 2-thread copy waits for its slower, descheduled half
    (measured here: 1 thread 13-14 GB/s, 2 threads 5-9 GB/s under a load of 4 on 2 cores)."""
    results = [(copy_bandwidth_gbs(t), t) for t in range(1, threads + 1)]
    return max(results)


def decoder_bytes_per_token(model_dir: str, weight_bytes: float) -> dict:
    """Bytes one GPT-2-style decoder step with a KV cache must read, from config.json.

    Per layer: self-attention qkv (d x 3d) and out (d x d); cross-attention query and out
    (d x d each; its key/value projections of the image run once per image, not per token);
    MLP (d x 4d, 4d x d). Plus the LM head (d x vocab, GPT-2's tied embedding). Those are
    weights at ``weight_bytes`` each (4 fp32, 1 int8). The cached cross K/V of the image
    tokens is read every step at fp32 (activations stay fp32 in dynamic INT8), as is the
    self-attention cache (its mean length over 20 steps). Biases, layer norms and the one
    embedding row are below 0.1% and left out."""
    with open(os.path.join(model_dir, "config.json"), encoding="utf-8") as f:
        config = json.load(f)
    dec, enc = config["decoder"], config["encoder"]
    d, layers, vocab = dec["n_embd"], dec["n_layer"], dec["vocab_size"]
    inner = dec.get("n_inner") or 4 * d
    image_tokens = (enc["image_size"] // enc["patch_size"]) ** 2 + 1  # patches + [CLS]
    per_layer = 3 * d * d + d * d + 2 * d * d + 2 * d * inner
    weights = (layers * per_layer + d * vocab) * weight_bytes
    cross_kv = layers * 2 * image_tokens * d * 4
    self_kv = layers * 2 * (NEW_TOKENS + 1) / 2 * d * 4
    return {"weights": weights, "cross_kv": cross_kv, "self_kv": self_kv, "total": weights + cross_kv + self_kv}


def floor_ms(model_dir: str, threads: int = 2) -> dict:
    """The machine's decode floor: the least time 20 tokens can take when every step must
    stream its weights and caches from memory (decoder_bytes_per_token) at the measured copy
    bandwidth (best_bandwidth_gbs). A first estimate, for someone to refine: it leaves out
    the vision encoder (compute-bound, not bandwidth-bound) and all compute, and copy
    bandwidth is a little below pure-read bandwidth, so the true floor is a bit lower."""
    bandwidth, used = best_bandwidth_gbs(threads)
    out = {"bandwidth_gbs": bandwidth, "threads": used, "tokens": NEW_TOKENS}
    for name, weight_bytes in (("fp32", 4), ("int8", 1)):
        per_token = decoder_bytes_per_token(model_dir, weight_bytes)
        out[name] = {"bytes_per_token": per_token, "ms": NEW_TOKENS * per_token["total"] / (bandwidth * 1e9) * 1e3}
    return out


# --- peers --------------------------------------------------------------------------------------
@dataclass
class PeerProcess:
    """One race_peer.py worker: its process, what its load said, its timings and ids."""

    name: str
    python: str
    log_path: str
    proc: subprocess.Popen | None = None
    loaded: dict = field(default_factory=dict)
    warmup_ms: float = 0.0
    ms: list = field(default_factory=list)
    ids: dict = field(default_factory=dict)  # image -> list of id lists, one per round
    peak_rss_mb: float | None = None

    def start(self, threads: int) -> None:
        env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads),
                   HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
        with open(self.log_path, "w", encoding="utf-8") as log:  # the child keeps its own descriptor
            try:
                self.proc = subprocess.Popen([self.python, PEER_SCRIPT], stdin=subprocess.PIPE,
                                             stdout=subprocess.PIPE, stderr=log, text=True, bufsize=1, env=env)
            except OSError as exc:
                raise EdgeVLMError(f"peer {self.name}: cannot start {self.python}: {exc}") from None

    def ask(self, msg: dict) -> dict:
        """Send one command, wait for its reply; a failure or a dead worker is an error that
        quotes the end of the worker's log."""
        try:
            self.proc.stdin.write(json.dumps(msg) + "\n")
            self.proc.stdin.flush()
            line = self.proc.stdout.readline()
        except BrokenPipeError:  # the worker died before reading: its log says why
            line = ""
            self.proc.wait()
        reply = json.loads(line) if line else {"ok": False, "error": f"worker exited ({self.proc.poll()})"}
        if not reply.get("ok"):
            raise EdgeVLMError(f"peer {self.name}: {msg['cmd']} failed: {reply.get('error')}\n"
                               f"{reply.get('traceback', '')}--- end of {self.log_path}:\n{self.log_tail()}")
        return reply

    def log_tail(self, lines: int = 15) -> str:
        with open(self.log_path, encoding="utf-8", errors="replace") as f:
            return "".join(f.readlines()[-lines:])

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            self.peak_rss_mb = self.ask({"cmd": "quit"})["peak_rss_mb"]
            self.proc.wait(timeout=60)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()


def parse_peer(spec: str) -> tuple[str, str]:
    name, sep, python = spec.partition("=")
    if not sep or not name or not python:
        raise argparse.ArgumentTypeError(f"--peer wants NAME=PYTHON, got {spec!r}")
    return name, python


# --- the race -------------------------------------------------------------------------------------
def load_all(peers: list[PeerProcess], args) -> None:
    """One at a time: start, load (the worker exports/quantizes first when not cached), warm up."""
    for peer in peers:
        print(f"loading {peer.name} ({peer.python}) ...", file=sys.stderr, flush=True)
        peer.start(args.threads)
        peer.loaded = peer.ask({"cmd": "load", "peer": peer.name, "model_dir": args.model,
                                "work_dir": args.work_dir, "threads": args.threads})
        peer.warmup_ms = peer.ask({"cmd": "caption", "image": args.images[0]})["ms"]
        print(f"  {peer.name}: prepare {peer.loaded['prepare_s']:.1f} s, load {peer.loaded['load_s']:.1f} s, "
              f"warm-up caption {peer.warmup_ms:.0f} ms", file=sys.stderr, flush=True)


def run_rounds(peers: list[PeerProcess], images: list[str], rounds: int) -> None:
    for r in range(rounds):
        order = peers[r % len(peers):] + peers[:r % len(peers)]
        for peer in order:
            for image in images:
                reply = peer.ask({"cmd": "caption", "image": image})
                peer.ms.append(reply["ms"])
                peer.ids.setdefault(image, []).append(reply["ids"])
        print(f"round {r + 1}/{rounds}: " + ", ".join(f"{p.name} {np.median(p.ms[-len(images):]):.0f} ms"
                                                      for p in order), file=sys.stderr, flush=True)


def agreement(peer: PeerProcess, reference: PeerProcess | None, images: list[str]) -> str:
    """'same' / 'k/n same, first diff at token t' (t counted from 1) against the reference's first-round ids;
    '(unstable)' when the peer's own ids changed between rounds."""
    if reference is None:
        return "-"
    same, first_diff = 0, None
    for image in images:
        mine, theirs = peer.ids[image][0], reference.ids[image][0]
        if mine == theirs:
            same += 1
        else:
            at = next((i for i, (a, b) in enumerate(zip(mine, theirs), 1) if a != b), len(mine))  # 1-based
            first_diff = at if first_diff is None else min(first_diff, at)
    text = "same" if same == len(images) else f"{same}/{len(images)} same, first diff at token {first_diff}"
    if any(any(ids != runs[0] for ids in runs) for runs in peer.ids.values()):
        text += " (unstable)"
    return text


def summarise(peers: list[PeerProcess], images: list[str], reference: str, vs: list[str]) -> list[dict]:
    by_name = {p.name: p for p in peers}
    p50 = {p.name: float(np.percentile(p.ms, 50)) for p in peers}
    rows = []
    for peer in peers:
        row = {"peer": peer.name, "p50_ms": p50[peer.name], "p90_ms": float(np.percentile(peer.ms, 90)),
               "warmup_ms": peer.warmup_ms, "captions": len(peer.ms),
               "load_s": peer.loaded["load_s"], "prepare_s": peer.loaded["prepare_s"],
               "rss_mb": peer.loaded["rss_mb"], "peak_rss_mb": peer.peak_rss_mb,
               "engine_mb": peer.loaded["engine_bytes"] / 2**20,
               "speed_vs": {other: p50[other] / p50[peer.name] for other in vs if other in p50},
               "ids_vs_reference": agreement(peer, by_name.get(reference), images),
               "ids": {image: runs[0] for image, runs in peer.ids.items()},
               "load": peer.loaded}
        rows.append(row)
    return rows


def print_report(cpu: dict, floor: dict | None, rows: list[dict], args, load: dict) -> None:
    isa = " ".join(f"{flag}{'+' if on else '-'}" for flag, on in cpu["isa"].items())
    print(f"CPU: {cpu['model']}, {cpu['cpus']} logical CPUs; {isa}")
    print(f"load average (1 min) before loading {load['before']:.1f}, after the rounds {load['after']:.1f}: "
          f"other jobs on these {cpu['cpus']} CPUs share them with the peers and slow them all")
    print(f"race: {len(args.images)} image(s) x {args.rounds} round(s), {args.threads} thread(s) per peer, "
          f"{NEW_TOKENS} forced greedy tokens; time = image path -> ids (decode, preprocess, vision, decode steps)")
    if floor:
        print(f"decode floor ({NEW_TOKENS} tokens at {floor['bandwidth_gbs']:.1f} GB/s copy bandwidth, "
              f"{floor['threads']} thread(s)): fp32 {floor['fp32']['ms']:.0f} ms "
              f"({floor['fp32']['bytes_per_token']['total'] / 1e6:.0f} MB/token), int8 {floor['int8']['ms']:.0f} ms "
              f"({floor['int8']['bytes_per_token']['total'] / 1e6:.0f} MB/token); vision encoder not included")
    vs = [name for name in args.vs if any(r["peer"] == name for r in rows)]
    header = ["peer", "p50 ms", "p90 ms", "warm-up ms", "load s", "prep s", "RSS MB", "peak MB", "engine MB"]
    header += [f"vs {name}" for name in vs] + [f"ids vs {args.reference}"]
    table = [header]
    for r in rows:
        peak = f"{r['peak_rss_mb']:.0f}" if r["peak_rss_mb"] is not None else "?"
        table.append([r["peer"], f"{r['p50_ms']:.0f}", f"{r['p90_ms']:.0f}", f"{r['warmup_ms']:.0f}",
                      f"{r['load_s']:.1f}", f"{r['prepare_s']:.0f}", f"{r['rss_mb']:.0f}", peak,
                      f"{r['engine_mb']:.0f}"]
                     + [f"{r['speed_vs'][name]:.2f}x" for name in vs] + [r["ids_vs_reference"]])
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    for row in table:
        print("  ".join(cell.ljust(w) if i in (0, len(row) - 1) else cell.rjust(w)
                        for i, (cell, w) in enumerate(zip(row, widths))))
    print("vs X = X's p50 / this p50 (above 1: this peer is faster); peak = VmHWM of the worker, prepare "
          "(export/quantize) excluded: it runs in a child; engine = weight/graph files the peer loads")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="a VisionEncoderDecoder save_pretrained folder")
    parser.add_argument("--images", nargs="+", required=True)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--peer", type=parse_peer, action="append", required=True, metavar="NAME=PYTHON")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--work-dir", default="runs/hf-race", help="export/quantize cache and worker logs")
    parser.add_argument("--reference", default="transformers", help="the peer whose ids the others are compared to")
    parser.add_argument("--vs", action="append", help="peers to give speed ratios against "
                        "(default: optimum-int8 and optimum-fp32)")
    parser.add_argument("--no-floor", action="store_true", help="skip the bandwidth measurement")
    parser.add_argument("--json", help="write every number, ids and per-caption times here")
    args = parser.parse_args()
    args.vs = args.vs or ["optimum-int8", "optimum-fp32"]
    args.model, args.work_dir = os.path.abspath(args.model), os.path.abspath(args.work_dir)
    args.images = [os.path.abspath(i) for i in args.images]
    for image in args.images:
        if not os.path.isfile(image):
            raise SystemExit(f"no such image: {image}")
    names = [name for name, _ in args.peer]
    if len(set(names)) != len(names):
        raise SystemExit(f"a peer is named twice: {names}")
    os.makedirs(os.path.join(args.work_dir, "logs"), exist_ok=True)

    cpu = cpu_info()
    load = {"before": os.getloadavg()[0]}
    floor = None if args.no_floor else floor_ms(args.model, args.threads)  # before the workers hold memory
    peers = [PeerProcess(name, python, os.path.join(args.work_dir, "logs", f"{name}.log")) for name, python in args.peer]
    try:
        load_all(peers, args)
        run_rounds(peers, args.images, args.rounds)
    except EdgeVLMError as exc:
        raise SystemExit(str(exc)) from None
    finally:
        for peer in peers:
            try:
                peer.stop()
            except EdgeVLMError as exc:
                print(f"warning: {exc}", file=sys.stderr)
    load["after"] = os.getloadavg()[0]
    rows = summarise(peers, args.images, args.reference, args.vs)
    print_report(cpu, floor, rows, args, load)
    if args.json:
        write_json(args.json, {"cpu": cpu, "load_average": load, "floor": floor, "threads": args.threads,
                               "rounds": args.rounds, "images": args.images, "model": args.model, "tokens": NEW_TOKENS,
                               "peers": rows, "samples_ms": {p.name: p.ms for p in peers}})


if __name__ == "__main__":
    main()
