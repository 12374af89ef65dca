#!/usr/bin/python
# -*- coding: utf-8 -*-
"""Ansible module: place one model file, verified by SHA-256, resuming interrupted downloads."""
from __future__ import annotations

DOCUMENTATION = r"""
---
module: model_fetch
short_description: Place a model file atomically after its SHA-256 matched; resume interrupted downloads
version_added: "0.1.0"
description:
  - Puts one file at I(dest) from an HTTP(S) URL (I(url), a list tried in order), from a file on the host (I(src),
    copied, moved with I(remove_src), or symlinked with I(link)), or, with no source, only checks and describes
    what I(dest) holds.
  - The bytes go to I(partial_dir) first (C(<sha256>.part)); the file is renamed onto I(dest) only after its SHA-256
    equals I(sha256). On a mismatch the partial file is deleted, I(dest) is left as it was and the task fails naming
    both hashes.
  - An interrupted download leaves its partial file; the next run (or the next of I(retries)) asks for the rest with
    an HTTP C(Range) request. A server that ignores C(Range) (C(200)) is read again from the start.
  - A file already at I(dest) with the expected SHA-256 is never fetched again. Its hash is remembered in a record
    under C(<partial_dir>/records) keyed by path, size, mtime and inode, so later runs skip re-hashing it; any change
    of those makes the module hash the file again.
  - Writes a JSON progress file (keys C(bytes), C(total), C(url), C(phase)) about once a second while it downloads, for a
    polling loop to print when the task runs with C(async).
  - Returns the webui's hashes of the file, the full SHA-256, the short hash (first 10 hex) and the legacy
    8-hex hash (SHA-256 of 64 KiB at offset 1 MiB).
  - Another file already at I(dest) is never lost; it is moved aside to C(<dest>.sdfleet-replaced-<sha256[:12]>)
    in the same directory (C(-link) for a symlink) and reported in I(moved_aside), I(set_aside) and a warning.
  - Root follows no link the service user could have planted. Every path is walked from C(/) one component at a
    time with C(O_NOFOLLOW); a symlink is followed only when root (or the module's user) owns it or only root can
    write the directory that holds it, else the task fails naming it. Files are read, chowned and chmodded through
    descriptors opened that way, renamed and removed relative to them, and created with C(O_EXCL).
  - I(partial_dir) must be private (owned by the module's user, mode C(0700)) and no directory above it may let
    another user replace it; the module refuses it otherwise.
  - When a URL of I(url) sends bytes with another SHA-256 (a stale mirror copy), they are discarded with a
    warning and the next URL is tried. Credentials in URLs are masked in every message and result.
author:
  - sdfleet contributors
options:
  dest:
    description: Final path of the model file.
    type: path
    required: true
  state:
    description:
      - C(present) places the file; C(absent) removes I(dest) (only when its SHA-256 is I(sha256), if that is
        given; a different file is kept and reported), its hash record and its partial file; C(directory) makes
        I(dest) a directory (no link followed on the way), the ones it creates inside I(tree) with I(owner),
        I(group) and I(mode), those above it root's C(0755).
    type: str
    choices: [present, absent, directory]
    default: present
  url:
    description:
      - HTTP(S) URLs to try in order (for example a fleet mirror first, then upstream). A partial file is resumed
        from whichever answers, since its name holds the expected SHA-256.
    type: list
    elements: str
  src:
    description: A file on the managed host (shared storage, or a copy staged by the caller) to copy, move or link.
    type: path
  link:
    description: With I(src), make I(dest) a symlink to I(src) instead of a copy; I(src) must stay reachable.
    type: bool
    default: false
  remove_src:
    description: With I(src), move it onto I(dest) (rename when on the same filesystem) instead of copying it.
    type: bool
    default: false
  sha256:
    description:
      - Expected SHA-256 (64 hex, an optional C(sha256:) prefix is dropped). Without it nothing is verified and a
        file already at I(dest) is taken as it is (for I(src) copies, when its hash equals the hash of I(src)).
    type: str
  partial_dir:
    description:
      - Where partial downloads, staged files and hash records live (created with mode C(0700) when missing).
        Required unless I(state=directory); keep it on the models filesystem so a finished file is renamed into
        place (else it is copied to a temporary file next to I(dest) first).
    type: path
  tree:
    description: The models tree I(dest) must lie in (refused otherwise); with I(state=directory), where the created
      directories get I(owner)/I(group)/I(mode).
    type: path
  owner:
    description: Owner of the placed file.
    type: str
  group:
    description: Group of the placed file.
    type: str
  mode:
    description: Mode of the placed file, octal (C("0644")); left as created (C(0600)) when not given.
    type: raw
  progress_file:
    description: Where to write download progress; default C(<partial_dir>/<sha256 or key>.progress).
    type: path
  timeout:
    description: Socket timeout in seconds for each read.
    type: int
    default: 60
  retries:
    description: How many more times to resume within this run after an interrupted transfer.
    type: int
    default: 0
  headers:
    description: Extra HTTP headers (for example an C(Authorization) token for gated models).
    type: dict
    default: {}
  validate_certs:
    description: Verify HTTPS certificates.
    type: bool
    default: true
attributes:
  check_mode:
    support: full
    description: Reports what it would do; reads (and hashes) but writes nothing, not even hash records.
  diff_mode:
    support: none
notes:
  - C(ansible.builtin.get_url) cannot resume a transfer; it starts from byte 0 every time, which is why this module
    exists.
"""

