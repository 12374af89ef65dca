# -*- coding: utf-8 -*-
"""Action plugin: wait for the async webui install (launch.py --exit), printing at most one line every
``interval`` seconds with what it is installing and how far, read from the end of the install log.

The polling loop is model_fetch_wait's; only the line differs. Returns the job's own result (rc, msg), so the
task fails or changes exactly as the job did, and prints no retry countdown.
"""
from __future__ import annotations

# DOCUMENTATION, EXAMPLES and RETURN live in plugins/modules/install_wait.py (where ansible-doc looks).

from typing import Any, Optional

from ansible_collections.sdfleet.toolkit.plugins.action.model_fetch_wait import ActionModule as _Wait
from ansible_collections.sdfleet.toolkit.plugins.module_utils.install_progress import install_progress

TAIL_BYTES = 65536  # the log's end that is read each time: enough for the current step's pip lines


class ActionModule(_Wait):
    """sdfleet.toolkit.install_wait."""

    EXTRA_SPEC: dict[str, dict[str, Any]] = {"log_file": {"type": "str", "required": True},
                                             "label": {"type": "str", "default": "webui install"}}

    def _line(self, args: dict, task_vars: dict, elapsed: float) -> Optional[str]:
        res = self._execute_module(module_name="ansible.legacy.command", task_vars=task_vars,
                                   module_args={"argv": ["tail", "-c", str(TAIL_BYTES), args["log_file"]]})
        return install_progress(res.get("stdout", "") if res.get("rc") == 0 else "", elapsed, args["label"])
