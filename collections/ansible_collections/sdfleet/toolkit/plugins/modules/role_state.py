#!/usr/bin/python
# -*- coding: utf-8 -*-
"""Ansible module: one read-only round trip that tells whether a role's work on this host is still done."""
from __future__ import annotations

DOCUMENTATION = r"""
---
module: role_state
short_description: Tell in one read-only probe whether a role left this host as it is now, or record that it did
version_added: "0.1.0"
description:
  - A role that converged records a stamp (I(state=record)) under I(stamp_dir), root only, with a digest of its
    I(inputs) keyed with a secret of the host's (kept beside the stamps, root only, so no log or stamp holds anything
    derived from an input such as a login without it) and what it manages, as it was then (the
    content's sha256, type, mode and owner of each of I(files), and the type, mode, owner and link target of each
    of I(paths)).
  - The next run asks first (I(state=probe), read-only, also in check mode). The answer is C(current) when the
    stamp's digest equals I(digest), every file and path still matches the stamp, every one of I(units) is active
    and enabled, and every one of I(urls) answers HTTP 200. Otherwise C(reasons) says what differs, and the role
    runs every task as on a first run.
  - Writing the stamp is bookkeeping, not a change of what the role manages, so it never reports C(changed).
author:
  - sdfleet contributors
options:
  name:
    description: The stamp's name (the role's).
    type: str
    required: true
  state:
    description: C(probe) reads and compares; C(record) writes the stamp (nothing in check mode).
    type: str
    choices: [probe, record]
    default: probe
  inputs:
    description: The role's inputs (variables, plan, the digest of the role's own files; C(sdfleet.toolkit.state_inputs)).
      Never shown (no_log); only their keyed digest is kept.
    type: str
    required: true
  files:
    description: Files whose content the role writes (witnessed by sha256, type, mode and owner). A missing file is
      witnessed as missing.
    type: list
    elements: path
    default: []
  paths:
    description: Directories, links and files whose content the role does not own (logs), witnessed by type, mode,
      owner and link target only.
    type: list
    elements: path
    default: []
  stats:
    description: Large files the role placed after checking their content (models), witnessed by type, mode, owner,
      size and modification time (no hashing of gigabytes on every run).
    type: list
    elements: path
    default: []
  commands:
    description: Read-only commands (each an argv list, or a string split as a shell would split words; run without a
      shell) whose exit status and output are witnessed, for state that is no file (a checkout's commit, an account).
    type: list
    elements: raw
    default: []
  units:
    description: systemd units that must be active and enabled for the state to be current (probe only).
    type: list
    elements: str
    default: []
  urls:
    description: URLs that must answer HTTP 200 within 5 seconds (probe only). Loopback liveness checks, so an HTTPS
      certificate is not verified here (the role's own health gate verifies it).
    type: list
    elements: str
    default: []
  facts:
    description: What the role published on this run (no secrets), kept in the stamp (I(state=record)) and returned
      by the probe that finds the host current, so a role that skips its tasks publishes the same.
    type: dict
    default: {}
  stamp_dir:
    description: Where the stamps live (root only).
    type: path
    default: /var/lib/sdfleet/state
attributes:
  check_mode:
    support: full
    description: The probe runs as usual; C(record) writes nothing.
  diff_mode:
    support: none
"""

EXAMPLES = r"""
- name: Probe the service's state
  sdfleet.toolkit.role_state:
    name: webui_service
    inputs: "{{ __webui_service_state_inputs }}"
    files: [/etc/systemd/system/sd-webui@.service]
    units: [sd-webui@0.service]
    urls: ["http://127.0.0.1:7860/internal/ping"]
  register: __webui_service_state
"""

RETURN = r"""
current:
  description: Whether the host is as the role's last recorded run left it (probe); true after a record.
  returned: always
  type: bool
reasons:
  description: What differs, one line each (probe); empty when current.
  returned: always
  type: list
  elements: str
  sample: ["the inputs changed", "/etc/systemd/system/sd-webui@.service: content changed", "sd-webui@0.service is inactive"]
facts:
  description: The I(facts) recorded with the stamp when the probe finds the host current; C({}) otherwise.
  returned: always
  type: dict
"""