EXAMPLES = r"""
- name: Download a checkpoint, mirror first, resuming an earlier partial transfer
  sdfleet.toolkit.model_fetch:
    dest: /opt/sd-webui/models/Stable-diffusion/v1-5-pruned-emaonly.safetensors
    url:
      - http://mirror.lan/models/v1-5-pruned-emaonly.safetensors
      - https://huggingface.co/stable-diffusion-v1-5/stable-diffusion-v1-5/resolve/main/v1-5-pruned-emaonly.safetensors
    sha256: 6ce0161689b3853acaa03779ec93eafe75a02f4ced659bee03f50797806fa2fa
    partial_dir: /var/lib/sdfleet/models-partial
    owner: sdwebui
    group: sdwebui
    retries: 2
  async: 7200
  poll: 0
  register: fetch_job

- name: Link a LoRA from an NFS share
  sdfleet.toolkit.model_fetch:
    dest: /opt/sd-webui/models/Lora/style.safetensors
    src: /mnt/models/lora/style.safetensors
    link: true
    partial_dir: /var/lib/sdfleet/models-partial

- name: Only check what is there, and read its hashes
  sdfleet.toolkit.model_fetch:
    dest: /opt/sd-webui/models/Stable-diffusion/v1-5-pruned-emaonly.safetensors
    sha256: 6ce0161689b3853acaa03779ec93eafe75a02f4ced659bee03f50797806fa2fa
    partial_dir: /var/lib/sdfleet/models-partial
  register: probe
"""

RETURN = r"""
dest:
  description: The final path.
  returned: always
  type: str
current:
  description: Whether I(dest) holds the expected file once the module is done (in check mode, before).
  returned: always
  type: bool
action:
  description: >-
    What was done (or would be in check mode): C(none), C(permissions), C(downloaded), C(resumed), C(copied),
    C(moved), C(linked), C(removed), C(kept) (absent, another file), C(created) (directory), C(missing)
    (verify-only and nothing there).
  returned: always
  type: str
size:
  description: Size in bytes of the file at I(dest); null when there is none.
  returned: always
  type: int
sha256:
  description: Full SHA-256 of I(dest) (the expected one in check mode before a fetch); null when unknown.
  returned: always
  type: str
short_hash:
  description: First 10 hex of I(sha256), as the webui shows it in checkpoint titles.
  returned: always
  type: str
legacy_hash:
  description: The webui's legacy 8-hex model hash of I(dest); null when there is no file.
  returned: always
  type: str
bytes_downloaded:
  description: Body bytes received in this run.
  returned: always
  type: int
resumed_from:
  description: Byte offset the first request of this run resumed from (0 for a fresh download).
  returned: always
  type: int
url_used:
  description: The URL the file finally came from (credentials masked); null when nothing was downloaded.
  returned: always
  type: str
moved_aside:
  description: Where the different file that was at I(dest) went in this run (or would go, in check mode); null if none.
  returned: always
  type: str
set_aside:
  description: Every file moved aside next to I(dest) (C(<name>.sdfleet-replaced-*)) still there.
  returned: always
  type: list
  elements: str
kept:
  description: With I(state=absent), true when I(dest) was left because its SHA-256 is not I(sha256).
  returned: always
  type: bool
notes:
  description: What the run noted on the way (a discarded mirror copy, a file moved aside, a file kept).
  returned: always
  type: list
  elements: str
"""

import errno
import grp
import hashlib
import http.client
import json
import os
import posixpath
import pwd
import re
import socket
import stat
import time
from collections import deque
from typing import Optional
from urllib.parse import urlsplit

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.urls import open_url
from ansible.module_utils.six.moves.urllib.error import HTTPError, URLError
from ansible_collections.sdfleet.toolkit.plugins.module_utils import model_hash as mh
from ansible_collections.sdfleet.toolkit.plugins.module_utils.redact import redact_url, redact_urls

CHUNK = 1024 * 1024
CONTENT_RANGE = re.compile(r"^bytes (\d+)-(\d+)/(\d+|\*)$")
ASIDE_MARK = ".sdfleet-replaced-"
O_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
O_READ = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
O_NEW = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
MAX_LINKS = 40


class Interrupted(Exception):
    """A transfer stopped before its end; the partial file is kept for a resume."""


class Unsafe(Exception):
    """A path the module will not use as root: a link someone else could have planted, or not what it must be."""


class Mismatch(Exception):
    """The bytes' SHA-256 is not the expected one."""

    def __init__(self, expected: str, actual: str, size: int) -> None:
        super().__init__(f"expected sha256 {expected}, got {actual} ({size} bytes)")
        self.expected, self.actual, self.size = expected, actual, size


# -- paths without following planted links --------------------------------------------------------------------
def _euid() -> int:
    return os.geteuid()


def _user(uid: int) -> str:
    try:
        return f"uid {uid} ({pwd.getpwuid(uid).pw_name})"
    except KeyError:
        return f"uid {uid}"


def trusted(st: os.stat_result) -> bool:
    """Whether only root (or this process's user) can add, rename or remove entries of the directory ``st``."""
    return st.st_uid in (0, _euid()) and not st.st_mode & 0o022


def private_chain(real: str) -> Optional[str]:
    """None when no directory on the (link-free) path ``real`` lets another user rename or replace the next
    component (a sticky directory such as /tmp is fine for entries root or this user owns); else the problem."""
    parent = "/"
    for part in [p for p in real.split("/") if p]:
        child = posixpath.join(parent, part)
        pst, cst = os.lstat(parent), os.lstat(child)
        if not trusted(pst) and not (pst.st_mode & stat.S_ISVTX and cst.st_uid in (0, _euid())):
            return f"{parent} can be written by {_user(pst.st_uid)} or others, who could replace {child}"
        parent = child
    return None


def _close(fd: Optional[int]) -> None:
    if fd is not None:
        os.close(fd)


def _follow(dir_fd: int, cur: str, name: str, st: os.stat_result) -> str:
    """The target of the link ``cur/name`` when it may be followed: the link is root's (or ours) or sits in a
    directory only root can write. Anything else is a link the service user could have planted."""
    parent = os.fstat(dir_fd)
    path = posixpath.join(cur, name)
    if not (trusted(parent) or st.st_uid in (0, _euid())):
        raise Unsafe(f"{path} is a symlink (owned by {_user(st.st_uid)}) in {cur}, a directory {_user(parent.st_uid)}"
                     " or others can write; root does not follow it. Fix: replace the link by a real directory or "
                     "file (or make root own it), then run again")
    target = os.readlink(name, dir_fd=dir_fd)
    again = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    if (again.st_ino, again.st_uid) != (st.st_ino, st.st_uid):
        raise Unsafe(f"{path} changed while it was read; run again")
    return posixpath.normpath(posixpath.join(cur, target))


