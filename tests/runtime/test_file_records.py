"""Records of verified engine files: an unchanged file is not hashed again, and any write to
it, a record that lies, or a file too young to trust still gets its bytes checked."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys

import pytest

from edgevlm.errors import EdgeVLMError
from edgevlm.runtime import doctor, file_records
from edgevlm.runtime.manifest import load_manifest
from tests.support import REPO_ROOT, after_a_clock_tick

SHIPPED = os.path.join(REPO_ROOT, "edgevlm", "assets", "default_engine")


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
    """Records of this test only (the same bytes are hashed in several tests)."""
    monkeypatch.setenv("EDGEVLM_CACHE_DIR", str(tmp_path / "user-cache"))


@pytest.fixture()
def hashes(monkeypatch):
    """Counts the files actually hashed."""
    seen = []
    real = file_records._sha256_of
    monkeypatch.setattr(file_records, "_sha256_of", lambda f: seen.append(f.name) or real(f))
    return seen


@pytest.fixture()
def old_enough(monkeypatch):
    """Files count as old enough to record at once (the racy window is tested on its own)."""
    monkeypatch.setattr(file_records, "RACY_S", -1.0)


def _file(tmp_path, content: bytes = b"weights " * 1000):
    path = tmp_path / "graph.onnx"
    path.write_bytes(content)
    return str(path), hashlib.sha256(content).hexdigest()


def test_an_unchanged_file_is_hashed_once_then_recognised_by_its_record(tmp_path, hashes, old_enough):
    path, digest = _file(tmp_path)
    assert file_records.file_matches(path, digest) and file_records.file_matches(path, digest)
    assert hashes == [os.path.realpath(path)]


def test_a_rewrite_of_the_same_size_with_its_old_mtime_is_still_caught(tmp_path, hashes, old_enough):
    path, digest = _file(tmp_path)
    assert file_records.file_matches(path, digest)
    before = os.stat(path)
    after_a_clock_tick(tmp_path)
    with open(path, "r+b") as f:  # same size, one byte altered, the modification time put back
        f.write(b"X")
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert os.stat(path).st_size == before.st_size and os.stat(path).st_mtime_ns == before.st_mtime_ns
    assert not file_records.file_matches(path, digest)  # ctime moved: hashed, and the hash differs
    assert len(hashes) == 2


def test_a_replaced_file_is_hashed_again(tmp_path, hashes, old_enough):
    path, digest = _file(tmp_path)
    assert file_records.file_matches(path, digest)
    copy = str(tmp_path / "copy")
    shutil.copy2(path, copy)
    os.replace(copy, path)  # same bytes, same mtime, a new inode
    assert file_records.file_matches(path, digest) and len(hashes) == 2


def test_a_file_younger_than_the_racy_window_is_checked_but_not_recorded(tmp_path, hashes):
    path, digest = _file(tmp_path)
    assert file_records.file_matches(path, digest) and file_records.file_matches(path, digest)
    assert len(hashes) == 2 and not os.path.exists(file_records._records_path(digest))


def test_a_wrong_digest_is_never_recorded(tmp_path, hashes, old_enough):
    path, digest = _file(tmp_path)
    wrong = hashlib.sha256(b"other").hexdigest()
    assert not file_records.file_matches(path, wrong) and not file_records.file_matches(path, wrong)
    assert len(hashes) == 2 and not os.path.exists(file_records._records_path(wrong))


def test_use_records_false_hashes_whatever_the_records_say(tmp_path, hashes, old_enough):
    path, digest = _file(tmp_path)
    assert file_records.file_matches(path, digest)
    assert file_records.file_matches(path, digest, use_records=False) and len(hashes) == 2


def test_an_unwritable_cache_only_costs_a_hash_per_check(tmp_path, monkeypatch, hashes, old_enough):
    cache = tmp_path / "cache"
    cache.write_text("a file where the cache folder should be")  # unwritable even for root
    monkeypatch.setenv("EDGEVLM_CACHE_DIR", str(cache))
    path, digest = _file(tmp_path)
    assert file_records.file_matches(path, digest) and file_records.file_matches(path, digest)
    assert len(hashes) == 2


def test_a_digest_that_is_no_sha256_is_hashed_and_never_names_a_records_file(tmp_path, hashes, old_enough):
    """The manifest's sha256 names the records file: "../../escaped" must not lead out of the
    cache to a file of this user's that vouches for the engine file (planted here)."""
    path, digest = _file(tmp_path)
    folder = os.path.dirname(file_records._records_path(digest))
    os.makedirs(folder)
    outside = os.path.normpath(os.path.join(folder, "../../escaped.json"))
    assert not outside.startswith(folder)
    file_records._write_records(outside, {os.path.realpath(path): file_records._identity(os.stat(path))})
    for wrong in ("../../escaped", digest.upper(), digest[:63]):
        assert not file_records.file_matches(path, wrong)
    assert len(hashes) == 3


