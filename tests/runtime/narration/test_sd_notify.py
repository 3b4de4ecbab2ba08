"""systemd's notification protocol (runtime/sd_notify.py) on real AF_UNIX datagram sockets, and
the narration loop feeding it: READY after the first frame, WATCHDOG only while the loop turns
(a hung inference starves it), STATUS when the camera is lost and back, STOPPING at the end."""

import os
import threading
import time

import pytest

from edgevlm.runtime import sd_notify
from edgevlm.runtime.narration.pipeline import NarrateOptions, Narrator
from edgevlm.runtime.sd_notify import NO_SERVICE, ServiceNotifier
from edgevlm.runtime.sources import Frame
from edgevlm.runtime.stream_items import BACK, LOST, SourceChange, SourceStats
from tests.servers.notify_socket import NotifyListener
from tests.support import FakeClock, FakeEngine, scene_image


@pytest.fixture
def listener(tmp_path):
    path = str(tmp_path / "notify.sock")
    heard = NotifyListener(path)
    yield path, heard
    heard.close()


def _wait_for(predicate, seconds=5.0):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not predicate():
        time.sleep(0.01)
    return predicate()


def test_addresses_and_the_watchdog_interval_come_from_the_environment():
    assert sd_notify.socket_address({}) is None
    assert sd_notify.socket_address({"NOTIFY_SOCKET": "/run/systemd/notify"}) == "/run/systemd/notify"
    assert sd_notify.socket_address({"NOTIFY_SOCKET": "@abstract/notify"}) == "\0abstract/notify"
    assert sd_notify.watchdog_seconds({"WATCHDOG_USEC": "30000000"}) == 30.0
    assert sd_notify.watchdog_seconds({}) is None
    assert sd_notify.watchdog_seconds({"WATCHDOG_USEC": "soon"}) is None
    assert sd_notify.watchdog_seconds({"WATCHDOG_USEC": "0"}) is None
    # as sd_watchdog_enabled: a watchdog meant for another process (our parent) is not ours
    assert sd_notify.watchdog_seconds({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}, pid=42) is None
    assert sd_notify.watchdog_seconds({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "42"}, pid=42) == 30.0


def test_without_notify_socket_nothing_is_sent_and_nothing_raises(tmp_path, monkeypatch):
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    monkeypatch.setenv("WATCHDOG_USEC", "1000")
    notifier = ServiceNotifier.from_env()
    assert not notifier.enabled and notifier.ping_every is None
    for call in (notifier.ready, notifier.alive, notifier.running, notifier.stopping, NO_SERVICE.ready):
        call()
    assert sd_notify.send(None, "READY=1") is False
    assert sd_notify.send(str(tmp_path / "nobody-listens"), "READY=1") is False  # a failure is not an error


def test_messages_reach_a_path_socket_and_an_abstract_socket(listener, monkeypatch):
    path, heard = listener
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    monkeypatch.delenv("WATCHDOG_USEC", raising=False)
    notifier = ServiceNotifier.from_env("narrating /dev/video0")
    notifier.ready()
    notifier.ready()  # once only
    notifier.status("camera lost, reconnecting")
    notifier.running()
    notifier.alive()  # no WatchdogSec: no pings
    notifier.stopping()
    assert _wait_for(lambda: len(heard.messages) == 4)
    assert heard.texts() == ["READY=1\nSTATUS=narrating /dev/video0", "STATUS=camera lost, reconnecting",
                             "STATUS=narrating /dev/video0", "STOPPING=1\nSTATUS=stopping"]

    name = f"edgevlm-test-{os.getpid()}-{time.monotonic_ns()}"
    abstract = NotifyListener("\0" + name)
    try:
        monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
        ServiceNotifier.from_env().ready()
        assert _wait_for(lambda: abstract.texts() == ["READY=1\nSTATUS=narrating"])
    finally:
        abstract.close()


def test_watchdog_pings_are_rate_limited_and_only_after_ready(monkeypatch):
    clock, sent = FakeClock(), []
    monkeypatch.setattr(sd_notify, "send", lambda address, message: sent.append((clock.now, message)) or True)
    notifier = ServiceNotifier("/run/notify", watchdog_s=2.0, clock=clock)  # a ping at most every 0.5 s
    for _ in range(3):
        notifier.alive()  # before READY: a ping would arm systemd's watchdog during a long start
        clock.now += 1
    notifier.ready()
    for _ in range(40):  # the loop turns every 0.125 s for 5 s
        notifier.alive()
        clock.now += 0.125
    assert sent[0] == (103.0, "READY=1\nSTATUS=narrating")
    pings = [at for at, message in sent[1:] if message == "WATCHDOG=1"]
    assert len(pings) == len(sent) - 1 == 10 and pings[0] == 103.0
    assert {b - a for a, b in zip(pings, pings[1:])} == {0.5}
    # a loop that stops calling alive() sends nothing more: there is no timer thread
    clock.now += 60
    time.sleep(0.1)
    assert len(sent) == 11


