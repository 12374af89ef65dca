# -*- coding: utf-8 -*-
"""Which torch build runs on which NVIDIA GPU, per webui version: the one compatibility table of sdfleet.

Data (every other role and filter reads these, none keeps its own copy):

* ``WEBUI_TORCH``: per webui version, the torch/torchvision/xformers pins it installs and its builds, preferred
  first (the version's own ``TORCH_INDEX_URL`` default first).
* ``BUILDS``: per ``(torch version, build)``, its CUDA version, the GPU architectures it has kernels for
  (``torch._C._cuda_getArchFlags()``), the oldest driver it runs on, and where each value comes from.
* ``NAME_COMPUTE_CAPS``: NVIDIA's published compute capability per GPU name, for drivers whose nvidia-smi cannot
  report ``compute_cap`` (before 510) and table-only captures.

And the pure rules over them: ``compute_cap_of``, ``build_runs``, ``choose_build``.

Kernel compatibility (NVIDIA, CUDA C++ Programming Guide, "Binary Compatibility"): a cubin for ``sm_XY`` runs on a
GPU of compute capability ``X.Z`` with ``Z >= Y`` (same major only); PTX for ``compute_XY`` is compiled by the driver
for any GPU of capability ``>= X.Y``. A GPU no entry covers gets "no kernel image is available for execution on the
device" at its first kernel, after the webui has started and answered ``/internal/ping``.
"""
from __future__ import annotations

import re
from typing import Any, Optional

# torch wheels of the CUDA 12 builds bundle their CUDA runtime; the driver must be at least the CUDA 12 minor
# version compatibility floor (NVIDIA, "CUDA Compatibility", table "CUDA Toolkit and Minimum Required Driver
# Version for CUDA Minor Version Compatibility": CUDA 12.x >= 525.60.13 on Linux).
CUDA12_MIN_DRIVER = "525.60.13"

# (torch version, build) -> what the wheel was built for. ``captured``: a committed capture of the wheel itself
# (scripts/torch_arch_capture.py); otherwise ``source`` says where the values come from.
BUILDS: dict[tuple[str, str], dict[str, Any]] = {
    ("2.1.2", "cu121"): {
        "cuda": "12.1", "min_driver": CUDA12_MIN_DRIVER,
        "arch_flags": ["sm_50", "sm_60", "sm_70", "sm_75", "sm_80", "sm_86", "sm_90"],
        "captured": "tests/fixtures/torch/pypi-torch-2.1.2.json",
        "source": "PyPI's torch 2.1.2 is the cu121 build (torch.__version__ 2.1.2+cu121); arch list read from it",
        # xformers 0.0.23.post1 from PyPI, build metadata TORCH_CUDA_ARCH_LIST (the same capture).
        "xformers_arch": "5.0+PTX 6.0 6.1 7.0 7.5 8.0+PTX 9.0",
    },
    ("2.7.0", "cu126"): {
        "cuda": "12.6", "min_driver": CUDA12_MIN_DRIVER,
        "arch_flags": ["sm_50", "sm_60", "sm_70", "sm_75", "sm_80", "sm_86", "sm_90"],
        "captured": "tests/fixtures/torch/pypi-torch-2.7.0.json",
        "source": "PyPI's torch 2.7.0 is the cu126 build; arch list read from it",
        # xformers 0.0.30 from PyPI (built for cu126): no Maxwell kernels, so sm_5x cards use SDP attention.
        "xformers_arch": "6.0+PTX 7.0 7.5 8.0+PTX 9.0a",
    },
    ("2.7.0", "cu128"): {
        "cuda": "12.8", "min_driver": CUDA12_MIN_DRIVER,
        "arch_flags": ["sm_75", "sm_80", "sm_86", "sm_90", "sm_100", "sm_120"],
        "captured": "", "xformers_arch": None,  # xformers 0.0.30+cu128 not captured either: not checked
        "source": ("NOT captured (download.pytorch.org cannot be reached here): PyTorch RELEASE.md, 'PyTorch CUDA "
                   "Support Matrix', CUDA 12.8: Turing (7.5), Ampere (8.0, 8.6), Hopper (9.0), Blackwell (10.0, "
                   "12.0); the 2.7 release blog: 'PyTorch 2.7 introduces support for NVIDIA's new Blackwell GPU "
                   "architecture and ships pre-built wheels for CUDA 12.8'. Pre-Turing cards go to cu126."),
    },
    ("2.1.2", "cpu"): {"cuda": None, "min_driver": None, "arch_flags": [], "captured": "", "xformers_arch": None,
                       "source": "download.pytorch.org/whl/cpu: no CUDA"},
    ("2.7.0", "cpu"): {"cuda": None, "min_driver": None, "arch_flags": [], "captured": "", "xformers_arch": None,
                       "source": "download.pytorch.org/whl/cpu: no CUDA"},
}

