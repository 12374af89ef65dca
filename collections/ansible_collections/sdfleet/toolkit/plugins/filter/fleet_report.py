# -*- coding: utf-8 -*-
"""The fleet report's data: one structure, from the hostvars the stages left, that both report templates
(``templates/fleet_report.{html,md}.j2``) render, so they list the same things.

``fleet_report_data(hostvars, groups, stored)`` returns ``{hosts: [...], mirrors: [...], fresh: [...]}``: per GPU host (sorted) its
status (``ok``, ``failed``, ``not reached``), GPUs, instances with their health, webui version and commit, front
door certificate, models, extensions and failure with its remediation; per fleet mirror its status and the note
for the GPU hosts that used their other sources. Every credential in a URL is redacted. Pure function: the
mappings may be Ansible's hostvars or plain dicts (the unit tests pass dicts).
"""
from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any, Optional

from ansible.module_utils.parsing.convert_bool import boolean
from jinja2 import Environment
from jinja2.filters import do_truncate

from ansible_collections.sdfleet.toolkit.plugins.module_utils.redact import redact_value

# Where the GPU hosts went when the mirror did not serve them (the mirror notes say so).
OTHER_SOURCES = ("another fleet mirror where one served them, else the next git source of each repository, the "
                 "inventory's pip and torch indexes (sdfleet_pip_index_url, sdfleet_torch_index_url_cuda/_cpu) and "
                 "each model's own URL")
_NOT_AFTER = re.compile(r"^(\d{4})(\d\d)(\d\d)(\d\d)(\d\d)\d\dZ$")
_ENV = Environment()
_ABSENT = object()  # "not defined", where a defined falsy value means something else


def _var(host_vars: Any, name: str, default: Any = None) -> Any:
    """``host_vars[name]``, or ``default`` when it is not defined (or cannot be templated)."""
    try:
        return host_vars[name]
    except Exception:  # noqa: BLE001 (KeyError, or an undefined variable inside a lazily templated value)
        return default


def _or(value: Any, default: Any) -> Any:
    """Jinja's ``default(x, true)``: ``default`` when ``value`` is missing or falsy."""
    return value if value else default


