"""What narration does when its source changes, with fakes (tests/support.py): a camera
lost and back is said once each, ahead of captions; a question while it is gone is answered
honestly; file damage is a warning, not speech; the summary counts it all."""

import json
import os
import threading

from edgevlm.runtime.narration.pipeline import NarrateOptions, Narrator
from edgevlm.runtime.narration.source_notices import ANSWER_WHILE_LOST, BACK_TEXT, LOST_TEXT
from edgevlm.runtime.sources import Frame
from edgevlm.runtime.stream_items import BACK, ENDED_EARLY, LOST, SKIPPED, SourceChange, SourceStats
from tests.servers.launch import time_limit
from tests.support import FakeClock, FakeEngine, FakeSpeech, scene_image


def _frames(colour, start, count, fps=10.0):
    return [Frame(scene_image(colour), (start + i) / fps, start + i, 100.0 + (start + i) / fps, f"f{start + i}")
            for i in range(count)]


class ScriptedSource:
    """A source that yields frames and changes in the given order (``live``: a camera)."""

    fps = 10.0

    def __init__(self, items, live=True, stats=None, gate: threading.Event | None = None):
        self.items, self.live, self._stats, self.gate = items, live, stats or SourceStats(), gate

    def stream(self, stop=None):
        for item in self.items:
            if self.gate is not None and isinstance(item, SourceChange) and item.kind == BACK:
                assert self.gate.wait(10), "the test never let the camera come back"
            yield item

    def frames(self):
        return (i for i in self.items if isinstance(i, Frame))

    def stats(self):
        return self._stats


class PacedSpeech(FakeSpeech):
    """Takes a little time per utterance, like espeak-ng, so a live slot really replaces items."""

    def synthesize(self, text, wav_path):
        threading.Event().wait(0.01)
        return super().synthesize(text, wav_path)


def test_lost_and_back_are_said_once_each_and_the_scene_again_after(tmp_path):
    lost = SourceChange(LOST, 1.0, "live source cam lost (the stream ended); reconnecting",
                        {"reason": "the stream ended"})
    back = SourceChange(BACK, 4.0, "live source cam back after 3.0 s", {"seconds_without_source": 3.0})
    stats = SourceStats(source_lost=1, source_back=1, reconnect_attempts=2, seconds_without_source=3.0)
    source = ScriptedSource(_frames(2, 0, 10) + [lost, back] + _frames(2, 40, 40), live=False, stats=stats)
    speech, lines, warnings = PacedSpeech(), [], []
    events = str(tmp_path / "events.jsonl")
    options = NarrateOptions(events=events, audio_out=str(tmp_path / "wav"))  # a folder: what is synthesized
    with time_limit(30):
        summary = Narrator(FakeEngine(), source, options, speech, lines.append, FakeClock(),
                           on_warning=warnings.append).run()
    # the same scene as before the loss is said again: the listener cannot know it did not change
    assert speech.said == ["a man in a red shirt", LOST_TEXT, BACK_TEXT, "a man in a red shirt"]
    assert [line.split("] ", 1)[1] for line in lines] == speech.said
    assert warnings == [f"note: {lost.message}", f"note: {back.message}"]
    logged = [json.loads(line) for line in open(events)]
    kinds = [e["event"] for e in logged]
    assert kinds.index("source_lost") < kinds.index("source_back")
    assert logged[kinds.index("source_lost")]["reason"] == "the stream ended"
    notices = [e for e in logged if e["event"] == "spoken" and e.get("notice")]
    assert [(e["text"], e["notice"], e["t"]) for e in notices] == [(LOST_TEXT, "lost", 1.0), (BACK_TEXT, "back", 4.0)]
    # the notices are not narration: utterances and repeat rate count captions only
    assert summary["utterances"] == 2 and summary["source_lost"] == 1 and summary["reconnect_attempts"] == 2
    assert summary["speech"] is False and summary["voiced"] == 0  # FakeSpeech writes no WAV


def test_a_change_is_handled_after_the_frames_put_before_it():
    """A live slot may hand the inference thread a frame put before a change that the capture
    thread already queued: the frame is handled first, the change after it."""
    lost = SourceChange(LOST, 0.95, "lost", {})
    source = ScriptedSource(_frames(2, 0, 10) + [lost], live=True)
    events, lines = [], []
    narrator = Narrator(FakeEngine(), source, NarrateOptions(), FakeSpeech(), lines.append, FakeClock())
    write = narrator.events.write
    narrator.events.write = lambda event, t, **fields: (events.append((event, t)), write(event, t, **fields))
    with time_limit(30):
        narrator.run()
    frame_ts = [t for event, t in events if event == "frame"]
    lost_at = [i for i, (event, _) in enumerate(events) if event == "source_lost"][0]
    assert all(e != "frame" for e, _ in events[lost_at:])  # no frame from before the loss after it
    assert frame_ts == sorted(frame_ts)


