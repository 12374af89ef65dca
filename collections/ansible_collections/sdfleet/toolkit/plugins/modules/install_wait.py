#!/usr/bin/python
# -*- coding: utf-8 -*-
"""Documentation of the install_wait action plugin (plugins/action/install_wait.py does the work).

ansible-doc finds an action plugin's documentation in the module of the same name; this file has no code.
"""
from __future__ import annotations

DOCUMENTATION = r"""
---
module: install_wait
short_description: Wait for the async webui install and print what it is installing, never a retry countdown
version_added: "0.1.0"
description:
  - Polls the job started with C(async) and C(poll 0) (the webui_repo role's C(launch.py --exit) run) every
    I(poll) seconds and, at most every I(interval) seconds, prints one line read from the end of I(log_file), such
    as C(webui install - Installing requirements - 23 packages collected, downloading torch-2.1.2-...whl 670.2 MB;
    4 min 10 s) - the launcher's step, pip's count of collected packages and its current download, the time so far.
  - Only the current run counts (the log part after its last C(=== sdfleet webui_repo install run) line).
  - When the job ends, returns its result (C(rc), C(msg), C(changed), C(failed)) and removes its status file.
author:
  - sdfleet contributors
options:
  log_file:
    description: The install log the job appends to (read on the task's host, as the task's user).
    type: str
    required: true
  label:
    description: What the progress lines call the install.
    type: str
    default: webui install
extends_documentation_fragment:
  - sdfleet.toolkit.job_wait
"""

EXAMPLES = r"""
- name: Start launch.py --exit
  ansible.builtin.shell:
    cmd: venv/bin/python -u launch.py --exit --skip-torch-cuda-test >>/var/log/sd-webui/install.log 2>&1
    chdir: /opt/sd-webui
  async: 3600
  poll: 0
  register: job

- name: Wait for the install, a progress line every 30 s
  sdfleet.toolkit.install_wait:
    jid: "{{ job.ansible_job_id }}"
    log_file: /var/log/sd-webui/install.log
    timeout: 3600
  register: install
"""

RETURN = r"""
rc:
  description: The job's exit status (its whole result is returned as it is, without the async keys).
  returned: when the job finished
  type: int
"""
