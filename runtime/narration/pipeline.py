"""The narration pipeline: capture -> inference -> speech, in threads with bounded hand-offs.

- capture: every frame in order for files (the reader waits for inference); the newest
  frame only for live sources and for files with ``realtime`` (paced like a camera);
- inference (the calling thread): vision graph on every frame, the decoder only when the
  scene gate says the scene changed; the policy decides what is said and when;
- speech: synthesizes each utterance to WAV (and plays it if there is a device); for live
  narration a newer utterance replaces one still waiting (a stale caption is never said).

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
from typing import Callable

import numpy as np

from edgevlm.errors import EdgeVLMError
from edgevlm.runtime.narration.outputs import CaptionedVideo, EventLog, write_subtitles
from edgevlm.runtime.narration.policy import NarrationPolicy, PolicySettings, Utterance
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
    def __init__(self, engine, source, options: NarrateOptions, speech=None, on_line: Callable[[str], None] = print,
                 clock: Callable[[], float] = time.monotonic):
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
            count += 1
            wav = None
            if self.speech is not None and self.speech.available:
                if self.options.audio_out:
                    wav = os.path.join(self.options.audio_out, f"utterance_{count:04d}.wav")
                elif self.speech.player is not None:
                    wav = os.path.join(tempfile.gettempdir(), f"edgevlm-{os.getpid()}-{count}.wav")
                if wav and not self.speech.synthesize(utterance.text, wav):
                    wav = None
            ready_ms = (self.clock() - utterance.captured_at) * 1000
            if not utterance.reannounce:
                self.speech_ms.append(ready_ms)
            self.spoken.append(utterance.text)
            self.cues.append((utterance.t, utterance.text))
            self.events.write("spoken", utterance.t, text=utterance.text, frame_to_speech_ms=round(ready_ms, 1),
                              wav=wav, reannounce=utterance.reannounce)
            self.on_line(f"[{utterance.t:8.2f}s] {utterance.text}")
            if wav and self.speech.player is not None:
                self.speech.play(wav)
                if not self.options.audio_out:
                    os.remove(wav)

    # --- inference loop -----------------------------------------------------------------
    def _handle(self, frame) -> None:
        if self.first_t is None:
            self.first_t = frame.t
        self.last_t = frame.t
        self.events.write("frame", frame.t, index=frame.index)
        visual, pooled = self.engine.encode(self.engine.preprocess(frame.image)[None])
        decision = self.gate.update(pooled[0], frame.t)
        if decision.distance >= self.options.cut_short_distance and self.speech is not None and self.speech.stop():
            log.info("utterance cut short: scene changed (distance %.2f)", decision.distance)
        if not decision.caption:
            self.events.write("skip_unchanged", frame.t, reason=decision.reason, distance=round(decision.distance, 4))
        else:
            ids = self.engine.generate(visual, self.settings)[0]
            text = self.engine.tokenizer.decode(ids)
            latency = (self.clock() - frame.captured_at) * 1000
            self.caption_ms.append(latency)
            self.captions += 1
            self.current_text = text
            self.events.write("caption", frame.t, text=text, reason=decision.reason,
                              distance=round(decision.distance, 4), frame_to_caption_ms=round(latency, 1))
            verdict = self.policy.offer(Utterance(text, frame.t, frame.captured_at))
            if verdict == "duplicate":
                self.events.write("skip_duplicate", frame.t, text=text)
        utterance = self.policy.release(frame.t)
        if utterance is not None:
            self.utterances.put(utterance, self.stop_event)
        if self.video is not None:
            self.video.write_at(frame.image, self.current_text, frame.t - self.first_t)

    def run(self) -> dict:
        capture = threading.Thread(target=self._capture, name="capture", daemon=True)
        speaker = threading.Thread(target=self._speak, name="speech", daemon=True)
        capture.start()
        speaker.start()
        try:
            while not self.stop_event.is_set():
                frame = self.frames.get(timeout=0.2)
                if frame is CLOSED:
                    break
                if frame is not None:
                    self._handle(frame)
            if not self.stop_event.is_set():  # end of stream: say what is still waiting
                last = self.policy.release(float("inf"))
                if last is not None and last.reannounce is False:
                    self.utterances.put(last, self.stop_event)
        finally:
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
            "stale_dropped": self.utterances.dropped + self.policy.replaced,
            "frame_to_caption_ms_p50": _percentile(self.caption_ms, 50),
            "frame_to_caption_ms_p90": _percentile(self.caption_ms, 90),
            "frame_to_speech_ms_p50": _percentile(self.speech_ms, 50),
            "frame_to_speech_ms_p90": _percentile(self.speech_ms, 90),
            "speech": bool(self.speech is not None and self.speech.available),
        }
