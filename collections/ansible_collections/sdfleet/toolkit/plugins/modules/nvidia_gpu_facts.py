#!/usr/bin/python
# -*- coding: utf-8 -*-
"""Ansible module: read the host's NVIDIA GPUs through nvidia-smi."""
from __future__ import annotations

DOCUMENTATION = r"""
---
module: nvidia_gpu_facts
short_description: Read NVIDIA GPU facts with nvidia-smi and classify driver failures
version_added: "0.1.0"
description:
  - Runs C(nvidia-smi --query-gpu=index,name,memory.total,driver_version,uuid,pci.bus_id,compute_cap,mig.mode.current
    --format=csv,noheader,nounits) and returns one record per GPU.
  - Older drivers reject newer fields (C(Field "compute_cap" is not a valid field to query.), exit code 2); the
    module drops the rejected field and asks again.
  - When the query fails in a way it cannot name, the module reads the default C(nvidia-smi) table instead
    (names may then be cut by the table, for example C(GeForce GTX 108...); uuid and compute_cap are null).
  - Known failures are returned as a I(state) with a remediation I(message), never as a task failure. The caller
    (the C(nvidia_check) role) decides what to do with them. When nvidia-smi is missing, the PCI bus (sysfs, then
    C(lspci)) tells C(no_device) from C(driver_missing).
  - Read-only; never reports a change.
author:
  - sdfleet contributors
options:
  nvidia_smi:
    description:
      - The nvidia-smi program, a name looked up on C(PATH) or an absolute path.
    type: str
    default: nvidia-smi
  timeout:
    description:
      - Seconds to wait for each nvidia-smi run. A hung driver yields I(state=timeout).
    type: int
    default: 30
  pci_devices_dir:
    description:
      - The sysfs directory of PCI devices, read when nvidia-smi is missing. Tests point it at a fake tree.
    type: path
    default: /sys/bus/pci/devices
attributes:
  check_mode:
    support: full
    description: Read-only; runs the same in check mode.
  diff_mode:
    support: none
notes:
  - Error states are C(no_device), C(driver_missing), C(driver_not_loaded), C(driver_library_mismatch),
    C(nvml_unknown_error), C(nvml_library_missing), C(no_devices_found), C(device_handle_error), C(gpu_lost),
    C(query_failed), C(parse_error) and C(timeout).
"""

EXAMPLES = r"""
- name: Read the GPUs
  sdfleet.toolkit.nvidia_gpu_facts:
  register: gpu_facts

- name: Stop on a broken driver
  ansible.builtin.fail:
    msg: "{{ gpu_facts.state }}: {{ gpu_facts.message }}"
  when: gpu_facts.state != 'ok'

- name: Use a driver bundle's own nvidia-smi, with a short timeout
  sdfleet.toolkit.nvidia_gpu_facts:
    nvidia_smi: /opt/nvidia/bin/nvidia-smi
    timeout: 10
"""

RETURN = r"""
state:
  description: C(ok), or the classified failure (see notes).
  returned: always
  type: str
  sample: ok
message:
  description: What to do about a failure state; empty when I(state=ok).
  returned: always
  type: str
  sample: ""
driver_version:
  description: The driver version nvidia-smi reports, null when it could not be read.
  returned: always
  type: str
  sample: "550.54.14"
raw_error:
  description: nvidia-smi's own error text for a failure state, empty otherwise.
  returned: always
  type: str
  sample: "Failed to initialize NVML: Driver/library version mismatch"
source:
  description: Where the records come from, C(query) (csv) or C(table) (the default table fallback); empty on failure.
  returned: always
  type: str
  sample: query
dropped_fields:
  description: Query fields the driver rejected and that were left out.
  returned: always
  type: list
  elements: str
  sample: [compute_cap]
gpus:
  description: One record per GPU, in index order.
  returned: always
  type: list
  elements: dict
  contains:
    index: {description: nvidia-smi index, type: int}
    name: {description: Product name (as the table prints it when read from the table), type: str}
    memory_total_mib: {description: Total memory in MiB; null when the driver reports none (unified memory), type: int}
    driver_version: {description: Driver version, type: str}
    uuid: {description: GPU UUID; null from the table, type: str}
    pci_bus_id: {description: PCI bus id (domain:bus:device.function), type: str}
    compute_cap: {description: CUDA compute capability; null on drivers before 510 and from the table, type: str}
    mig_mode: {description: C(enabled), C(disabled) or null (MIG not supported), type: str}
    name_truncated: {description: Whether the table cut the name (ends in ...), type: bool}
  sample:
    - index: 0
      name: NVIDIA GeForce RTX 4090
      memory_total_mib: 24564
      driver_version: "550.127.05"
      uuid: GPU-9f1f9c6e-0000-0000-0000-000000000000
      pci_bus_id: "00000000:01:00.0"
      compute_cap: "8.9"
      mig_mode: null
      name_truncated: false
"""

