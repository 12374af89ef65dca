# -*- coding: utf-8 -*-
"""Action plugin: wait for an async model_fetch job, printing a progress line every few seconds.

One flat task instead of an ``until`` loop (whose retry lines carry no progress) or a self-including task file
(whose depth grows with the download's length). Returns the job's own result, so the task fails, changes and
notifies exactly as the job did.
"""
from __future__ import annotations

DOCUMENTATION = r"""
---
module: model_fetch_wait
short_description: Wait for an async sdfleet.toolkit.model_fetch job and show its progress
version_added: "0.1.0"
description:
  - Polls the job started with C(async) and C(poll 0) (through C(async_status)) every I(poll) seconds and, every
    I(interval) seconds, prints a line such as C(sd15 - 1.2 GiB of 4.0 GiB (30.0%)) read from the job's progress file.
  - When the job ends, returns its result (C(changed), C(failed), C(msg) and the module's return values) and
    removes the job's status file.
  - Runs on the controller; the job and the progress file are read on the task's host (or its C(delegate_to)).
author:
  - sdfleet contributors
options:
  jid:
    description: The C(ansible_job_id) of the job.
    type: str
    required: true
  progress_file:
    description: The progress file the job writes (model_fetch's I(progress_file)).
    type: str
  label:
    description: What the progress lines call the download.
    type: str
    default: download
  interval:
    description: Seconds between two progress lines.
    type: int
    default: 30
  poll:
    description: Seconds between two looks at the job.
    type: float
    default: 1
  timeout:
    description: Give up (fail) after this many seconds; the job itself may still run.
    type: int
    default: 43200
attributes:
  check_mode:
    support: none
    description: There is no job to wait for in check mode; the role does not run it then.
"""

EXAMPLES = r"""
- name: Start the download
  sdfleet.toolkit.model_fetch:
    dest: /opt/sd-webui/models/Stable-diffusion/sd15.safetensors
    url: [https://example.org/sd15.safetensors]
    sha256: 6ce0161689b3853acaa03779ec93eafe75a02f4ced659bee03f50797806fa2fa
    partial_dir: /opt/sd-webui/models/.sdfleet-partial
    progress_file: /opt/sd-webui/models/.sdfleet-partial/sd15.progress
  async: 43200
  poll: 0
  register: job

- name: Wait for it, showing progress
  sdfleet.toolkit.model_fetch_wait:
    jid: "{{ job.ansible_job_id }}"
    progress_file: /opt/sd-webui/models/.sdfleet-partial/sd15.progress
    label: sd15
"""

RETURN = r"""
current:
  description: The job's result is returned as it is (see sdfleet.toolkit.model_fetch), without the async keys.
  returned: when the job finished
  type: bool
"""

import base64
import json
import time
from typing import Any, Optional

from ansible.plugins.action import ActionBase
from ansible.utils.display import Display

display = Display()
ASYNC_KEYS = ("ansible_job_id", "results_file", "started", "finished", "stdout", "stderr", "stdout_lines",
              "stderr_lines", "erased")


def _size(num: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(num) < 1024 or unit == "GiB":
            return f"{num:.1f} {unit}" if unit != "B" else f"{int(num)} B"
        num /= 1024
    return f"{num:.1f} GiB"  # pragma: no cover


def progress_line(label: str, progress: Optional[dict]) -> str:
    """One progress line from the job's progress record (None when it wrote none yet)."""
    if not progress:
        return f"{label}: waiting for the server"
    done, total = int(progress.get("bytes") or 0), progress.get("total")
    if total:
        return f"{label}: {_size(done)} of {_size(int(total))} ({100 * done / int(total):.1f}%)"
    return f"{label}: {_size(done)} (size unknown)"


class ActionModule(ActionBase):
    """sdfleet.toolkit.model_fetch_wait."""

    TRANSFERS_FILES = False
    _requires_connection = True

    def _status(self, jid: str, async_dir: str, task_vars: dict, mode: str = "status") -> dict:
        return self._execute_module(module_name="ansible.legacy.async_status", task_vars=task_vars,
                                    module_args={"jid": jid, "mode": mode, "_async_dir": async_dir})

    def _progress(self, path: str, task_vars: dict) -> Optional[dict]:
        res = self._execute_module(module_name="ansible.legacy.slurp", module_args={"src": path},
                                   task_vars=task_vars)
        if res.get("failed") or "content" not in res:
            return None
        try:
            return json.loads(base64.b64decode(res["content"]))
        except ValueError:
            return None

    def run(self, tmp: Any = None, task_vars: Optional[dict] = None) -> dict:
        result = super().run(tmp, task_vars)
        task_vars = task_vars or {}
        _valid, args = self.validate_argument_spec(argument_spec={
            "jid": {"type": "str", "required": True},
            "progress_file": {"type": "str"},
            "label": {"type": "str", "default": "download"},
            "interval": {"type": "int", "default": 30},
            "poll": {"type": "float", "default": 1.0},
            "timeout": {"type": "int", "default": 43200},
        })
        async_dir = self._remote_expand_user(self.get_shell_option("async_dir", default="~/.ansible_async"))
        started = last = time.monotonic()
        host = task_vars.get("inventory_hostname", "")
        while True:
            status = self._status(args["jid"], async_dir, task_vars)
            if status.get("finished"):
                self._status(args["jid"], async_dir, task_vars, mode="cleanup")
                for key in ASYNC_KEYS:
                    status.pop(key, None)
                result.update(status)
                return result
            if status.get("failed") and not status.get("started"):
                result.update(failed=True, msg=f"job {args['jid']} not found: {status.get('msg', '')}")
                return result
            now = time.monotonic()
            if now - started > args["timeout"]:
                result.update(failed=True, msg=f"{args['label']}: still running after {args['timeout']} s "
                                               f"(job {args['jid']}); the next run resumes it")
                return result
            if args["progress_file"] and now - last >= args["interval"]:
                last = now
                display.display(f"  [{host}] " + progress_line(args["label"],
                                                               self._progress(args["progress_file"], task_vars)))
            time.sleep(args["poll"])
