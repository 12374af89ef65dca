#!/usr/bin/python
# -*- coding: utf-8 -*-
"""Documentation of the model_fetch_wait action plugin (plugins/action/model_fetch_wait.py does the work).

ansible-doc finds an action plugin's documentation in the module of the same name, as for
ansible.builtin.template; this file has no code of its own.
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
  progress_file:
    description: The progress file the job writes (model_fetch's I(progress_file)).
    type: str
  label:
    description: What the progress lines call the download.
    type: str
    default: download
extends_documentation_fragment:
  - sdfleet.toolkit.job_wait
"""

EXAMPLES = r"""
- name: Start the download
  sdfleet.toolkit.model_fetch:
    dest: /opt/sd-webui/models/Stable-diffusion/sd15.safetensors
    url: [https://example.org/sd15.safetensors]
    sha256: 6ce0161689b3853acaa03779ec93eafe75a02f4ced659bee03f50797806fa2fa
    partial_dir: /var/lib/sdfleet/models-partial
    progress_file: /var/lib/sdfleet/models-partial/sd15.progress
  async: 43200
  poll: 0
  register: job

- name: Wait for it, showing progress
  sdfleet.toolkit.model_fetch_wait:
    jid: "{{ job.ansible_job_id }}"
    progress_file: /var/lib/sdfleet/models-partial/sd15.progress
    label: sd15
"""

RETURN = r"""
current:
  description: The job's result is returned as it is (see sdfleet.toolkit.model_fetch), without the async keys.
  returned: when the job finished
  type: bool
"""
