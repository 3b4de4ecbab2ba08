"""Narration logic with fakes (tests/support.py): a fake clock, a fake engine, a fake speech engine."""

import json
import threading

import numpy as np

from edgevlm.runtime.narration.pipeline import NarrateOptions, Narrator
from edgevlm.runtime.narration.policy import NarrationPolicy, PolicySettings, Utterance
from edgevlm.runtime.narration.queues import CLOSED, BlockingSlot, NewestSlot
from edgevlm.runtime.narration.scene_gate import GateSettings, SceneGate
from edgevlm.runtime.narration.similarity import caption_similarity
from edgevlm.runtime.sources import Frame
from tests.support import FakeClock, FakeEngine, FakeSpeech, scene_image


def test_similarity_ignores_articles_and_plurals():
    assert caption_similarity("a dog runs on the grass", "the dogs run on grass") >= 0.5
    assert caption_similarity("a man rides a bike", "a woman swims in a pool") == 0.0


def test_policy_suppresses_same_meaning_and_keeps_the_gap():
    policy = NarrationPolicy(PolicySettings(same_meaning=0.5, min_gap=2.0))
    assert policy.offer(Utterance("a dog runs on the grass", 0.0, 0.0)) == "queued"
    assert policy.release(0.0).text == "a dog runs on the grass"
    assert policy.offer(Utterance("the dog runs on grass", 0.5, 0.5)) == "duplicate"
    assert policy.offer(Utterance("a man rides a bike", 1.0, 1.0)) == "queued"
    assert policy.release(1.0) is None  # inside the 2 s gap
    assert policy.offer(Utterance("a woman swims in a pool", 1.5, 1.5)) == "queued"  # newest wins
    said = policy.release(2.0)
    assert said.text == "a woman swims in a pool" and policy.replaced == 1


def test_reannounce_only_when_asked():
    quiet = NarrationPolicy(PolicySettings(min_gap=1.0))
    quiet.offer(Utterance("a dog", 0.0, 0.0))
    quiet.release(0.0)
    assert quiet.release(100.0) is None
    chatty = NarrationPolicy(PolicySettings(min_gap=1.0, reannounce_after=30.0))
    chatty.offer(Utterance("a dog", 0.0, 0.0))
    chatty.release(0.0)
    again = chatty.release(31.0)
    assert again.text == "a dog" and again.reannounce


def test_gate_skips_unchanged_and_waits_for_the_view_to_settle():
    gate = SceneGate(GateSettings(change=0.1, settle=0.05, max_wait=1.0))
    a, b = np.array([1.0, 0.0, 0.0]), np.array([0.0, 1.0, 0.0])
    assert gate.update(a, 0.0).caption  # first frame
    assert [gate.update(a + 0.01, t).caption for t in (0.1, 0.2)] == [False, False]
    moving = np.array([0.5, 0.5, 0.0])
    decision = gate.update(moving, 0.3)
    assert not decision.caption and decision.reason == "changing"
    decision = gate.update(b, 0.4)  # still moving: big step from the previous frame
    assert not decision.caption
    decision = gate.update(b, 0.5)  # settled on the new scene
    assert decision.caption and decision.reason == "settled"
    assert gate.update(b, 0.6).reason == "unchanged"


def test_gate_captions_a_continuously_moving_view_after_max_wait():
    gate = SceneGate(GateSettings(change=0.1, settle=0.01, max_wait=1.0))
    gate.update(np.array([1.0, 0.0]), 0.0)
    # turning 0.3 rad per 0.2 s: never settles, so the timeout narrates it
    reasons = [gate.update(np.array([np.cos(0.3 * i), np.sin(0.3 * i)]), 0.2 * i).reason for i in range(1, 10)]
    # 0.2 s: still within `change`; 0.4 s: changing; 1.0 s later (1.4 s): narrated anyway
    assert reasons[:7] == ["unchanged"] + ["changing"] * 5 + ["timeout"]