# Per webui version: its pins and its CUDA builds, preferred first. Source: each version's modules/launch_utils.py
# (TORCH_INDEX_URL, TORCH_COMMAND and XFORMERS_PACKAGE defaults; tests/unit checks them against ../shared/upstream).
WEBUI_TORCH: dict[str, dict[str, Any]] = {
    "v1.9.4": {"torch": "2.1.2", "torchvision": "0.16.2", "xformers": "0.0.23.post1", "builds": ["cu121"]},
    "v1.10.1": {"torch": "2.1.2", "torchvision": "0.16.2", "xformers": "0.0.23.post1", "builds": ["cu121"]},
    "dev": {"torch": "2.7.0", "torchvision": "0.22.0", "xformers": "0.0.30", "builds": ["cu128", "cu126"]},
}
# The row of a ref the table does not list: TORCH_COMMAND is set from the table, so this is what such a host gets.
DEFAULT_WEBUI_VERSION = "v1.10.1"
CPU_BUILD = "cpu"

# NVIDIA's published compute capabilities (developer.nvidia.com/cuda-gpus, "CUDA GPU Compute Capability"), by a
# regex searched case-insensitively in the name nvidia-smi prints; first match wins, so specific names come first.
NAME_COMPUTE_CAPS: tuple[tuple[str, str], ...] = (
    (r"RTX\s*PRO\s*\d+\s*Blackwell|RTX\s*50[5-9]0", "12.0"),
    (r"\bG?B[12]00\b", "10.0"),
    (r"\bG?H[12]00\b|\bH800\b|\bH20\b", "9.0"),
    (r"RTX\s*40[5-9]0|\bL4\b|\bL40S?\b|RTX\s*\d+\s*Ada", "8.9"),
    (r"\bA100\b|\bA800\b|\bA30\b", "8.0"),
    (r"RTX\s*30[5-9]0|\bA10G?\b|\bA40\b|\bA16\b|\bA2\b|RTX\s*A\d{4}", "8.6"),
    (r"RTX\s*20[6-8]0|GTX\s*16[5-6]0|\bT4\b|Quadro\s*RTX|TITAN\s*RTX", "7.5"),
    (r"\bV100\b|TITAN\s*V\b", "7.0"),
    (r"\bP100\b", "6.0"),
    (r"GTX\s*10[3-8]|\bP40\b|\bP4\b|TITAN\s*Xp?\b(?!.*Maxwell)", "6.1"),
    (r"GTX\s*9[5-8]0|\bM40\b|\bM60\b|TITAN\s*X\s*\(?Maxwell", "5.2"),
    (r"GTX\s*7[45]0|GTX\s*745|\bM10\b", "5.0"),
)


class TorchBuildError(ValueError):
    """A value the table cannot use; the message names the variable and the fix."""


def webui_torch_row(version: Optional[str]) -> tuple[str, dict[str, Any]]:
    """``(label, row)`` of a listed webui ``version``; None (a ref no listed version is) gets the
    ``DEFAULT_WEBUI_VERSION`` row (the table sets TORCH_COMMAND, so that is what the host installs)."""
    if version in WEBUI_TORCH:
        return str(version), WEBUI_TORCH[str(version)]
    return DEFAULT_WEBUI_VERSION, WEBUI_TORCH[DEFAULT_WEBUI_VERSION]


