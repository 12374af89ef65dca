# -*- coding: utf-8 -*-
"""Action plugin: wait for an async model_fetch job, printing a progress line every few seconds (install_wait, for
the webui's dependency install, reuses the loop with its own line).

One flat task instead of an ``until`` loop (whose retry lines carry no progress) or a self-including task file
(whose depth grows with the download's length). Returns the job's own result, so the task fails, changes and
notifies exactly as the job did.
"""
from __future__ import annotations

# DOCUMENTATION, EXAMPLES and RETURN live in plugins/modules/model_fetch_wait.py (where ansible-doc looks).

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

    # The options beyond jid, interval, poll and timeout (which every waiting action has), and the label's default.
    EXTRA_SPEC: dict[str, dict[str, Any]] = {"progress_file": {"type": "str"},
                                             "label": {"type": "str", "default": "download"}}

    def _line(self, args: dict, task_vars: dict, elapsed: float) -> Optional[str]:
        """The progress line to print now (None: nothing to say)."""
        if not args["progress_file"]:
            return None
        return progress_line(args["label"], self._progress(args["progress_file"], task_vars))

    def run(self, tmp: Any = None, task_vars: Optional[dict] = None) -> dict:
        result = super().run(tmp, task_vars)
        task_vars = task_vars or {}
        _valid, args = self.validate_argument_spec(argument_spec={
            "jid": {"type": "str", "required": True},
            "interval": {"type": "int", "default": 30},
            "poll": {"type": "float", "default": 1.0},
            "timeout": {"type": "int", "default": 43200},
            **self.EXTRA_SPEC,
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
            if now - last >= args["interval"]:
                last = now
                line = self._line(args, task_vars, now - started)
                if line:
                    display.display(f"  [{host}] {line}")
            time.sleep(args["poll"])
