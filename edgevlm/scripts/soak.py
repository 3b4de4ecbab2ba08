"""Soak run: narrate a live camera for a long time, with questions and disconnects, and
check that memory, file descriptors and threads stay flat.

    python -m edgevlm.scripts.soak --duration 3600 [--engine DIR] [--disconnect-every 60]

A camera stand-in (``edgevlm.scripts.mjpeg_server`` serving the shipped street clip in a
loop, in real time) is narrated in this process by the shipped engine, with espeak-ng speech
to WAV files when it is installed (pruned as it goes, so the disk stays flat), a question
("is there a person?") every ``--question-every`` seconds through the narrator's question
path (a pipe, as stdin would be), and the server killed (SIGKILL) every
``--disconnect-every`` seconds and started again ``--downtime`` seconds later. Every
``--sample-every`` seconds it prints this process's RSS (MB), open file descriptors
(/proc/self/fd) and threads (/proc/self/status), then the least-squares slopes after
``--warmup`` seconds: RSS in MB per 10 minutes, fds and threads per 10 minutes. The last
line is ``soak: {json}``. Exit 1 if RSS grows faster than ``--max-rss-slope`` MB per 10
minutes, if fds or threads grow (the median of the last third of the samples above that of
the first third: reconnects make short-lived threads, a slope alone would see them), if a
disconnect was not recovered from, or if narration ended with an error.
"""

from __future__ import annotations

import argparse
import json
import os
import select
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np

from edgevlm.paths import resolve_engine
from edgevlm.runtime.engine import CaptionEngine
from edgevlm.runtime.live_reader import ReconnectSettings
from edgevlm.runtime.narration.pipeline import NarrateOptions, Narrator
from edgevlm.runtime.narration.speech import Speech, find_espeak
from edgevlm.runtime.sources import FrameSource

SAMPLE_VIDEO = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "assets", "samples",
                            "street.mp4")
QUESTION = "is there a person?"
KEEP_WAVS = 5  # WAV files left in the speech folder after each sample
SERVER_START_S = 30.0  # the camera stand-in prints its "serving" line within this, seconds