def test_a_damaged_records_file_is_replaced(tmp_path, hashes, old_enough):
    path, digest = _file(tmp_path)
    records = file_records._records_path(digest)
    os.makedirs(os.path.dirname(records), exist_ok=True)
    with open(records, "w") as f:
        f.write("{not json")
    assert file_records.file_matches(path, digest) and file_records.file_matches(path, digest)
    assert len(hashes) == 1


def _forge_records(engine_dir: str) -> None:
    """Records claiming every engine file matches as it is now (what no real run writes)."""
    manifest = load_manifest(engine_dir, verify=False)
    for entry in manifest.files.values():
        real = os.path.realpath(os.path.join(engine_dir, entry.path))
        file_records._write_records(file_records._records_path(entry.sha256),
                                    {real: file_records._identity(os.stat(real))})


def test_an_engine_file_altered_after_its_record_fails_to_load(tiny_engine_dir, tmp_path, old_enough):
    load_manifest(tiny_engine_dir)  # records every file
    load_manifest(tiny_engine_dir)
    after_a_clock_tick(tmp_path)
    vision = os.path.join(tiny_engine_dir, "vision.onnx")
    with open(vision, "r+b") as f:
        f.seek(100)
        f.write(b"\x00\x01\x02")
    with pytest.raises(EdgeVLMError, match="does not match the sha256 in edgevlm.json"):
        load_manifest(tiny_engine_dir)


def test_doctor_hashes_every_byte_even_when_a_record_vouches_for_the_file(tiny_engine_dir, old_enough):
    vision = os.path.join(tiny_engine_dir, "vision.onnx")
    with open(vision, "r+b") as f:
        f.seek(100)
        f.write(b"\x00\x01\x02")
    _forge_records(tiny_engine_dir)  # a lying record: loading trusts it (that is what records are for)
    load_manifest(tiny_engine_dir)
    check = doctor.check_engine(tiny_engine_dir, "cpu")
    assert not check.ok and "does not match the sha256" in check.detail
    with pytest.raises(EdgeVLMError, match="does not match the sha256"):  # doctor's finding dropped the record
        load_manifest(tiny_engine_dir)


def test_a_record_from_another_boot_is_not_believed(tmp_path, monkeypatch, hashes, old_enough):
    path, digest = _file(tmp_path)
    assert file_records.file_matches(path, digest)
    monkeypatch.setattr(file_records, "_boot", lambda: "another-boot")
    assert file_records.file_matches(path, digest) and len(hashes) == 2


@pytest.mark.parametrize("spoil", [lambda p: os.chmod(p, 0o666), lambda p: open(p, "w").write("[" * 100_000)])
def test_a_writable_by_others_or_damaged_records_file_is_not_believed(tmp_path, hashes, old_enough, spoil):
    path, digest = _file(tmp_path)
    assert file_records.file_matches(path, digest)
    spoil(file_records._records_path(digest))
    assert file_records.file_matches(path, digest) and len(hashes) == 2
    assert file_records.file_matches(path, digest) and len(hashes) == 2  # replaced by a good one


def test_a_start_on_recorded_files_never_loads_openssl(tmp_path):
    """The command line imports every subcommand: none of them may import hashlib at load."""
    script = ("import sys; from edgevlm.cli.main import cli; from edgevlm.runtime.engine import CaptionEngine; "
              f"CaptionEngine({SHIPPED!r}).close(); print('_hashlib' in sys.modules)")
    env = dict(os.environ, EDGEVLM_CACHE_DIR=str(tmp_path / "user-cache"))
    loaded = [subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True,
                             timeout=120).stdout.split()[-1] for _ in range(2)]
    assert loaded == ["True", "False"]  # hashed (and recorded) once, then trusted
