"""``edgevlm narrate``: narrate a camera or video aloud, speaking what is there now, once."""

from __future__ import annotations

import json
import os
import signal
import sys

import click

from edgevlm.cli.options import backend_option, dataclass_options, engine_option, pick, provider_option, threads_option
from edgevlm.runtime.live_reader import ReconnectSettings
from edgevlm.runtime.narration.policy import PolicySettings
from edgevlm.runtime.narration.scene_gate import GateSettings


@click.command("narrate")
@click.argument("source")
@engine_option
@provider_option
@backend_option
@threads_option
@click.option("--beam", type=click.IntRange(1, 16), default=None,
              help="Beam size (1: lowest latency). Default: 4 re-ranked by the engine's caption memory, 1 without one.")
@click.option("--tts", type=click.Choice(["espeak", "none"]), default="espeak", show_default=True)
@click.option("--speak/--no-speak", default=True, show_default=True, help="Play speech on the audio device.")
@click.option("--voice", default="en-us", show_default=True, help="espeak-ng voice.")
@click.option("--rate", type=click.IntRange(80, 450), default=175, show_default=True, help="Words per minute.")
@click.option("--audio-out", type=click.Path(file_okay=False), default=None, help="Write one WAV per utterance here.")
@click.option("--events", type=click.Path(dir_okay=False), default=None, help="JSONL event log.")
@click.option("--subtitles", type=click.Path(dir_okay=False), default=None, help="WebVTT (.vtt) or SRT (.srt) file.")
@click.option("--video-out", type=click.Path(dir_okay=False), default=None, help="MP4 with the narration drawn on.")
@click.option("--realtime", is_flag=True, help="Pace a video file like a live camera (newest frame wins).")
@click.option("--questions/--no-questions", default=None,
              help="Answer questions from standard input, one per line (default: only when it is a terminal).")
@click.option("--read-timeout", type=click.FloatRange(0.1, 600), default=5.0, show_default=True,
              help="Live sources: seconds without a frame before the camera counts as disconnected.")
@dataclass_options(GateSettings, prefix="gate-")
@dataclass_options(PolicySettings)
@dataclass_options(ReconnectSettings, prefix="reconnect-")
def command(source, engine_dir, provider, backend, threads, beam, tts, speak, voice, rate, audio_out, events, subtitles,
            video_out, realtime, questions, read_timeout, **kwargs):
    """Narrate SOURCE (video file, camera index or device, URL, GStreamer pipeline) aloud.

    Questions: type a question and press Enter (e.g. "is there a dog?"). It is answered
    about the newest frame, and the answer interrupts narration: it is said first, then
    narration goes on. Printed as "Q: ... A: ..."; an answer the model is unsure of is "I'm
    not sure". Questions are read when standard input is a terminal; --questions reads
    them from a pipe too (`questions.txt | edgevlm narrate 0 --questions`), --no-questions
    never reads it (so `while read f; do edgevlm narrate "$f"; done < list` keeps its
    list). Standard input at its end (ctrl-D) ends only the questions. An engine trained
    for captions only says so once and keeps narrating.

    A live source that drops (no frame for --read-timeout seconds, end of stream, decoder
    errors in a row) is said once ("camera disconnected, reconnecting") and reopened at
    once, then every --reconnect-interval seconds, doubling up to --reconnect-max-interval,
    --reconnect-attempts times per loss (0: forever); "camera back" when frames return.
    A video file is never reopened: a damaged stretch is skipped with a warning.
    """
    from edgevlm.errors import EdgeVLMError
    from edgevlm.paths import resolve_engine
    from edgevlm.runtime.backends import configured_backend
    from edgevlm.runtime.engine import CaptionEngine
    from edgevlm.runtime.narration.outputs import check_outputs
    from edgevlm.runtime.narration.pipeline import Narrator, NarrateOptions
    from edgevlm.runtime.narration.speech import Speech
    from edgevlm.runtime.sd_notify import ServiceNotifier
    from edgevlm.runtime.sources import FrameSource

    if subtitles and not subtitles.lower().endswith((".vtt", ".srt")):
        raise EdgeVLMError(f"--subtitles {subtitles}: use a .vtt or .srt file name")
    check_outputs(audio_out, events, subtitles, video_out)  # before the engine loads or the camera opens
    reconnect = ReconnectSettings(**pick(ReconnectSettings, kwargs, "reconnect_"))
    options = NarrateOptions(
        beam=beam, realtime=realtime, gate=GateSettings(**pick(GateSettings, kwargs, "gate_")),
        policy=PolicySettings(**pick(PolicySettings, kwargs)), audio_out=audio_out, events=events,
        subtitles=subtitles, video_out=video_out,
    )
    notify = lambda message: click.echo(f"note: {message}", err=True)  # noqa: E731
    speech = Speech(voice, rate, play=speak, notify=notify) if tts == "espeak" else None
    # On a device, narration starts at boot with nobody at a keyboard: missing or stale
    # TensorRT plans are rebuilt (a minute or more), and the wearer hears why nothing is said yet.
    backend = configured_backend(backend, rebuild=True, on_prepare=lambda message: say_now(speech, message))
    engine = CaptionEngine(resolve_engine(engine_dir), provider, threads, backend=backend)
    engine.check_captions()  # narration says captions: a question-only engine cannot narrate
    with FrameSource(source, read_timeout=read_timeout, reconnect=reconnect) as frames:
        # sys.stdin is None when the process has no standard input at all (fd 0 closed).
        # Default: a terminal only; a pipe or file may be a batch script's own input.
        if questions is None:
            questions = sys.stdin is not None and sys.stdin.isatty()
        question_stream = sys.stdin if questions else None
        # Under a systemd Type=notify unit (deploy/): READY, watchdog, status; otherwise nothing.
        service = ServiceNotifier.from_env(running_status=f"narrating {source}")
        narrator = Narrator(engine, frames, options, speech, on_line=click.echo, questions=question_stream,
                            on_warning=lambda line: click.echo(line, err=True), service=service)
        def on_signal(signum, _frame):
            if narrator.stop_event.is_set():  # asked twice: stop waiting for a clean finish
                signal.signal(signum, signal.SIG_DFL)
                os.kill(os.getpid(), signum)
            narrator.stop()

        previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            summary = narrator.run()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
    click.echo("summary: " + json.dumps(summary))


def say_now(speech, message: str) -> None:
    """Print and say ``message`` before narration starts (the engine is still being prepared)."""
    import tempfile

    click.echo(message)
    if speech is None or not speech.available:
        return
    with tempfile.TemporaryDirectory(prefix="edgevlm-say-") as folder:
        wav = os.path.join(folder, "say.wav")
        if speech.synthesize(message, wav):
            speech.play(wav)
