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
  answer is said next (questions.py);
- source changes: the capture thread passes them on a queue of their own (a NewestSlot
  would drop them); the inference thread logs them, and a live camera lost or back is said
  once, ahead of captions (source_notices.py). Damage skipped in a video file, or a file
  that ended early, is a warning line;
- systemd (``service``, runtime/sd_notify.py, only under a Type=notify unit): READY=1 after
  the first frame is handled, WATCHDOG=1 from the inference loop itself (so a hung loop
  stops feeding it and systemd restarts the service), STATUS= lines, STOPPING=1.

Nothing grows without bound when inference is slower than the camera. ``stop()`` (ctrl-C,
SIGTERM) ends every thread and the outputs are completed.
"""

from __future__ import annotations

import collections
import logging
import os
import queue
import tempfile
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, TextIO

import numpy as np

from edgevlm.errors import EdgeVLMError
from edgevlm.runtime.engine import Sight, nothing_to_see
from edgevlm.runtime.frame_quality import FrameQuality, assess_frame
from edgevlm.runtime.narration.outputs import CaptionedVideo, EventLog, check_outputs, write_subtitles
from edgevlm.runtime.narration.policy import NarrationPolicy, PolicySettings, Utterance
from edgevlm.runtime.narration.questions import (NO_ANSWERS, Question, QuestionReader, SpokenAnswer,
                                                 merge_answers, spoken_answer)
from edgevlm.runtime.narration.queues import CLOSED, BlockingSlot, NewestSlot
from edgevlm.runtime.narration.scene_gate import GateSettings, SceneGate
from edgevlm.runtime.narration.similarity import caption_similarity
from edgevlm.runtime.narration.source_notices import ANSWER_WHILE_LOST, EVENT_NAMES, SourceNotice, notice_for
from edgevlm.runtime.sd_notify import NO_SERVICE, ServiceNotifier
from edgevlm.runtime.stream_items import BACK, LOST, SourceChange, SourceStats

log = logging.getLogger(__name__)

# Latency percentiles are over the most recent this many values: a narrator that runs for
# days keeps its memory flat (the soak run, edgevlm.scripts.soak, measures it).
LATENCY_WINDOW = 10_000
# With a caption memory, 4 candidates re-ranked against the nearest photos' captions: dev CIDEr
# 0.463 (greedy) -> 0.539, BLEU-4 0.172 -> 0.199, at ~40 ms more per spoken caption on a 2-core
# AVX2 CPU (beam 8: 0.567 at ~75 ms more; MODEL_CARD.md). The decoder runs only on a scene
# change, and speaking the caption takes seconds: the better sentence is worth it.
NARRATION_MEMORY_BEAM = 4


def narration_beam(engine, beam: int | None) -> int:
    """The beam narration searches with: ``beam`` when given, else NARRATION_MEMORY_BEAM for
    an engine with a caption memory (re-ranked candidates) and 1 (greedy) for one without."""
    if beam is not None:
        return beam
    return NARRATION_MEMORY_BEAM if engine.reranks else 1


@dataclass(frozen=True)
class NarrateOptions:
    # None: NARRATION_MEMORY_BEAM where the engine has a caption memory, else greedy (latency first)
    beam: int | None = None
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


def _stream(source, stop: threading.Event):
    """Frames and SourceChanges of ``source`` until ``stop``; a source without ``stream()`` (a
    plain list of frames in a test) gives its frames."""
    stream = getattr(source, "stream", None)
    return stream(stop) if stream is not None else source.frames()


def _source_stats(source) -> dict:
    """The source's counters for the summary; zeros for a source that keeps none."""
    stats = getattr(source, "stats", None)
    return vars(stats() if stats is not None else SourceStats())


