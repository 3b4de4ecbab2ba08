"""Remember which engine files matched their manifest's sha256, so later starts skip hashing.

Every open checks an engine's files against the sha256s in its manifest (a truncated or
altered file must fail with one clear line, not load). For the shipped engine that is 21 MB
hashed on each start (14-18 ms of a 0.3 s cold start), and ``hashlib`` brings OpenSSL's
libcrypto with it (3.2 MB of a 120 MB peak RSS). As git's index does, a file that matched
is recorded with its stat identity (device, inode, size, mtime and ctime in nanoseconds).
While all of these are unchanged the file was not written since: any write, truncation or
replacement moves ctime, which no unprivileged process can set back. A file changed within
``RACY_S`` of its recording could keep equal timestamps on a coarse-clock filesystem, so
only files older than that are recorded (git's "racy" rule). Records live in the user
cache; when it is unwritable the files are simply hashed every time.
"""

from __future__ import annotations

import json
import logging
import os
import time

log = logging.getLogger(__name__)

RACY_S = 2.0  # seconds: a file younger than this is verified but not recorded
MAX_PATHS = 64  # records kept per content (copies of one engine file); the oldest go first
RECORDS_FOLDER = "verified-files"


def sha256_file(path: str) -> str:
    """The file's sha256 (hex). hashlib is imported here, not at module load: a start whose
    files all have records never loads OpenSSL."""
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _identity(stat: os.stat_result) -> list[int]:
    return [stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns]


def _records_path(sha256: str) -> str:
    from edgevlm.runtime.engine_cache import user_cache_root  # engine_cache imports the manifest, which imports us

    return os.path.join(user_cache_root(), RECORDS_FOLDER, f"{sha256[:32]}.json")


def _read_records(path: str) -> dict:
    try:
        with open(path, encoding="utf-8") as f:
            records = json.load(f)
        return records if isinstance(records, dict) else {}
    except (OSError, ValueError):  # none yet, or damaged: hash, and write a fresh one
        return {}


def file_matches(path: str, sha256: str, use_records: bool = True) -> bool:
    """Does the file at ``path`` have this sha256? From its record when one matches its stat
    identity (``use_records``), else by hashing it, recording a match for next time."""
    real = os.path.realpath(path)
    stat = os.stat(real)
    records_path = _records_path(sha256)
    records = _read_records(records_path) if use_records else {}
    if records.get(real) == _identity(stat):
        return True
    if sha256_file(real) != sha256:
        return False
    if use_records and time.time() - max(stat.st_mtime, stat.st_ctime) > RACY_S:
        _write_record(records_path, records, real, stat)
    return True


def _write_record(records_path: str, records: dict, real: str, stat: os.stat_result) -> None:
    from edgevlm.fileio import write_json

    try:
        kept = [(path, identity) for path, identity in records.items() if path != real][-(MAX_PATHS - 1):]
        write_json(records_path, {**dict(kept), real: _identity(stat)})
    except OSError as exc:  # a read-only cache costs a hash per start, nothing else
        log.debug("cannot record the verified file %s in %s: %s", real, records_path, exc)