# --- the process's own resources ------------------------------------------------------------
def _status_field(name: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(name + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {name}")


def sample() -> dict:
    """RSS in MB, open file descriptors and OS threads of this process, now."""
    return {"rss_mb": round(_status_field("VmRSS") / 1024, 2), "fds": len(os.listdir("/proc/self/fd")),
            "threads": _status_field("Threads")}


def slope_per_10min(times: list[float], values: list[float]) -> float:
    """Least-squares slope of ``values`` over ``times`` (seconds), per 10 minutes."""
    if len(times) < 3:
        return 0.0
    return float(np.polyfit(np.asarray(times), np.asarray(values, dtype=float), 1)[0] * 600.0)


def grows(values: list[float]) -> bool:
    """A count grows when the median of its last third is above that of its first third."""
    third = len(values) // 3
    return third > 0 and float(np.median(values[-third:])) > float(np.median(values[:third]))


# --- the camera stand-in ----------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class CameraServer:
    """The MJPEG server subprocess; ``kill`` and ``start`` again on the same port."""

    def __init__(self, port: int, video: str):
        self.port, self.video = port, video
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        self.process = subprocess.Popen([sys.executable, "-m", "edgevlm.scripts.mjpeg_server", "--port", str(self.port),
                                         "--video", self.video], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                        text=True)
        ready, _, _ = select.select([self.process.stdout], [], [], SERVER_START_S)
        line = self.process.stdout.readline() if ready else ""
        self.process.stdout.close()
        if not line.startswith("serving "):
            self.kill()
            raise RuntimeError(f"the MJPEG server did not start within {SERVER_START_S:.0f} s")

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
        if self.process is not None:
            self.process.wait()
            self.process = None


# --- the run ------------------------------------------------------------------------------------
def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, required=True, help="seconds to run")
    parser.add_argument("--engine", default=None, help="engine folder (default: the shipped engine)")
    parser.add_argument("--video", default=SAMPLE_VIDEO, help="video the camera stand-in loops")
    parser.add_argument("--question-every", type=float, default=20.0, help="seconds between questions")
    parser.add_argument("--disconnect-every", type=float, default=60.0, help="seconds between server kills (0: never)")
    parser.add_argument("--downtime", type=float, default=3.0, help="seconds the server stays down")
    parser.add_argument("--sample-every", type=float, default=5.0, help="seconds between resource samples")
    parser.add_argument("--warmup", type=float, default=None,
                        help="seconds left out of the slopes (default: a quarter of the run, at most 300)")
    parser.add_argument("--max-rss-slope", type=float, default=1.0, help="RSS growth allowed, MB per 10 minutes")
    parser.add_argument("--threads", type=int, default=None, help="onnxruntime intra-op threads")
    args = parser.parse_args(argv)
    if args.warmup is None:
        args.warmup = min(300.0, args.duration / 4)
    return args


def _disconnects(server: CameraServer, every: float, downtime: float, stop: threading.Event, log: list) -> None:
    """Kill the server every ``every`` seconds, start it again ``downtime`` seconds later (a
    failed restart is retried: the soak measures the narrator, not this helper)."""
    while not stop.wait(every):
        server.kill()
        log.append(time.monotonic())
        if stop.wait(downtime):
            return
        while not stop.is_set():
            try:
                server.start()
                break
            except RuntimeError as exc:
                print(f"note: {exc}; retrying", flush=True)
                stop.wait(1.0)


def _questions(write_fd: int, every: float, stop: threading.Event) -> None:
    while not stop.wait(every):
        os.write(write_fd, (QUESTION + "\n").encode())


def _prune_wavs(folder: str) -> None:
    """Keep the newest few WAV files: the disk stays flat however long the run."""
    wavs = sorted((n for n in os.listdir(folder) if n.endswith(".wav")),
                  key=lambda n: os.path.getmtime(os.path.join(folder, n)))
    for name in wavs[:-KEEP_WAVS]:
        try:
            os.remove(os.path.join(folder, name))
        except FileNotFoundError:  # the speech thread may be replacing it
            pass


def run(args: argparse.Namespace) -> dict:
    port = _free_port()
    server = CameraServer(port, args.video)
    server.start()
    workdir = tempfile.mkdtemp(prefix="edgevlm-soak-")
    wavs = os.path.join(workdir, "wav")
    speech = Speech(play=False, notify=lambda m: print(f"note: {m}", flush=True)) if find_espeak() else None
    options = NarrateOptions(audio_out=wavs if speech else None, events=os.path.join(workdir, "events.jsonl"))
    engine = CaptionEngine(resolve_engine(args.engine), "cpu", args.threads)
    read_fd, write_fd = os.pipe()
    stop = threading.Event()
    kills: list[float] = []
    samples: list[dict] = []
    outcome: dict = {}
    started = time.monotonic()
    lines = {"narration": 0}

    def on_line(line: str) -> None:
        lines["narration"] += 1

    with FrameSource(f"http://127.0.0.1:{port}/", read_timeout=2.0,
                     reconnect=ReconnectSettings(interval=0.5, max_interval=2.0)) as source, \
            os.fdopen(read_fd, "r") as questions:
        narrator = Narrator(engine, source, options, speech, on_line=on_line, questions=questions,
                            on_warning=lambda line: print(line, flush=True))

        def narrate() -> None:
            try:
                outcome["summary"] = narrator.run()
            except Exception as exc:  # reported in the result: the soak fails on it
                outcome["error"] = f"{type(exc).__name__}: {exc}"

        helpers = [threading.Thread(target=narrate, name="soak-narrator", daemon=True),
                   threading.Thread(target=_questions, args=(write_fd, args.question_every, stop), daemon=True)]
        if args.disconnect_every > 0:
            helpers.append(threading.Thread(target=_disconnects, daemon=True,
                                            args=(server, args.disconnect_every, args.downtime, stop, kills)))
        for thread in helpers:
            thread.start()
        try:
            while time.monotonic() - started < args.duration and helpers[0].is_alive():
                time.sleep(min(args.sample_every, max(0.0, args.duration - (time.monotonic() - started))))
                if speech:
                    _prune_wavs(wavs)
                point = {"t": round(time.monotonic() - started, 1), **sample()}
                stats = source.stats()
                point.update(lost=stats.source_lost, back=stats.source_back, captions=narrator.captions,
                             questions=narrator.answered)
                samples.append(point)
                print("sample " + " ".join(f"{k}={v}" for k, v in point.items()), flush=True)
        finally:
            stop.set()
            narrator.stop()
            helpers[0].join(timeout=30)
            os.close(write_fd)
            server.kill()
            shutil.rmtree(workdir, ignore_errors=True)
    return _result(args, samples, kills, outcome, lines["narration"])


def _result(args, samples: list[dict], kills: list[float], outcome: dict, narration_lines: int) -> dict:
    steady = [s for s in samples if s["t"] >= args.warmup]
    times = [s["t"] for s in steady]
    summary = outcome.get("summary", {})
    result = {
        "duration_s": args.duration, "warmup_s": args.warmup, "samples": len(samples), "steady_samples": len(steady),
        "rss_mb_first": steady[0]["rss_mb"] if steady else None,
        "rss_mb_last": steady[-1]["rss_mb"] if steady else None,
        "rss_mb_per_10min": round(slope_per_10min(times, [s["rss_mb"] for s in steady]), 3),
        "fds_per_10min": round(slope_per_10min(times, [s["fds"] for s in steady]), 3),
        "threads_per_10min": round(slope_per_10min(times, [s["threads"] for s in steady]), 3),
        "fds_grow": grows([s["fds"] for s in steady]), "threads_grow": grows([s["threads"] for s in steady]),
        "disconnects": len(kills), "source_lost": summary.get("source_lost"), "source_back": summary.get("source_back"),
        "captions": summary.get("captions"), "questions": summary.get("questions"),
        "narration_lines": narration_lines, "error": outcome.get("error"),
    }
    problems = []
    if result["rss_mb_per_10min"] > args.max_rss_slope:
        problems.append(f"RSS grows {result['rss_mb_per_10min']} MB/10 min (> {args.max_rss_slope})")
    if result["fds_grow"]:
        problems.append("open file descriptors grow")
    if result["threads_grow"]:
        problems.append("threads grow")
    if result["error"]:
        problems.append(f"narration ended with {result['error']}")
    # The last kill may be too close to the end to have come back: one outage may remain.
    if kills and (summary.get("source_back") or 0) < len(kills) - 1:
        problems.append(f"{len(kills)} disconnects, only {summary.get('source_back')} recoveries")
    if len(steady) < 3:
        problems.append("too few samples after the warm-up to fit a slope")
    result["problems"] = problems
    result["ok"] = not problems
    return result


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    result = run(args)
    print("soak: " + json.dumps(result), flush=True)
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
