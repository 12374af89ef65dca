# -*- coding: utf-8 -*-
"""The GPU part of webui_service's health gate: does each GPU instance run on its GPU, and can it compute there?

``webui_gpu_problems(instances, memory_results, txt2img_results)``: one message per problem found in the answers of
``/sdapi/v1/memory`` (the CUDA memory torch sees on the instance's device 0: the whole card) and, when a checkpoint is
placed, of a 1-step 64x64 ``/sdapi/v1/txt2img``, each naming the instance, its GPU and the fix. Pure function.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

try:
    from ansible.errors import AnsibleFilterError
except ImportError:  # pure-Python use without Ansible installed
    AnsibleFilterError = ValueError  # type: ignore[misc,assignment]

DOCUMENTATION = r"""
name: webui_gpu_problems
short_description: What the webui's own answers say about each GPU instance's device
description:
  - Reads the registered results of C(/sdapi/v1/memory) and (optional) of a 1-step 64x64 C(/sdapi/v1/txt2img) per
    GPU instance of C(webui_plan) and returns one message per problem; an empty list means every GPU instance runs on
    the card whose VRAM chose its tier, sees CUDA, and computes.
  - CUDA memory that differs from the GPU's C(memory_total_mib) by more than C(tolerance) means CUDA numbered the
    cards otherwise than nvidia-smi (C(CUDA_VISIBLE_DEVICES) named another card).
positional: _input
options:
  _input:
    description: The instances of C(sdfleet.toolkit.webui_plan) (each with C(index), C(gpu), C(cuda_visible_devices)).
    type: list
    elements: dict
    required: true
  memory_results:
    description: The C(results) of the C(uri) loop over C(/sdapi/v1/memory) (C(item), C(status), C(json)).
    type: list
    elements: dict
    required: true
  txt2img_results:
    description: The C(results) of the C(uri) loop over C(/sdapi/v1/txt2img); empty when no checkpoint is placed.
    type: list
    elements: dict
    default: []
  tolerance:
    description: Allowed relative difference between the CUDA total and nvidia-smi's memory.total.
    type: float
    default: 0.03
"""

EXAMPLES = r"""
- name: Refuse a GPU instance that runs on another card
  ansible.builtin.assert:
    that: problems | length == 0
    fail_msg: "{{ problems | join(' ') }}"
  vars:
    problems: "{{ instances | sdfleet.toolkit.webui_gpu_problems(memory.results, txt2img.results) }}"
"""

RETURN = r"""
_value:
  description: One message per problem (empty when every GPU instance passed).
  type: list
  elements: str
"""

MIB = 1024 * 1024


def _label(instance: Mapping[str, Any]) -> str:
    gpu = instance.get("gpu") or {}
    return (f"instance {instance.get('index')} (GPU {gpu.get('index')} {gpu.get('name') or '?'}, "
            f"CUDA_VISIBLE_DEVICES={instance.get('cuda_visible_devices')})")


def _by_index(results: Sequence[Mapping[str, Any]]) -> dict[Any, Mapping[str, Any]]:
    out = {}
    for result in results or []:
        if not isinstance(result, Mapping) or result.get("skipped"):
            continue
        item = result.get("item") or {}
        out[item.get("index")] = result
    return out


def webui_gpu_problems(instances: Sequence[Mapping[str, Any]], memory_results: Sequence[Mapping[str, Any]],
                       txt2img_results: Sequence[Mapping[str, Any]] = (), tolerance: float = 0.03) -> list[str]:
    """Problems of the GPU instances, from the webui's answers (see the module docstring)."""
    if not isinstance(instances, Sequence) or isinstance(instances, str) \
            or not all(isinstance(i, Mapping) for i in instances):
        raise AnsibleFilterError("webui_gpu_problems: expected the instances of webui_plan (a list of dicts). "
                                 "Fix: pass __webui_service_instances.")
    for name, results in (("memory_results", memory_results), ("txt2img_results", txt2img_results)):
        if results is not None and (isinstance(results, (str, Mapping)) or not isinstance(results, Sequence)):
            raise AnsibleFilterError(f"webui_gpu_problems: {name} is a {type(results).__name__}, not a list. "
                                     "Fix: pass the registered loop's results (e.g. memory.results).")
    if isinstance(tolerance, bool) or not isinstance(tolerance, (int, float)) or not 0 <= tolerance < 1:
        raise AnsibleFilterError(f"webui_gpu_problems: tolerance = {tolerance!r} is not a fraction in 0..1. "
                                 "Fix: pass e.g. 0.03.")
    memory, txt2img = _by_index(memory_results), _by_index(txt2img_results)
    problems: list[str] = []
    for instance in instances:
        if not instance.get("cuda_visible_devices"):
            continue  # a CPU instance: nothing to check on a GPU
        label, gpu = _label(instance), instance.get("gpu") or {}
        answer = memory.get(instance.get("index"))
        if answer is None:
            continue
        if answer.get("status") != 200:
            problems.append(f"{label}: /sdapi/v1/memory answered HTTP {answer.get('status')} "
                            f"({answer.get('msg', '')}); the webui's API must answer for the GPU check.")
            continue
        cuda = (answer.get("json") or {}).get("cuda") or {}
        if "error" in cuda or "system" not in cuda:
            problems.append(f"{label}: the webui sees no CUDA device ({cuda.get('error', 'no answer')}). Check that "
                            "the service user can use the GPU (nvidia-smi, /dev/nvidia*), that the unit's "
                            "CUDA_VISIBLE_DEVICES names an existing GPU, and that torch is a CUDA build.")
            continue
        want = gpu.get("memory_total_mib")
        seen = int(cuda["system"].get("total", 0)) // MIB
        if isinstance(want, int) and want > 0 and abs(seen - want) > tolerance * want:
            problems.append(f"{label}: the webui runs on a card with {seen} MiB, but its tier was chosen for a "
                            f"{want} MiB card: CUDA numbered the GPUs otherwise than nvidia-smi. Name the GPU by "
                            "its UUID in CUDA_VISIBLE_DEVICES (or set CUDA_DEVICE_ORDER=PCI_BUS_ID).")
            continue
        done = txt2img.get(instance.get("index"))
        if done is None or done.get("status") == 200:
            continue
        body = done.get("json") or {}
        error = str(body.get("errors") or body.get("detail") or done.get("msg") or "")
        if "no kernel image" in error:
            cap = str(gpu.get("compute_cap") or "?").replace(".", "")
            problems.append(f"{label}: a 1-step 64x64 txt2img failed: {error}. The installed torch has no kernels "
                            f"for this GPU (sm_{cap}): rerun site.yml so that nvidia_check picks the build "
                            "(nvidia_check_torch_build: auto), or fix a pinned webui_repo_torch_build.")
        else:
            problems.append(f"{label}: a 1-step 64x64 txt2img failed (HTTP {done.get('status')}): {error}")
    return problems


class FilterModule:
    """sdfleet.toolkit.webui_gpu_problems."""

    def filters(self) -> dict[str, Any]:
        """Filter name -> function."""
        return {"webui_gpu_problems": webui_gpu_problems}
