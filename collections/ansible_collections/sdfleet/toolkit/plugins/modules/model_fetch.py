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
author:
  - sdfleet contributors
options:
  dest:
    description: Final path of the model file.
    type: path
    required: true
  state:
    description: C(present) places the file; C(absent) removes I(dest), its hash record and its partial file.
    type: str
    choices: [present, absent]
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
    description: Where partial downloads, staged files and hash records live (created with mode C(0700) when missing).
    type: path
    required: true
  owner:
    description: Owner of the placed file.
    type: str
  group:
    description: Group of the placed file.
    type: str
  mode:
    description: Mode of the placed file (left as created under the umask when not given).
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
    partial_dir: /opt/sd-webui/models/.sdfleet-partial
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
    partial_dir: /opt/sd-webui/models/.sdfleet-partial

- name: Only check what is there, and read its hashes
  sdfleet.toolkit.model_fetch:
    dest: /opt/sd-webui/models/Stable-diffusion/v1-5-pruned-emaonly.safetensors
    sha256: 6ce0161689b3853acaa03779ec93eafe75a02f4ced659bee03f50797806fa2fa
    partial_dir: /opt/sd-webui/models/.sdfleet-partial
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
    C(moved), C(linked), C(removed), C(missing) (verify-only and nothing there).
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
  description: The URL the file finally came from; null when nothing was downloaded.
  returned: always
  type: str
"""

import errno
import hashlib
import http.client
import json
import os
import re
import shutil
import socket
import time
from typing import Optional

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.urls import open_url
from ansible.module_utils.six.moves.urllib.error import HTTPError, URLError
from ansible_collections.sdfleet.toolkit.plugins.module_utils import model_hash as mh

CHUNK = 1024 * 1024
CONTENT_RANGE = re.compile(r"^bytes (\d+)-(\d+)/(\d+|\*)$")


class Interrupted(Exception):
    """A transfer stopped before its end; the partial file is kept for a resume."""


class Mismatch(Exception):
    """The bytes' SHA-256 is not the expected one."""

    def __init__(self, expected: str, actual: str, size: int) -> None:
        super().__init__(f"expected sha256 {expected}, got {actual} ({size} bytes)")
        self.expected, self.actual, self.size = expected, actual, size


class Progress:
    """Writes {"bytes", "total", "url", "phase"} to a JSON file, at most once a second (and at the end)."""

    def __init__(self, path: Optional[str]) -> None:
        self.path, self.last = path, 0.0

    def update(self, done: int, total: Optional[int], url: Optional[str], phase: str, force: bool = False) -> None:
        if not self.path:
            return
        now = time.monotonic()
        if not force and now - self.last < 1.0:
            return
        self.last = now
        tmp = self.path + ".tmp"
        try:
            with open(tmp, "w", encoding="utf-8") as stream:
                json.dump({"bytes": done, "total": total, "url": url, "phase": phase}, stream)
            os.replace(tmp, self.path)
        except OSError:
            pass


def _hash_prefix(path: str) -> tuple["hashlib._Hash", int]:
    """SHA-256 state and size of what a partial file already holds."""
    hasher = hashlib.sha256()
    if not os.path.exists(path):
        return hasher, 0
    with open(path, "rb") as stream:
        mh.sha256_stream(stream, hasher)
    return hasher, os.path.getsize(path)