def compute_cap_of(name: str, reported: Optional[str]) -> tuple[Optional[str], str]:
    """``(capability "X.Y", where it came from)``: nvidia-smi's ``compute_cap`` when it reported one, else the name
    table; ``(None, "unknown")`` when neither knows the card."""
    if reported and re.fullmatch(r"\d+\.\d+", str(reported).strip()):
        return str(reported).strip(), "nvidia-smi"
    for pattern, cap in NAME_COMPUTE_CAPS:
        if re.search(pattern, name or "", re.IGNORECASE):
            return cap, "name table"
    return None, "unknown"


def _cap_tuple(cap: str) -> tuple[int, int]:
    major, minor = cap.split(".")
    return int(major), int(minor)


def _flag_tuple(flag: str) -> tuple[str, int, int]:
    """``sm_86`` -> ``("sm", 8, 6)``; ``compute_120`` -> ``("compute", 12, 0)`` (suffixes such as ``a`` dropped)."""
    kind, number = flag.split("_", 1)
    digits = re.match(r"\d+", number)
    if not digits or len(digits.group()) < 2:
        raise TorchBuildError(f"torch arch flag {flag!r} is not sm_XY or compute_XY")
    value = digits.group()
    return kind, int(value[:-1]), int(value[-1])


def build_runs(arch_flags: list[str], cap: str) -> bool:
    """Whether a build with ``arch_flags`` has a kernel image for a GPU of capability ``cap``."""
    major, minor = _cap_tuple(cap)
    for flag in arch_flags:
        kind, f_major, f_minor = _flag_tuple(flag)
        if kind == "sm" and f_major == major and f_minor <= minor:
            return True
        if kind == "compute" and (f_major, f_minor) <= (major, minor):
            return True
    return False


def arch_list_flags(arch_list: Optional[str]) -> Optional[list[str]]:
    """A ``TORCH_CUDA_ARCH_LIST`` (``"6.0+PTX 7.0 9.0a"``) as arch flags (``sm_60 compute_60 sm_70 sm_90``);
    None when not known. An arch-specific suffix (``9.0a``) is dropped: its cubin runs on that capability."""
    if arch_list is None:
        return None
    flags: list[str] = []
    for item in re.split(r"[;\s]+", arch_list.strip()):
        match = re.fullmatch(r"(\d+)\.(\d+)[a-z]?(\+PTX)?", item)
        if not match:
            raise TorchBuildError(f"TORCH_CUDA_ARCH_LIST item {item!r} is not X.Y[+PTX]")
        flags.append(f"sm_{match.group(1)}{match.group(2)}")
        if match.group(3):
            flags.append(f"compute_{match.group(1)}{match.group(2)}")
    return flags


