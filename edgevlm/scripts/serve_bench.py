"""Measure ``edgevlm serve`` under load: the plain server against Ray Serve, side by side.

    python -m edgevlm.scripts.serve_bench [--seconds 10] [--clients 1,2,4] [--rounds 1]
        [--configs workers1,workers2,ray1,ray2] [--threads N] [--json]

Each configuration is the real command (``edgevlm serve --workers N`` or ``edgevlm serve --ray
--replicas N``) started in its own process on 127.0.0.1; this process is the client (httpx,
one asyncio loop). Per configuration and number of concurrent clients: each client posts the
shipped sample photos (edgevlm/assets/samples/*.jpg, in turn) to /v1/caption back to back for
``--seconds`` s after a short untimed warm-up. Reported: captions per second (requests
answered 200 per second), p50/p90 latency in ms (request sent -> JSON read, as a client sees
it), 503s, and how busy other processes kept the cores meanwhile ("others %": figures taken
beside a browser or a test run are not the server's alone). Then the ratios: more engines against one (at the most clients), and Ray's
overhead per request (its p50 minus the plain server's at 1 client, same number of engines).
With ``--rounds R`` every configuration is measured R times, the order rotated each round (so
drift in the machine lands on all alike), and each cell reports its fastest round (most
captions per second: other work on the machine only ever slows a round down; every round's
figures are kept in the JSON).

Mind the machine: the client, the HTTP server and every engine share its cores, so on 2 cores
a second engine (or replica) competes with the first for the same cores.
"""

from __future__ import annotations

import argparse
import asyncio
import glob
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import time

import httpx

from edgevlm.paths import sample_images_dir

START_WAIT_S = 240.0  # a server (a local Ray and its replicas) must answer /healthz by then
WARMUP_PER_CLIENT = 2  # untimed requests per client first (first-run allocations, caches)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _command(config: str, port: int, threads: int | None) -> list[str]:
    """workersN -> edgevlm serve --workers N; rayN -> edgevlm serve --ray --replicas N."""
    base = [sys.executable, "-m", "edgevlm.cli.main", "serve", "--port", str(port)]
    if threads:
        base += ["--threads", str(threads)]
    if config.startswith("workers"):
        return base + ["--workers", config[len("workers"):]]
    if config.startswith("ray"):
        return base + ["--ray", "--replicas", config[len("ray"):]]
    raise SystemExit(f"unknown configuration {config}: give workersN or rayN")


