"""Atomic writes: a crash never leaves a half-written file or folder in place, and writing
an output folder over an older one keeps the files in it that the writer does not write.

Staging files and folders are named ``.tmp-*`` beside their target; they are removed by
``finally`` blocks, which run on errors, Ctrl-C and (through the handler the ``edgevlm``
command installs) SIGTERM. Only SIGKILL or a power cut leaves one behind.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import tempfile
import threading
from contextlib import contextmanager

MAX_JSON_BYTES = 1024**3  # 1 GiB: json.load holds the text and ~10x that in objects


def _umask() -> int:
    """The process umask, read from /proc (Linux 4.7+) where it can be: setting and restoring
    it (the only portable way) gives any other thread creating a file in between a umask of
    0, and two threads doing it at once can leave it at 0 for good."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextmanager
def _signals_deferred():
    """Hold SIGINT and SIGTERM back while a staging name is made or a folder swap finishes,
    then deliver them as usual: in between, a handler raising would leave a staging file
    nobody removes, or no folder at the target. (Blocking with pthread_sigmask would not do:
    Python runs its handlers in the main thread whichever thread the kernel hands the signal
    to.)"""
    if threading.current_thread() is not threading.main_thread():  # only the main thread may set handlers
        yield
        return
    caught: list[int] = []
    previous = {sig: signal.signal(sig, lambda signum, _frame: caught.append(signum))
                for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, signal.SIG_DFL if handler is None else handler)
        if caught:
            signal.raise_signal(caught[0])  # handled now as it would have been then


@contextmanager
def atomic_path(path: str):
    """Yield a temp path beside ``path``; on success rename it over ``path`` (same filesystem)."""
    parent = os.path.dirname(os.path.abspath(path)) or "."
    os.makedirs(parent, exist_ok=True)
    tmp = None
    try:
        with _signals_deferred():  # a signal as it is made must not leave it behind unnamed
            fd, tmp = tempfile.mkstemp(prefix=".tmp-" + os.path.basename(path), dir=parent)
            os.close(fd)
        yield tmp
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file normal permissions
        os.replace(tmp, path)
    finally:
        if tmp and os.path.exists(tmp):
            os.remove(tmp)


def _bytes(count: int) -> str:
    return f"{count:,} bytes" if count < 1_000_000 else f"{count / 1e6:,.0f} MB"


def read_json(path: str, expected: str = "", max_bytes: int = MAX_JSON_BYTES):
    """Parse a JSON file of at most ``max_bytes`` bytes; a missing, unreadable, too big or
    invalid file is an EdgeVLMError naming the file (and what it should be)."""
    from edgevlm.errors import EdgeVLMError

    should_be = f"; expected {expected}" if expected else ""
    try:
        size = os.path.getsize(path)
        if size > max_bytes:  # checked before reading: the parse would need many times this in memory
            raise EdgeVLMError(f"{path} is {_bytes(size)}, over the {_bytes(max_bytes)} limit for this file{should_be}")
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise EdgeVLMError(f"{path} is not valid JSON ({exc}){should_be}") from exc
    except RecursionError as exc:  # [[[[...]]]] thousands deep
        raise EdgeVLMError(f"{path} is nested too deeply to be {expected or 'a JSON file of ours'}") from exc
    except OSError as exc:  # missing, a folder, no permission
        raise EdgeVLMError(f"cannot read {path}: {exc.strerror or exc}") from exc


def write_json(path: str, data) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=2)
            f.write("\n")


def check_replaceable(path: str, marker: str, what: str, inputs: tuple[str, ...] = ()) -> None:
    """Refuse to replace a folder that is not an earlier output of the same kind (it has no
    ``marker`` file), or that holds one of the ``inputs``: ``--out runs`` must never delete
    runs/."""
    from edgevlm.errors import EdgeVLMError

    target = os.path.abspath(path)
    for source in inputs:
        source = os.path.abspath(source)
        if source == target or source.startswith(target + os.sep):
            raise EdgeVLMError(f"--out {path} contains the input {source}; write to another folder")
    if os.path.exists(path) and not os.path.isdir(path):
        raise EdgeVLMError(f"--out {path} exists and is not a folder; choose a folder name")
    if os.path.isdir(path) and os.listdir(path) and not os.path.isfile(os.path.join(path, marker)):
        raise EdgeVLMError(f"refusing to replace {path}: it is a non-empty folder but not {what}; "
                           "choose a new or empty folder")