def test_a_question_while_the_camera_is_gone_is_answered_honestly(tmp_path):
    came_back = threading.Event()
    lost = SourceChange(LOST, 1.0, "lost", {})
    back = SourceChange(BACK, 5.0, "back", {})
    source = ScriptedSource(_frames(2, 0, 10) + [lost, back] + _frames(2, 50, 10), live=True, gate=came_back)

    class AnsweringEngine(FakeEngine):
        answers_questions = True

    read_fd, write_fd = os.pipe()
    speech, lines = PacedSpeech(), []
    with time_limit(30), open(read_fd, "r") as questions:
        narrator = Narrator(AnsweringEngine(), source, NarrateOptions(audio_out=str(tmp_path)), speech, lines.append,
                            FakeClock(), questions=questions)
        box = {}
        thread = threading.Thread(target=lambda: box.update(summary=narrator.run()), daemon=True)
        thread.start()
        deadline = threading.Event()
        while LOST_TEXT not in speech.said and not deadline.wait(0.05):
            pass
        os.write(write_fd, b"is there a dog?\n")
        while ANSWER_WHILE_LOST not in speech.said and not deadline.wait(0.05):
            pass
        came_back.set()
        thread.join(20)
        os.close(write_fd)
    assert not thread.is_alive()
    assert speech.said.index(LOST_TEXT) < speech.said.index(ANSWER_WHILE_LOST) < speech.said.index(BACK_TEXT)
    assert any(line.endswith(f"] Q: is there a dog? A: {ANSWER_WHILE_LOST}") for line in lines), lines
    assert box["summary"]["questions"] == 1


def test_file_damage_is_a_warning_and_an_event_not_speech(tmp_path):
    skipped = SourceChange(SKIPPED, 3.5, "video v.mp4: frames 35-68 (3.5-6.9 s) could not be decoded; skipped",
                           {"from_t": 3.5, "to_t": 6.9, "frames": 34})
    ended = SourceChange(ENDED_EARLY, 9.0, "video v.mp4 ended at 9.0 s of 10.0 s", {"frames_expected": 100})
    stats = SourceStats(decode_errors=34, seconds_skipped=3.4, frames_expected=100, ended_early=True)
    source = ScriptedSource(_frames(2, 0, 35) + [skipped] + _frames(2, 69, 21) + [ended], live=False, stats=stats)
    speech, warnings = FakeSpeech(), []
    events = str(tmp_path / "events.jsonl")
    with time_limit(30):
        summary = Narrator(FakeEngine(), source, NarrateOptions(events=events, audio_out=str(tmp_path / "wav")), speech,
                           lambda _: None, FakeClock(), on_warning=warnings.append).run()
    assert speech.said == ["a man in a red shirt"]
    assert warnings == [f"warning: {skipped.message}", f"warning: {ended.message}"]
    logged = [json.loads(line) for line in open(events)]
    skip_event = next(e for e in logged if e["event"] == "source_skipped")
    assert skip_event["from_t"] == 3.5 and skip_event["frames"] == 34
    assert any(e["event"] == "source_ended_early" for e in logged)
    assert summary["ended_early"] is True and summary["frames_expected"] == 100 and summary["decode_errors"] == 34


def test_a_source_without_stream_or_stats_still_narrates():
    class FramesOnly:
        live, fps = False, 10.0

        def frames(self):
            yield from _frames(2, 0, 5)

    summary = Narrator(FakeEngine(), FramesOnly(), NarrateOptions(), FakeSpeech(), lambda _: None, FakeClock()).run()
    assert summary["frames"] == 5 and summary["source_lost"] == 0 and summary["frames_expected"] is None


def test_speech_is_true_only_when_a_wav_was_made(tmp_path):
    class WavSpeech(FakeSpeech):
        def synthesize(self, text, wav_path):
            open(wav_path, "wb").close()
            return True

    source = ScriptedSource(_frames(2, 0, 5), live=False)
    summary = Narrator(FakeEngine(), source, NarrateOptions(audio_out=str(tmp_path / "wav")), WavSpeech(),
                       lambda _: None, FakeClock()).run()
    assert summary["speech"] is True and summary["voiced"] == 1
    source = ScriptedSource(_frames(2, 0, 5), live=False)
    summary = Narrator(FakeEngine(), source, NarrateOptions(audio_out=str(tmp_path / "none")), FakeSpeech(),
                       lambda _: None, FakeClock()).run()
    assert summary["speech"] is False  # espeak-ng "available" but nothing was written: no speech