def open_dir(path: str, create: Optional[callable] = None) -> tuple[int, str, list[str]]:
    """``(fd, real path, created)`` of the directory ``path``, walked from / one component at a time with
    O_NOFOLLOW: a link is followed only when _follow allows it; a missing component is created when ``create``
    is given (``create(fd, path)`` then sets its owner and mode). Raises Unsafe, or FileNotFoundError."""
    if not path.startswith("/"):
        raise Unsafe(f"{path} is not an absolute path")
    parts = deque(p for p in posixpath.normpath(path).split("/") if p)
    fd, cur, links, created = os.open("/", O_DIR), "/", 0, []
    try:
        while parts:
            name = parts.popleft()
            if name == "..":
                nfd = os.open("..", O_DIR, dir_fd=fd)
                _close(fd)
                fd, cur = nfd, posixpath.dirname(cur)
                continue
            try:
                st = os.stat(name, dir_fd=fd, follow_symlinks=False)
            except FileNotFoundError:
                if create is None:
                    raise
                os.mkdir(name, 0o700, dir_fd=fd)
                st = os.stat(name, dir_fd=fd, follow_symlinks=False)
                created.append(posixpath.join(cur, name))
            if stat.S_ISLNK(st.st_mode):
                links += 1
                if links > MAX_LINKS:
                    raise Unsafe(f"{path}: too many levels of symbolic links")
                target = _follow(fd, cur, name, st)
                parts = deque([p for p in target.split("/") if p] + list(parts))
                _close(fd)
                fd, cur = os.open("/", O_DIR), "/"
                continue
            if not stat.S_ISDIR(st.st_mode):
                raise Unsafe(f"{posixpath.join(cur, name)} is not a directory")
            nfd = os.open(name, O_DIR, dir_fd=fd)  # a link swapped in since the stat fails here (ELOOP)
            _close(fd)
            fd, cur = nfd, posixpath.join(cur, name)
            if created and created[-1] == cur and create is not None:
                create(fd, cur)
        return fd, cur, created
    except OSError as exc:
        _close(fd)
        if exc.errno == errno.ELOOP:
            raise Unsafe(f"{path}: a component was swapped for a symlink while it was opened; run again") from exc
        raise
    except Unsafe:
        _close(fd)
        raise


def open_file(path: str) -> tuple[int, os.stat_result]:
    """A read-only fd (and its fstat) of the regular file ``path``, its links followed only as open_dir allows."""
    for _ in range(MAX_LINKS):
        dir_fd, cur, _created = open_dir(posixpath.dirname(path))
        name = posixpath.basename(path)
        try:
            st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
            if stat.S_ISLNK(st.st_mode):
                path = _follow(dir_fd, cur, name, st)
                continue
            if not stat.S_ISREG(st.st_mode):
                raise Unsafe(f"{posixpath.join(cur, name)} is not a regular file")
            fd = os.open(name, O_READ, dir_fd=dir_fd)
        finally:
            os.close(dir_fd)
        fst = os.fstat(fd)
        if not stat.S_ISREG(fst.st_mode):
            os.close(fd)
            raise Unsafe(f"{path} is not a regular file")
        return fd, fst
    raise Unsafe(f"{path}: too many levels of symbolic links")


def _mode(value) -> Optional[int]:
    if value is None or value == "":
        return None
    if isinstance(value, int):
        return value
    text = str(value)
    if not re.fullmatch(r"0?[0-7]{3,4}", text):
        raise ValueError(f"mode {text!r} must be octal digits such as '0644'")
    return int(text, 8)


def _uid(owner: Optional[str]) -> int:
    if not owner:
        return -1
    try:
        return pwd.getpwnam(owner).pw_uid
    except KeyError:
        if owner.isdigit():
            return int(owner)
        raise ValueError(f"owner {owner!r} does not exist") from None


def _gid(group: Optional[str]) -> int:
    if not group:
        return -1
    try:
        return grp.getgrnam(group).gr_gid
    except KeyError:
        if group.isdigit():
            return int(group)
        raise ValueError(f"group {group!r} does not exist") from None


def set_attrs(fd: int, uid: int, gid: int, mode: Optional[int], check: bool) -> bool:
    """fchown/fchmod the open ``fd`` (never a path); True when something differed."""
    st = os.fstat(fd)
    chown = (uid != -1 and st.st_uid != uid) or (gid != -1 and st.st_gid != gid)
    chmod = mode is not None and stat.S_IMODE(st.st_mode) != mode
    if not check:
        if chown:
            os.fchown(fd, uid, gid)
        if chmod or (chown and mode is not None):  # chown clears setuid bits: set the mode after it
            os.fchmod(fd, mode)
    return chown or chmod


class Progress:
    """Writes {"bytes", "total", "url", "phase"} to a JSON file, at most once a second (and at the end)."""

    def __init__(self, path: Optional[str]) -> None:
        self.path, self.last, self.dir_fd = path, 0.0, None

    def update(self, done: int, total: Optional[int], url: Optional[str], phase: str, force: bool = False) -> None:
        if not self.path:
            return
        now = time.monotonic()
        if not force and now - self.last < 1.0:
            return
        self.last = now
        name = posixpath.basename(self.path)
        try:
            if self.dir_fd is None:
                self.dir_fd = open_dir(posixpath.dirname(self.path))[0]
            tmp = f".{name}.{os.getpid()}.tmp"
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600, dir_fd=self.dir_fd)
            with os.fdopen(fd, "w", encoding="utf-8") as stream:
                json.dump({"bytes": done, "total": total, "url": redact_url(url) if url else url, "phase": phase},
                          stream)
            os.replace(tmp, name, src_dir_fd=self.dir_fd, dst_dir_fd=self.dir_fd)
        except (OSError, Unsafe):
            pass


