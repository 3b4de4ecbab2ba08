"""Remember which engine files matched their manifest's sha256, so later starts skip hashing
(TensorRT plans too, against the sha256 their build recorded: runtime/engine_cache.py).

Every open checks an engine's files against the sha256s in its manifest (a truncated or
altered file must fail with one clear line, not load). For the shipped engine that is 21 MB
hashed on each start (14-18 ms of a 0.3 s cold start), and ``hashlib`` brings OpenSSL's
libcrypto with it (3.2 MB of a 120 MB peak RSS). As git's index does, a file that matched
is recorded with its stat identity (device, inode, size, mtime and ctime in nanoseconds)
and the boot's id. While all of these are unchanged the file was not written since: any
write, truncation or replacement moves ctime, which no unprivileged process can set back;
a reboot (or a card cloned with its cache) hashes everything once more. A file changed
within ``RACY_S`` of its recording could keep equal timestamps on a coarse-clock
filesystem, so only files older than that are recorded (git's "racy" rule). Records live
in the user cache, readable by this user only, and only this user's own are believed; when
the cache is unwritable the files are simply hashed every time. What stat cannot see (bits
rotting under an unchanged inode while the machine runs) is ``edgevlm doctor``'s to find:
it hashes every byte and drops the record of a file that no longer matches (TensorRT plans:
``edgevlm doctor --backend tensorrt``, where TensorRT is installed, and ``edgevlm build``).
"""

from __future__ import annotations

import functools
import json
import logging
import os
import tempfile
import time

log = logging.getLogger(__name__)

RACY_S = 2.0  # seconds: a file younger than this is verified but not recorded
MAX_PATHS = 64  # records kept per content (copies of one engine file); the oldest go first
MAX_RECORDS_BYTES = 1 << 20  # a bigger records file is not ours: ignored, then replaced
RECORDS_FOLDER = "verified-files"
BOOT_ID = "/proc/sys/kernel/random/boot_id"


def sha256_file(path: str) -> str:
    """The file's sha256 (hex). hashlib is imported here, not at module load: a start whose
    files all have records never loads OpenSSL."""
    with open(path, "rb") as f:
        return _sha256_of(f)


def _sha256_of(f) -> str:
    import hashlib

    h = hashlib.sha256()
    for chunk in iter(lambda: f.read(1 << 20), b""):
        h.update(chunk)
    return h.hexdigest()


@functools.lru_cache(maxsize=1)
def _boot() -> str:
    """This boot's id: a record holds for one boot only, so a file damaged while the machine
    was off (flash wear, a card cloned with its cache by dd) is hashed at the next start."""
    try:
        with open(BOOT_ID, encoding="ascii") as f:
            return f.read().strip()
    except OSError:
        return ""


def _identity(stat: os.stat_result) -> list:
    return [_boot(), stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns]


def _is_sha256(text: str) -> bool:
    """64 lower-case hex digits, as hashlib's hexdigest writes them (and our manifests)."""
    return len(text) == 64 and all(c in "0123456789abcdef" for c in text)


def _records_path(sha256: str) -> str:
    from edgevlm.runtime.engine_cache import user_cache_root  # engine_cache imports the manifest, which imports us

    return os.path.join(user_cache_root(), RECORDS_FOLDER, f"{sha256}.json")


def _read_records(path: str) -> dict:
    """{real path: identity} of a records file this user wrote and nobody else can; {} for
    none, another owner's, a group- or world-writable one, or anything damaged."""
    try:
        with open(path, "rb") as f:
            stat = os.fstat(f.fileno())
            if stat.st_uid != os.geteuid() or stat.st_mode & 0o022 or stat.st_size > MAX_RECORDS_BYTES:
                return {}
            records = json.loads(f.read())
        return records if isinstance(records, dict) else {}
    except Exception:  # noqa: BLE001 - none yet, or damaged in any way: hash, and write a fresh one
        return {}


def file_matches(path: str, sha256: str, use_records: bool = True) -> bool:
    """Does the file at ``path`` have this sha256? From its record when one matches its stat
    identity (``use_records``), else by hashing it: a match is recorded for next time (only
    when the file did not change while it was hashed), a mismatch removes its record."""
    real = os.path.realpath(path)
    if not _is_sha256(sha256):  # it names the records file: never a path out of the cache (it cannot match anyway)
        return sha256_file(real) == sha256
    records_path = _records_path(sha256)
    records = _read_records(records_path)
    with open(real, "rb") as f:
        before = _identity(os.fstat(f.fileno()))
        if use_records and records.get(real) == before:
            return True
        matches = _sha256_of(f) == sha256
        after = os.fstat(f.fileno())
    if not matches:
        if real in records:
            _write_records(records_path, {p: i for p, i in records.items() if p != real})
    elif use_records and _identity(after) == before and time.time() - max(after.st_mtime, after.st_ctime) > RACY_S:
        kept = [(p, i) for p, i in records.items() if p != real][-(MAX_PATHS - 1):]
        _write_records(records_path, {**dict(kept), real: before})
    return matches


def _write_records(records_path: str, records: dict) -> None:
    """Replace the records file whole (a temporary file renamed over it), readable by this
    user only. Not fileio.atomic_path: that swaps signal handlers and the umask, which an
    engine opened from a server's worker thread or a host application must not touch."""
    try:
        folder = os.path.dirname(records_path)
        os.makedirs(folder, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=folder)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(records, f)
            os.replace(tmp, records_path)
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)
    except OSError as exc:  # a read-only cache costs a hash per start, nothing else
        log.debug("cannot write the verified-file records %s: %s", records_path, exc)