def download(url: str, partial: str, params: dict, progress: Progress) -> tuple[str, int, int]:
    """Fetch ``url`` into ``partial``, resuming from its current size. Returns (sha256, bytes received, resumed_from).

    Raises Interrupted when the transfer stops early (the partial file is kept)."""
    hasher, have = _hash_prefix(partial)
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
            raise Interrupted(f"unexpected Content-Range {resp.headers.get('Content-Range')!r} for a resume "
                              f"from byte {have}")
        total = int(match.group(3)) if match.group(3) != "*" else None
        flags = "ab"
    else:
        # 200: the whole body (the server ignored Range, or there was nothing to resume).
        hasher, have, resumed_from, flags = hashlib.sha256(), 0, 0, "wb"
        total = int(length) if length and length.isdigit() else None
    received = 0
    try:
        with open(partial, flags) as out:
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
        self.dest: str = self.p["dest"]
        self.expected = mh.normalise_sha256(self.p["sha256"])
        self.partial_dir: str = self.p["partial_dir"]
        self.records = os.path.join(self.partial_dir, "records")
        src_or_url = self.p["src"] or ",".join(self.p["url"] or []) or self.dest
        self.key = self.expected or "unverified-" + hashlib.sha256(src_or_url.encode("utf-8")).hexdigest()[:24]
        self.partial = os.path.join(self.partial_dir, self.key + ".part")
        self.progress = Progress(None if self.check else
                                 (self.p["progress_file"] or os.path.join(self.partial_dir, self.key + ".progress")))
        self.result: dict = {"dest": self.dest, "changed": False, "current": False, "action": "none", "size": None,
                             "sha256": None, "short_hash": None, "legacy_hash": None, "bytes_downloaded": 0,
                             "resumed_from": 0, "url_used": None}

    # -- helpers ---------------------------------------------------------------------------------------------
    def fail(self, msg: str, **extra) -> None:
        # Nothing reaches dest on a failure (a kept partial file is not a change of the model).
        self.module.fail_json(msg=msg, **dict(self.result, changed=False, current=False, **extra))

    def file_args(self, path: str) -> dict:
        args = self.module.load_file_common_arguments(self.p, path=path)
        return args

    def sha_of(self, path: str) -> str:
        return mh.cached_sha256(path, self.records, write=not self.check)[0]

    def describe(self, sha: Optional[str]) -> None:
        path = self.dest
        if os.path.exists(path):
            self.result["size"] = os.path.getsize(path)
            self.result["legacy_hash"] = mh.legacy_hash(path)
        if sha:
            self.result["sha256"], self.result["short_hash"] = sha, mh.short_hash(sha)

    def ensure_partial_dir(self) -> None:
        if not os.path.isdir(self.partial_dir):
            os.makedirs(self.partial_dir, mode=0o700)

    def place(self, staged: str) -> None:
        """Apply owner/mode to ``staged`` and rename it onto dest (copy+rename across filesystems)."""
        self.module.set_fs_attributes_if_different(self.file_args(staged), False)
        if os.path.islink(self.dest) or os.path.isdir(self.dest):
            if os.path.isdir(self.dest) and not os.path.islink(self.dest):
                self.fail(f"{self.dest} is a directory; refusing to replace it with a file")
            os.unlink(self.dest)
        try:
            os.replace(staged, self.dest)
        except OSError as exc:
            if exc.errno != errno.EXDEV:
                raise
            tmp = os.path.join(os.path.dirname(self.dest), "." + os.path.basename(self.dest) + ".sdfleet-tmp")
            shutil.copyfile(staged, tmp)
            with open(tmp, "rb") as stream:
                os.fsync(stream.fileno())
            self.module.set_fs_attributes_if_different(self.file_args(tmp), False)
            os.replace(tmp, self.dest)
            os.unlink(staged)
        mh.save_record(self.records, mh.HashRecord.of(self.dest, self.result["sha256"]))

    def verified(self, actual: str, size: int) -> None:
        if self.expected and actual != self.expected:
            raise Mismatch(self.expected, actual, size)

    # -- state -----------------------------------------------------------------------------------------------
    def dest_is_current(self) -> tuple[bool, Optional[str]]:
        """Whether dest already holds what it should; and its sha256 when that was computed."""
        link, src = self.p["link"], self.p["src"]
        if link:
            if not os.path.islink(self.dest) or os.readlink(self.dest) != src:
                return False, None
            if not os.path.isfile(src):
                self.fail(f"src {src} is missing or not a file")
            sha = self.sha_of(src)
            if self.expected and sha != self.expected:
                self.fail(f"{src}: sha256 mismatch: expected {self.expected}, got {sha}; the link {self.dest} "
                          "points at a file that is not the expected model", expected=self.expected, actual=sha)
            return True, sha
        fetching = bool(src or self.p["url"])
        if (fetching and os.path.islink(self.dest)) or not os.path.isfile(self.dest):
            # A source replaces a link with a real file; verify-only follows links.
            return False, None
        sha = self.sha_of(self.dest)
        if self.expected:
            return sha == self.expected, sha
        if src and not self.p["remove_src"] and os.path.isfile(src):
            return sha == self.sha_of(src), sha
        return True, sha

    def absent(self) -> None:
        removed = os.path.lexists(self.dest)
        if os.path.isdir(self.dest) and not os.path.islink(self.dest):
            self.fail(f"{self.dest} is a directory; state=absent removes files only")
        leftovers = [p for p in (self.partial, self.partial[:-len(".part")] + ".progress") if os.path.exists(p)]
        self.result.update(changed=removed or bool(leftovers), action="removed" if removed else "none")
        if self.check:
            return
        if removed:
            os.unlink(self.dest)
        for path in leftovers:
            os.unlink(path)
        mh.drop_record(self.records, self.dest)

    def present(self) -> None:
        p = self.p
        if not os.path.isdir(os.path.dirname(self.dest)):
            self.fail(f"the directory of {self.dest} does not exist; create it first")
        current, sha = self.dest_is_current()
        if current:
            self.result["current"] = True
            if not os.path.islink(self.dest) and (self.p["owner"] or self.p["group"] or self.p["mode"]):
                changed = self.module.set_fs_attributes_if_different(self.file_args(self.dest), False)
                if changed:
                    self.result.update(changed=True, action="permissions")
            self.describe(sha)
            return
        if not p["url"] and not p["src"]:
            # verify-only: report what is there
            self.result["action"] = "missing"
            if sha:
                self.describe(sha)
            return
        action = "linked" if p["link"] else "moved" if p["remove_src"] else "copied" if p["src"] else "downloaded"
        self.result.update(changed=True, action=action)
        if self.check:
            self.result["current"] = False
            if self.expected:
                self.result.update(sha256=self.expected, short_hash=mh.short_hash(self.expected))
            return
        if p["src"] and not os.path.isfile(p["src"]):
            self.fail(f"src {p['src']} is missing or not a file")
        self.ensure_partial_dir()
        try:
            if p["link"]:
                self.link()
            elif p["src"]:
                self.copy(p["src"], move=p["remove_src"])
            else:
                self.fetch(p["url"])
        except Mismatch as exc:
            self.fail(f"sha256 mismatch for {self.dest}: expected {exc.expected}, got {exc.actual} ({exc.size} bytes "
                      f"fetched). Nothing was placed; {'the previous file is kept' if os.path.exists(self.dest) else 'no file at dest'}"
                      " and the partial file was removed.", expected=exc.expected, actual=exc.actual)
        self.result["current"] = True
        self.describe(self.result["sha256"])

    def link(self) -> None:
        src = self.p["src"]
        sha = self.sha_of(src)
        self.verified(sha, os.path.getsize(src))
        tmp = os.path.join(os.path.dirname(self.dest), "." + os.path.basename(self.dest) + ".sdfleet-link")
        if os.path.lexists(tmp):
            os.unlink(tmp)
        os.symlink(src, tmp)
        if os.path.isdir(self.dest) and not os.path.islink(self.dest):
            self.fail(f"{self.dest} is a directory; refusing to replace it with a link")
        os.replace(tmp, self.dest)
        mh.drop_record(self.records, self.dest)
        self.result["sha256"] = sha

    def copy(self, src: str, move: bool) -> None:
        staged = src
        if move:
            sha = mh.sha256_file(src)
        else:
            staged = self.partial
            hasher = hashlib.sha256()
            size = os.path.getsize(src)
            done = 0
            with open(src, "rb") as inp, open(staged, "wb") as out:
                while True:
                    block = inp.read(CHUNK)
                    if not block:
                        break
                    out.write(block)
                    hasher.update(block)
                    done += len(block)
                    self.progress.update(done, size, None, "copying")
                out.flush()
                os.fsync(out.fileno())
            sha = hasher.hexdigest()
        try:
            self.verified(sha, os.path.getsize(staged))
        except Mismatch:
            os.unlink(staged)
            raise
        self.result["sha256"] = sha
        self.place(staged)

    def fetch(self, urls: list[str]) -> None:
        errors: list[str] = []
        for attempt in range(self.p["retries"] + 1):
            for url in urls:
                try:
                    sha, received, resumed_from = download(url, self.partial, self.p, self.progress)
                except (Interrupted, HTTPError, URLError, OSError, http.client.HTTPException) as exc:
                    errors.append(f"attempt {attempt + 1}, {url}: {exc}")
                    continue
                self.result["bytes_downloaded"] += received
                if not self.result["url_used"]:
                    self.result["resumed_from"] = resumed_from
                self.result["url_used"] = url
                if resumed_from:
                    self.result["action"] = "resumed"
                size = os.path.getsize(self.partial)
                try:
                    self.verified(sha, size)
                except Mismatch:
                    os.unlink(self.partial)
                    raise
                self.result["sha256"] = sha
                self.place(self.partial)
                return
        have = os.path.getsize(self.partial) if os.path.exists(self.partial) else 0
        self.fail(f"could not download {self.dest}: " + "; ".join(errors) +
                  (f". {have} bytes are kept in {self.partial}; the next run resumes from there." if have else ""),
                  partial=self.partial, partial_size=have)