class Narrator:
    """Narrate ``source``; ``questions``: a text stream (stdin) of questions to answer, a
    QuestionReader that others put questions into (``edgevlm serve``), or None; ``on_warning``:
    where lines about the source go ("warning: ..."; default ``on_line``); ``on_event``: gets
    every event as the JSON object the event log writes; ``service``: what systemd is told
    (``edgevlm narrate`` under a unit; nothing by default)."""

    def __init__(self, engine, source, options: NarrateOptions, speech=None, on_line: Callable[[str], None] = print,
                 clock: Callable[[], float] = time.monotonic, questions: TextIO | QuestionReader | None = None,
                 on_warning: Callable[[str], None] | None = None, on_event: Callable[[dict], None] | None = None,
                 service: ServiceNotifier = NO_SERVICE):
        check_outputs(options.audio_out, options.events, options.subtitles, options.video_out)
        self.engine, self.source, self.options = engine, source, options
        self.speech, self.on_line, self.clock = speech, on_line, clock
        self.service = service
        self.on_warning = on_warning or on_line
        self.stop_event = threading.Event()
        self.gate = SceneGate(options.gate)
        self.policy = NarrationPolicy(options.policy)
        self.events = EventLog(options.events, on_event)
        live = source.live or options.realtime
        self.frames = NewestSlot() if live else BlockingSlot(2)
        self.utterances = NewestSlot() if live else BlockingSlot(4)
        self.video = CaptionedVideo(options.video_out, source.fps or 10.0) if options.video_out else None
        self.settings = engine.settings(narration_beam(engine, options.beam))
        self.cues: list[tuple[float, str]] = []  # (t, text) for the subtitles; kept only when asked for
        self.current_text = ""
        self.caption_ms: collections.deque[float] = collections.deque(maxlen=LATENCY_WINDOW)
        self.speech_ms: collections.deque[float] = collections.deque(maxlen=LATENCY_WINDOW)
        self.utterance_count = 0  # captions said (answers and notices are not narration's)
        self.repeats = 0  # of them, said right after one meaning the same
        self._last_spoken: str | None = None
        self.captions = 0
        self.first_t: float | None = None
        self.last_t = 0.0
        self.error: BaseException | None = None
        # questions: read on their own thread, answered on the inference thread (the engine is not thread-safe)
        if questions is not None and not isinstance(questions, QuestionReader):
            questions = QuestionReader(questions, clock)
        self.questions = questions
        self.last_frame = None  # the newest frame handled: what a question is answered about
        self.answer_ms: collections.deque[float] = collections.deque(maxlen=LATENCY_WINDOW)  # question -> answer ready
        self.answered = 0  # questions answered
        self.frame_issue: str | None = None  # the problem of the last frame ("dark"...), None when usable
        self.told_no_answers = False
        self.interrupted = 0  # captions never said because an answer went first, or the camera was lost
        self._answers_waiting = 0  # answers queued for speech, not yet taken by the speech thread
        self._answers_lock = threading.Lock()
        self._saying_answer = False  # set by the speech thread: a scene change does not cut an answer
        self.voiced = 0  # utterances made into speech (a WAV written, and played when there is a device)
        # source changes: capture thread -> inference thread (never dropped), each with the index of
        # the last frame put before it, so the inference thread handles it between the right frames
        self._changes: queue.SimpleQueue[tuple[int, SourceChange]] = queue.SimpleQueue()
        self._pending_changes: collections.deque[tuple[int, SourceChange]] = collections.deque()
        # notices: inference thread -> speech thread, said before any caption
        self._notices: collections.deque[SourceNotice] = collections.deque()
        self.source_lost = False  # a live source is gone right now (inference thread)

    def stop(self) -> None:
        self.stop_event.set()

    # --- threads ----------------------------------------------------------------------
    def _capture(self) -> None:
        try:
            started, last_index = None, -1
            for frame in _stream(self.source, self.stop_event):
                if self.stop_event.is_set():
                    break
                if isinstance(frame, SourceChange):
                    self._changes.put((last_index, frame))
                    continue
                last_index = frame.index
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
        count, closed = 0, False
        while True:
            if self._notices:  # a notice about the camera goes ahead of any caption
                utterance = self._notices.popleft()
            elif closed:
                return
            else:
                utterance = self.utterances.get(timeout=0.05)  # short: a notice waits at most this long
            if utterance is CLOSED:
                closed = True  # a notice queued just before the end is still said
                continue
            if utterance is None:
                if self.stop_event.is_set() and len(self.utterances) == 0:
                    return
                continue
            if self.stop_event.is_set():  # stopping: say nothing more
                return
            is_answer = isinstance(utterance, SpokenAnswer)
            is_notice = isinstance(utterance, SourceNotice)
            if is_answer:
                self._count_answers_waiting(-1)
            elif not is_notice and self._answer_waiting():  # taken just before an answer was queued: it goes first
                self._count_interrupted()
                continue
            count += 1
            wav = self._synthesize(utterance.text, count)
            if not is_answer and not is_notice and self._answer_waiting():  # an answer came while this was synthesized
                self._count_interrupted()
                if wav:
                    os.remove(wav)
                continue
            self._saying_answer = is_answer
            if is_answer:
                self._announce_answer(utterance, wav)
            elif is_notice:
                self._announce_notice(utterance, wav)
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
        if not self.speech.synthesize(text, wav):
            return None
        self.voiced += 1
        return wav

    def _announce(self, utterance: Utterance, wav: str | None) -> None:
        """A caption is said: log it, print it, keep it for the subtitles and the summary."""
        ready_ms = (self.clock() - utterance.captured_at) * 1000
        if not utterance.reannounce:
            self.speech_ms.append(ready_ms)
        if self._last_spoken is not None:
            self.repeats += caption_similarity(self._last_spoken, utterance.text) >= self.options.policy.same_meaning
        self._last_spoken = utterance.text
        self.utterance_count += 1
        self._cue(utterance.t, utterance.text)
        self.events.write("spoken", utterance.t, text=utterance.text, frame_to_speech_ms=round(ready_ms, 1),
                          wav=wav, reannounce=utterance.reannounce)
        self.on_line(f"[{utterance.t:8.2f}s] {utterance.text}")

    def _announce_answer(self, answer: SpokenAnswer, wav: str | None) -> None:
        """An answer is said: one "Q: ... A: ..." line per question (console and subtitles).
        Not counted as utterances: the caption metrics (repeat rate, frame-to-speech) are narration's."""
        ready_ms = (self.clock() - answer.captured_at) * 1000
        self._cue(answer.t, "\n".join(answer.lines))
        self.events.write("spoken", answer.t, text=answer.text, question_to_speech_ms=round(ready_ms, 1),
                          wav=wav, answer=True)
        for line in answer.lines:
            self.on_line(f"[{answer.t:8.2f}s] {line}")

    def _announce_notice(self, notice: SourceNotice, wav: str | None) -> None:
        """"camera disconnected, reconnecting" / "camera back" is said: printed like a caption.
        Not counted as utterances: the caption metrics are narration's."""
        self._cue(notice.t, notice.text)
        self.events.write("spoken", notice.t, text=notice.text, wav=wav, notice=notice.kind)
        self.on_line(f"[{notice.t:8.2f}s] {notice.text}")

    def _cue(self, t: float, text: str) -> None:
        if self.options.subtitles:  # otherwise nothing reads them: a long run keeps no history
            self.cues.append((t, text))

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

    def _answer_questions(self, frame, sight: Sight | None = None, quality: FrameQuality | None = None,
                          pixels: np.ndarray | None = None) -> None:
        """Answer the pending questions about ``frame`` (its Sight and pixels (1,3,S,S) if
        already encoded; a frame with nothing to see answers with the reason) and make the
        answers interrupt narration."""
        questions = self._pending_questions()
        if not questions:
            return
        quality = quality or assess_frame(frame.image)
        if quality.usable:
            texts = [question.text for question in questions]
            pixels = pixels if pixels is not None else self.engine.preprocess(frame.image)[None]
            sight = self.engine.question_sight(pixels, texts, sight)
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
        self.answered += 1
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

    # --- source changes (inference thread) ------------------------------------------------
    def _take_changes(self, before=None) -> None:
        """Handle the changes the capture thread passed on, oldest first: all of them, or with
        ``before`` (a frame about to be handled) those that came before it. A live slot may hand
        over a frame put before a change that is already queued: the change waits for it."""
        while True:
            try:
                self._pending_changes.append(self._changes.get_nowait())
            except queue.Empty:
                break
        while self._pending_changes and (before is None or self._pending_changes[0][0] < before.index):
            self._source_change(self._pending_changes.popleft()[1])

    def _source_change(self, change: SourceChange) -> None:
        self.last_t = max(self.last_t, change.t)
        self.events.write(EVENT_NAMES[change.kind], change.t, message=change.message, **change.details)
        notice = notice_for(change, self.clock())
        if notice is None:  # damage in a video file: for the console, not for speech
            self.on_warning(f"warning: {change.message}")
            return
        self.on_warning(f"note: {change.message}")
        self.gate.reset()  # whatever comes next is a new view: caption it
        if change.kind == LOST:
            self.source_lost = True
            self.service.status("camera lost, reconnecting")  # still alive: the loop keeps feeding the watchdog
            self._drop_waiting_captions()  # they describe what was there before the loss
        elif change.kind == BACK:
            self.source_lost = False
            self.service.running()
            self.frame_issue = None  # a dark or covered view is said again if it still is
            self.policy.last_said = None  # say the scene again even if it is what was said before the loss
        self._notices.append(notice)
        self.policy.last_said_t = change.t  # the notice counts as an utterance for the gap

    def _drop_waiting_captions(self) -> None:
        """Drop the caption the policy holds and those queued for speech (answers stay)."""
        if self.policy.pending is not None:
            self.policy.pending = None
            self.policy.replaced += 1
        answers: list[SpokenAnswer] = []
        while (item := self.utterances.get(timeout=0)) is not None and item is not CLOSED:
            if isinstance(item, SpokenAnswer):
                answers.append(item)
            else:
                self._count_interrupted()
        if answers:
            self.utterances.put(merge_answers(answers), self.stop_event)

    def _answer_while_lost(self) -> None:
        """Questions asked while the camera is gone: the honest answer is that nothing can be seen."""
        questions = self._pending_questions()
        if not questions:
            return
        answers = []
        for question in questions:
            latency = (self.clock() - question.asked_at) * 1000
            self.answer_ms.append(latency)
            self.answered += 1
            self.events.write("answer", self.last_t, question=question.text, answer=None, text=ANSWER_WHILE_LOST,
                              probability=None, abstained=True, index=None, source_lost=True,
                              question_to_answer_ms=round(latency, 1))
            answers.append(spoken_answer(question, ANSWER_WHILE_LOST, self.last_t))
        self._interrupt_with(merge_answers(answers))

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
        pixels = self.engine.preprocess(frame.image)[None]
        sight = self.engine.see(pixels)
        self._answer_questions(frame, sight, quality, pixels)  # before the caption: a question is answered first
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
        self._take_changes()
        if self.source_lost:
            self._answer_while_lost()
        elif self.last_frame is not None:
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
                # The loop turned (at least every 0.2 s, frame or not, camera there or not): feed
                # systemd's watchdog from here only, so stuck inference or a deadlock starves it.
                self.service.alive()
                if frame is CLOSED:
                    break
                self._take_changes(before=frame)
                if frame is not None:
                    self._handle(frame)
                    self.service.ready()  # once: the engine is open and has handled a real frame
                elif self.source_lost:  # the camera is gone: say so to a question
                    self._answer_while_lost()
                elif self.last_frame is not None:  # no new frame (a stalled camera): answer about the last one
                    self._answer_questions(self.last_frame)
            if not self.stop_event.is_set():
                self._finish_stream()
        finally:
            self.service.stopping()
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
        said = self.utterance_count
        return {
            "frames": counts["frame"],
            "stream_seconds": round(self.last_t - (self.first_t or 0.0), 2),
            "captions": self.captions,
            "utterances": said,
            "captions_per_minute": round(self.captions / minutes, 2),
            "utterances_per_minute": round(said / minutes, 2),
            "repeat_rate": round(self.repeats / max(said - 1, 1), 4),
            "frames_skipped_unchanged": counts["skip_unchanged"],
            "captions_skipped_duplicate": counts["skip_duplicate"],
            "stale_dropped": self.utterances.dropped + self.policy.replaced + self.interrupted,
            "frame_to_caption_ms_p50": _percentile(self.caption_ms, 50),
            "frame_to_caption_ms_p90": _percentile(self.caption_ms, 90),
            "frame_to_speech_ms_p50": _percentile(self.speech_ms, 50),
            "frame_to_speech_ms_p90": _percentile(self.speech_ms, 90),
            "questions": self.answered,
            "question_to_answer_ms_p50": _percentile(self.answer_ms, 50),
            "question_to_answer_ms_p90": _percentile(self.answer_ms, 90),
            # Speech was produced: at least one utterance made into a WAV (written or played), not merely enabled.
            "speech": self.voiced > 0,
            "voiced": self.voiced,
            **_source_stats(self.source),
        }