def probe_writable(folder: str) -> None:
    """Create and remove a temp folder in ``folder``; OSError when that cannot be done. A real
    probe, since permission bits say nothing of root, read-only mounts, ACLs or a full quota.
    Signals wait until the probe is gone: Ctrl-C between the two calls left it in the user's
    folder (seen in CI: tests/export/test_export_outputs.py)."""
    with _signals_deferred():
        os.rmdir(tempfile.mkdtemp(prefix=".tmp-probe-", dir=folder))


def check_writable(path: str, inside: bool = False, flag: str = "--out") -> None:
    """Fail before any work when ``path`` cannot be written: its nearest existing parent
    (where ``atomic_dir``/``atomic_path`` stage it), and with ``inside`` or when it is an
    existing folder, the folder itself (``probe_writable``)."""
    from edgevlm.errors import EdgeVLMError

    target = os.path.abspath(path)
    if os.path.exists(target) and not os.path.isdir(target) and inside:
        raise EdgeVLMError(f"{flag} {path} exists and is not a folder; choose a folder name")
    parent = os.path.dirname(target)
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    places = [parent] + ([target] if os.path.isdir(target) else [])
    for place in places:
        if not os.path.isdir(place):
            raise EdgeVLMError(f"{flag} {path}: {place} is a file, not a folder; choose another path")
        try:
            probe_writable(place)
        except OSError as exc:
            raise EdgeVLMError(f"{flag} {path}: cannot write in {place} ({exc.strerror or exc}); "
                               "choose a folder you can write to") from exc


def _swap_in(tmp: str, path: str) -> None:
    """Put the finished folder ``tmp`` at ``path``. An older folder there is replaced whole,
    then what it holds that the new one does not is moved into the new one.

    Kept, not refused: an engine or model folder is where users put a README, a licence or
    their own notes, and re-exporting into it must not delete them (issue 16) nor fail until
    they are moved away. The runtime reads only the files its manifest lists, so a kept file
    cannot change what runs. Files the new output also writes are replaced."""
    from edgevlm.errors import EdgeVLMError

    if not os.path.isdir(path):
        os.replace(tmp, path)
        return
    old = tmp + ".old"
    os.replace(path, old)
    try:
        os.replace(tmp, path)
    except BaseException:
        os.replace(old, path)  # the new folder could not go in: the old one goes back
        raise
    stuck = []
    for name in os.listdir(old):
        if not os.path.lexists(os.path.join(path, name)):
            try:
                os.replace(os.path.join(old, name), os.path.join(path, name))
            except OSError:
                stuck.append(name)
    if stuck:  # never delete what could not be moved
        raise EdgeVLMError(f"wrote {path}, but could not move {', '.join(stuck)} into it from the old folder, "
                           f"now {old}; move them yourself")
    shutil.rmtree(old)


@contextmanager
def atomic_dir(path: str):
    """Yield an empty temp folder beside ``path``; on success it replaces ``path``, keeping
    the files of an older ``path`` that it does not write (see ``_swap_in``; callers check
    with ``check_replaceable`` first). On any error or interruption the temp folder is
    removed and ``path`` is left as it was."""
    parent = os.path.dirname(os.path.abspath(path)) or "."
    os.makedirs(parent, exist_ok=True)
    tmp = None
    try:
        with _signals_deferred():  # a signal as it is made must not leave it behind unnamed
            tmp = tempfile.mkdtemp(prefix=".tmp-" + os.path.basename(path), dir=parent)
        yield tmp
        os.chmod(tmp, 0o777 & ~_umask())
        for name in os.listdir(tmp):  # some writers (safetensors) create files 0600
            os.chmod(os.path.join(tmp, name), 0o666 & ~_umask())
        with _signals_deferred():  # a signal between the two renames would leave no folder at path
            _swap_in(tmp, path)
    finally:
        if tmp and os.path.isdir(tmp):
            shutil.rmtree(tmp)
