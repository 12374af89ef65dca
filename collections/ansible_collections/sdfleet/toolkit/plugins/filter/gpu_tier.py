# -*- coding: utf-8 -*-
"""Filters that turn nvidia_gpu_facts results into webui tiers and flags (pure functions + FilterModule)."""
from __future__ import annotations

import re
from typing import Any, Iterable, Optional

try:
    from ansible.errors import AnsibleFilterError
except ImportError:  # pure-Python use without Ansible installed
    AnsibleFilterError = ValueError  # type: ignore[misc,assignment]

TIER_ORDER: tuple[str, ...] = ("cpu", "lowvram", "medvram", "medvram_sdxl", "full")
GPU_TIERS: tuple[str, ...] = TIER_ORDER[1:]
ATTENTION_FLAGS: dict[str, list[str]] = {"xformers": ["--xformers"], "sdp": ["--opt-sdp-attention"], "none": []}
CPU_FLAGS: tuple[str, ...] = ("--use-cpu", "all", "--precision", "full", "--no-half", "--skip-torch-cuda-test")
GPU_KEYS: tuple[str, ...] = ("index", "name", "memory_total_mib", "driver_version", "uuid", "pci_bus_id",
                             "compute_cap", "mig_mode")
PIN_HINT = "set nvidia_check_tier to one of lowvram, medvram, medvram_sdxl, full"


def _list(value: Any, variable: str, example: str) -> list:
    if not isinstance(value, (list, tuple)):
        raise ValueError(f"{variable} is a {'null' if value is None else type(value).__name__}, not a list. "
                         f"Fix: write it as a list, e.g. {example}.")
    return list(value)


def _flag_list(flags: Any, where: str) -> list[str]:
    if not isinstance(flags, (list, tuple)) or not all(isinstance(f, str) for f in flags):
        raise ValueError(f"{where} = {flags!r}: not a list of strings. Fix: write flags as a list such as "
                         "['--medvram', '--xformers'].")
    return list(flags)


def _bool(value: Any, variable: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "yes", "on", "1", "false", "no", "off", "0"):
        return value.strip().lower() in ("true", "yes", "on", "1")
    raise ValueError(f"{variable} = {value!r}: not a boolean. Fix: set it to true or false.")


def _check_table(tier_table: list[dict]) -> list[dict]:
    """The tier table, validated, largest min_mib first."""
    rows = []
    for number, row in enumerate(_list(tier_table, "nvidia_check_tier_table", "[{tier: full, min_mib: 11000, "
                                                                              "flags: []}]")):
        if not isinstance(row, dict) or row.get("tier") not in GPU_TIERS or not isinstance(row.get("min_mib"), int) \
                or isinstance(row.get("min_mib"), bool) or row["min_mib"] < 0 \
                or not isinstance(row.get("flags", []), list) \
                or not all(isinstance(f, str) for f in row.get("flags", [])):
            raise ValueError(f"nvidia_check_tier_table[{number}] = {row!r}: each row needs tier (one of "
                             f"{', '.join(GPU_TIERS)}), min_mib (an integer >= 0) and flags (a list of strings). "
                             "Fix: correct that row.")
        rows.append(row)
    return sorted(rows, key=lambda row: row["min_mib"], reverse=True)


def gpu_tier(memory_mib: Optional[int], tier_table: list[dict]) -> Optional[str]:
    """The tier of a GPU with ``memory_mib`` total memory; None when unknown or under every row."""
    if memory_mib is None:
        return None
    if isinstance(memory_mib, bool) or not isinstance(memory_mib, int):
        raise ValueError(f"memory_total_mib = {memory_mib!r}: not a number of MiB. Fix: pass an integer "
                         "(nvidia_gpu_facts' memory_total_mib), or pin nvidia_check_tier.")
    for row in _check_table(tier_table):
        if memory_mib >= row["min_mib"]:
            return row["tier"]
    return None