class Server:
    """One ``edgevlm serve`` process; its output goes to a log file, shown if it fails."""

    def __init__(self, config: str, threads: int | None):
        self.port = _free_port()
        self.log = tempfile.NamedTemporaryFile("w+", prefix=f"serve-bench-{config}-", suffix=".log", delete=False)
        self.process = subprocess.Popen(_command(config, self.port, threads), stdout=self.log,
                                        stderr=subprocess.STDOUT, start_new_session=True)
        self.url = f"http://127.0.0.1:{self.port}"

    def wait_ready(self) -> float:
        """Seconds until /healthz answers."""
        started = time.perf_counter()
        while time.perf_counter() - started < START_WAIT_S:
            if self.process.poll() is not None:
                raise SystemExit(f"the server exited ({self.process.returncode}); its log: {self.log.name}")
            try:
                if httpx.get(self.url + "/healthz", timeout=2).status_code == 200:
                    return time.perf_counter() - started
            except httpx.HTTPError:
                pass
            time.sleep(0.25)
        raise SystemExit(f"the server did not answer in {START_WAIT_S:.0f} s; its log: {self.log.name}")

    def stop(self) -> None:
        """ctrl-C, as a user would: the app closes its service (and a local Ray) on the way out."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(90)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self.log.close()
        os.unlink(self.log.name)


def _busy_seconds() -> float | None:
    """CPU seconds all processes have been busy since boot (/proc/stat: user..softirq, not
    idle, iowait or steal); None off Linux."""
    try:
        with open("/proc/stat") as f:
            fields = [int(v) for v in f.readline().split()[1:8]]
    except (OSError, ValueError):
        return None
    user, nice, system, _idle, _iowait, irq, softirq = fields
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")


def _tree_seconds(roots: list[int]) -> float:
    """CPU seconds used by the living processes under ``roots`` (them included)."""
    parents, used = {}, {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:  # it ended meanwhile
            continue
        parents[int(entry)] = int(fields[1])
        used[int(entry)] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    ours = set(roots)
    for _ in range(32):  # descendants, level by level (Ray's processes sit a few levels down)
        ours |= {pid for pid, parent in parents.items() if parent in ours}
    return sum(used.get(pid, 0.0) for pid in ours)


class CpuShare:
    """How busy the machine was with *other* work while a cell ran: share of all cores used by
    processes outside this benchmark and its server (a browser, a test run, ...): figures
    measured beside others' load are not this server's alone."""

    def __init__(self, roots: list[int]):
        self.roots = roots
        self.start = (time.perf_counter(), _busy_seconds(), _tree_seconds(roots))

    def others(self) -> float | None:
        wall0, busy0, ours0 = self.start
        busy1 = _busy_seconds()
        if busy0 is None or busy1 is None:
            return None
        wall = time.perf_counter() - wall0
        return max(0.0, (busy1 - busy0) - (_tree_seconds(self.roots) - ours0)) / (wall * (os.cpu_count() or 1))


async def measure(url: str, photos: list[bytes], clients: int, seconds: float, roots: list[int] = ()) -> dict:
    """``clients`` concurrent clients posting photos back to back for ``seconds`` s."""
    latencies: list[float] = []
    statuses: dict[int, int] = {}

    async def client(index: int, client_http: httpx.AsyncClient, deadline: float | None, count: int | None):
        sent = 0
        while (deadline is None or time.perf_counter() < deadline) and (count is None or sent < count):
            photo = photos[(index + sent) % len(photos)]
            started = time.perf_counter()
            response = await client_http.post(url + "/v1/caption", files={"image": ("photo.jpg", photo, "image/jpeg")})
            elapsed = time.perf_counter() - started
            sent += 1
            if deadline is not None:
                statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
                if response.status_code == 200:
                    latencies.append(elapsed)
            if response.status_code == 503:  # Busy: back off as Retry-After says, as a client should
                await asyncio.sleep(float(response.headers.get("Retry-After", "1")))

    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(timeout=120, limits=limits) as client_http:
        await asyncio.gather(*(client(i, client_http, None, WARMUP_PER_CLIENT) for i in range(clients)))
        share = CpuShare([os.getpid(), *roots])
        started = time.perf_counter()
        await asyncio.gather(*(client(i, client_http, started + seconds, None) for i in range(clients)))
        elapsed = time.perf_counter() - started
        others = share.others()
    latencies.sort()
    ok = statuses.get(200, 0)
    return {"clients": clients, "seconds": round(elapsed, 2), "answered": ok,
            "captions_per_s": round(ok / elapsed, 2),
            "p50_ms": round(_percentile(latencies, 50) * 1000, 1) if latencies else None,
            "p90_ms": round(_percentile(latencies, 90) * 1000, 1) if latencies else None,
            "busy_503": statuses.get(503, 0),
            "other_errors": sum(n for status, n in statuses.items() if status not in (200, 503)),
            "others_cpu_pct": None if others is None else round(100 * others, 1)}


def _percentile(sorted_values: list[float], q: float) -> float:
    """Linear interpolation between the closest ranks (numpy's default)."""
    position = (len(sorted_values) - 1) * q / 100
    low = int(position)
    high = min(low + 1, len(sorted_values) - 1)
    return sorted_values[low] + (sorted_values[high] - sorted_values[low]) * (position - low)


def ratios(results: dict[str, dict]) -> list[tuple[str, float, str]]:
    """(name, value, unit) comparisons between configurations measured."""
    out = []

    def cell(config: str, clients: int) -> dict | None:
        return next((r for r in results.get(config, {}).get("runs", []) if r["clients"] == clients), None)

    most = max((r["clients"] for result in results.values() for r in result["runs"]), default=1)
    for kind in ("workers", "ray"):
        one, two = cell(f"{kind}1", most), cell(f"{kind}2", most)
        if one and two and one["captions_per_s"]:
            out.append((f"{kind}2 / {kind}1 captions/s at {most} clients", two["captions_per_s"] / one["captions_per_s"], "x"))
    for engines in (1, 2):
        plain, ray = cell(f"workers{engines}", 1), cell(f"ray{engines}", 1)
        if plain and ray and plain["p50_ms"] and ray["p50_ms"]:
            out.append((f"Ray overhead per request, {engines} engine(s), 1 client (p50 ray{engines} - workers{engines})",
                        ray["p50_ms"] - plain["p50_ms"], "ms"))
        plain, ray = cell(f"workers{engines}", most), cell(f"ray{engines}", most)
        if plain and ray and plain["captions_per_s"]:
            out.append((f"ray{engines} / workers{engines} captions/s at {most} clients",
                        ray["captions_per_s"] / plain["captions_per_s"], "x"))
    return out


def _cpu() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            model = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "")
    except OSError:
        model = platform.processor()
    return f"{model or 'unknown CPU'}, {os.cpu_count()} logical cores"


