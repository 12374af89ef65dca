# -*- coding: utf-8 -*-
"""The preflight role's rules: what to probe on a host, and every problem (and warning) found.

Pure functions, unit-tested without Ansible (tests/unit/plugins/filter/test_preflight.py):

* :func:`preflight_plan`: before the probes, the instance count (the service's own rule: the
  ``webui_instances`` filter over the ``sdfleet_gpu`` plan), the ports to probe (public, and behind a front
  door the loopback ones) and the declared models that would need disk space (with their destinations).
* :func:`preflight_problems`: after the probes, every problem with the install dir, the free disk (floor plus
  the models not in place yet), the RAM (a floor per instance), the ports (held by someone else, or the fleet
  mirror's port) and the types of these settings; each names the variable (the inventory name first, then
  the role variable in parentheses), shows the bad value and says "Fix:".
* :func:`preflight_warnings`: what works but is not advised (RAM below the recommendation, no swap, GPU facts
  unknown).

The operating-system check and the exposure/front-door rules live elsewhere (preflight_os.py, exposure.py,
front_door.py).
"""
from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any, Optional

from ansible_collections.sdfleet.toolkit.plugins.filter.exposure import _as_int, _show
from ansible_collections.sdfleet.toolkit.plugins.filter.model_paths import model_plan
from ansible_collections.sdfleet.toolkit.plugins.filter.webui_args import webui_instances


GIB = 1073741824
# Role variable keys whose inventory name is not sdfleet_<key>; keys absent from FLEET_NAMES and not in
# ROLE_ONLY are sdfleet_<key>.
FLEET_NAMES: dict[str, str] = {"models": "model_list"}
ROLE_ONLY: frozenset[str] = frozenset({"instances", "recommended_ram_mb", "models_dir", "embeddings_dir",
                                       "service_user", "service_unit_prefix"})
_PRINTABLE_ASCII = re.compile(r"[^ -~]")
_TRUE = frozenset({"true", "yes", "on", "1"})
_FALSE = frozenset({"false", "no", "off", "0"})
# How many model names a disk message lists before "and N more".
_MODELS_SHOWN = 6


class _Names:
    """``sdfleet_install_dir (preflight_install_dir)``; ``preflight_instances`` for role-only variables."""

    def __init__(self, prefix: str, role_prefix: str) -> None:
        self.prefix = prefix
        self.role_prefix = role_prefix

    def __call__(self, key: str, suffix: str = "") -> str:
        role = f"{self.role_prefix}{key}{suffix}" if self.role_prefix else ""
        if key in ROLE_ONLY:
            return role or f"{self.prefix}{key}{suffix}"
        fleet = f"{self.prefix}{FLEET_NAMES.get(key, key)}{suffix}"
        return f"{fleet} ({role})" if role else fleet


def _path(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False) if isinstance(value, str) else _show(value)


def _bool(value: Any) -> Optional[bool]:
    """A boolean from YAML/extra-vars spellings; None when unreadable."""
    if value is None or isinstance(value, bool):
        return bool(value)
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    return None


def _count(value: Any) -> Optional[int]:
    """A whole number >= 0 (an int, or a string of digits); None otherwise (floats, bools, negatives)."""
    number = _as_int(value)
    if isinstance(value, float) and value.is_integer() and value >= 0:
        number = int(value)
    return number if number is not None and number >= 0 else None


def _gib(nbytes: int) -> str:
    return f"{nbytes / GIB:.1f} GiB"


# --- the plan (before the probes) ---------------------------------------------------------------------------

def _instances(settings: Mapping[str, Any]) -> tuple[int, str]:
    """The instance count and where it came from: ``override``, ``gpu`` or ``unknown`` (no GPU facts)."""
    override = _count(settings.get("instances", 0))
    if override:
        return override, "override"
    gpu = settings.get("gpu")
    # Unreadable: counted false, which checks more instances (the safe reading).
    single = bool(_bool(settings.get("single_instance", False)))
    try:
        # The service's own rule; the port only matters to the filter's range check, so any valid one will do.
        count = len(webui_instances(gpu if isinstance(gpu, Mapping) else None, base_port=1, single_instance=single))
    except Exception:  # noqa: BLE001 (webui_service refuses a malformed plan; here, check a port per record)
        gpus = gpu.get("gpus") if isinstance(gpu, Mapping) else None
        count = 1 if single or not isinstance(gpus, list) else len(gpus)
    return max(count, 1), ("gpu" if isinstance(gpu, Mapping) and gpu else "unknown")