def quirk_flags(name: str, quirks: list[dict]) -> list[str]:
    """Flags of every quirk whose ``match`` regex is found in ``name`` (case-insensitive), in table order."""
    flags: list[str] = []
    for number, quirk in enumerate(_list(quirks, "nvidia_check_quirks", "[{match: 'GTX 16', flags: [...]}]")):
        try:
            pattern = re.compile(quirk["match"], re.IGNORECASE)
        except (KeyError, TypeError, re.error) as exc:
            raise ValueError(f"nvidia_check_quirks[{number}] = {quirk!r}: 'match' must be a regex ({exc}). "
                             "Fix: give each quirk a regex in match.") from exc
        quirk_flags_ = _flag_list(quirk.get("flags", []), f"nvidia_check_quirks[{number}].flags")
        if pattern.search(name or ""):
            flags.extend(quirk_flags_)
    return flags


def _dedupe(flags: Iterable[str]) -> list[str]:
    seen: list[str] = []
    for flag in flags:
        if flag not in seen or not flag.startswith("--"):
            seen.append(flag)
    return seen


def _gpu_flags(tier: str, name: str, table: list[dict], quirks: list[dict], attention: str) -> list[str]:
    tier_flags = next((row.get("flags", []) for row in table if row["tier"] == tier), None)
    if tier_flags is None:
        raise ValueError(f"nvidia_check_tier = {tier!r} has no row in nvidia_check_tier_table. Fix: add one or pin "
                         "another tier.")
    return _dedupe([*tier_flags, *ATTENTION_FLAGS[attention], *quirk_flags(name, quirks)])


def _refusal(state: str, message: str, facts: dict) -> dict:
    return {"state": state, "message": message, "driver_version": facts.get("driver_version"), "tier": None,
            "flags": [], "gpus": []}


def _cpu(message: str, facts: dict, cpu_flags: Iterable[str]) -> dict:
    return {"state": "cpu", "message": message, "driver_version": facts.get("driver_version"), "tier": "cpu",
            "flags": list(cpu_flags), "gpus": []}