import os
import subprocess
from typing import Optional

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.sdfleet.toolkit.plugins.module_utils import nvidia_smi as smi


def _runner(timeout: int):
    """A run(argv) for smi.collect: C locale, captured output, a timeout."""
    env = dict(os.environ, LC_ALL="C", LANG="C")

    def run(argv: list[str]) -> tuple[int, str, str]:
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env, check=False,
                                  errors="replace")
        except subprocess.TimeoutExpired as exc:
            raise smi.Timeout(f"{' '.join(argv)} ran over {timeout}s") from exc
        except OSError as exc:  # exists but cannot run (bad interpreter, permissions)
            return 126, "", str(exc)
        return done.returncode, done.stdout, done.stderr

    return run


def _pci_probe(module: AnsibleModule, devices_dir: str):
    """nvidia_on_pci() for smi.collect: sysfs first, then lspci; None when neither is there."""

    def probe() -> Optional[bool]:
        if os.path.isdir(devices_dir):
            pairs = []
            for entry in sorted(os.listdir(devices_dir)):
                try:
                    with open(os.path.join(devices_dir, entry, "vendor"), encoding="ascii") as vendor, \
                            open(os.path.join(devices_dir, entry, "class"), encoding="ascii") as cls:
                        pairs.append((vendor.read(), cls.read()))
                except OSError:
                    continue
            if pairs:
                return smi.nvidia_on_sysfs(pairs)
        lspci = module.get_bin_path("lspci")
        if lspci:
            rc, out, _err = module.run_command([lspci, "-n"])
            if rc == 0:
                return smi.nvidia_on_lspci(out)
        return None

    return probe


def _resolve(module: AnsibleModule, name: str) -> Optional[str]:
    if os.path.isabs(name):
        return name if os.path.isfile(name) and os.access(name, os.X_OK) else None
    return module.get_bin_path(name)


# The nvidia_check role's variable behind each option, for the messages.
ROLE_VARIABLES = {"nvidia_smi": "nvidia_check_nvidia_smi", "timeout": "nvidia_check_timeout",
                  "pci_devices_dir": "nvidia_check_pci_devices_dir"}


class _Module(AnsibleModule):
    """AnsibleModule whose argument errors also name the nvidia_check variable and the fix."""

    def fail_json(self, msg: str = "", **kwargs):  # type: ignore[override]
        named = [f"{option} ({variable})" for option, variable in ROLE_VARIABLES.items()
                 if f"'{option}'" in str(msg) and variable not in str(msg)]
        if named and "Fix:" not in str(msg):
            msg = (f"{msg} [{', '.join(named)}]. Fix: set nvidia_check_nvidia_smi to a program name or path, "
                   "nvidia_check_timeout to a whole number of seconds >= 1, nvidia_check_pci_devices_dir to a path.")
        super().fail_json(msg=msg, **kwargs)


def main() -> None:
    """Entry point."""
    module = _Module(
        argument_spec={
            "nvidia_smi": {"type": "str", "default": "nvidia-smi"},
            "timeout": {"type": "int", "default": 30},
            "pci_devices_dir": {"type": "path", "default": "/sys/bus/pci/devices"},
        },
        supports_check_mode=True,
    )
    if module.params["timeout"] < 1:
        module.fail_json(msg=f"timeout (nvidia_check_timeout) must be at least 1 second, got "
                             f"{module.params['timeout']}. Fix: set nvidia_check_timeout to e.g. 30.")
    name = module.params["nvidia_smi"]
    if not name or not name.strip() or any(char in name for char in "\n\r\0") or name.startswith("["):
        module.fail_json(msg=f"nvidia_smi (nvidia_check_nvidia_smi) = {name!r}: not a program name or path. "
                             "Fix: set nvidia_check_nvidia_smi to nvidia-smi or an absolute path.")
    facts = smi.collect(
        _runner(module.params["timeout"]),
        _resolve(module, module.params["nvidia_smi"]),
        _pci_probe(module, module.params["pci_devices_dir"]),
    )
    module.exit_json(changed=False, **facts.as_dict())


if __name__ == "__main__":
    main()
