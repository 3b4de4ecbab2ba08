"""A one-minute soak run (edgevlm.scripts.soak): the shipped engine narrates a looping MJPEG
camera with questions and two server kills; fds and threads stay flat and every disconnect
is recovered. The RSS bound is loose here (a 45 s fit cannot resolve 1 MB per 10 minutes:
RSS moves in allocator pages); it catches a gross leak, such as a capture kept per
reconnect. The 1 MB / 10 min bound is for the hour-long run (see the report in the issue)."""

import json
import subprocess
import sys

from edgevlm.scripts.soak import grows, slope_per_10min


def test_slopes_and_growth_are_measured_as_documented():
    times = [0.0, 60.0, 120.0, 180.0]
    assert abs(slope_per_10min(times, [100.0, 100.1, 100.2, 100.3]) - 1.0) < 1e-9  # 0.1 MB/min = 1 MB/10 min
    assert not grows([13, 13, 12, 13, 13, 13])  # a reconnect's short dip or spike is not growth
    assert grows([13, 13, 14, 14, 15, 15])


def test_one_minute_soak_with_disconnects_and_questions_stays_flat():
    result = subprocess.run(
        [sys.executable, "-m", "edgevlm.scripts.soak", "--duration", "60", "--disconnect-every", "20",
         "--question-every", "10", "--sample-every", "3", "--warmup", "15", "--max-rss-slope", "30", "--threads", "1"],
        capture_output=True, text=True, timeout=240, stdin=subprocess.DEVNULL)
    lines = result.stdout.splitlines()
    assert lines and lines[-1].startswith("soak: "), result.stdout[-2000:] + result.stderr[-2000:]
    report = json.loads(lines[-1].removeprefix("soak: "))
    assert result.returncode == 0 and report["ok"], report
    assert sum(line.startswith("sample t=") for line in lines) >= 15
    assert report["disconnects"] == 2 and report["source_lost"] >= 1 and report["source_back"] >= 1
    assert report["questions"] >= 3 and report["captions"] >= 1
    assert not report["fds_grow"] and not report["threads_grow"] and report["error"] is None
