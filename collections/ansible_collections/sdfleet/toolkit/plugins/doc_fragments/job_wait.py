# -*- coding: utf-8 -*-
"""The options every sdfleet waiting action shares (model_fetch_wait, install_wait): one place for their text."""
from __future__ import annotations


class ModuleDocFragment:
    """extends_documentation_fragment: sdfleet.toolkit.job_wait"""

    DOCUMENTATION = r"""
options:
  jid:
    description: The C(ansible_job_id) of the job.
    type: str
    required: true
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
