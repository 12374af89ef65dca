# -*- coding: utf-8 -*-
"""Filters that choose each host's torch build from its GPUs (``module_utils/torch_builds.py`` holds the table).

* ``torch_plan(sdfleet_gpu, webui_version, pin)``: the GPU plan with each GPU's compute capability filled in and the
  host's build (``torch``), or a refusal state naming the fix.
* ``torch_index_url(build, cuda_url, cpu_url)``: the index of one build (webui_repo's ``TORCH_INDEX_URL``).
* ``torch_mirror_indexes(hosts, hostvars, cuda_url, cpu_url)``: ``{build: index URL}`` of the builds those hosts
  chose: what a fleet mirror downloads (only those).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

try:
    from ansible.errors import AnsibleFilterError
except ImportError:  # pure-Python use without Ansible installed
    AnsibleFilterError = ValueError  # type: ignore[misc,assignment]

from ansible_collections.sdfleet.toolkit.plugins.filter.webui_args import listed_webui_version
from ansible_collections.sdfleet.toolkit.plugins.module_utils import torch_builds as table
from ansible_collections.sdfleet.toolkit.plugins.module_utils.redact import redact_urls


USABLE_STATES = ("ok", "cpu")


def torch_plan(gpu_plan: Mapping[str, Any], webui_version: str = table.DEFAULT_WEBUI_VERSION,
               pin: str = "auto") -> dict[str, Any]:
    """``gpu_plan`` with compute capabilities and the host's torch build, or turned into a refusal."""
    if not isinstance(gpu_plan, Mapping):
        raise AnsibleFilterError(f"torch_plan: sdfleet_gpu must be a dict (the gpu_plan result), not "
                                 f"{type(gpu_plan).__name__}. Fix: pass the gpu_plan result.")
    if not isinstance(pin, str) or not pin:
        raise AnsibleFilterError(f"sdfleet_torch_build (nvidia_check_torch_build) = {pin!r}: not a build name. "
                                 "Fix: set auto or a build such as cu121.")
    if isinstance(webui_version, bool) or not isinstance(webui_version, (str, int, float)):
        raise AnsibleFilterError(f"sdfleet_webui_version (nvidia_check_webui_version) = {webui_version!r}: not a git "
                                 f"ref. Fix: set a tag or commit, e.g. {table.DEFAULT_WEBUI_VERSION}.")
    gpus_in = gpu_plan.get("gpus") or []
    if not isinstance(gpus_in, (list, tuple)) or not all(isinstance(g, Mapping) for g in gpus_in):
        raise AnsibleFilterError("torch_plan: sdfleet_gpu.gpus is not a list of GPU records. Fix: pass the "
                                 "gpu_plan result unchanged.")
    plan = dict(gpu_plan)
    if plan.get("state") not in USABLE_STATES:
        return plan
    gpus = []
    for raw in plan.get("gpus") or []:
        gpu = dict(raw)
        gpu["compute_cap"], gpu["compute_cap_source"] = table.compute_cap_of(gpu.get("name") or "",
                                                                              gpu.get("compute_cap"))
        gpus.append(gpu)
    plan["gpus"] = gpus
    cpu = plan.get("tier") == "cpu"
    choice = table.choose_build([] if cpu else gpus, str(plan.get("driver_version") or ""),
                                listed_webui_version(webui_version), "auto" if cpu else pin)
    if choice["state"] != "ok":
        plan.update({"state": choice["state"], "message": choice["message"], "tier": None, "flags": []})
        return plan
    plan["torch"] = choice["torch"]
    _attention_fallback(plan)
    return plan


def _attention_fallback(plan: dict[str, Any]) -> None:
    """Swap ``--xformers`` for ``--opt-sdp-attention`` on GPUs the build's xformers has no kernels for (xformers
    0.0.30 has none for Maxwell); the plan's host flags follow when any GPU swapped."""
    xformers_flags = plan["torch"].get("xformers_arch_flags")
    if xformers_flags is None:
        return
    def sdp(flags: list[str]) -> list[str]:
        return ["--opt-sdp-attention" if f == "--xformers" else f for f in flags]

    swapped = False
    for gpu in plan["gpus"]:
        if "--xformers" in (gpu.get("flags") or []) and not table.build_runs(xformers_flags, gpu["compute_cap"]):
            gpu["flags"] = sdp(gpu["flags"])
            gpu["attention_note"] = (f"xformers {plan['torch']['xformers']} has no kernels for "
                                     f"sm_{gpu['compute_cap'].replace('.', '')}: SDP attention instead")
            swapped = True
    if swapped:
        plan["flags"] = sdp(plan.get("flags") or [])


def torch_index_url(build: str, cuda_url: str, cpu_url: str) -> str:
    """The index of ``build``: ``cpu_url`` for cpu, else ``cuda_url`` with ``{build}`` replaced."""
    for name, value in (("sdfleet_torch_build (webui_repo_torch_build)", build),
                        ("sdfleet_torch_index_url_cuda (webui_repo_torch_index_url_cuda)", cuda_url),
                        ("sdfleet_torch_index_url_cpu (webui_repo_torch_index_url_cpu)", cpu_url)):
        if not isinstance(value, str) or not value.strip():
            raise AnsibleFilterError(f"{name} = {redact_urls(value) if isinstance(value, str) else value!r}: empty or "
                                     "not a string. Fix: set it (an index URL, or a build such as cu121).")
    return cpu_url if build == table.CPU_BUILD else cuda_url.replace("{build}", build)


def torch_mirror_indexes(hosts: Sequence[str], hostvars: Mapping[str, Any], cuda_url: str,
                         cpu_url: str) -> dict[str, str]:
    """``{build: index URL}`` for every build the ``hosts`` chose (``sdfleet_gpu.torch.build``), and only those."""
    for name, value in (("sdfleet_torch_index_url_cuda", cuda_url), ("sdfleet_torch_index_url_cpu", cpu_url)):
        if not isinstance(value, str) or not value.strip():
            raise AnsibleFilterError(f"torch_mirror_indexes: {name} is empty or not a string. Fix: give the torch "
                                     "index URL.")
    if isinstance(hosts, (str, Mapping)) or not isinstance(hosts, (list, tuple)):
        raise AnsibleFilterError(f"torch_mirror_indexes: the hosts are a {type(hosts).__name__}, not a list. Fix: pass "
                                 "groups['webui_hosts'].")
    if not isinstance(hostvars, Mapping) and not hasattr(hostvars, "get"):
        raise AnsibleFilterError("torch_mirror_indexes: hostvars is not a mapping. Fix: pass hostvars.")
    builds = set()
    for host in hosts or []:
        gpu = (hostvars.get(host) or {}).get("sdfleet_gpu") or {}
        build = (gpu.get("torch") or {}).get("build") if isinstance(gpu, Mapping) else None
        if build:
            builds.add(str(build))
    return {build: torch_index_url(build, cuda_url, cpu_url) for build in sorted(builds)}


class FilterModule:
    """sdfleet.toolkit.torch_plan, torch_index_url and torch_mirror_indexes."""

    def filters(self) -> dict[str, Any]:
        """Filter name -> function."""
        return {"torch_plan": torch_plan, "torch_index_url": torch_index_url,
                "torch_mirror_indexes": torch_mirror_indexes}