class HangingEngine(FakeEngine):
    """Sees each frame in 20 ms, except the ``hang_at``-th, which blocks until released."""

    def __init__(self, hang_at):
        super().__init__()
        self.calls, self.hang_at = 0, hang_at
        self.hanging, self.release = threading.Event(), threading.Event()

    def see(self, pixels):
        self.calls += 1
        if self.calls == self.hang_at:
            self.hanging.set()
            assert self.release.wait(10), "the test never released the engine"
        time.sleep(0.02)
        return super().see(pixels)


class Camera:
    """A live source: frames (and the given changes) in order."""

    fps, live = 10.0, True

    def __init__(self, items):
        self.items = items

    def stream(self, stop=None):
        for item in self.items:
            if stop is not None and stop.is_set():
                return
            time.sleep(0.01)
            yield item

    def stats(self):
        return SourceStats()


def _frames(start, count, colour=1):
    return [Frame(scene_image(colour), i / 10, i, time.monotonic(), f"f{i}") for i in range(start, start + count)]


def test_a_hung_inference_stops_the_watchdog_pings(listener):
    path, heard = listener
    engine = HangingEngine(hang_at=15)
    notifier = ServiceNotifier(path, watchdog_s=0.2, running_status="narrating cam")  # ping every 0.05 s
    narrator = Narrator(engine, Camera(_frames(0, 30)), NarrateOptions(), None, on_line=lambda line: None,
                        service=notifier)
    done = threading.Thread(target=narrator.run, daemon=True)
    done.start()
    try:
        assert engine.hanging.wait(10)
        hung_at = time.monotonic()
        time.sleep(1.0)  # 20 watchdog periods of systemd's would pass without a ping
        during = [text for at, text in heard.messages if at > hung_at + 0.05]
    finally:
        engine.release.set()
        narrator.stop()
        done.join(10)
    # the listener's thread records datagrams as they arrive: the last may still be on its way
    _wait_for(lambda: "STOPPING=1\nSTATUS=stopping" in heard.texts())
    texts = heard.texts()
    assert texts[0] == "READY=1\nSTATUS=narrating cam"
    before_hang = [text for at, text in heard.messages if at <= hung_at]
    assert before_hang.count("WATCHDOG=1") >= 2  # the loop fed it while it turned
    assert "WATCHDOG=1" not in during  # and starved it once stuck
    assert texts[-1] == "STOPPING=1\nSTATUS=stopping"


def test_camera_lost_and_back_are_status_lines_and_the_loop_stays_alive(listener):
    path, heard = listener
    lost = SourceChange(LOST, 0.5, "live source cam lost; reconnecting", {"reason": "the stream ended"})
    back = SourceChange(BACK, 2.0, "live source cam back", {"seconds_without_source": 1.5})
    gap = threading.Event()

    class Reconnecting(Camera):
        def stream(self, stop=None):
            for item in super().stream(stop):
                if item is back:
                    gap.wait(0.6)  # no frame for a while, as while reconnecting
                yield item

    notifier = ServiceNotifier(path, watchdog_s=0.2, running_status="narrating cam")
    narrator = Narrator(FakeEngine(), Reconnecting(_frames(0, 5) + [lost, back] + _frames(20, 5)), NarrateOptions(),
                        None, on_line=lambda line: None, service=notifier)
    narrator.run()
    time.sleep(0.1)
    texts = heard.texts()
    lost_at = texts.index("STATUS=camera lost, reconnecting")
    back_at = texts.index("STATUS=narrating cam")
    assert texts[0].startswith("READY=1") and lost_at < back_at
    assert "WATCHDOG=1" in texts[lost_at:back_at]  # waiting on the camera, the loop still turns: alive
    assert texts[-1].startswith("STOPPING=1")


def test_narration_without_a_service_is_unchanged():
    narrator = Narrator(FakeEngine(), Camera(_frames(0, 5)), NarrateOptions(), None, on_line=lambda line: None)
    assert narrator.service is NO_SERVICE
    assert narrator.run()["frames"] == 5
