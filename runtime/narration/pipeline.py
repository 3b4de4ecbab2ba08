"""The narration pipeline: capture -> inference -> speech, in threads with bounded hand-offs.

- capture: every frame in order for files (the reader waits for inference); the newest
  frame only for live sources and for files with ``realtime`` (paced like a camera);
- inference (the calling thread): vision graph on every frame, the decoder only when the
  scene gate says the scene changed; the policy decides what is said and when;
- speech: synthesizes each utterance to WAV (and plays it if there is a device); for live
  narration a newer utterance replaces one still waiting (a stale caption is never said);
- questions (optional): a reader thread queues lines typed on stdin; the inference thread
  answers them about the newest frame before its next caption, and the answer interrupts
  narration: the caption being said is cut short, those waiting are dropped, and the
  answer is said next (questions.py).

Nothing grows without bound when inference is slower than the camera. ``stop()`` (ctrl-C,
SIGTERM) ends every thread and the outputs are completed.
"""

from __future__ import annotations

import logging
import os
import tempfile
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, TextIO

import numpy as np

from edgevlm.errors import EdgeVLMError
from edgevlm.runtime.engine import Sight, nothing_to_see
from edgevlm.runtime.frame_quality import FrameQuality, assess_frame
from edgevlm.runtime.narration.outputs import CaptionedVideo, EventLog, write_subtitles
from edgevlm.runtime.narration.policy import NarrationPolicy, PolicySettings, Utterance
from edgevlm.runtime.narration.questions import (NO_ANSWERS, Question, QuestionReader, SpokenAnswer,
                                                 merge_answers, spoken_answer)
from edgevlm.runtime.narration.queues import CLOSED, BlockingSlot, NewestSlot
from edgevlm.runtime.narration.scene_gate import GateSettings, SceneGate
from edgevlm.runtime.narration.similarity import caption_similarity

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class NarrateOptions:
    beam: int = 1  # latency first: greedy
    realtime: bool = False
    gate: GateSettings = field(default_factory=GateSettings)
    policy: PolicySettings = field(default_factory=PolicySettings)
    cut_short_distance: float = 0.35  # a scene change this large cuts the current utterance
    audio_out: str | None = None
    events: str | None = None
    subtitles: str | None = None
    video_out: str | None = None


def _percentile(values: list[float], q: float) -> float | None:
    return round(float(np.percentile(values, q)), 1) if values else None


