"""webui_gpu_problems: the GPU part of webui_service's health gate, over answers shaped like the real webui's."""
from __future__ import annotations

import pytest

from ansible_collections.sdfleet.toolkit.plugins.filter import webui_health as mod

MIB = 1024 * 1024
RTX2070 = {"index": 0, "name": "NVIDIA GeForce RTX 2070", "memory_total_mib": 7981, "compute_cap": "7.5"}
A100 = {"index": 1, "name": "NVIDIA A100-SXM4-40GB", "memory_total_mib": 40960, "compute_cap": "8.0"}
INSTANCES = [{"index": 0, "port": 27860, "cuda_visible_devices": "GPU-2070", "gpu": RTX2070},
             {"index": 1, "port": 27861, "cuda_visible_devices": "GPU-a100", "gpu": A100}]


def memory(instance: dict, total_mib: int | None = None, error: str | None = None, status: int = 200) -> dict:
    """A registered uri result of /sdapi/v1/memory, as the real webui's get_memory answers."""
    cuda = {"error": error} if error else {"system": {"free": 0, "used": 0, "total": (total_mib or 0) * MIB}}
    return {"item": instance, "status": status, "json": {"ram": {}, "cuda": cuda} if status == 200 else None,
            "msg": "OK" if status == 200 else "Status code was 404"}


def txt2img(instance: dict, status: int = 200, errors: str = "") -> dict:
    body = {"images": []} if status == 200 else {"error": "RuntimeError", "detail": "", "body": "", "errors": errors}
    return {"item": instance, "status": status, "json": body}


def test_instances_on_their_own_gpus_pass():
    answers = [memory(INSTANCES[0], 7981), memory(INSTANCES[1], 40960)]
    assert mod.webui_gpu_problems(INSTANCES, answers, [txt2img(i) for i in INSTANCES]) == []


def test_an_instance_on_the_other_card_is_caught():
    """CUDA_VISIBLE_DEVICES=0 in CUDA's fastest-first order: instance 0 lands on the A100."""
    problems = mod.webui_gpu_problems(INSTANCES, [memory(INSTANCES[0], 40960), memory(INSTANCES[1], 40960)])
    assert len(problems) == 1
    assert problems[0].startswith("instance 0 (GPU 0 NVIDIA GeForce RTX 2070, CUDA_VISIBLE_DEVICES=GPU-2070)")
    assert "40960 MiB" in problems[0] and "7981 MiB" in problems[0] and "UUID" in problems[0]


def test_what_torch_reports_may_differ_a_little_from_nvidia_smi():
    assert mod.webui_gpu_problems(INSTANCES[:1], [memory(INSTANCES[0], 7800)]) == []


def test_no_cuda_is_caught_with_the_fix():
    problems = mod.webui_gpu_problems(INSTANCES[:1], [memory(INSTANCES[0], error="unavailable")])
    assert "sees no CUDA device (unavailable)" in problems[0] and "CUDA_VISIBLE_DEVICES" in problems[0]


def test_no_kernel_image_is_caught_with_the_fix():
    failed = txt2img(INSTANCES[0], 500, "CUDA error: no kernel image is available for execution on the device")
    problems = mod.webui_gpu_problems(INSTANCES[:1], [memory(INSTANCES[0], 7981)], [failed])
    assert "no kernel image" in problems[0] and "sm_75" in problems[0] and "nvidia_check_torch_build" in problems[0]


def test_another_txt2img_failure_is_reported_as_is():
    failed = txt2img(INSTANCES[0], 500, "OutOfMemoryError: CUDA out of memory")
    assert mod.webui_gpu_problems(INSTANCES[:1], [memory(INSTANCES[0], 7981)], [failed]) == [
        "instance 0 (GPU 0 NVIDIA GeForce RTX 2070, CUDA_VISIBLE_DEVICES=GPU-2070): a 1-step 64x64 txt2img failed "
        "(HTTP 500): OutOfMemoryError: CUDA out of memory"]


def test_an_api_error_is_reported():
    problems = mod.webui_gpu_problems(INSTANCES[:1], [memory(INSTANCES[0], status=404)])
    assert "HTTP 404" in problems[0]


def test_cpu_instances_and_skipped_answers_are_not_checked():
    cpu = {"index": 0, "port": 7860, "cuda_visible_devices": "", "gpu": {"tier": "cpu"}}
    assert mod.webui_gpu_problems([cpu], [{"item": cpu, "skipped": True}]) == []


@pytest.mark.parametrize("instances", ["instance-0", {"index": 0}, ["instance-0"], None])
def test_wrong_input_names_what_it_expected(instances):
    with pytest.raises(Exception, match="instances of webui_plan"):
        mod.webui_gpu_problems(instances, [])


@pytest.mark.parametrize("kwargs,needle", [({"memory_results": "200 OK"}, "memory_results is a str"),
                                           ({"memory_results": {"results": []}}, "memory_results is a dict"),
                                           ({"txt2img_results": 5}, "txt2img_results is a int"),
                                           ({"tolerance": "3%"}, "tolerance"), ({"tolerance": 3}, "tolerance")])
def test_results_of_the_wrong_type_name_the_option(kwargs, needle):
    args = {"memory_results": [], **kwargs}
    with pytest.raises(Exception, match=needle):
        mod.webui_gpu_problems(INSTANCES, **args)