def main() -> None:
    """Entry point."""
    module = AnsibleModule(
        argument_spec={
            "dest": {"type": "path", "required": True},
            "state": {"type": "str", "choices": ["present", "absent"], "default": "present"},
            "url": {"type": "list", "elements": "str"},
            "src": {"type": "path"},
            "link": {"type": "bool", "default": False},
            "remove_src": {"type": "bool", "default": False},
            "sha256": {"type": "str"},
            "partial_dir": {"type": "path", "required": True},
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
        supports_check_mode=True,
    )
    params = module.params
    expected = mh.normalise_sha256(params["sha256"])
    if expected is not None and not mh.is_sha256(expected):
        module.fail_json(msg=f"sha256 must be 64 hex digits, got {params['sha256']!r}")
    if params["link"] and params["remove_src"]:
        module.fail_json(msg="link and remove_src exclude each other")
    if (params["link"] or params["remove_src"]) and not params["src"]:
        module.fail_json(msg="link and remove_src need src")
    if params["retries"] < 0 or params["timeout"] < 1:
        module.fail_json(msg="retries must be >= 0 and timeout >= 1")
    for url in params["url"] or []:
        if not url.startswith(("http://", "https://")):
            module.fail_json(msg=f"url {url!r} is not http(s)")
    placer = Placer(module)
    if params["state"] == "absent":
        placer.absent()
    else:
        placer.present()
    module.exit_json(**placer.result)


if __name__ == "__main__":
    main()