def gpu_plan(facts: dict, tier_table: list[dict], quirks: list[dict], attention: str = "xformers",
             pin: str = "auto", allow_cpu_fallback: bool = False,
             cpu_flags: Iterable[str] = CPU_FLAGS) -> dict[str, Any]:
    """The sdfleet_gpu fact (see CONTRIBUTING.md) for one host."""
    if not isinstance(attention, str) or attention not in ATTENTION_FLAGS:
        raise ValueError(f"nvidia_check_attention = {attention!r}: not an attention mode. "
                         f"Fix: use one of {', '.join(ATTENTION_FLAGS)}.")
    if not isinstance(pin, str) or (pin != "auto" and pin not in TIER_ORDER):
        raise ValueError(f"sdfleet_gpu_tier (nvidia_check_tier) = {pin!r}: not a tier. "
                         f"Fix: use auto or one of {', '.join(TIER_ORDER)}.")
    allow_cpu_fallback = _bool(allow_cpu_fallback, "sdfleet_allow_cpu_fallback (nvidia_check_allow_cpu_fallback)")
    cpu_flags = _flag_list(cpu_flags if not isinstance(cpu_flags, tuple) else list(cpu_flags),
                           "nvidia_check_cpu_flags")
    if not isinstance(facts, dict):
        raise ValueError(f"gpu_plan: the nvidia_gpu_facts result is a {type(facts).__name__}, not a dict. "
                         "Fix: pass the registered result of sdfleet.toolkit.nvidia_gpu_facts.")
    if not isinstance(facts.get("gpus", []), list) or not all(isinstance(g, dict) for g in facts.get("gpus", [])):
        raise ValueError("gpu_plan: the nvidia_gpu_facts result's gpus is not a list of records. "
                         "Fix: pass the registered result of sdfleet.toolkit.nvidia_gpu_facts.")
    table = _check_table(tier_table)
    quirk_flags("", quirks)  # validates every regex up front
    if pin == "cpu":
        return _cpu("Tier pinned to cpu by nvidia_check_tier; the GPUs are not used.", facts, cpu_flags)
    state = facts.get("state", "parse_error")
    if state != "ok":
        message = facts.get("message", "")
        if allow_cpu_fallback:
            return _cpu(f"No usable GPU ({state}: {message}) Running on the CPU because "
                        "nvidia_check_allow_cpu_fallback is true.", facts, cpu_flags)
        return _refusal(state, f"{message} (Or run the webui on the CPU: set nvidia_check_tier: cpu or "
                               "nvidia_check_allow_cpu_fallback: true.)", facts)

    gpus, problems = [], []
    smallest = min(row["min_mib"] for row in table) if table else 0
    for raw in facts.get("gpus", []):
        gpu = {key: raw.get(key) for key in GPU_KEYS}
        label = f"GPU {gpu['index']} ({gpu['name']})"
        if pin != "auto":
            tier: Optional[str] = pin
        elif gpu["mig_mode"] == "enabled":
            problems.append(("mig_enabled", f"{label} has MIG enabled: the webui uses one whole CUDA device and "
                                            "cannot pick a MIG slice (--device-id takes no MIG id), and the slice "
                                            "it would get cannot be sized here. Disable MIG (nvidia-smi -i "
                                            f"{gpu['index']} -mig 0, then reset the GPU or reboot) or {PIN_HINT} "
                                            "to match the slice."))
            continue
        elif gpu["memory_total_mib"] is None:
            problems.append(("vram_unknown", f"{label} reports no memory size (unified memory or [N/A]); "
                                             f"{PIN_HINT} for this host."))
            continue
        else:
            tier = gpu_tier(gpu["memory_total_mib"], table)
            if tier is None:
                problems.append(("vram_too_small", f"{label} has {gpu['memory_total_mib']} MiB, under the "
                                                   f"{smallest} MiB minimum of nvidia_check_tier_table."))
                continue
        gpu["tier"] = tier
        gpu["flags"] = _gpu_flags(tier, gpu["name"] or "", table, quirks, attention)
        gpus.append(gpu)

    if problems:
        states = [state for state, _ in problems]
        text = " ".join(message for _, message in problems)
        if allow_cpu_fallback and set(states) == {"vram_too_small"}:
            return _cpu(f"{text} Running on the CPU because nvidia_check_allow_cpu_fallback is true.", facts,
                        cpu_flags)
        worst = next(s for s in ("mig_enabled", "vram_unknown", "vram_too_small") if s in states)
        if worst == "vram_too_small":
            text += (" Use a GPU with more memory, or run on the CPU: set nvidia_check_allow_cpu_fallback: true or "
                     "nvidia_check_tier: cpu (or lower min_mib in nvidia_check_tier_table at your own risk).")
        return _refusal(worst, text, facts)
    if not gpus:
        return _refusal("no_devices_found", "nvidia-smi answered but listed no GPU.", facts)
    lowest = min(gpus, key=lambda g: TIER_ORDER.index(g["tier"]))
    message = "Tier pinned by nvidia_check_tier." if pin != "auto" else ""
    return {"state": "ok", "message": message, "driver_version": facts.get("driver_version"),
            "tier": lowest["tier"], "flags": list(lowest["flags"]), "gpus": gpus}


def _wrap(func):
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except ValueError as exc:
            raise AnsibleFilterError(str(exc)) from exc

    wrapper.__name__ = func.__name__
    wrapper.__doc__ = func.__doc__
    return wrapper


class FilterModule:
    """sdfleet.toolkit.gpu_plan and sdfleet.toolkit.gpu_tier."""

    def filters(self) -> dict:
        """Filter name -> function."""
        return {"gpu_plan": _wrap(gpu_plan), "gpu_tier": _wrap(gpu_tier)}
