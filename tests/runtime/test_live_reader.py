"""The live reader's reconnect logic with scripted fake captures: loss, backoff, return,
giving up, a stall noticed by the consumer, and the watchdog on a read that never returns."""

import threading
import time

import numpy as np
import pytest

from edgevlm.errors import EdgeVLMError
from edgevlm.runtime.live_reader import LiveReader, ReconnectSettings
from edgevlm.runtime.stream_items import BACK, LOST, Frame, SourceChange
from tests.servers.launch import time_limit

IMAGE = np.zeros((8, 8, 3), np.uint8)


class FakeCapture:
    """Reads follow a script: "frame" (a frame, paced ``period`` s), "eof" (False at once),
    "block" (blocks until ``release``/``unblock``, then False)."""

    def __init__(self, script, period=0.01):
        self.script, self.period = list(script), period
        self.released = False
        self.unblock = threading.Event()

    def isOpened(self):  # noqa: N802 (OpenCV's name)
        return True

    def read(self):
        step = self.script.pop(0) if self.script else "eof"
        if step == "frame":
            time.sleep(self.period)
            return True, IMAGE
        if step == "block":
            self.unblock.wait()
            return False, None
        return False, None

    def release(self):
        self.released = True


class Reopener:
    """Reopen attempts: ``fails`` attempts that do not open, then ``capture``."""

    def __init__(self, fails, capture):
        self.fails, self.capture, self.calls = fails, capture, []

    def __call__(self):
        self.calls.append(time.monotonic())
        if len(self.calls) <= self.fails:
            return None  # as a capture that did not open
        return self.capture


def _collect(reader, count):
    """The first ``count`` items: frames as "frame", changes as their kind."""
    out = []
    for item in reader.items():
        out.append("frame" if isinstance(item, Frame) else item.kind)
        if len(out) == count:
            return out


def test_backoff_starts_at_once_doubles_and_is_bounded():
    settings = ReconnectSettings(interval=1.0, max_interval=5.0)
    assert [settings.wait_before(n) for n in range(1, 7)] == [0.0, 1.0, 2.0, 4.0, 5.0, 5.0]
    with pytest.raises(EdgeVLMError, match="max_interval"):
        ReconnectSettings(interval=2.0, max_interval=1.0)
    with pytest.raises(EdgeVLMError, match="attempts"):
        ReconnectSettings(attempts=-1)


def test_lost_then_back_after_failed_reopens_with_backoff():
    first = FakeCapture(["frame"] * 3 + ["eof"] * 10)
    second = FakeCapture(["frame"] * 1000)
    reopen = Reopener(fails=2, capture=second)
    with time_limit(20):
        reader = LiveReader(first, reopen, "fake://cam", read_timeout=5.0,
                            reconnect=ReconnectSettings(interval=0.1, max_interval=0.2), stuck_after=10.0)
        items = []
        for item in reader.items():
            items.append(item)
            if isinstance(item, SourceChange) and item.kind == BACK:
                break
        after = next(i for i in reader.items() if isinstance(i, Frame))
        reader.stop()
    kinds = [i.kind for i in items if isinstance(i, SourceChange)]
    assert kinds == [LOST, BACK] and isinstance(items[0], Frame)
    assert items[-2].kind == LOST and "the stream ended" in items[-2].message  # EOF: noticed at once
    assert first.released  # the dead capture was let go before reopening
    assert len(reopen.calls) == 3  # at once, then after 0.1 s, then after 0.2 s
    waits = np.diff(reopen.calls)
    assert waits[0] >= 0.09 and waits[1] >= 0.19
    stats = reader.source_stats()
    assert (stats.source_lost, stats.source_back, stats.reconnect_attempts) == (1, 1, 3)
    assert stats.seconds_without_source >= 0.3
    assert items[-1].details["reconnect_attempts"] == 3 and after.t > items[-1].t - 1e-6


def test_gives_up_after_the_attempts_with_one_line_naming_the_flag():
    reader = LiveReader(FakeCapture(["frame", "eof"]), Reopener(fails=99, capture=None), "fake://cam",
                        read_timeout=5.0, reconnect=ReconnectSettings(interval=0.05, max_interval=0.05, attempts=3),
                        stuck_after=10.0)
    gave_up = r"not back after 3 reconnect attempts.*--reconnect-attempts"
    with time_limit(20), pytest.raises(EdgeVLMError, match=gave_up):
        _collect(reader, 100)
    reader.stop()
    assert reader.source_stats().reconnect_attempts == 3


def test_without_reconnect_a_lost_source_is_an_error_as_before():
    reader = LiveReader(FakeCapture(["frame", "eof"]), Reopener(0, None), "fake://cam", read_timeout=5.0,
                        reconnect=None, stuck_after=10.0)
    with time_limit(20), pytest.raises(EdgeVLMError, match="stopped delivering frames"):
        _collect(reader, 100)
    reader.stop()


def test_a_stalled_read_is_noticed_after_the_read_timeout_and_recovered():
    stalled = FakeCapture(["frame", "block"])
    reopen = Reopener(fails=0, capture=FakeCapture(["frame"] * 1000))
    with time_limit(20):
        reader = LiveReader(stalled, reopen, "fake://cam", read_timeout=0.5,
                            reconnect=ReconnectSettings(interval=0.1, max_interval=0.1), stuck_after=10.0)
        items = reader.items()
        assert isinstance(next(items), Frame)
        started = time.monotonic()
        lost = next(items)
        noticed = time.monotonic() - started
        assert lost.kind == LOST and lost.details["reason"] == "no frame for 0.5 s"
        assert 0.3 <= noticed <= 2.0  # at the read timeout, while the read is still blocked
        stalled.unblock.set()  # the read returns (FFmpeg's own timeout): reopen
        assert next(items).kind == BACK
        reader.stop()


def test_watchdog_ends_a_read_that_never_returns_and_close_does_not_hang():
    wedged = FakeCapture(["frame", "block"])
    with time_limit(20):
        reader = LiveReader(wedged, Reopener(0, None), "fake://cam", read_timeout=0.3,
                            reconnect=ReconnectSettings(interval=0.1, max_interval=0.1), stuck_after=1.5)
        kinds = []
        started = time.monotonic()
        with pytest.raises(EdgeVLMError, match=r"capture of fake://cam is stuck: a read has not returned"):
            for item in reader.items():
                kinds.append("frame" if isinstance(item, Frame) else item.kind)
        assert kinds == ["frame", LOST]
        assert 1.4 <= time.monotonic() - started <= 5.0
        began = time.monotonic()
        reader.stop()  # gives up waiting for the stuck thread after read_timeout + 1 s
        assert time.monotonic() - began < 3.0 and reader.alive
        assert not wedged.released  # never released under a blocked read
    wedged.unblock.set()