def download(url: str, partial_fd: int, part: str, params: dict, progress: Progress) -> tuple[str, int, int]:
    """Fetch ``url`` into the file ``part`` of the private dir ``partial_fd``, resuming from its current size.
    Returns (sha256, bytes received, resumed_from). Raises Interrupted when the transfer stops early (the partial
    file is kept)."""
    hasher, have = hashlib.sha256(), 0
    try:
        fd = os.open(part, os.O_RDONLY | os.O_NOFOLLOW, dir_fd=partial_fd)
    except FileNotFoundError:
        fd = None
    if fd is not None:
        try:
            mh.sha256_fd(fd, hasher)
            have = os.fstat(fd).st_size
        finally:
            os.close(fd)
    resumed_from = have
    headers = dict(params["headers"] or {})
    if have:
        headers["Range"] = f"bytes={have}-"
    try:
        resp = open_url(url, headers=headers, timeout=params["timeout"], validate_certs=params["validate_certs"],
                        follow_redirects="all")
    except HTTPError as exc:
        if exc.code == 416 and have:
            # Nothing left to send: the partial file is complete (or too long; the hash check decides).
            return hasher.hexdigest(), 0, resumed_from
        raise
    status = resp.getcode()
    total: Optional[int] = None
    length = resp.headers.get("Content-Length")
    if status == 206:
        match = CONTENT_RANGE.match(resp.headers.get("Content-Range", ""))
        if not match or int(match.group(1)) != have:
            resp.close()
            raise Interrupted(f"unexpected Content-Range {resp.headers.get('Content-Range')!r} for a resume "
                              f"from byte {have}")
        total = int(match.group(3)) if match.group(3) != "*" else None
        flags = os.O_WRONLY | os.O_APPEND | os.O_NOFOLLOW
    else:
        # 200: the whole body (the server ignored Range, or there was nothing to resume).
        hasher, have, resumed_from = hashlib.sha256(), 0, 0
        total = int(length) if length and length.isdigit() else None
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW
    received = 0
    try:
        fd = os.open(part, flags, 0o600, dir_fd=partial_fd)
        with os.fdopen(fd, "wb") as out:
            while True:
                block = resp.read(CHUNK)
                if not block:
                    break
                out.write(block)
                hasher.update(block)
                received += len(block)
                progress.update(have + received, total, url, "downloading")
            out.flush()
            os.fsync(out.fileno())
    except (http.client.IncompleteRead, socket.timeout, ConnectionError, OSError) as exc:
        raise Interrupted(f"transfer stopped at byte {have + received} of {total or '?'}: {exc}") from exc
    finally:
        resp.close()
    if total is not None and have + received != total:
        raise Interrupted(f"transfer stopped at byte {have + received} of {total}")
    progress.update(have + received, total, url, "downloaded", force=True)
    return hasher.hexdigest(), received, resumed_from