import hashlib
import hmac
import json
import os
import secrets
import shlex
import ssl
import stat
import subprocess
import urllib.request
from typing import Any

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.sdfleet.toolkit.plugins.module_utils.model_hash import sha256_file

STAMP_VERSION = 1


def witness(path: str, content: str) -> dict[str, Any]:
    """What the stamp keeps of one path: type, mode, owner, the link target, and of a file with ``content``
    "sha256" its content's sha256, with "stat" its size and modification time ("": neither)."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return {"type": "missing"}
    kind = ("link" if stat.S_ISLNK(st.st_mode) else "dir" if stat.S_ISDIR(st.st_mode)
            else "file" if stat.S_ISREG(st.st_mode) else "other")
    seen: dict[str, Any] = {"type": kind, "mode": stat.S_IMODE(st.st_mode), "uid": st.st_uid, "gid": st.st_gid}
    if kind == "link":
        seen["target"] = os.readlink(path)
    elif kind == "file" and content == "sha256":
        seen["sha256"] = sha256_file(path)
    elif kind == "file" and content == "stat":
        seen |= {"size": st.st_size, "mtime_ns": st.st_mtime_ns}
    return seen


def command_witness(argv: list[str]) -> dict[str, Any]:
    """The exit status and output of one read-only command (no shell)."""
    try:
        out = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return {"type": "command", "error": type(exc).__name__}
    return {"type": "command", "rc": out.returncode,
            "sha256": hashlib.sha256(out.stdout.encode()).hexdigest()}


def witnesses(files: list[str], paths: list[str], stats: list[str] = (),
              commands: list[list[str]] = ()) -> dict[str, dict[str, Any]]:
    """Every witness, keyed by path (a path in several lists: files win, then stats) or by the command line."""
    seen = {p: witness(p, content="") for p in paths} | {p: witness(p, content="stat") for p in stats}
    seen |= {p: witness(p, content="sha256") for p in files}
    return seen | {"$ " + " ".join(argv): command_witness(argv) for argv in commands}


def _differences(path: str, then: dict[str, Any] | None, now: dict[str, Any]) -> str | None:
    if then is None:
        return f"{path}: not in the stamp"
    if then == now:
        return None
    if now["type"] == "command":
        return f"{path}: output changed" if then.get("rc") == now.get("rc") else f"{path}: exit status changed"
    if now["type"] == "missing" or then.get("type") == "missing":
        return f"{path}: {'missing' if now['type'] == 'missing' else 'appeared'}"
    changed = sorted({"content" if k in ("sha256", "size", "mtime_ns") else k
                      for k in set(then) | set(now) if then.get(k) != now.get(k)})
    return f"{path}: {', '.join(changed)} changed"


def keyed_digest(key: bytes, inputs: str) -> str:
    """HMAC-SHA256 of ``inputs`` (canonical JSON text) under the host's key."""
    return hmac.new(key, inputs.encode(), hashlib.sha256).hexdigest()


def make_stamp_dir(stamp_dir: str) -> None:
    """The stamps' dir, root only (also when it was there with another mode)."""
    os.makedirs(stamp_dir, mode=0o700, exist_ok=True)
    os.chmod(stamp_dir, 0o700)


def read_key(stamp_dir: str, create: bool) -> bytes | None:
    """The host's key (32 random bytes, root only), made on the first record."""
    path = os.path.join(stamp_dir, "key")
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except FileNotFoundError:
        if not create:
            return None
    make_stamp_dir(stamp_dir)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(secrets.token_bytes(32))
    return read_key(stamp_dir, create=False)


