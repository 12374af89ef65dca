# -*- coding: utf-8 -*-
"""What a role's state probe compares (``sdfleet.toolkit.role_state``): its inputs and the digest of its own files."""
from __future__ import annotations

import functools
import hashlib
import json
import os
from typing import Any

from ansible_collections.sdfleet.toolkit.plugins.module_utils.model_hash import sha256_file


@functools.lru_cache(maxsize=64)
def _tree_digest(root: str) -> str:
    """sha256 over every file under ``root`` (relative path and content), in sorted order; bytecode caches and the
    README (documentation, which changes no task) left out."""
    digest = hashlib.sha256()
    for here, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        for name in sorted(f for f in files if not (here == root and f == "README.md")):
            path = os.path.join(here, name)
            digest.update(os.path.relpath(path, root).encode() + b"\0")
            digest.update(bytes.fromhex(sha256_file(path)))
    return digest.hexdigest()


def state_inputs(inputs: Any, role_path: str) -> str:
    """``inputs`` (the role's variables and plan) with the digest of the role's files at ``role_path``, as one
    canonical JSON string (keys sorted).

    A change of any input value, or of a task, template or default of the role (a new sdfleet release), changes it,
    so the role's probe no longer finds the host current and the role runs every task. The probe keys its own
    digest of this with a secret of the host's, so nothing derived from an input (a login) reaches a log. One
    string, so that the module's no_log hides exactly it (no_log on a dict would mask each of its values wherever
    it appears in the answer).
    """
    if not os.path.isdir(role_path):
        raise ValueError(f"state_inputs: role_path {role_path!r} is not a directory")
    return json.dumps({"role": _tree_digest(role_path), "inputs": inputs}, sort_keys=True, separators=(",", ":"),
                      default=str)


class FilterModule:
    """sdfleet role state filters."""

    def filters(self) -> dict[str, Any]:
        return {"state_inputs": state_inputs}