class Placer:
    """The module's work for one dest."""

    def __init__(self, module: AnsibleModule) -> None:
        self.module = module
        self.p = module.params
        self.check = module.check_mode
        self.dest: str = posixpath.normpath(self.p["dest"])
        self.dir, self.name = posixpath.split(self.dest)
        self.expected = mh.normalise_sha256(self.p["sha256"])
        self.partial_dir: str = self.p["partial_dir"] or ""
        src_or_url = self.p["src"] or ",".join(self.p["url"] or []) or self.dest
        self.key = self.expected or "unverified-" + hashlib.sha256(src_or_url.encode("utf-8")).hexdigest()[:24]
        self.part = self.key + ".part"
        self.progress = Progress(None if self.check or not self.partial_dir else
                                 (self.p["progress_file"] or posixpath.join(self.partial_dir, self.key + ".progress")))
        self.dir_fd: Optional[int] = None
        self.partial_fd: Optional[int] = None
        self.records_fd: Optional[int] = None
        self.notes: list[str] = []
        try:
            self.uid, self.gid, self.mode = _uid(self.p["owner"]), _gid(self.p["group"]), _mode(self.p["mode"])
        except ValueError as exc:
            module.fail_json(msg=f"{exc}. Fix: an existing owner/group and an octal mode such as '0644'.")
        self.result: dict = {"dest": self.dest, "changed": False, "current": False, "action": "none", "size": None,
                             "sha256": None, "short_hash": None, "legacy_hash": None, "bytes_downloaded": 0,
                             "resumed_from": 0, "url_used": None, "moved_aside": None, "set_aside": [],
                             "kept": False, "notes": self.notes}

    # -- helpers ---------------------------------------------------------------------------------------------
    def fail(self, msg: str, **extra) -> None:
        # Nothing reaches dest on a failure (a kept partial file is not a change of the model).
        result = dict(self.result, changed=False, current=False, **extra)
        self.module.fail_json(msg=redact_urls(msg), **{k: v for k, v in result.items() if k not in ("msg",)})

    def note(self, text: str) -> None:
        text = redact_urls(text)
        self.notes.append(text)
        self.module.warn(text)

    def check_tree(self) -> None:
        tree = self.p["tree"]
        if tree and not (self.dest + "/").startswith(posixpath.normpath(tree).rstrip("/") + "/"):
            self.fail(f"{self.dest} is not inside the models tree {tree}; refusing to write there. Fix: a "
                      "destination inside the tree")
        if tree and self.p["state"] != "directory" and posixpath.normpath(tree) == self.dest:
            self.fail(f"{self.dest} is the models tree itself, not a file in it")

    def open_dest_dir(self) -> bool:
        """Open dest's directory without following planted links; False when it does not exist."""
        try:
            self.dir_fd = open_dir(self.dir)[0]
        except FileNotFoundError:
            return False
        except Unsafe as exc:
            self.fail(f"refusing {self.dest}: {exc}.")
        return True

    def open_partial(self, create: bool) -> bool:
        """Open the partial dir: private to this user, and no directory above it lets anyone else rename or
        replace what leads to it (else it could be swapped for a link between two runs). Created 0700 when
        ``create``."""
        if self.partial_fd is not None:
            return True
        try:
            make = (lambda fd, path: os.fchmod(fd, 0o700)) if create else None
            fd, real, _created = open_dir(self.partial_dir, create=make)
        except FileNotFoundError:
            return False
        except Unsafe as exc:
            self.fail(f"refusing partial_dir {self.partial_dir}: {exc}. Partial downloads belong in a directory "
                      "only root can reach: set webui_models_partial_dir to one (default "
                      "/var/lib/sdfleet/models-partial).")
        self.partial_fd = fd
        problem = private_chain(real)
        st = os.fstat(fd)
        if problem is None and (st.st_uid != _euid() or stat.S_IMODE(st.st_mode) & 0o022):
            problem = (f"it is owned by {_user(st.st_uid)} with mode {stat.S_IMODE(st.st_mode):04o}, not private to "
                       f"{_user(_euid())}")
        elif problem is None and stat.S_IMODE(st.st_mode) & 0o077 and not self.check:
            os.fchmod(fd, 0o700)  # ours, but readable by others: private again
        if problem:
            self.fail(f"refusing partial_dir {self.partial_dir}: {problem}; someone else could plant links in it "
                      "or swap it for one. Fix: set webui_models_partial_dir to a root-owned 0700 directory whose "
                      "parents only root can write (default /var/lib/sdfleet/models-partial), or remove this one "
                      "(it only holds partial downloads) and run again.")
        return True

    def open_records(self, create: bool) -> Optional[int]:
        if self.records_fd is None and self.partial_fd is not None:
            try:
                if create and not self.check:
                    try:
                        os.mkdir("records", 0o700, dir_fd=self.partial_fd)
                    except FileExistsError:
                        pass
                fd = os.open("records", O_DIR, dir_fd=self.partial_fd)
                if os.fstat(fd).st_uid != _euid():
                    os.close(fd)
                    return None
                self.records_fd = fd
            except OSError:
                return None
        return self.records_fd

    def load_record(self, path: str) -> Optional[mh.HashRecord]:
        rfd = self.open_records(create=False)
        if rfd is None:
            return None
        try:
            fd = os.open(mh.record_name(path), os.O_RDONLY | os.O_NOFOLLOW, dir_fd=rfd)
            with os.fdopen(fd, encoding="utf-8") as stream:
                data = json.load(stream)
            record = mh.HashRecord(**{k: data[k] for k in ("path", "size", "mtime_ns", "inode", "sha256")})
        except (OSError, ValueError, KeyError, TypeError):
            return None
        return record if mh.is_sha256(record.sha256) else None

    def save_record(self, path: str, st: os.stat_result, sha: str) -> None:
        if self.check:
            return
        rfd = self.open_records(create=True)
        if rfd is None:
            return
        name = mh.record_name(path)
        tmp = f".{name}.{os.getpid()}.tmp"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600, dir_fd=rfd)
            with os.fdopen(fd, "w", encoding="utf-8") as stream:
                json.dump(mh.HashRecord.of_stat(path, st, sha).__dict__, stream)
            os.replace(tmp, name, src_dir_fd=rfd, dst_dir_fd=rfd)
        except OSError:
            pass

    def drop_record(self, path: str) -> None:
        rfd = self.open_records(create=False)
        if rfd is not None and not self.check:
            try:
                os.unlink(mh.record_name(path), dir_fd=rfd)
            except FileNotFoundError:
                pass

    def sha_fd(self, fd: int, path: str) -> str:
        st = os.fstat(fd)
        record = self.load_record(path)
        if record is not None and record.matches_stat(path, st):
            return record.sha256
        sha = mh.sha256_fd(fd).hexdigest()
        self.save_record(path, st, sha)
        return sha

    def lstat_dest(self) -> Optional[os.stat_result]:
        try:
            return os.stat(self.name, dir_fd=self.dir_fd, follow_symlinks=False)
        except FileNotFoundError:
            return None

    def open_dest(self) -> tuple[int, os.stat_result]:
        """dest opened read-only without following a link; fails on anything but a regular file."""
        try:
            fd = os.open(self.name, O_READ, dir_fd=self.dir_fd)
        except OSError as exc:
            self.fail(f"refusing {self.dest}: it changed into a link or vanished while it was read ({exc}); run "
                      "again")
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            os.close(fd)
            self.fail(f"refusing {self.dest}: it is not a regular file")
        return fd, st

    def describe(self, sha: Optional[str]) -> None:
        st = self.lstat_dest() if self.dir_fd is not None else None
        ours_link = st is not None and stat.S_ISLNK(st.st_mode) and st.st_uid in (0, _euid())
        if st is not None and (stat.S_ISREG(st.st_mode) or ours_link):
            try:
                fd, fst = open_file(self.dest) if stat.S_ISLNK(st.st_mode) else self.open_dest()
                try:
                    self.result["size"] = fst.st_size
                    self.result["legacy_hash"] = mh.legacy_hash_fd(fd)
                finally:
                    os.close(fd)
            except (OSError, Unsafe):
                pass
        if sha:
            self.result["sha256"], self.result["short_hash"] = sha, mh.short_hash(sha)
        if self.dir_fd is not None:
            prefix = self.name + ASIDE_MARK
            self.result["set_aside"] = sorted(posixpath.join(self.dir, n) for n in os.listdir(self.dir_fd)
                                              if n.startswith(prefix))

    def verified(self, actual: str, size: int) -> None:
        if self.expected and actual != self.expected:
            raise Mismatch(self.expected, actual, size)

    # -- state -----------------------------------------------------------------------------------------------
    def dest_is_current(self) -> tuple[bool, Optional[str], Optional[os.stat_result]]:
        """Whether dest already holds what it should; its sha256 when that was computed; its lstat."""
        link, src = self.p["link"], self.p["src"]
        st = self.lstat_dest()
        if st is None:
            return False, None, None
        if stat.S_ISDIR(st.st_mode):
            self.fail(f"{self.dest} is a directory; refusing to replace it with a file")
        if stat.S_ISLNK(st.st_mode):
            ours = st.st_uid in (0, _euid())
            if not link and not src and not self.p["url"] and ours:
                # verify-only: a link root made (a shared_path model) is read through, with open_file's rules
                sha = self.src_sha(self.dest)
                return (sha == self.expected if self.expected else True), sha, st
            if not link or not ours or os.readlink(self.name, dir_fd=self.dir_fd) != src:
                # A source replaces a link (moved aside); nothing follows a link root did not make.
                return False, None, st
            sha = self.src_sha(src)
            if self.expected and sha != self.expected:
                self.fail(f"{src}: sha256 mismatch: expected {self.expected}, got {sha}; the link {self.dest} "
                          "points at a file that is not the expected model", expected=self.expected, actual=sha)
            return True, sha, st
        if not stat.S_ISREG(st.st_mode):
            self.fail(f"refusing {self.dest}: it is a special file (fifo, socket or device), not a model")
        if link:
            return False, self.dest_sha(), st
        sha = self.dest_sha()
        if self.expected:
            return sha == self.expected, sha, st
        if src and not self.p["remove_src"]:
            try:
                return sha == self.src_sha(src), sha, st
            except (OSError, Unsafe):
                return False, sha, st
        return True, sha, st

    def dest_sha(self) -> str:
        fd, _st = self.open_dest()
        try:
            return self.sha_fd(fd, self.dest)
        finally:
            os.close(fd)

    def src_sha(self, src: str) -> str:
        try:
            fd, _st = open_file(src)
        except FileNotFoundError:
            self.fail(f"src {src} is missing or not a file")
        except Unsafe as exc:
            self.fail(f"refusing src {src}: {exc}.")
        try:
            return self.sha_fd(fd, src)
        finally:
            os.close(fd)

    def apply_attrs(self) -> bool:
        """Owner and mode of the file at dest (opened without following links; a hard-linked file is left)."""
        if self.uid == -1 and self.gid == -1 and self.mode is None:
            return False
        fd, st = self.open_dest()
        try:
            if st.st_nlink > 1:
                self.note(f"{self.dest} has {st.st_nlink} hard links; its owner and mode are left as they are")
                return False
            return set_attrs(fd, self.uid, self.gid, self.mode, self.check)
        finally:
            os.close(fd)

    def directory(self) -> None:
        """state=directory: dest exists as a real directory (no planted link on the way), with owner and mode;
        the directories created inside ``tree`` get them too, those above it root's 0755."""
        tree = posixpath.normpath(self.p["tree"] or self.dest)
        changed: list[str] = []

        def attrs(fd: int, path: str) -> None:
            inside = (path + "/").startswith(tree.rstrip("/") + "/")
            if inside:
                set_attrs(fd, self.uid, self.gid, self.mode if self.mode is not None else 0o755, False)
            else:
                os.fchmod(fd, 0o755)
            changed.append(path)

        try:
            if self.check:
                try:
                    fd, _real, _created = open_dir(self.dest)
                except FileNotFoundError:
                    self.result.update(changed=True, action="created")
                    return
            else:
                fd, _real, _created = open_dir(self.dest, create=attrs)
        except Unsafe as exc:
            self.fail(f"refusing {self.dest}: {exc}.")
        try:
            if self.mode is not None and not self.mode & 0o077 and self.uid == -1:
                # a private dir (the partial dir): ours, and nobody else can swap it (else refused, untouched)
                st = os.fstat(fd)
                problem = private_chain(_real)
                if problem is None and st.st_uid != _euid():
                    problem = f"it is owned by {_user(st.st_uid)}"
                if problem:
                    self.fail(f"refusing the private directory {self.dest}: {problem}; someone else could plant "
                              "links in it or swap it for one. Fix: set webui_models_partial_dir to a directory "
                              "whose parents only root can write (default /var/lib/sdfleet/models-partial), or "
                              "remove this one (it only holds partial downloads) and run again.")
            if changed:
                self.result.update(changed=True, action="created")
            elif set_attrs(fd, self.uid, self.gid, self.mode, self.check):
                self.result.update(changed=True, action="permissions")
            self.result["current"] = True
        finally:
            os.close(fd)

    def absent(self) -> None:
        if not self.open_dest_dir():
            return
        st = self.lstat_dest()
        removed = False
        if st is not None:
            if stat.S_ISDIR(st.st_mode):
                self.fail(f"{self.dest} is a directory; state=absent removes files only")
            if stat.S_ISREG(st.st_mode) and self.expected:
                sha = self.dest_sha()
                if sha != self.expected:
                    self.result.update(kept=True, action="kept", sha256=sha, short_hash=mh.short_hash(sha))
                    self.note(f"{self.dest} was left in place: its sha256 {sha} is not the entry's {self.expected}, "
                              "so it is not the model marked absent. Remove it by hand if it is not wanted")
            if not self.result["kept"]:
                removed = True  # a link is removed, never what it points at
        leftovers = []
        if self.partial_dir and self.open_partial(create=False):
            for name in (self.part, self.key + ".progress"):
                try:
                    os.stat(name, dir_fd=self.partial_fd, follow_symlinks=False)
                except FileNotFoundError:
                    continue
                leftovers.append(name)
        self.result.update(changed=removed or bool(leftovers), action="removed" if removed else self.result["action"])
        if self.check:
            return
        if removed:
            os.unlink(self.name, dir_fd=self.dir_fd)
            self.drop_record(self.dest)
        for name in leftovers:
            os.unlink(name, dir_fd=self.partial_fd)

    def present(self) -> None:
        p = self.p
        if not self.open_dest_dir():
            if self.check or not (p["url"] or p["src"]):
                # check mode before its directory exists, or verify-only: nothing there (yet)
                self.result.update(action="missing" if not (p["url"] or p["src"]) else
                                   "linked" if p["link"] else "copied" if p["src"] else "downloaded",
                                   changed=bool(p["url"] or p["src"]))
                return
            self.fail(f"the directory of {self.dest} does not exist; create it first")
        if self.partial_dir:
            self.open_partial(create=not self.check)  # also holds the hash records
        current, sha, st = self.dest_is_current()
        if current:
            self.result["current"] = True
            if st is not None and not stat.S_ISLNK(st.st_mode) and self.apply_attrs():
                self.result.update(changed=True, action="permissions")
            self.describe(sha)
            return
        if not p["url"] and not p["src"]:
            # verify-only: report what is there (never through a link it did not make)
            self.result["action"] = "missing"
            if sha:
                self.describe(sha)
            else:
                self.describe(None)
            return
        action = "linked" if p["link"] else "moved" if p["remove_src"] else "copied" if p["src"] else "downloaded"
        self.result.update(changed=True, action=action)
        aside = self.aside_name(st, sha) if st is not None else None
        if aside:
            self.result["moved_aside"] = posixpath.join(self.dir, aside)
        if self.check:
            self.result["current"] = False
            if self.expected:
                self.result.update(sha256=self.expected, short_hash=mh.short_hash(self.expected))
            self.describe(None)
            if aside:
                self.result["set_aside"] = sorted(set(self.result["set_aside"]) | {self.result["moved_aside"]})
            return
        if not self.partial_dir:
            self.fail("partial_dir is required to place a file")
        try:
            if p["link"]:
                self.link(aside)
            elif p["src"]:
                self.copy(p["src"], move=p["remove_src"], aside=aside)
            else:
                self.fetch(p["url"], aside)
        except Mismatch as exc:
            self.fail(f"sha256 mismatch for {self.dest}: expected {exc.expected}, got {exc.actual} ({exc.size} bytes "
                      f"fetched). Nothing was placed; {'the previous file is kept' if st is not None else 'no file at dest'}"
                      " and the partial file was removed.", expected=exc.expected, actual=exc.actual)
        self.result["current"] = True
        self.describe(self.result["sha256"])

    def aside_name(self, st: os.stat_result, sha: Optional[str]) -> str:
        """Where the different file now at dest goes: <name>.sdfleet-replaced-<sha256[:12]> (or -link), unused."""
        base = f"{self.name}{ASIDE_MARK}{sha[:12] if sha else 'link'}"
        name, n = base, 1
        while True:
            try:
                os.stat(name, dir_fd=self.dir_fd, follow_symlinks=False)
            except FileNotFoundError:
                return name
            n += 1
            name = f"{base}.{n}"

    def move_aside(self, aside: Optional[str]) -> None:
        if aside:
            os.rename(self.name, aside, src_dir_fd=self.dir_fd, dst_dir_fd=self.dir_fd)
            self.note(f"{self.dest} held another file; it was moved aside to {posixpath.join(self.dir, aside)} "
                      "(remove it when it is not needed)")

    def place(self, src_fd: int, name: str, aside: Optional[str]) -> None:
        """Apply owner/mode to the staged ``name`` of the private dir ``src_fd`` and rename it onto dest (through a
        temporary file next to dest, created without following links, when dest is on another filesystem)."""
        fd = os.open(name, O_READ, dir_fd=src_fd)
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1:
                self.fail(f"refusing the staged file {name}: not a regular file of its own")
            set_attrs(fd, self.uid, self.gid, self.mode, False)
        finally:
            os.close(fd)
        self.move_aside(aside)
        try:
            os.rename(name, self.name, src_dir_fd=src_fd, dst_dir_fd=self.dir_fd)
        except OSError as exc:
            if exc.errno != errno.EXDEV:
                raise
            tmp = f".{self.name}.sdfleet-tmp-{os.getpid()}"
            out = os.open(tmp, O_NEW, 0o600, dir_fd=self.dir_fd)
            inp = os.open(name, O_READ, dir_fd=src_fd)
            try:
                while True:
                    block = os.read(inp, CHUNK)
                    if not block:
                        break
                    os.write(out, block)
                os.fsync(out)
                set_attrs(out, self.uid, self.gid, self.mode, False)
            finally:
                os.close(inp)
                os.close(out)
            os.rename(tmp, self.name, src_dir_fd=self.dir_fd, dst_dir_fd=self.dir_fd)
            os.unlink(name, dir_fd=src_fd)
        fd, st = self.open_dest()
        os.close(fd)
        self.save_record(self.dest, st, self.result["sha256"])

    def link(self, aside: Optional[str]) -> None:
        src = self.p["src"]
        sha = self.src_sha(src)
        self.verified(sha, 0)
        tmp = f".{self.name}.sdfleet-link-{os.getpid()}"
        try:
            os.unlink(tmp, dir_fd=self.dir_fd)
        except FileNotFoundError:
            pass
        os.symlink(src, tmp, dir_fd=self.dir_fd)
        self.move_aside(aside)
        os.rename(tmp, self.name, src_dir_fd=self.dir_fd, dst_dir_fd=self.dir_fd)
        self.drop_record(self.dest)
        self.result["sha256"] = sha

    def fresh_part(self) -> None:
        """Remove a partial file that is not a plain file of ours (nothing of it is read or written)."""
        try:
            st = os.stat(self.part, dir_fd=self.partial_fd, follow_symlinks=False)
        except FileNotFoundError:
            return
        if not stat.S_ISREG(st.st_mode) or st.st_uid != _euid() or st.st_nlink != 1:
            os.unlink(self.part, dir_fd=self.partial_fd)
            self.note(f"the partial file {self.part} was not a plain file of its own (a link?); it was removed "
                      "unread")

    def copy(self, src: str, move: bool, aside: Optional[str]) -> None:
        if move:
            # a file staged by the caller in a private dir: moved from there (it must be a plain file of ours)
            try:
                sfd = open_dir(posixpath.dirname(src))[0]
            except (FileNotFoundError, Unsafe) as exc:
                self.fail(f"refusing src {src}: {exc}")
            try:
                fd = os.open(posixpath.basename(src), O_READ, dir_fd=sfd)
                try:
                    st = os.fstat(fd)
                    if not stat.S_ISREG(st.st_mode) or st.st_uid != _euid():
                        self.fail(f"refusing src {src}: not a regular file of {_user(_euid())}")
                    sha = mh.sha256_fd(fd).hexdigest()
                finally:
                    os.close(fd)
                try:
                    self.verified(sha, st.st_size)
                except Mismatch:
                    os.unlink(posixpath.basename(src), dir_fd=sfd)
                    raise
                self.result["sha256"] = sha
                self.place(sfd, posixpath.basename(src), aside)
            finally:
                os.close(sfd)
            return
        try:
            inp, st = open_file(src)
        except FileNotFoundError:
            self.fail(f"src {src} is missing or not a file")
        except Unsafe as exc:
            self.fail(f"refusing src {src}: {exc}.")
        self.fresh_part()
        hasher = hashlib.sha256()
        done = 0
        try:
            out = os.open(self.part, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600,
                          dir_fd=self.partial_fd)
            with os.fdopen(out, "wb") as stream:
                while True:
                    block = os.read(inp, CHUNK)
                    if not block:
                        break
                    stream.write(block)
                    hasher.update(block)
                    done += len(block)
                    self.progress.update(done, st.st_size, None, "copying")
                stream.flush()
                os.fsync(stream.fileno())
        finally:
            os.close(inp)
        sha = hasher.hexdigest()
        try:
            self.verified(sha, done)
        except Mismatch:
            os.unlink(self.part, dir_fd=self.partial_fd)
            raise
        self.result["sha256"] = sha
        self.place(self.partial_fd, self.part, aside)

    def fetch(self, urls: list[str], aside: Optional[str]) -> None:
        errors: list[str] = []
        self.fresh_part()
        for attempt in range(self.p["retries"] + 1):
            for position, url in enumerate(urls):
                shown = redact_url(url)
                try:
                    sha, received, resumed_from = download(url, self.partial_fd, self.part, self.p, self.progress)
                except (Interrupted, HTTPError, URLError, OSError, http.client.HTTPException) as exc:
                    errors.append(f"attempt {attempt + 1}, {shown}: {redact_urls(exc)}")
                    continue
                self.result["bytes_downloaded"] += received
                if not self.result["url_used"]:
                    self.result["resumed_from"] = resumed_from
                self.result["url_used"] = shown
                if resumed_from:
                    self.result["action"] = "resumed"
                size = os.stat(self.part, dir_fd=self.partial_fd, follow_symlinks=False).st_size
                try:
                    self.verified(sha, size)
                except Mismatch as exc:
                    os.unlink(self.part, dir_fd=self.partial_fd)
                    if position + 1 < len(urls):
                        # A stale or corrupt copy (a fleet mirror's, typically): the next source may have the file.
                        self.note(f"{shown} sent a file with sha256 {exc.actual} ({size} bytes), not the expected "
                                  f"{exc.expected}; it was discarded and the next source is tried")
                        errors.append(f"attempt {attempt + 1}, {shown}: sha256 mismatch ({exc.actual})")
                        continue
                    raise
                self.result["sha256"] = sha
                self.place(self.partial_fd, self.part, aside)
                return
        try:
            have = os.stat(self.part, dir_fd=self.partial_fd, follow_symlinks=False).st_size
        except FileNotFoundError:
            have = 0
        partial = posixpath.join(self.partial_dir, self.part)
        self.fail(f"could not download {self.dest}: " + "; ".join(errors) +
                  (f". {have} bytes are kept in {partial}; the next run resumes from there." if have else ""),
                  partial=partial, partial_size=have)