def print_table(results: dict[str, dict]) -> None:
    print(f"CPU: {_cpu()}")
    print(f"{'server':<10} {'start s':>8} {'clients':>7} {'captions/s':>10} {'p50 ms':>8} {'p90 ms':>8} {'503s':>5} "
          f"{'errors':>6} {'others %':>8}")
    for config, result in results.items():
        for run in result["runs"]:
            others = run.get("others_cpu_pct")
            print(f"{config:<10} {result['start_s']:>8.1f} {run['clients']:>7} {run['captions_per_s']:>10.2f} "
                  f"{run['p50_ms'] or float('nan'):>8.1f} {run['p90_ms'] or float('nan'):>8.1f} "
                  f"{run['busy_503']:>5} {run['other_errors']:>6} {'-' if others is None else f'{others:.0f}':>8}")
    print("(others %: share of all cores used meanwhile by processes outside this benchmark and its server)")
    print()
    for name, value, unit in ratios(results):
        print(f"{name}: {value:+.1f} {unit}" if unit == "ms" else f"{name}: {value:.2f}{unit}")


def run_config(config: str, threads: int | None, photos: list[bytes], clients: list[int], seconds: float) -> dict:
    """Start the server, measure each number of clients, stop it."""
    print(f"{config}: starting edgevlm serve ...", file=sys.stderr, flush=True)
    server = Server(config, threads)
    try:
        start_s = server.wait_ready()
        runs = []
        for count in clients:
            runs.append(asyncio.run(measure(server.url, photos, count, seconds, [server.process.pid])))
            print(f"{config}: {count} client(s): {runs[-1]}", file=sys.stderr, flush=True)
        return {"start_s": round(start_s, 1), "runs": runs}
    finally:
        server.stop()


def _fastest(runs: list[dict]) -> dict:
    """The round with the most captions per second."""
    return max(runs, key=lambda run: run["captions_per_s"])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="timed seconds per cell")
    parser.add_argument("--clients", default="1,2,4", help="concurrent clients, comma-separated")
    parser.add_argument("--configs", default="workers1,workers2,ray1,ray2",
                        help="workersN (plain server) and rayN (Ray Serve, N replicas), comma-separated")
    parser.add_argument("--rounds", type=int, default=1, help="measure every configuration this many times")
    parser.add_argument("--threads", type=int, default=None, help="onnxruntime threads per engine (default: the server's)")
    parser.add_argument("--json", action="store_true", help="print the results as one JSON object instead of a table")
    args = parser.parse_args(argv)
    photos = [open(path, "rb").read() for path in sorted(glob.glob(os.path.join(sample_images_dir(), "*.jpg")))]
    clients = [int(c) for c in args.clients.split(",")]
    configs = args.configs.split(",")
    rounds: dict[str, list[dict]] = {config: [] for config in configs}
    for r in range(args.rounds):
        for config in configs[r % len(configs):] + configs[:r % len(configs)]:
            rounds[config].append(run_config(config, args.threads, photos, clients, args.seconds))
    results = {config: {"start_s": min(one["start_s"] for one in runs),
                        "runs": [_fastest([one["runs"][i] for one in runs]) for i in range(len(clients))],
                        "rounds": runs}
               for config, runs in rounds.items()}
    if args.json:
        print(json.dumps({"cpu": _cpu(), "seconds": args.seconds, "rounds": args.rounds, "threads": args.threads,
                          "results": results,
                          "ratios": [{"name": n, "value": round(v, 3), "unit": u} for n, v, u in ratios(results)]},
                         indent=2))
    else:
        print_table(results)


if __name__ == "__main__":
    main()
