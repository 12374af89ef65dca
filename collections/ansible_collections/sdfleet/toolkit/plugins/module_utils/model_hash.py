# -*- coding: utf-8 -*-
"""Model file hashes as the AUTOMATIC1111 webui shows them, and a size+mtime hash record.

Pure functions (no Ansible import) so that modules, filters and tests share them:

- ``sha256_file``: SHA-256 of the whole file, read in 1 MiB blocks (the webui's ``calculate_sha256``).
- ``short_hash``: the first 10 hex of the SHA-256 (checkpoint titles ``name.safetensors [abcdef0123]``).
- ``legacy_hash``: the old "model hash": SHA-256 of what ``f.seek(0x100000); f.read(0x10000)`` returns, first 8 hex
  (``modules/sd_models.py: model_hash``). A file of 1 MiB or less hashes the empty string (``e3b0c442``), as upstream.
- ``HashRecord``: the sidecar that lets a finished file skip re-hashing while its size and mtime stay the same.
- ``sha256_fd`` / ``legacy_hash_fd``: the same hashes of an open file descriptor (model_fetch opens files without
  following links and hashes what it opened).
"""
from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import asdict, dataclass
from typing import BinaryIO, Callable, Optional

BLOCK = 1024 * 1024
LEGACY_OFFSET = 0x100000
LEGACY_LENGTH = 0x10000
SHA256_RE = re.compile(r"^[0-9a-f]{64}$")


def is_sha256(value: object) -> bool:
    """Whether ``value`` is a lower-case 64-hex SHA-256 digest."""
    return isinstance(value, str) and bool(SHA256_RE.match(value))


def normalise_sha256(value: Optional[str]) -> Optional[str]:
    """Strip an optional ``sha256:`` prefix and lower-case; None/empty stays None."""
    if not value:
        return None
    value = value.strip().lower()
    if value.startswith("sha256:"):
        value = value[len("sha256:"):]
    return value


def sha256_stream(stream: BinaryIO, hasher: Optional["hashlib._Hash"] = None,
                  progress: Optional[Callable[[int], None]] = None) -> "hashlib._Hash":
    """Feed ``stream`` to ``hasher`` (a new SHA-256 when None) in 1 MiB blocks; return the hasher."""
    hasher = hasher if hasher is not None else hashlib.sha256()
    done = 0
    while True:
        block = stream.read(BLOCK)
        if not block:
            return hasher
        hasher.update(block)
        done += len(block)
        if progress:
            progress(done)


def sha256_file(path: str) -> str:
    """Full SHA-256 hex digest of the file at ``path``."""
    with open(path, "rb") as stream:
        return sha256_stream(stream).hexdigest()


def sha256_fd(fd: int, hasher: Optional["hashlib._Hash"] = None,
              progress: Optional[Callable[[int], None]] = None) -> "hashlib._Hash":
    """Feed the open file ``fd`` from its start to ``hasher`` (a new SHA-256 when None); return the hasher."""
    hasher = hasher if hasher is not None else hashlib.sha256()
    offset = 0
    while True:
        block = os.pread(fd, BLOCK, offset)
        if not block:
            return hasher
        hasher.update(block)
        offset += len(block)
        if progress:
            progress(offset)


def legacy_hash_fd(fd: int) -> str:
    """The legacy 8-hex hash of the open file ``fd`` (64 KiB at offset 1 MiB)."""
    window = b""
    while len(window) < LEGACY_LENGTH:
        block = os.pread(fd, LEGACY_LENGTH - len(window), LEGACY_OFFSET + len(window))
        if not block:
            break
        window += block
    return legacy_hash_bytes(window)


def short_hash(sha256: str) -> str:
    """The webui's short hash: the first 10 hex of the full SHA-256."""
    return sha256[:10]


def legacy_hash_bytes(window: bytes) -> str:
    """Legacy hash of an already-read window (first 8 hex of its SHA-256)."""
    return hashlib.sha256(window).hexdigest()[:8]