def _map(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _list(value: Any) -> Sequence[Any]:
    return value if isinstance(value, Sequence) and not isinstance(value, (str, bytes)) else []


def _instances(host_vars: Any) -> list[dict[str, Any]]:
    public = _list(_var(host_vars, "sdfleet_public_urls", []))
    health = _map(_var(host_vars, "sdfleet_health", {}))
    out = []
    for inst in _list(_var(host_vars, "sdfleet_instances", [])):
        inst = _map(inst)
        index = inst.get("index")
        url = public[index] if isinstance(index, int) and len(public) > index else inst.get("url")
        out.append({"index": index, "port": inst.get("port"), "url": url, "tier": _or(inst.get("tier"), "?"),
                    "flags": " ".join(str(f) for f in _list(inst.get("flags"))) or "(none)",
                    "health": health.get(index, health.get(str(index), "not probed"))})
    return out


def _gpus(gpu: Mapping[str, Any]) -> list[dict[str, Any]]:
    out = []
    for n, g in enumerate(_list(gpu.get("gpus"))):
        g = _map(g)
        cap = g.get("compute_cap")
        out.append({"index": g.get("index", n), "name": _or(g.get("name"), "?"),
                    "vram_mib": _or(g.get("memory_total_mib"), "?"), "tier": _or(g.get("tier"), "?"),
                    "sm": f"sm_{str(cap).replace('.', '')}" if cap else "?"})
    return out


def _models(host_vars: Any) -> list[dict[str, Any]]:
    return [{"name": _or(m.get("name"), "?"), "kind": _or(m.get("kind"), "?"),
             "short_hash": _or(m.get("short_hash"), "-"), "legacy_hash": _or(m.get("legacy_hash"), "-")}
            for m in _list(_var(host_vars, "sdfleet_models", [])) if isinstance(m, Mapping)]


def _extensions(webui: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [{"name": _or(e.get("name"), "?"), "version": _or(e.get("version"), "-"),
             "commit": str(_or(e.get("commit"), ""))[:12] or "-", "state": _or(e.get("state"), "?")}
            for e in _list(webui.get("extensions")) if isinstance(e, Mapping)]


def _front_door(host_vars: Any) -> Optional[dict[str, str]]:
    door = _map(_var(host_vars, "sdfleet_front_door", {}))
    if not boolean(door.get("enabled", False), strict=False):
        return None
    not_after = str(_or(door.get("not_after"), ""))
    return {"certificate": _or(door.get("certificate"), ""), "fingerprint": _or(door.get("fingerprint_sha256"), ""),
            "not_after": _NOT_AFTER.sub(r"\1-\2-\3 \4:\5 UTC", not_after)}


def _host(name: str, host_vars: Any) -> dict[str, Any]:
    gpu, webui = _map(_var(host_vars, "sdfleet_gpu", {})), _map(_var(host_vars, "sdfleet_webui", {}))
    torch = _map(gpu.get("torch"))
    failure = _var(host_vars, "sdfleet_failure")
    instances_defined = _var(host_vars, "sdfleet_instances", _ABSENT) is not _ABSENT
    status = "failed" if failure else ("ok" if instances_defined else "not reached")
    if failure:
        failure = _map(failure)
        reason: Optional[dict[str, str]] = {"stage": failure.get("stage"), "message": str(failure.get("message", "")).strip(),
                                            "remediation": str(failure.get("remediation", "")).strip()}
    elif status == "not reached":
        reason = {"stage": "not reached",
                  "message": "The host did not finish the run (unreachable, or stopped outside a stage).",
                  "remediation": f"Check that the controller can reach it (ansible -m ping {name}), then rerun "
                                 f"with --limit {name}."}
    else:
        reason = None
    return {
        "name": name, "status": status,
        "gpu_state": _or(gpu.get("state"), "unknown"), "driver": _or(gpu.get("driver_version"), "-"),
        "tier": _or(gpu.get("tier"), "-"),
        "torch": f"{torch.get('torch', '')}+{torch['build']}" if "build" in torch else "-",
        "xformers": _or(torch.get("xformers"), "-"),
        "gpus": _gpus(gpu), "instances": _instances(host_vars),
        "webui_version": _or(webui.get("version"), "-"), "webui_commit": str(_or(webui.get("commit"), "-"))[:12],
        "webui_source": _or(webui.get("source"), "-"), "note": _or(_var(host_vars, "sdfleet_report_note"), ""),
        "front_door": _front_door(host_vars), "models": _models(host_vars), "extensions": _extensions(webui),
        "failure": reason,
    }



def _mirror(name: str, host_vars: Any, fallback: list[str]) -> dict[str, Any]:
    served, failure = _var(host_vars, "sdfleet_mirror"), _var(host_vars, "sdfleet_failure")
    status = "failed" if failure else ("ok" if served else "not reached")
    used = f"the GPU hosts {', '.join(fallback)}" if fallback else "the GPU hosts"
    if status != "ok":
        failure = _map(failure)
        why = (f" failed in the {failure.get('stage')} stage "
               f"({do_truncate(_ENV, str(failure.get('message', '')).strip().replace(chr(10), ' '), 400)})"
               if failure else " was not reached")
        note = f"The fleet mirror {name}{why}: {used} used their other sources: {OTHER_SOURCES}."
        if failure:
            note += " " + str(failure.get("remediation", "")).strip().replace("\n", " ")
    elif fallback:
        note = (f"The GPU hosts {', '.join(fallback)} could not reach the fleet mirror {name} and used their other "
                f"sources: {OTHER_SOURCES}.")
    else:
        note = ""
    served = _map(served)
    return {"name": name, "status": status, "note": note,
            "git": ", ".join(str(g) for g in _list(served.get("git"))) if served else "-",
            "models": (", ".join(str(m) for m in _list(served.get("models"))) or "-") if served else "-"}


# A host this run reached: the gpu stage marks every host it targets first (a set_fact, which needs no
# connection, so an unreachable host is marked too); the facts cover a run without that stage.
_RAN = ("__sdfleet_in_run", "sdfleet_gpu", "sdfleet_failure", "sdfleet_instances", "sdfleet_mirror",
        "__sdfleet_mirrors_up")


def _ran(host_vars: Any) -> bool:
    return any(_var(host_vars, name, _ABSENT) is not _ABSENT for name in _RAN)


def _never(name: str) -> dict[str, Any]:
    """The row of a host no run has reached yet (this one did not target it; no earlier one is kept)."""
    row = _host(name, {})
    row["failure"] = {"stage": "not reached",
                      "message": "No run has reached this host yet (this run did not target it, and no earlier "
                                 "run's state is kept for it).",
                      "remediation": f"Run ansible-playbook site.yml --limit {name}."}
    return row


def fleet_report_data(hostvars: Mapping[str, Any], groups: Mapping[str, Sequence[str]],
                      stored: Optional[Sequence[Mapping[str, Any]]] = None) -> dict[str, Any]:
    """The report's data (see the module docstring), credentials redacted, as plain JSON types.

    ``stored`` holds the rows earlier runs kept on the controller (``{kind: host|mirror, name, row}``). A host this
    run reached gets its row from this run's facts; any other host keeps its stored row, marked ``earlier`` (a run
    with ``--limit``, or the report alone); a host with neither is "not reached". ``fresh`` lists the rows this
    run made, to keep for the next run."""
    kept: dict[tuple[str, str], dict[str, Any]] = {}
    for item in _list(stored):
        item = _map(item)
        if item.get("kind") in ("host", "mirror") and isinstance(item.get("row"), Mapping):
            kept[(str(item["kind"]), str(item.get("name")))] = dict(item["row"], earlier=True)
    gpu_hosts = sorted(str(h) for h in _list(groups.get("webui_hosts")))
    mirror_hosts = [str(m) for m in _list(groups.get("sdfleet_mirror"))]
    # One lookup per host: each hostvars[h] of Ansible's HostVars computes the host's variables again
    # (scripts/bench_sim.py measures it).
    views = {h: hostvars[h] for h in {*gpu_hosts, *mirror_hosts}}
    ran = {h for h in views if _ran(views[h])}
    # each mirror's GPU hosts that asked it and got no answer (playbooks/mirror.yml)
    missed = {h: [str(m) for m in _list(_var(views[h], "__sdfleet_mirrors_missed", []))]
              for h in gpu_hosts if h in ran}
    fresh: list[dict[str, Any]] = []

    def rows(kind: str, names: Sequence[str], build: Any, blank: Any) -> list[dict[str, Any]]:
        """This run's row of each host it reached (kept in ``fresh``), else the stored row, else ``blank``'s."""
        out = []
        for name in names:
            if name in ran:
                out.append(dict(build(name, views[name]), earlier=False))
                fresh.append({"kind": kind, "name": name, "row": out[-1]})
            else:
                out.append(kept.get((kind, name)) or dict(blank(name), earlier=False))
        return out

    hosts = rows("host", gpu_hosts, _host, _never)
    mirrors = rows("mirror", mirror_hosts,
                   lambda m, view: _mirror(m, view, [h for h in gpu_hosts if m in missed.get(h, [])]),
                   lambda m: _mirror(m, {}, []))
    data = {"hosts": hosts, "mirrors": mirrors, "fresh": fresh}
    return json.loads(json.dumps(redact_value(data), default=str))


class FilterModule:
    """sdfleet fleet report filters."""

    def filters(self) -> dict[str, Any]:
        return {"fleet_report_data": fleet_report_data}
