#!/usr/bin/python
# -*- coding: utf-8 -*-
"""Ansible module: move a portable bundle's user data into a fresh checkout without losing anything."""
from __future__ import annotations

DOCUMENTATION = r"""
---
module: bundle_adopt
short_description: Move user data (models, outputs, settings) from an old webui install into a fresh checkout
version_added: "0.1.0"
description:
  - For each name of I(items) found in I(src), moves it into I(dest). A directory whose counterpart does not
    exist in I(dest) is moved whole; otherwise its files are merged one by one.
  - A file never replaces one that is already in I(dest) (a file that came with the checkout); the bundle's copy
    stays in I(src) and is listed in I(kept), with whether it is identical or differs.
  - Moved files and directories are given to I(owner)/I(group).
  - I(src) itself is left in place (it is the backup of what was there), holding whatever was not moved.
author:
  - sdfleet contributors
options:
  src:
    description: The old install (already moved aside).
    type: path
    required: true
  dest:
    description: The fresh checkout.
    type: path
    required: true
  items:
    description: Names (files or directories) directly under I(src) to bring over.
    type: list
    elements: str
    default: [models, outputs, embeddings, extensions, config.json, ui-config.json, styles.csv]
  owner:
    description: Owner of what is moved; empty keeps it.
    type: str
    default: ""
  group:
    description: Group of what is moved; empty keeps it.
    type: str
    default: ""
attributes:
  check_mode:
    support: full
    description: Reports what would move without moving it.
  diff_mode:
    support: none
"""

EXAMPLES = r"""
- name: Bring the bundle's models, outputs and settings into the checkout
  sdfleet.toolkit.bundle_adopt:
    src: /opt/sd-webui.pre-sdfleet
    dest: /opt/sd-webui
    owner: sdwebui
    group: sdwebui
"""

RETURN = r"""
moved:
  description: Paths (relative to I(src)) moved into I(dest); a directory moved whole is one entry.
  returned: always
  type: list
  elements: str
  sample: [models/Stable-diffusion/my.safetensors, outputs, config.json]
kept:
  description: Files left in I(src) because I(dest) already had one, C({path, identical}).
  returned: always
  type: list
  elements: dict
  sample: [{path: "models/Stable-diffusion/Put Stable Diffusion checkpoints here.txt", identical: true}]
"""

import filecmp
import grp
import os
import pwd
from dataclasses import dataclass, field
from typing import Any

from ansible.module_utils.basic import AnsibleModule


@dataclass
class Plan:
    """What adoption moves and keeps."""

    moved: list[str] = field(default_factory=list)
    kept: list[dict[str, Any]] = field(default_factory=list)


def _exists(path: str) -> bool:
    return os.path.lexists(path)


def plan(src: str, dest: str, items: list[str]) -> Plan:
    """Decide, without touching anything, what moves (relative paths) and what stays in `src`."""
    result = Plan()
    for item in items:
        if "/" in item or item in ("", ".", ".."):
            raise ValueError(f"items (webui_repo_adopt_items): item {item!r} must be a plain name under the install "
                             "dir. Fix: list names such as models or config.json, without '/'.")
        source = os.path.join(src, item)
        if not _exists(source):
            continue
        _plan_entry(src, dest, item, result)
    return result


def _plan_entry(src: str, dest: str, rel: str, result: Plan) -> None:
    source, target = os.path.join(src, rel), os.path.join(dest, rel)
    if not _exists(target):
        result.moved.append(rel)
        return
    if os.path.isdir(source) and not os.path.islink(source) and os.path.isdir(target) \
            and not os.path.islink(target):
        for name in sorted(os.listdir(source)):
            _plan_entry(src, dest, os.path.join(rel, name), result)
        return
    identical = (os.path.isfile(source) and os.path.isfile(target)
                 and filecmp.cmp(source, target, shallow=False))
    result.kept.append({"path": rel, "identical": identical})


def _chown_tree(path: str, uid: int, gid: int) -> None:
    os.lchown(path, uid, gid)
    if os.path.isdir(path) and not os.path.islink(path):
        for root, dirs, files in os.walk(path):
            for name in dirs + files:
                os.lchown(os.path.join(root, name), uid, gid)


def apply(src: str, dest: str, todo: Plan, uid: int = -1, gid: int = -1) -> None:
    """Move the planned entries (same filesystem: renames), creating parent dirs owned like the moved data."""
    for rel in todo.moved:
        target = os.path.join(dest, rel)
        parent = os.path.dirname(target)
        missing = []
        while not os.path.isdir(parent):
            missing.append(parent)
            parent = os.path.dirname(parent)
        for directory in reversed(missing):
            os.mkdir(directory, 0o755)
            os.lchown(directory, uid, gid)
        os.rename(os.path.join(src, rel), target)
        _chown_tree(target, uid, gid)


def main() -> None:
    """Module entry point."""
    module = AnsibleModule(
        argument_spec={
            "src": {"type": "path", "required": True},
            "dest": {"type": "path", "required": True},
            "items": {"type": "list", "elements": "str",
                      "default": ["models", "outputs", "embeddings", "extensions", "config.json",
                                  "ui-config.json", "styles.csv"]},
            "owner": {"type": "str", "default": ""},
            "group": {"type": "str", "default": ""},
        },
        supports_check_mode=True,
    )
    src, dest = module.params["src"], module.params["dest"]
    if not os.path.isdir(src):
        module.fail_json(msg=f"bundle_adopt: src {src} is not a directory. Fix: point src at the old install "
                             "moved aside.", moved=[], kept=[])
    if not os.path.isdir(dest) and not module.check_mode:
        module.fail_json(msg=f"bundle_adopt: dest (webui_repo_dir) {dest} is not a directory. Fix: check out the "
                             "webui there first.", moved=[], kept=[])
    try:
        uid = pwd.getpwnam(module.params["owner"]).pw_uid if module.params["owner"] else -1
        gid = grp.getgrnam(module.params["group"]).gr_gid if module.params["group"] else -1
    except KeyError as exc:
        module.fail_json(msg=f"bundle_adopt: owner (webui_repo_user) or group (webui_repo_group) unknown: {exc}. "
                             "Fix: create the account first, or set them to existing ones.", moved=[], kept=[])
    try:
        todo = plan(src, dest, module.params["items"])
    except ValueError as exc:
        module.fail_json(msg=f"bundle_adopt: {exc}", moved=[], kept=[])
    if not module.check_mode:
        try:
            apply(src, dest, todo, uid, gid)
        except OSError as exc:
            module.fail_json(msg=f"bundle_adopt: moving into {dest} failed: {exc}", moved=todo.moved,
                             kept=todo.kept)
    module.exit_json(changed=bool(todo.moved), moved=todo.moved, kept=todo.kept)


if __name__ == "__main__":
    main()
