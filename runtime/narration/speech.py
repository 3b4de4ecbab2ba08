"""Speech through espeak-ng in a subprocess: to WAV files, and to the audio device if any.

If espeak-ng is missing or fails, or there is no audio device, say so once and carry on:
narration continues as text.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import threading

log = logging.getLogger(__name__)

SYNTH_TIMEOUT_S = 10.0


def find_espeak() -> str | None:
    return shutil.which("espeak-ng") or shutil.which("espeak")


# A player command chosen by hand ("aplay -q -D plughw:1,0"). The systemd units set "aplay -q":
# a system service has no PulseAudio/PipeWire session, so paplay (picked first otherwise) would fail.
PLAYER_ENV = "EDGEVLM_AUDIO_PLAYER"


def audio_player() -> list[str] | None:
    """A command that plays a WAV file on the default device, or None without a device."""
    if not (os.path.isdir("/dev/snd") and os.listdir("/dev/snd")) and not os.environ.get("PULSE_SERVER"):
        return None
    chosen = os.environ.get(PLAYER_ENV, "").split()
    if chosen:
        return chosen if shutil.which(chosen[0]) else None
    for player in (["paplay"], ["aplay", "-q"], ["pw-play"]):
        if shutil.which(player[0]):
            return player
    return None


class Speech:
    """Synthesize with espeak-ng; play on the device when there is one. Thread-safe ``stop``."""

    def __init__(self, voice: str = "en-us", rate: int = 175, play: bool = True, notify=log.warning):
        self.voice, self.rate = voice, rate
        self.espeak = find_espeak()
        self.notify = notify
        self.player = audio_player() if play else None
        self._warned: set[str] = set()
        self._playing: subprocess.Popen | None = None
        self._lock = threading.Lock()
        if self.espeak is None:
            self._warn_once("espeak", "espeak-ng not found (apt-get install espeak-ng): narrating as text only")
        if play and self.player is None:
            self._warn_once("device", "no audio device: speech is written to WAV files only (--audio-out)")

    @property
    def available(self) -> bool:
        return self.espeak is not None

    def _warn_once(self, key: str, message: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            self.notify(message)

    def synthesize(self, text: str, wav_path: str) -> bool:
        """Write ``text`` as a WAV file; False (after one warning) if espeak-ng fails."""
        if self.espeak is None:
            return False
        tmp = wav_path + ".part"
        try:
            subprocess.run([self.espeak, "-v", self.voice, "-s", str(self.rate), "-w", tmp, text],
                           check=True, capture_output=True, timeout=SYNTH_TIMEOUT_S)
            os.replace(tmp, wav_path)  # a WAV file is either complete or absent
            return True
        except (subprocess.SubprocessError, OSError) as exc:
            self._warn_once("synth", f"espeak-ng failed ({exc}): narrating as text only")
            if os.path.exists(tmp):
                os.remove(tmp)
            return False

    def play(self, wav_path: str) -> None:
        """Play to the device (blocks until done or ``stop``); no-op without a device."""
        if self.player is None:
            return
        with self._lock:
            self._playing = subprocess.Popen([*self.player, wav_path], stdout=subprocess.DEVNULL,
                                             stderr=subprocess.DEVNULL)
        self._playing.wait()
        with self._lock:
            self._playing = None

    def stop(self) -> bool:
        """Cut the current utterance short (the scene changed a lot). True if one was playing."""
        with self._lock:
            if self._playing is not None and self._playing.poll() is None:
                self._playing.terminate()
                return True
        return False