def _hide_credentials(module: AnsibleModule, urls: list[str]) -> None:
    """Mask each URL's user-info in everything the module returns (its invocation included)."""
    for url in urls:
        try:
            parts = urlsplit(url)
        except ValueError:
            continue
        if "@" in parts.netloc:
            module.no_log_values.add(parts.netloc.rsplit("@", 1)[0])
        if parts.password:
            module.no_log_values.add(parts.password)


def main() -> None:
    """Entry point."""
    module = AnsibleModule(
        argument_spec={
            "dest": {"type": "path", "required": True},
            "state": {"type": "str", "choices": ["present", "absent", "directory"], "default": "present"},
            "url": {"type": "list", "elements": "str"},
            "src": {"type": "path"},
            "link": {"type": "bool", "default": False},
            "remove_src": {"type": "bool", "default": False},
            "sha256": {"type": "str"},
            "partial_dir": {"type": "path"},
            "tree": {"type": "path"},
            "owner": {"type": "str"},
            "group": {"type": "str"},
            "mode": {"type": "raw"},
            "progress_file": {"type": "path"},
            "timeout": {"type": "int", "default": 60},
            "retries": {"type": "int", "default": 0},
            "headers": {"type": "dict", "default": {}, "no_log": True},
            "validate_certs": {"type": "bool", "default": True},
        },
        mutually_exclusive=[("url", "src")],
        required_if=[("state", "absent", ("partial_dir",))],
        supports_check_mode=True,
    )
    params = module.params
    _hide_credentials(module, params["url"] or [])
    expected = mh.normalise_sha256(params["sha256"])
    if expected is not None and not mh.is_sha256(expected):
        module.fail_json(msg=f"sha256 must be 64 hex digits, got {params['sha256']!r}")
    if params["link"] and params["remove_src"]:
        module.fail_json(msg="link and remove_src exclude each other")
    if (params["link"] or params["remove_src"]) and not params["src"]:
        module.fail_json(msg="link and remove_src need src")
    if params["retries"] < 0 or params["timeout"] < 1:
        module.fail_json(msg="retries must be >= 0 and timeout >= 1")
    if not params["dest"].startswith("/"):
        module.fail_json(msg=f"dest {params['dest']!r} must be an absolute path")
    for url in params["url"] or []:
        if not url.startswith(("http://", "https://")):
            module.fail_json(msg=f"url {redact_url(url)!r} is not http(s)")
    placer = Placer(module)
    placer.check_tree()
    if params["state"] == "directory":
        placer.directory()
    elif params["state"] == "absent":
        placer.absent()
    else:
        placer.present()
    module.exit_json(**placer.result)


if __name__ == "__main__":
    main()
