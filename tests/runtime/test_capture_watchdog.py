"""The watchdog at process level: ``edgevlm narrate`` on a live source whose read never
returns (a wedged driver; OpenCV cannot cancel it) ends with one error line and exit code 1
within the watchdog's bound, instead of hanging. The capture is a fake injected into the
narrate process (a real wedge cannot be made on demand); everything else is the real CLI."""

import subprocess
import sys
import time

WEDGED_NARRATE = r"""
import sys, threading
import numpy as np
import edgevlm.runtime.sources as sources

class Wedged:
    def __init__(self): self.reads = 0
    def isOpened(self): return True
    def get(self, prop): return 10.0
    def read(self):
        self.reads += 1
        if self.reads <= 3:
            return True, np.full((48, 64, 3), 90, np.uint8)
        threading.Event().wait()  # never returns, like a read stuck in a driver
    def release(self): pass

sources._open_capture = lambda *args: Wedged()
sources._capture_opener = lambda *args: Wedged
init = sources.FrameSource.__init__
def quick_watchdog(self, *args, **kwargs):
    init(self, *args, **kwargs)
    self.stuck_after = 2.0  # the default is at least 30 s
sources.FrameSource.__init__ = quick_watchdog

from edgevlm.cli.main import main
sys.argv = ["edgevlm", "narrate", "http://127.0.0.1:9/cam", "--engine", sys.argv[1], "--tts", "none",
            "--no-questions", "--read-timeout", "0.5"]
main()
"""


def test_a_read_that_never_returns_ends_narrate_with_one_line(tiny_engine_master):
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-c", WEDGED_NARRATE, tiny_engine_master], capture_output=True,
                            text=True, timeout=90, stdin=subprocess.DEVNULL)
    assert result.returncode == 1, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert errors == [line for line in result.stderr.splitlines() if not line.startswith("note: ")]
    assert len(errors) == 1 and "capture of http://127.0.0.1:9/cam is stuck: a read has not returned" in errors[0]
    assert "camera disconnected, reconnecting" in result.stdout  # the stall was said before the watchdog fired
    assert time.monotonic() - started < 60