def _range(base: Any, count: int) -> list[int]:
    first = _as_int(base)
    if first is None or first < 1 or first + count - 1 > 65535:
        return []  # exposure_problems and front_door_problems report these
    return list(range(first, first + count))


def _model_needs(settings: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The declared models that take disk space once placed: present, not a link, with a readable size."""
    models = settings.get("models")
    if not isinstance(models, Sequence) or isinstance(models, (str, bytes)):
        return []
    models_dir = str(settings.get("models_dir") or "")
    embeddings_dir = str(settings.get("embeddings_dir") or "")
    out: list[dict[str, Any]] = []
    for index, item in enumerate(models):
        if not isinstance(item, Mapping) or item.get("state", "present") != "present":
            continue
        if item.get("shared_path") and _bool(item.get("link", False)):
            continue  # a symlink to a shared file takes no space
        size = _count(item.get("size"))
        if not size:
            continue
        try:
            dest = model_plan([dict(item)], models_dir, embeddings_dir)[0]["dest"]
        except Exception:  # noqa: BLE001 (an invalid entry is webui_models' refusal; count it here)
            dest = ""
        out.append({"index": index, "name": str(item.get("name") or f"#{index}"), "size": size, "dest": dest})
    return out


def preflight_plan(settings: Mapping[str, Any]) -> dict[str, Any]:
    """What preflight probes on the host: ``instances``, ``instances_from``, ``public_ports``, ``backend_ports``,
    ``ports`` (both), ``models`` (``{index, name, size, dest}`` of each model that would need space; ``dest`` is
    ``""`` when it cannot be known). Never raises: bad values are :func:`preflight_problems`' to report."""
    if not isinstance(settings, Mapping):
        settings = {}
    count, source = _instances(settings)
    public = _range(settings.get("port", 7860), count)
    backend = _range(settings.get("backend_port", 27860), count) if _bool(settings.get("front_door")) else []
    return {"instances": count, "instances_from": source, "public_ports": public, "backend_ports": backend,
            "ports": public + backend, "models": _model_needs(settings)}


# --- the problems (after the probes) ------------------------------------------------------------------------

def _type_problems(settings: Mapping[str, Any], name: _Names) -> list[str]:
    problems: list[str] = []
    if _bool(settings.get("single_instance", False)) is None:
        problems.append(f"{name('single_instance')} = {_show(settings.get('single_instance'))}: not a boolean. "
                        "Fix: set it to true (one instance on the first GPU) or false (one instance per GPU).")
    if _count(settings.get("instances", 0)) is None:
        problems.append(f"{name('instances')} = {_show(settings.get('instances'))}: not a whole number of "
                        "instances. Fix: leave it at 0 (one per GPU, from the GPU facts) or set a count such as 2.")
    for key, unit, example in (("min_free_disk_gb", "GiB", 20), ("min_ram_mb", "MiB", 7680),
                               ("recommended_ram_mb", "MiB", 15360)):
        if key in settings and _count(settings.get(key)) is None:
            problems.append(f"{name(key)} = {_show(settings.get(key))}: not a whole number of {unit}. "
                            f"Fix: set a number such as {example}.")
    mirror = settings.get("mirror_port", 0)
    mirror_int = _count(mirror)
    if mirror_int is None or mirror_int > 65535:
        problems.append(f"{name('mirror_port')} = {_show(mirror)}: not a port number (1-65535, or 0 on a host "
                        "that serves no mirror). Fix: set the mirror's port, e.g. 8080.")
    models = settings.get("models", [])
    if models is not None and (not isinstance(models, Sequence) or isinstance(models, (str, bytes))):
        problems.append(f"{name('models')} = {_show(models)}: not a list of models. Fix: write it as a YAML list "
                        "of {name, kind, url, sha256, size} entries.")
        return problems
    for index, item in enumerate(models or []):
        if not isinstance(item, Mapping) or "size" not in item or item.get("size") is None:
            continue
        size = item["size"]
        if _count(size) is None or isinstance(size, float) and not size.is_integer():
            label = f" (name {item.get('name')!r})" if item.get("name") else ""
            problems.append(f"{name('models', f'[{index}].size')}{label} = {_show(size)}: not a whole number of "
                            "bytes. Fix: give the file's size in bytes (stat -c %s FILE), e.g. size: 2132625894, "
                            "or leave size out.")
    return problems


def _path_problems(path: Any, name: _Names) -> list[str]:
    shown = f"{name('install_dir')} = {_path(path)}: "
    if not isinstance(path, str):
        return [shown + "not a path. Fix: set an absolute path such as /opt/sd-webui."]
    problems: list[str] = []
    if not path.startswith("/"):
        problems.append(shown + "not an absolute path. Fix: use an absolute path such as /opt/sd-webui.")
    if " " in path:
        problems.append(shown + "contains a space, which breaks the webui launch scripts. Fix: choose a path "
                        "without spaces, e.g. /opt/sd-webui.")
    odd = sorted(set(_PRINTABLE_ASCII.findall(path)))
    if odd:
        shown_chars = ", ".join(json.dumps(c, ensure_ascii=False) if c.isprintable() else repr(c) for c in odd)
        problems.append(shown + f"contains characters other than printable ASCII ({shown_chars}), which break the "
                        "webui. Fix: choose a plain ASCII path, e.g. /opt/sd-webui.")
    return problems


def _fields(lines: Sequence[Any], key: str) -> list[str]:
    out = []
    for line in lines:
        head, sep, rest = str(line).partition("\t")
        if sep and head == key:
            out.append(rest)
    return out


def _disk_problems(settings: Mapping[str, Any], probes: Mapping[str, Any], plan: Mapping[str, Any],
                   name: _Names) -> list[str]:
    disk = probes.get("disk") or {}
    lines = disk.get("stdout_lines") or [] if isinstance(disk, Mapping) else []
    parent, free = _fields(lines, "parent"), _fields(lines, "free")
    install_dir = settings.get("install_dir")
    if not (isinstance(disk, Mapping) and disk.get("rc", 1) == 0 and parent and free and _count(free[0]) is not None):
        stderr = str(disk.get("stderr", "") if isinstance(disk, Mapping) else "").strip() or "no answer"
        return [f"{name('install_dir')} = {_path(install_dir)}: could not measure the free space there ({stderr}). "
                "Fix: check the path and that df works on the host."]
    floor_gb = _count(settings.get("min_free_disk_gb", 20))
    if floor_gb is None:
        return []  # a type problem
    present = {_as_int(i) for i in _fields(lines, "model")}
    missing = [m for m in plan.get("models", []) if m["index"] not in present]
    model_bytes = sum(m["size"] for m in missing)
    needed = floor_gb * GIB + model_bytes
    free_bytes = _count(free[0]) or 0
    if free_bytes >= needed:
        return []
    text = f"{name('min_free_disk_gb')} = {floor_gb}"
    fix = f"Fix: free space there, point {name('install_dir')} at a bigger disk, or lower {name('min_free_disk_gb')}"
    if missing:
        listed = ", ".join(f"{m['name']} {_gib(m['size'])}" for m in missing[:_MODELS_SHOWN])
        if len(missing) > _MODELS_SHOWN:
            listed += f" and {len(missing) - _MODELS_SHOWN} more"
        text += (f" + {_gib(model_bytes)} of models not in place yet ({name('models')}: {listed})")
        fix += f", or drop models from {name('models')}"
    return [f"{text}: only {_gib(free_bytes)} free at {parent[0]} (holding {install_dir}), {_gib(needed)} needed. "
            f"{fix}."]


def _ram_problems(settings: Mapping[str, Any], probes: Mapping[str, Any], plan: Mapping[str, Any],
                  name: _Names) -> list[str]:
    per_instance = _count(settings.get("min_ram_mb", 7680))
    ram = _count(probes.get("ram_mb")) or 0
    if per_instance is None:
        return []  # a type problem
    count = plan["instances"]
    floor = per_instance * count
    if ram >= floor:
        return []
    if count > 1:
        why = " (one per GPU)" if plan["instances_from"] == "gpu" else f" ({name('instances')})"
        return [f"ansible_memtotal_mb = {ram}: below {name('min_ram_mb')} = {per_instance} MiB per instance x "
                f"{count} instances{why} = {floor} MiB. Fix: add RAM (each instance loads its own checkpoint; the "
                f"webui wiki asks for 16 GB), run one instance ({name('single_instance')}: true), or lower "
                f"{name('min_ram_mb')} and add swap."]
    return [f"ansible_memtotal_mb = {ram}: below {name('min_ram_mb')} = {per_instance} MiB (one instance). Fix: add "
            f"RAM (the webui wiki asks for 16 GB), or lower {name('min_ram_mb')} and add swap."]


def _port_problems(settings: Mapping[str, Any], probes: Mapping[str, Any], plan: Mapping[str, Any],
                   name: _Names) -> list[str]:
    problems: list[str] = []
    public, backend = plan["public_ports"], plan["backend_ports"]
    front_door = bool(_bool(settings.get("front_door")))
    mirror = _count(settings.get("mirror_port", 0)) or 0
    if 0 < mirror <= 65535:
        for key, ports, label in (("port", public, "the front door's public port" if front_door else "the port"),
                                  ("backend_port", backend, "the loopback port (behind the front door)")):
            if mirror in ports:
                problems.append(
                    f"{name(key)} = {ports[0]}: {label} of instance {ports.index(mirror)} is {mirror}, the fleet "
                    f"mirror's port on this host ({name('mirror_port')} = {mirror}). Fix: move {name(key)} or "
                    f"{name('mirror_port')} so that {ports[0]}..{ports[-1]} stays clear of the mirror.")
    lines = probes.get("ports")
    if lines is None:
        return problems
    if "no-ss" in [str(line) for line in lines]:
        return problems + [f"{name('port')} = {_show(settings.get('port'))}: cannot check whether the ports are free, "
                           "ss is missing. Fix: install iproute2."]
    user = str(settings.get("service_user") or "")
    unit_prefix = str(settings.get("service_unit_prefix") or "")
    for line in lines:
        f = str(line).split("\t")
        port = _as_int(f[0]) if f else None
        if len(f) != 7 or f[1] != "held" or port is None or f[3] == user:
            continue
        if unit_prefix and f[6].startswith(unit_prefix):
            continue
        if front_door and f[6] == "nginx.service" and port in public:
            continue
        key, ports, where = (("backend_port", backend, ", loopback behind the front door") if port in backend
                             else ("port", public, ""))
        if port not in ports:
            continue
        problems.append(f"{name(key)} = {ports[0]}: port {port} (instance {ports.index(port)}{where}) is already "
                        f"held by user {f[3]} (uid {f[2]}; process {f[5]}, pid {f[4]}; unit {f[6]}), not by {user}. "
                        f"Fix: stop that process, or choose another {name(key)}.")
    return problems


def preflight_problems(settings: Mapping[str, Any], probes: Optional[Mapping[str, Any]] = None,
                       prefix: str = "sdfleet_", role_prefix: str = "preflight_") -> list[str]:
    """Every problem with the install dir, disk, RAM and ports of a host (see DOCUMENTATION); empty when sound."""
    if not isinstance(settings, Mapping):
        return [f"the preflight settings are a {type(settings).__name__}, not a dict. Fix: pass a dict."]
    probes = probes if isinstance(probes, Mapping) else {}
    name = _Names(prefix, role_prefix)
    plan = preflight_plan(settings)
    return (_type_problems(settings, name) + _path_problems(settings.get("install_dir"), name)
            + _disk_problems(settings, probes, plan, name) + _ram_problems(settings, probes, plan, name)
            + _port_problems(settings, probes, plan, name))


def preflight_warnings(settings: Mapping[str, Any], probes: Optional[Mapping[str, Any]] = None,
                       prefix: str = "sdfleet_", role_prefix: str = "preflight_") -> list[str]:
    """What works but is not advised: RAM below the recommendation (per instance), no swap, GPU facts unknown."""
    if not isinstance(settings, Mapping):
        return []
    probes = probes if isinstance(probes, Mapping) else {}
    name = _Names(prefix, role_prefix)
    plan = preflight_plan(settings)
    warnings: list[str] = []
    if plan["instances_from"] == "unknown":
        warnings.append("sdfleet_gpu is not known on this host (the gpu stage, nvidia_check, has not run): the ports "
                        "and RAM of one instance were checked. Run playbooks/preflight.yml or site.yml, which read "
                        f"the GPUs first, or set {name('instances')}.")
    recommended = _count(settings.get("recommended_ram_mb", 15360))
    ram, swap = _count(probes.get("ram_mb")) or 0, _count(probes.get("swap_mb")) or 0
    if recommended is None:
        return warnings
    wanted = recommended * plan["instances"]
    if ram < wanted:
        per = f" ({recommended} MiB per instance x {plan['instances']})" if plan["instances"] > 1 else ""
        warnings.append(f"ansible_memtotal_mb = {ram}: below the recommended {wanted} MiB{per} "
                        f"({name('recommended_ram_mb')}; the webui wiki asks for 16 GB). Loading SDXL checkpoints "
                        "may fail.")
        if swap == 0:
            warnings.append(f"ansible_swaptotal_mb = 0 with {ram} MiB RAM: add swap (e.g. an 8 GiB swap file), or "
                            "run with --lowram when VRAM exceeds RAM, so checkpoint loads do not hit the OOM killer.")
    return warnings


class FilterModule:
    """sdfleet preflight filters."""

    def filters(self) -> dict[str, Any]:
        return {
            "preflight_plan": preflight_plan,
            "preflight_problems": preflight_problems,
            "preflight_warnings": preflight_warnings,
        }
