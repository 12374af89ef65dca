"""The CUDA devices a real torch would see on this host: the stand-in's emulation (stand-in rule, README.md).

The real webui asks torch, torch asks the CUDA driver. The stand-in has no CUDA: it reads the GPUs from
``nvidia-smi --query-gpu`` (on test hosts, the fake nvidia-smi replaying a real capture) and applies CUDA's own
rules to them:

- order: ``CUDA_DEVICE_ORDER=PCI_BUS_ID`` numbers devices in PCI bus order (nvidia-smi's order); the default,
  ``FASTEST_FIRST``, puts the fastest first (here: higher compute capability first, then more memory);
- ``CUDA_VISIBLE_DEVICES``: unset means all; a comma list of indices (into that order) or UUIDs (``GPU-...``,
  a unique prefix is enough); CUDA ignores every entry after the first invalid one; empty means none;
- kernels: a cubin ``sm_XY`` runs on capability ``X.Z`` with ``Z >= Y``, PTX ``compute_XY`` on any later one;
  a device the installed torch has no kernels for fails its first kernel with CUDA's "no kernel image" error.

CUDA is "available" under the stand-in's GPU rule (``SDFLEET_STANDIN_FAKE_CUDA=1`` or ``/dev/nvidiactl``) and
with at least one visible device.
"""

from __future__ import annotations

import os
import re
import subprocess
from typing import Any, Mapping, Optional

FIELDS = ("index", "uuid", "name", "memory.total", "compute_cap", "pci.bus_id")
NO_KERNEL = "CUDA error: no kernel image is available for execution on the device"


_TABLE_GPU = re.compile(r"^\|\s+(\d+)\s+(.+?)\s+(?:On|Off)\s+\|\s+([0-9A-Fa-f]{4,8}:[0-9A-Fa-f]{2}:[0-9A-Fa-f]{2}\.\d)")
_TABLE_MEMORY = re.compile(r"(\d+)MiB\s*/\s*(\d+)MiB")


def _run(argv: list[str]) -> Optional[str]:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout if out.returncode == 0 else None


def table_gpus(text: str) -> list[dict[str, Any]]:
    """The GPUs of nvidia-smi's default table (a driver without --query-gpu): index, name, bus, memory."""
    gpus: list[dict[str, Any]] = []
    for line in text.splitlines():
        head = _TABLE_GPU.match(line)
        if head:
            gpus.append({"index": head.group(1), "uuid": "", "name": head.group(2), "memory_mib": None,
                         "compute_cap": None, "pci_bus_id": head.group(3)})
        elif gpus and gpus[-1]["memory_mib"] is None:
            memory = _TABLE_MEMORY.search(line)
            if memory:
                gpus[-1]["memory_mib"] = int(memory.group(2))
    return [g for g in gpus if g["memory_mib"] is not None]


def nvidia_gpus(nvidia_smi: str = "nvidia-smi") -> list[dict[str, Any]]:
    """The GPUs nvidia-smi lists, in its (PCI bus) order (the query, else its table); [] when it has none."""
    out = _run([nvidia_smi, f"--query-gpu={','.join(FIELDS)}", "--format=csv,noheader,nounits"])
    if out is None:
        table = _run([nvidia_smi])
        return table_gpus(table) if table else []
    gpus = []
    for line in out.splitlines():
        cells = [cell.strip() for cell in line.split(",")]
        if len(cells) != len(FIELDS):
            continue
        row = dict(zip(FIELDS, cells))
        try:
            memory = int(row["memory.total"])
        except ValueError:
            continue
        gpus.append({"index": row["index"], "uuid": row["uuid"], "name": row["name"], "memory_mib": memory,
                     "compute_cap": row["compute_cap"] if re.fullmatch(r"\d+\.\d+", row["compute_cap"]) else None,
                     "pci_bus_id": row["pci.bus_id"]})
    return gpus


def _speed(gpu: Mapping[str, Any]) -> tuple[int, int, int]:
    major, minor = (gpu["compute_cap"] or "0.0").split(".")
    return int(major), int(minor), int(gpu["memory_mib"])


def cuda_devices(gpus: list[dict[str, Any]], env: Mapping[str, str]) -> list[dict[str, Any]]:
    """The devices CUDA numbers 0.. for a process with environment ``env``."""
    if env.get("CUDA_DEVICE_ORDER") == "PCI_BUS_ID":
        ordered = sorted(gpus, key=lambda g: g["pci_bus_id"])
    else:
        ordered = sorted(gpus, key=_speed, reverse=True)  # stable: equal cards keep bus order
    visible = env.get("CUDA_VISIBLE_DEVICES")
    if visible is None:
        return ordered
    chosen: list[dict[str, Any]] = []
    for token in (t.strip() for t in visible.split(",")):
        if token.isdigit() and int(token) < len(ordered):
            match = [ordered[int(token)]]
        elif token.startswith("GPU-"):
            match = [g for g in ordered if g["uuid"].startswith(token)]
        else:
            match = []
        if len(match) != 1 or match[0] in chosen:
            break  # CUDA stops at the first invalid entry
        chosen.append(match[0])
    return chosen


def torch_arch_flags() -> list[str]:
    """The arch list the installed torch was built with (the mirror's stub torch reports the real build's)."""
    try:
        import torch  # noqa: PLC0415 (only when asked: the server must start without it)
        return str(torch._C._cuda_getArchFlags()).split()  # pylint: disable=protected-access
    except Exception:  # noqa: BLE001 (no torch, or a torch without CUDA)
        return []


def has_kernels(arch_flags: list[str], cap: Optional[str]) -> bool:
    """Whether a build with ``arch_flags`` runs on a GPU of capability ``cap`` (unknown: assume it does)."""
    if not cap:
        return True
    major, minor = (int(x) for x in cap.split("."))
    for flag in arch_flags:
        kind, _, number = flag.partition("_")
        digits = re.match(r"\d+", number)
        if not digits or len(digits.group()) < 2:
            continue
        f_major, f_minor = int(digits.group()[:-1]), int(digits.group()[-1])
        if kind == "sm" and f_major == major and f_minor <= minor:
            return True
        if kind == "compute" and (f_major, f_minor) <= (major, minor):
            return True
    return False


def current_device(gpu_rule: bool, env: Optional[Mapping[str, str]] = None) -> Optional[dict[str, Any]]:
    """CUDA device 0 of this process, or None when CUDA is not available."""
    if not gpu_rule:
        return None
    devices = cuda_devices(nvidia_gpus(), os.environ if env is None else env)
    return devices[0] if devices else None