def compare(stamp: dict[str, Any] | None, digest: str, now: dict[str, dict[str, Any]]) -> list[str]:
    """Why the host is not as the stamp recorded it ([] when it is)."""
    if not stamp or stamp.get("version") != STAMP_VERSION:
        return ["no stamp of an earlier run"]
    reasons = [] if stamp.get("digest") == digest else ["the inputs changed"]
    recorded = stamp.get("witnesses", {})
    reasons += [r for p in now if (r := _differences(p, recorded.get(p), now[p]))]
    return reasons


def unit_problems(units: list[str]) -> list[str]:
    """Units that are not active or not enabled (one systemctl call each for both questions)."""
    if not units:
        return []
    problems = []
    for verb in ("is-active", "is-enabled"):
        try:
            out = subprocess.run(["systemctl", verb, *units], capture_output=True, text=True, check=False)
        except OSError as exc:
            return [f"systemctl cannot run ({exc.strerror})"]
        states = out.stdout.split()
        for unit, state in zip(units, states + ["unknown"] * (len(units) - len(states))):
            if state not in ("active", "enabled"):
                problems.append(f"{unit} is {state}")
    return problems


def url_problems(urls: list[str]) -> list[str]:
    """URLs that do not answer HTTP 200 within 5 seconds."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    problems = []
    for url in urls:
        try:
            with urllib.request.urlopen(url, timeout=5, context=context) as answer:  # noqa: S310 (loopback URLs)
                if answer.status != 200:
                    problems.append(f"{url} answered HTTP {answer.status}")
        except Exception as exc:  # pylint: disable=broad-except  # any failure means "not current"
            problems.append(f"{url} did not answer ({type(exc).__name__})")
    return problems


def read_stamp(path: str) -> dict[str, Any] | None:
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except (OSError, ValueError):
        return None


def write_stamp(stamp_dir: str, path: str, stamp: dict[str, Any]) -> None:
    """Atomically: a root-only temporary file beside the stamp, then a rename."""
    make_stamp_dir(stamp_dir)
    tmp = f"{path}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(stamp, handle, sort_keys=True)
    os.replace(tmp, path)


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "name": {"type": "str", "required": True},
            "state": {"type": "str", "choices": ["probe", "record"], "default": "probe"},
            "inputs": {"type": "str", "required": True, "no_log": True},
            "files": {"type": "list", "elements": "path", "default": []},
            "paths": {"type": "list", "elements": "path", "default": []},
            "stats": {"type": "list", "elements": "path", "default": []},
            "commands": {"type": "list", "elements": "raw", "default": []},
            "units": {"type": "list", "elements": "str", "default": []},
            "urls": {"type": "list", "elements": "str", "default": []},
            "facts": {"type": "dict", "default": {}},
            "stamp_dir": {"type": "path", "default": "/var/lib/sdfleet/state"},
        },
        supports_check_mode=True,
    )
    p = module.params
    stamp_path = os.path.join(p["stamp_dir"], f"{p['name']}.json")
    argvs = [shlex.split(c) if isinstance(c, str) else [str(a) for a in c] for c in p["commands"]]
    if p["state"] == "record":
        if not module.check_mode:  # check mode writes nothing, so it need not witness anything either
            now = witnesses(p["files"], p["paths"], p["stats"], argvs)
            key = read_key(p["stamp_dir"], create=True) or b""
            write_stamp(p["stamp_dir"], stamp_path, {"version": STAMP_VERSION, "digest": keyed_digest(key, p["inputs"]),
                                                     "witnesses": now, "facts": p["facts"]})
        module.exit_json(changed=False, current=True, reasons=[], facts=p["facts"])
    key = read_key(p["stamp_dir"], create=False)
    stamp = read_stamp(stamp_path) if key else None
    now = witnesses(p["files"], p["paths"], p["stats"], argvs)
    reasons = compare(stamp, keyed_digest(key or b"", p["inputs"]), now)
    if not reasons:
        reasons = unit_problems(p["units"]) + url_problems(p["urls"])
    module.exit_json(changed=False, current=not reasons, reasons=reasons,
                     facts={} if reasons or stamp is None else stamp.get("facts", {}))


if __name__ == "__main__":
    main()