def test_newest_slot_drops_stale_items_and_blocking_slot_is_bounded():
    slot = NewestSlot()
    for i in range(5):
        slot.put(i)
    assert slot.get(0) == 4 and slot.dropped == 4 and slot.get(0.01) is None
    slot.close()
    assert slot.get(0) is CLOSED
    fifo = BlockingSlot(2)
    fifo.put(1), fifo.put(2)
    stop = threading.Event()
    stop.set()
    assert fifo.put(3, stop) is False  # full: it would wait, and stop ends the wait
    assert len(fifo) == 2


class ListSource:
    live, fps = False, 10.0

    def __init__(self, frames):
        self._frames = frames

    def frames(self):
        yield from self._frames


def _frames(colours, fps=10.0):
    return [Frame(scene_image(colour), i / fps, i, 100.0 + i / fps, f"f{i}") for i, colour in enumerate(colours)]


def test_a_frame_with_nothing_to_see_is_reported_once_not_captioned(tmp_path):
    engine, speech, lines = FakeEngine(), FakeSpeech(), []
    dark = [Frame(np.zeros((8, 8, 3), np.uint8), (30 + i) / 10, 30 + i, 103.0 + i / 10, f"d{i}") for i in range(30)]
    frames = _frames([2] * 30) + dark
    events = str(tmp_path / "events.jsonl")
    options = NarrateOptions(audio_out=str(tmp_path), events=events)
    Narrator(engine, ListSource(frames), options, speech, lines.append, FakeClock()).run()
    assert speech.said == ["a man in a red shirt", "It is too dark to see."]
    assert engine.decoder_runs == 1  # the dark frames never reach the decoder
    with open(events) as f:
        issues = [e for e in map(json.loads, f) if e["event"] == "frame_issue"]
    assert [(e["issue"], e["t"]) for e in issues] == [("dark", 3.0)]


def test_a_still_video_is_narrated_once(tmp_path):
    engine, speech, lines = FakeEngine(), FakeSpeech(), []
    options = NarrateOptions(audio_out=str(tmp_path))
    narrator = Narrator(engine, ListSource(_frames([2] * 100)), options, speech, lines.append, FakeClock())
    summary = narrator.run()
    assert speech.said == ["a man in a red shirt"] and len(lines) == 1
    assert engine.decoder_runs == 1
    assert summary["frames"] == 100 and summary["frames_skipped_unchanged"] == 99


def test_scene_changes_are_narrated_and_duplicates_skipped(tmp_path):
    engine, speech = FakeEngine(), FakeSpeech()
    colours = [2] * 30 + [1] * 30 + [2] * 30  # red, green, red again
    options = NarrateOptions(policy=PolicySettings(min_gap=1.0), audio_out=str(tmp_path))
    summary = Narrator(engine, ListSource(_frames(colours)), options, speech, lambda _: None, FakeClock()).run()
    assert speech.said == ["a man in a red shirt", "a dog on grass", "a man in a red shirt"]
    assert summary["captions"] == 3 and summary["repeat_rate"] == 0.0


def test_a_failing_speech_thread_ends_the_run_with_its_error(tmp_path):
    class BrokenSpeech(FakeSpeech):
        def synthesize(self, text, wav_path):
            raise OSError("disk full")

    colours = [0, 1, 2] * 40  # a new scene every frame: many utterances queued for speech
    options = NarrateOptions(policy=PolicySettings(min_gap=0.0), audio_out=str(tmp_path),
                             gate=GateSettings(change=0.01, settle=1.0))
    narrator = Narrator(FakeEngine(), ListSource(_frames(colours)), options, BrokenSpeech(), lambda _: None, FakeClock())
    outcome = {}

    def run():
        try:
            narrator.run()
        except OSError as exc:
            outcome["error"] = str(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(timeout=30)  # guards against the old hang; the assertions are below
    assert not thread.is_alive()
    assert outcome == {"error": "disk full"}