def _version_tuple(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", version or ""))


def build_record(torch_version: str, build: str, row: dict[str, Any]) -> dict[str, Any]:
    """What a host records and installs for ``build``: pins, CUDA, arch list, xformers (none on cpu)."""
    info = BUILDS[(torch_version, build)]
    return {"build": build, "torch": row["torch"], "torchvision": row["torchvision"],
            "xformers": row["xformers"] if build != CPU_BUILD else "", "cuda": info["cuda"],
            "arch_flags": list(info["arch_flags"]), "xformers_arch_flags": arch_list_flags(info["xformers_arch"]),
            "packages": [f"torch=={row['torch']}", f"torchvision=={row['torchvision']}"]}


def _usable(torch_version: str, build: str, gpus: list[dict[str, Any]], driver: str) -> list[str]:
    """Why ``build`` cannot serve ``gpus`` on ``driver`` (empty: it can)."""
    info = BUILDS[(torch_version, build)]
    why = []
    if info["min_driver"] and driver and _version_tuple(driver) < _version_tuple(info["min_driver"]):
        why.append(f"driver {driver} is older than {info['min_driver']}, the oldest that runs CUDA {info['cuda']}")
    for gpu in gpus:
        if not build_runs(info["arch_flags"], gpu["compute_cap"]):
            why.append(f"GPU {gpu['index']} ({gpu['name']}, sm_{gpu['compute_cap'].replace('.', '')}) has no "
                       f"kernels in it ({' '.join(info['arch_flags'])})")
    return why


def _versions_that_serve(gpus: list[dict[str, Any]], driver: str) -> list[str]:
    return [version for version, row in WEBUI_TORCH.items()
            if any(not _usable(row["torch"], build, gpus, driver) for build in row["builds"])]


def choose_build(gpus: list[dict[str, Any]], driver: str, webui_version: Optional[str],
                 pin: str = "auto") -> dict[str, Any]:
    """The torch build of one host: ``{"state": "ok", "torch": build_record}`` or ``{"state": <refusal>, "message"}``.

    ``gpus``: the host's GPU records, each with ``index``, ``name`` and ``compute_cap`` (``"X.Y"``, or None when
    unknown); an empty list means a CPU host. ``webui_version``: a listed version, or None for a ref that is none
    (see ``webui_torch_row``). ``pin``: ``auto`` or a build name (``nvidia_check_torch_build``).
    Refusals: ``torch_build_unknown`` (a pin the version has no build of), ``torch_build_unsupported`` (no single
    build runs every GPU, or the pinned one does not), ``compute_cap_unknown``, ``driver_too_old``.
    """
    label, row = webui_torch_row(webui_version)
    torch_version = row["torch"]
    if not gpus:
        return {"state": "ok", "message": "", "torch": build_record(torch_version, CPU_BUILD, row)}
    known = row["builds"]
    if pin != "auto" and pin not in known:
        return {"state": "torch_build_unknown",
                "message": (f"nvidia_check_torch_build: {pin!r} is not a CUDA build of torch {torch_version} "
                            f"(webui {label}); use auto or one of {', '.join(known)}.")}
    unknown = [g for g in gpus if not g.get("compute_cap")]
    if unknown and pin == "auto":
        names = ", ".join(f"GPU {g['index']} ({g['name']})" for g in unknown)
        return {"state": "compute_cap_unknown",
                "message": (f"{names}: nvidia-smi reports no compute capability (drivers before 510) and the card is "
                            "not in sdfleet's name table, so no torch build can be chosen for it. Upgrade the NVIDIA "
                            f"driver, or pin nvidia_check_torch_build to one of {', '.join(known)}.")}
    if pin != "auto":
        why = _usable(torch_version, pin, [g for g in gpus if g.get("compute_cap")], driver)
        if why:
            return {"state": "torch_build_unsupported",
                    "message": (f"nvidia_check_torch_build: torch {torch_version}+{pin} cannot run this host: "
                                f"{'; '.join(why)}. Set nvidia_check_torch_build: auto, or pin a build that runs it.")}
        return {"state": "ok", "message": "", "torch": build_record(torch_version, pin, row)}
    reasons: dict[str, list[str]] = {}
    for build in row["builds"]:
        reasons[build] = _usable(torch_version, build, gpus, driver)
        if not reasons[build]:
            return {"state": "ok", "message": "", "torch": build_record(torch_version, build, row)}
    if all(any(r.startswith("driver ") for r in why) for why in reasons.values()):
        return {"state": "driver_too_old",
                "message": (f"NVIDIA driver {driver} is too old for torch {torch_version} (webui {label}): "
                            f"{reasons[row['builds'][0]][0]}. Upgrade the driver to {CUDA12_MIN_DRIVER} or newer.")}
    detail = " ".join(f"torch {torch_version}+{build}: {'; '.join(why)}." for build, why in reasons.items())
    serves = [v for v in _versions_that_serve(gpus, driver) if v != label]
    alone = [g for g in gpus if not any(not _usable(torch_version, b, [g], driver) for b in row["builds"])]
    if alone:
        moved = ", ".join(f"GPU {g['index']} ({g['name']})" for g in alone)
        fix = (f"Move {moved} to a host on another webui version" + (f", or set sdfleet_webui_version (webui_repo_version) to {' or '.join(serves)} for "
                            "this host" if serves else "; no listed webui version has a torch that runs it") + ".")
    else:
        fix = ("Each GPU has a build, but no single build runs them all: put these GPUs in separate hosts"
               + (f", or set sdfleet_webui_version (webui_repo_version) to {' or '.join(serves)} for this host"
                  if serves else "") + ".")
    return {"state": "torch_build_unsupported",
            "message": f"No torch build of webui {label} runs every GPU of this host. {detail} {fix}"}
