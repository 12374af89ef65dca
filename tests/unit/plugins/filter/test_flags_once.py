"""A tier's flags are decided once (nvidia_check's tables) and reach the unit unchanged.

Customises nvidia_check_tier_table, nvidia_check_quirks and nvidia_check_cpu_flags, runs the GPU plan through the
same filters the roles chain (gpu_plan -> torch_plan -> webui_plan), and renders webui_service's real drop-in
template: the customised flags are in ExecStart, and nothing of a table of webui_service's own is.
"""
from __future__ import annotations

import pathlib

import jinja2
import yaml

from ansible_collections.sdfleet.toolkit.plugins.filter import gpu_tier, torch_build, webui_args

ROOT = pathlib.Path(__file__).resolve().parents[4]
DROP_IN = ROOT / "roles/webui_service/templates/etc/systemd/system/sd-webui@.service.d/10-instance.conf.j2"
DEFAULTS = yaml.safe_load((ROOT / "roles/nvidia_check/defaults/main.yml").read_text(encoding="utf-8"))

# A studio's own tiers: 8 GB cards run full with channels-last; under 8 GB medvram plus a VAE flag.
CUSTOM_TABLE = [{"tier": "full", "min_mib": 7500, "flags": ["--opt-channelslast"]},
                {"tier": "medvram", "min_mib": 1900, "flags": ["--medvram", "--no-half-vae"]}]
CUSTOM_CPU = ["--use-cpu", "all", "--precision", "full", "--no-half", "--skip-torch-cuda-test", "--disable-nan-check"]
FACTS = {"state": "ok", "driver_version": "535.183.01", "gpus": [
    {"index": 0, "name": "GeForce RTX 2070", "memory_total_mib": 7981, "compute_cap": "7.5",
     "uuid": "GPU-2070aaaa-0000-4000-8000-000000000000"},
    {"index": 1, "name": "GeForce GTX 750 Ti", "memory_total_mib": 2002, "compute_cap": "5.0",
     "uuid": "GPU-750bbbbb-0000-4000-8000-000000000001"}]}


def render(instance: dict) -> str:
    env = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    env.filters.update({"comment": lambda text: f"# {text}", "bool": bool,
                        "sdfleet.toolkit.webui_systemd_argv": webui_args.webui_systemd_argv})
    return env.from_string(DROP_IN.read_text(encoding="utf-8")).render(
        item=instance, ansible_managed="test", __webui_service_log_to_file=False,
        __webui_service_venv="/opt/sd-webui/venv", webui_service_log_dir="/var/log/sd-webui")


def exec_start(text: str) -> str:
    return [line for line in text.splitlines() if line.startswith("ExecStart=") and line != "ExecStart="][0]


def plan(facts: dict, **kwargs) -> list[dict]:
    gpu_plan = gpu_tier.gpu_plan(facts, CUSTOM_TABLE, [], attention="none", cpu_flags=CUSTOM_CPU, **kwargs)
    return webui_args.webui_plan(torch_build.torch_plan(gpu_plan, "v1.10.1"), 27860)


def test_a_customised_tier_table_reaches_the_unit():
    first, second = (render(instance) for instance in plan(FACTS))
    assert exec_start(first).endswith("launch.py --opt-channelslast --no-download-sd-model "
                                      "--data-dir /var/lib/sd-webui/instance-0 --port 27860")
    assert "--medvram --no-half-vae" in exec_start(second)
    # the role's former tables would have added --medvram-sdxl (8 GB) or --lowvram (2 GB): neither is there
    assert "--medvram-sdxl" not in first + second and "--lowvram" not in first + second
    assert "Environment=CUDA_VISIBLE_DEVICES=GPU-2070aaaa-0000-4000-8000-000000000000" in first
    assert "Environment=CUDA_DEVICE_ORDER=PCI_BUS_ID" in second


def test_customised_cpu_flags_reach_the_unit():
    (instance,) = plan(FACTS, pin="cpu")
    text = render(instance)
    assert "launch.py --use-cpu all --precision full --no-half --skip-torch-cuda-test --disable-nan-check" in \
        exec_start(text)
    assert "CUDA_VISIBLE_DEVICES" not in text


def test_the_default_tables_give_the_wiki_flags():
    gpu_plan = gpu_tier.gpu_plan(FACTS, DEFAULTS["nvidia_check_tier_table"], DEFAULTS["nvidia_check_quirks"],
                                 cpu_flags=DEFAULTS["nvidia_check_cpu_flags"])
    first, second = (exec_start(render(i)) for i in webui_args.webui_plan(torch_build.torch_plan(gpu_plan), 7860))
    assert "--medvram-sdxl --xformers" in first and "--lowvram --xformers --upcast-sampling" in second
