"""model_hash: the webui's full/short/legacy hashes and the size+mtime hash record."""
from __future__ import annotations

import hashlib
import os

import pytest

from ansible_collections.sdfleet.toolkit.plugins.module_utils import model_hash as mh


def _bytes(n: int) -> bytes:
    """Deterministic pseudo-random bytes (SHAKE-256 of a fixed seed)."""
    return hashlib.shake_256(b"sdfleet-model-hash-test").digest(n)


# Fixed literal vectors, checked by hand once with coreutils:
#   printf 'abc' | sha256sum   -> ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad
#   python3 -c "import sys;sys.stdout.buffer.write(bytes(range(256))*8192)" > f  (2 MiB)
#   dd if=f bs=65536 skip=16 count=1 | sha256sum | cut -c1-8   -> the legacy hash below
ABC_SHA256 = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
EMPTY_LEGACY = "e3b0c442"  # sha256("") -- the webui's legacy hash of a file of 1 MiB or less
RAMP_LEGACY = "7daca209"


def test_sha256_and_short_hash_of_literal(tmp_path):
    path = tmp_path / "abc"
    path.write_bytes(b"abc")
    assert mh.sha256_file(str(path)) == ABC_SHA256
    assert mh.short_hash(ABC_SHA256) == "ba7816bf8f"


def test_legacy_hash_of_literal_ramp(tmp_path):
    path = tmp_path / "ramp"
    path.write_bytes(bytes(range(256)) * 8192)
    assert mh.legacy_hash(str(path)) == RAMP_LEGACY


@pytest.mark.parametrize("size", [0, 1, mh.BLOCK - 1, mh.BLOCK, mh.BLOCK + 1, 3 * mh.BLOCK + 12345])
def test_sha256_file_equals_hashlib(tmp_path, size):
    data = _bytes(size)
    path = tmp_path / "f"
    path.write_bytes(data)
    assert mh.sha256_file(str(path)) == hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize("size", [0, 1000, 0x100000, 0x100000 + 1, 0x100000 + 0x8000, 0x110000, 3 * 0x100000])
def test_legacy_hash_window_like_webui(tmp_path, size):
    """The webui does f.seek(0x100000); f.read(0x10000): a short file hashes a partial (or empty) window."""
    data = _bytes(size)
    path = tmp_path / "f"
    path.write_bytes(data)
    expected = hashlib.sha256(data[0x100000:0x110000]).hexdigest()[:8]
    assert mh.legacy_hash(str(path)) == expected
    if size <= 0x100000:
        assert expected == EMPTY_LEGACY


def test_describe(tmp_path):
    data = _bytes(2 * 0x100000)
    path = tmp_path / "m.safetensors"
    path.write_bytes(data)
    sha = hashlib.sha256(data).hexdigest()
    assert mh.describe(str(path), sha) == {"sha256": sha, "short_hash": sha[:10],
                                           "legacy_hash": hashlib.sha256(data[0x100000:0x110000]).hexdigest()[:8]}


@pytest.mark.parametrize("value,expected", [
    (None, None), ("", None), ("SHA256:" + "A" * 64, "a" * 64), (" " + "b" * 64 + "\n", "b" * 64)])
def test_normalise_sha256(value, expected):
    assert mh.normalise_sha256(value) == expected


@pytest.mark.parametrize("value,ok", [("a" * 64, True), ("A" * 64, False), ("a" * 63, False), ("g" * 64, False),
                                      (None, False), (123, False)])
def test_is_sha256(value, ok):
    assert mh.is_sha256(value) is ok


def test_cached_sha256_skips_rehash_until_file_changes(tmp_path, monkeypatch):
    path = tmp_path / "m"
    path.write_bytes(b"one")
    records = str(tmp_path / "records")
    sha, cached = mh.cached_sha256(str(path), records)
    assert (sha, cached) == (hashlib.sha256(b"one").hexdigest(), False)

    calls = []
    real = mh.sha256_file
    monkeypatch.setattr(mh, "sha256_file", lambda p: calls.append(p) or real(p))
    assert mh.cached_sha256(str(path), records) == (sha, True)
    assert calls == []

    # same size, new mtime -> hashed again, and the new content is seen
    path.write_bytes(b"two")
    st = os.stat(path)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10_000_000))
    assert mh.cached_sha256(str(path), records) == (hashlib.sha256(b"two").hexdigest(), False)
    assert calls == [str(path)]


def test_cached_sha256_read_only_writes_no_record(tmp_path):
    path = tmp_path / "m"
    path.write_bytes(b"x")
    records = tmp_path / "records"
    mh.cached_sha256(str(path), str(records), write=False)
    assert not records.exists()


def test_record_roundtrip_and_corrupt_record(tmp_path):
    path = tmp_path / "m"
    path.write_bytes(b"x")
    records = str(tmp_path / "r")
    rec = mh.HashRecord.of(str(path), "c" * 64)
    mh.save_record(records, rec)
    assert mh.load_record(records, str(path)) == rec
    assert rec.matches(str(path)) and not rec.matches(str(tmp_path / "other"))
    (tmp_path / "r" / mh.record_name(str(path))).write_text("{not json")
    assert mh.load_record(records, str(path)) is None
    assert mh.drop_record(records, str(path)) is True
    assert mh.drop_record(records, str(path)) is False