class Narrator:
    """Narrate ``source``; ``questions``: a text stream (stdin) of questions to answer, or None."""

    def __init__(self, engine, source, options: NarrateOptions, speech=None, on_line: Callable[[str], None] = print,
                 clock: Callable[[], float] = time.monotonic, questions: TextIO | None = None):
        self.engine, self.source, self.options = engine, source, options
        self.speech, self.on_line, self.clock = speech, on_line, clock
        self.stop_event = threading.Event()
        self.gate = SceneGate(options.gate)
        self.policy = NarrationPolicy(options.policy)
        self.events = EventLog(options.events)
        live = source.live or options.realtime
        self.frames = NewestSlot() if live else BlockingSlot(2)
        self.utterances = NewestSlot() if live else BlockingSlot(4)
        self.video = CaptionedVideo(options.video_out, source.fps or 10.0) if options.video_out else None
        self.settings = engine.settings(options.beam)
        self.cues: list[tuple[float, str]] = []
        self.current_text = ""
        self.caption_ms: list[float] = []
        self.speech_ms: list[float] = []
        self.spoken: list[str] = []
        self.captions = 0
        self.first_t: float | None = None
        self.last_t = 0.0
        self.error: BaseException | None = None
        # questions: read on their own thread, answered on the inference thread (the engine is not thread-safe)
        self.questions = QuestionReader(questions, clock) if questions is not None else None
        self.last_frame = None  # the newest frame handled: what a question is answered about
        self.answer_ms: list[float] = []  # question typed -> answer ready
        self.frame_issue: str | None = None  # the problem of the last frame ("dark"...), None when usable
        self.told_no_answers = False
        self.interrupted = 0  # captions never said because an answer went first
        self._answers_waiting = 0  # answers queued for speech, not yet taken by the speech thread
        self._answers_lock = threading.Lock()
        self._saying_answer = False  # set by the speech thread: a scene change does not cut an answer
        if options.audio_out:
            try:
                os.makedirs(options.audio_out, exist_ok=True)
            except OSError as exc:
                self.events.close()
                raise EdgeVLMError(f"--audio-out {options.audio_out}: cannot create it ({exc.strerror})") from exc

    def stop(self) -> None:
        self.stop_event.set()

    # --- threads ----------------------------------------------------------------------
    def _capture(self) -> None:
        try:
            started = None
            for frame in self.source.frames():
                if self.stop_event.is_set():
                    break
                if self.options.realtime and not self.source.live:
                    started = started if started is not None else self.clock() - frame.t
                    delay = started + frame.t - self.clock()  # pace a file like a camera
                    if delay > 0 and self.stop_event.wait(delay):
                        break
                    frame.captured_at = self.clock()
                if not self.frames.put(frame, self.stop_event):
                    break
        except BaseException as exc:  # surfaced by run() in the calling thread
            self.error = exc
        finally:
            self.frames.close(self.stop_event)

    def _speak(self) -> None:
        try:
            self._speak_loop()
        except BaseException as exc:  # surfaced by run(); stopping keeps the producers from blocking
            self.error = exc
            self.stop_event.set()

    def _speak_loop(self) -> None:
        count = 0
        while True:
            utterance = self.utterances.get(timeout=0.2)
            if utterance is CLOSED:
                return
            if utterance is None:
                if self.stop_event.is_set() and len(self.utterances) == 0:
                    return
                continue
            if self.stop_event.is_set():  # stopping: say nothing more
                return
            is_answer = isinstance(utterance, SpokenAnswer)
            if is_answer:
                self._count_answers_waiting(-1)
            elif self._answer_waiting():  # taken just before an answer was queued: the answer goes first
                self._count_interrupted()
                continue
            count += 1
            wav = self._synthesize(utterance.text, count)
            if not is_answer and self._answer_waiting():  # an answer came while this was synthesized
                self._count_interrupted()
                if wav:
                    os.remove(wav)
                continue
            self._saying_answer = is_answer
            if is_answer:
                self._announce_answer(utterance, wav)
            else:
                self._announce(utterance, wav)
            self._play(wav)
            self._saying_answer = False

    def _synthesize(self, text: str, count: int) -> str | None:
        """The WAV file of ``text`` (utterance number ``count``), or None when there is none to make."""
        if self.speech is None or not self.speech.available:
            return None
        if self.options.audio_out:
            wav = os.path.join(self.options.audio_out, f"utterance_{count:04d}.wav")
        elif self.speech.player is not None:
            wav = os.path.join(tempfile.gettempdir(), f"edgevlm-{os.getpid()}-{count}.wav")
        else:
            return None
        return wav if self.speech.synthesize(text, wav) else None

    def _announce(self, utterance: Utterance, wav: str | None) -> None:
        """A caption is said: log it, print it, keep it for the subtitles and the summary."""
        ready_ms = (self.clock() - utterance.captured_at) * 1000
        if not utterance.reannounce:
            self.speech_ms.append(ready_ms)
        self.spoken.append(utterance.text)
        self.cues.append((utterance.t, utterance.text))
        self.events.write("spoken", utterance.t, text=utterance.text, frame_to_speech_ms=round(ready_ms, 1),
                          wav=wav, reannounce=utterance.reannounce)
        self.on_line(f"[{utterance.t:8.2f}s] {utterance.text}")

    def _announce_answer(self, answer: SpokenAnswer, wav: str | None) -> None:
        """An answer is said: one "Q: ... A: ..." line per question (console and subtitles).
        Not in ``spoken``: the caption metrics (repeat rate, frame-to-speech) are narration's."""
        ready_ms = (self.clock() - answer.captured_at) * 1000
        self.cues.append((answer.t, "\n".join(answer.lines)))
        self.events.write("spoken", answer.t, text=answer.text, question_to_speech_ms=round(ready_ms, 1),
                          wav=wav, answer=True)
        for line in answer.lines:
            self.on_line(f"[{answer.t:8.2f}s] {line}")

    def _play(self, wav: str | None) -> None:
        if wav and self.speech.player is not None:
            self.speech.play(wav)
            if not self.options.audio_out:
                os.remove(wav)

    # --- questions (inference thread) -----------------------------------------------------
    def _count_answers_waiting(self, change: int) -> None:
        with self._answers_lock:
            self._answers_waiting += change

    def _answer_waiting(self) -> bool:
        with self._answers_lock:
            return self._answers_waiting > 0

    def _count_interrupted(self) -> None:
        with self._answers_lock:  # both threads drop captions for answers
            self.interrupted += 1

    def _pending_questions(self) -> list[Question]:
        """The questions to answer now: none if none were typed or the engine cannot answer
        (then it is said once, and narration goes on)."""
        if self.questions is None or len(self.questions) == 0:
            return []
        questions = self.questions.take()
        if not self.engine.answers_questions:
            if not self.told_no_answers:
                self.told_no_answers = True
                self.on_line(f"note: {NO_ANSWERS}")
            return []
        return questions

    def _answer_questions(self, frame, sight: Sight | None = None, quality: FrameQuality | None = None) -> None:
        """Answer the pending questions about ``frame`` (its Sight if already encoded; a frame
        with nothing to see answers with the reason) and make the answers interrupt narration."""
        questions = self._pending_questions()
        if not questions:
            return
        quality = quality or assess_frame(frame.image)
        if sight is None and quality.usable:
            sight = self.engine.see(self.engine.preprocess(frame.image)[None])
        answers = [answer for question in questions
                   if (answer := self._answer(question, frame, sight, quality)) is not None]
        if answers:
            self._interrupt_with(merge_answers(answers))

    def _answer(self, question: Question, frame, sight: Sight | None, quality: FrameQuality) -> SpokenAnswer | None:
        try:
            if not quality.usable:  # whatever was asked, the honest answer is that nothing can be seen
                result = nothing_to_see(quality)
            else:
                result = self.engine.answer_sight(sight, [question.text])[0]
        except EdgeVLMError as exc:  # e.g. a line with no words: say why, and narrate on
            self.on_line(f"note: {exc}")
            return None
        latency = (self.clock() - question.asked_at) * 1000
        self.answer_ms.append(latency)
        self.events.write("answer", frame.t, question=question.text, answer=result.answer, text=result.text,
                          probability=round(float(result.probability), 4), abstained=bool(result.abstained),
                          index=frame.index, question_to_answer_ms=round(latency, 1))
        return spoken_answer(question, result.text, frame.t)

    def _interrupt_with(self, answer: SpokenAnswer) -> None:
        """Say ``answer`` next: drop the captions waiting for speech, cut short the one being
        said, queue the answer. Only this thread puts utterances, so once drained the queue
        holds the answer alone and nothing can get ahead of it."""
        self._count_answers_waiting(+1)  # from here the speech thread drops any caption it takes
        waiting: list[SpokenAnswer] = []
        while (item := self.utterances.get(timeout=0)) is not None:
            if isinstance(item, SpokenAnswer):  # an earlier answer not said yet: said together, in order
                waiting.append(item)
                self._count_answers_waiting(-1)
            else:
                self._count_interrupted()
        if self.speech is not None and not self._saying_answer and self.speech.stop():  # an answer is heard out
            log.info("utterance cut short: a question was answered")
        self.utterances.put(merge_answers([*waiting, answer]), self.stop_event)
        # The answer counts as an utterance for the gap: the next caption waits min_gap after it
        # (the dropped captions count as said, so the policy does not bring them back).
        self.policy.last_said_t = answer.t

    def _wait_for_answer(self) -> None:
        """Until the speech thread has taken the queued answers (or the run is stopping)."""
        while self._answer_waiting() and not self.stop_event.wait(0.05):
            pass

    # --- inference loop -----------------------------------------------------------------
    def _handle(self, frame) -> None:
        if self.first_t is None:
            self.first_t = frame.t
        self.last_t = frame.t
        self.last_frame = frame
        self.events.write("frame", frame.t, index=frame.index)
        quality = assess_frame(frame.image)
        if not quality.usable:
            self._handle_unusable(frame, quality)
            return
        self.frame_issue = None
        sight = self.engine.see(self.engine.preprocess(frame.image)[None])
        self._answer_questions(frame, sight, quality)  # before the caption: a question is answered first
        decision = self.gate.update(sight.pooled[0], frame.t)
        if (decision.distance >= self.options.cut_short_distance and self.speech is not None
                and not self._saying_answer and self.speech.stop()):
            log.info("utterance cut short: scene changed (distance %.2f)", decision.distance)
        if not decision.caption:
            self.events.write("skip_unchanged", frame.t, reason=decision.reason, distance=round(decision.distance, 4))
        else:
            description = self.engine.describe_sight(sight, settings=self.settings)[0]
            text = description.text  # hedged when the scene is unlike anything the model knows
            latency = (self.clock() - frame.captured_at) * 1000
            self.caption_ms.append(latency)
            self.captions += 1
            self.current_text = text
            self.events.write("caption", frame.t, text=text, reason=decision.reason,
                              distance=round(decision.distance, 4), frame_to_caption_ms=round(latency, 1))
            verdict = self.policy.offer(Utterance(text, frame.t, frame.captured_at))
            if verdict == "duplicate":
                self.events.write("skip_duplicate", frame.t, text=text)
        self._release(frame.t)
        if self.video is not None:
            self.video.write_at(frame.image, self.current_text, frame.t - self.first_t)

    def _handle_unusable(self, frame, quality: FrameQuality) -> None:
        """A frame with nothing to see: answer questions with the reason, and say the reason
        once when the view becomes unusable (not on every dark frame), never a caption."""
        self._answer_questions(frame, None, quality)
        if quality.issue != self.frame_issue:
            self.frame_issue = quality.issue
            self.gate.reset()  # when the view comes back, it is a new scene: caption it
            self.current_text = quality.message
            self.events.write("frame_issue", frame.t, issue=quality.issue, text=quality.message)
            self.policy.offer(Utterance(quality.message, frame.t, frame.captured_at))
        self._release(frame.t)
        if self.video is not None:
            self.video.write_at(frame.image, self.current_text, frame.t - self.first_t)

    def _release(self, now_t: float) -> None:
        """Hand the policy's next caption to speech, unless an answer still waits to be said:
        it goes first (and a live NewestSlot would replace it). The caption stays pending."""
        if self._answer_waiting():
            return
        utterance = self.policy.release(now_t)
        if utterance is not None:
            self.utterances.put(utterance, self.stop_event)

    def _finish_stream(self) -> None:
        """End of stream: answer the last questions, then say the caption still waiting."""
        if self.last_frame is not None:
            self._answer_questions(self.last_frame)
        self._wait_for_answer()
        last = self.policy.release(float("inf"))
        if last is not None and last.reannounce is False:
            self.utterances.put(last, self.stop_event)

    def run(self) -> dict:
        capture = threading.Thread(target=self._capture, name="capture", daemon=True)
        speaker = threading.Thread(target=self._speak, name="speech", daemon=True)
        capture.start()
        speaker.start()
        if self.questions is not None:
            self.questions.start()
        try:
            while not self.stop_event.is_set():
                frame = self.frames.get(timeout=0.2)
                if frame is CLOSED:
                    break
                if frame is not None:
                    self._handle(frame)
                elif self.last_frame is not None:  # no new frame (a stalled camera): answer about the last one
                    self._answer_questions(self.last_frame)
            if not self.stop_event.is_set():
                self._finish_stream()
        finally:
            if self.questions is not None:
                self.questions.close()  # returns promptly even while stdin stays open
            if self.stop_event.is_set() and self.speech is not None:
                self.speech.stop()  # ctrl-C / SIGTERM: cut the current utterance
            self.utterances.close(self.stop_event)
            speaker.join()
            self.stop_event.set()
            capture.join(timeout=2.0)
            summary = self.summary()
            self.events.write("summary", self.last_t, **summary)
            self.events.close()
            if self.video is not None:
                self.video.close()
            if self.options.subtitles:
                write_subtitles(self.options.subtitles, self.cues, self.last_t + 1.0)
        if self.error is not None:
            raise self.error
        return summary

    def summary(self) -> dict:
        minutes = max((self.last_t - (self.first_t or 0.0)) / 60.0, 1e-9)
        counts = self.events.counts
        threshold = self.options.policy.same_meaning
        repeats = sum(caption_similarity(a, b) >= threshold for a, b in zip(self.spoken, self.spoken[1:]))
        return {
            "frames": counts["frame"],
            "stream_seconds": round(self.last_t - (self.first_t or 0.0), 2),
            "captions": self.captions,
            "utterances": len(self.spoken),
            "captions_per_minute": round(self.captions / minutes, 2),
            "utterances_per_minute": round(len(self.spoken) / minutes, 2),
            "repeat_rate": round(repeats / max(len(self.spoken) - 1, 1), 4),
            "frames_skipped_unchanged": counts["skip_unchanged"],
            "captions_skipped_duplicate": counts["skip_duplicate"],
            "stale_dropped": self.utterances.dropped + self.policy.replaced + self.interrupted,
            "frame_to_caption_ms_p50": _percentile(self.caption_ms, 50),
            "frame_to_caption_ms_p90": _percentile(self.caption_ms, 90),
            "frame_to_speech_ms_p50": _percentile(self.speech_ms, 50),
            "frame_to_speech_ms_p90": _percentile(self.speech_ms, 90),
            "questions": len(self.answer_ms),
            "question_to_answer_ms_p50": _percentile(self.answer_ms, 50),
            "question_to_answer_ms_p90": _percentile(self.answer_ms, 90),
            "speech": bool(self.speech is not None and self.speech.available),
        }
