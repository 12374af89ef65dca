"""Run one of the collection's modules as Ansible runs it (a separate interpreter, arguments in a JSON file)."""
from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
from typing import Any

ROOT = pathlib.Path(__file__).resolve().parents[1]
MODULES = ROOT / "collections/ansible_collections/sdfleet/toolkit/plugins/modules"


def run_module(name: str, workdir: pathlib.Path, args: dict[str, Any], check: bool = False,
               env: dict[str, str] | None = None, timeout: float = 120) -> dict[str, Any]:
    """The module's JSON answer to ``args`` (check mode with ``check``); the arguments file goes in ``workdir``."""
    argsfile = workdir / "args.json"
    argsfile.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": dict(args, _ansible_check_mode=check)}))
    done = subprocess.run([sys.executable, str(MODULES / f"{name}.py"), str(argsfile)], capture_output=True,
                          text=True, env=dict(os.environ, PYTHONPATH=str(ROOT / "collections"), **(env or {})),
                          check=False, timeout=timeout)
    try:
        return json.loads(done.stdout)
    except ValueError:
        raise AssertionError(done.stdout + done.stderr) from None