def legacy_hash(path: str) -> str:
    """The webui's legacy 8-hex "model hash" of the file at ``path`` (64 KiB at offset 1 MiB)."""
    with open(path, "rb") as stream:
        stream.seek(LEGACY_OFFSET)
        return legacy_hash_bytes(stream.read(LEGACY_LENGTH))


def describe(path: str, sha256: str) -> dict:
    """The hash fields published for a model: sha256, short_hash, legacy_hash."""
    return {"sha256": sha256, "short_hash": short_hash(sha256), "legacy_hash": legacy_hash(path)}


@dataclass(frozen=True)
class HashRecord:
    """What a file hashed to, while it had this size and mtime (ns) and inode."""

    path: str
    size: int
    mtime_ns: int
    inode: int
    sha256: str

    @classmethod
    def of(cls, path: str, sha256: str) -> "HashRecord":
        """A record for the file at ``path`` as it is now."""
        st = os.stat(path)
        return cls(path=path, size=st.st_size, mtime_ns=st.st_mtime_ns, inode=st.st_ino, sha256=sha256)

    @classmethod
    def of_stat(cls, path: str, st: os.stat_result, sha256: str) -> "HashRecord":
        """A record for the file at ``path`` whose (fstat) result is ``st``."""
        return cls(path=path, size=st.st_size, mtime_ns=st.st_mtime_ns, inode=st.st_ino, sha256=sha256)

    def matches_stat(self, path: str, st: os.stat_result) -> bool:
        """Whether a file at ``path`` with the (fstat) result ``st`` still is the recorded one."""
        return (self.path == path and self.size == st.st_size and self.mtime_ns == st.st_mtime_ns
                and self.inode == st.st_ino)

    def matches(self, path: str) -> bool:
        """Whether the file at ``path`` still has the recorded path, size, mtime and inode."""
        try:
            st = os.stat(path)
        except OSError:
            return False
        return (self.path == path and self.size == st.st_size and self.mtime_ns == st.st_mtime_ns
                and self.inode == st.st_ino)


def record_name(path: str) -> str:
    """File name of the record kept for ``path`` (a hash of the path, so any path fits)."""
    return hashlib.sha256(path.encode("utf-8")).hexdigest()[:32] + ".sha256.json"


def load_record(records_dir: str, path: str) -> Optional[HashRecord]:
    """The stored record for ``path``, or None when there is none or it is unreadable."""
    try:
        with open(os.path.join(records_dir, record_name(path)), encoding="utf-8") as stream:
            data = json.load(stream)
        record = HashRecord(**{k: data[k] for k in ("path", "size", "mtime_ns", "inode", "sha256")})
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return record if is_sha256(record.sha256) else None


def save_record(records_dir: str, record: HashRecord) -> None:
    """Store ``record`` atomically (write a temp file, then rename)."""
    os.makedirs(records_dir, mode=0o700, exist_ok=True)
    final = os.path.join(records_dir, record_name(record.path))
    tmp = f"{final}.{os.getpid()}.tmp"  # several hosts may record the same controller file at once
    with open(tmp, "w", encoding="utf-8") as stream:
        json.dump(asdict(record), stream)
    os.replace(tmp, final)


def drop_record(records_dir: str, path: str) -> bool:
    """Remove the record for ``path``; True when one was there."""
    try:
        os.unlink(os.path.join(records_dir, record_name(path)))
    except FileNotFoundError:
        return False
    return True


def cached_sha256(path: str, records_dir: Optional[str], write: bool = True) -> tuple[str, bool]:
    """SHA-256 of ``path``, from its record when size/mtime/inode still match; else hashed (and recorded when
    ``write``). Returns ``(sha256, from_record)``."""
    if records_dir:
        record = load_record(records_dir, path)
        if record is not None and record.matches(path):
            return record.sha256, True
    digest = sha256_file(path)
    if records_dir and write:
        save_record(records_dir, HashRecord.of(path, digest))
    return digest, False
