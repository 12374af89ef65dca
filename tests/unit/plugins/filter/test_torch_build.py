"""The torch compatibility table and the per-host build choice (filter torch_plan, module_utils/torch_builds.py).

GPU records come from real nvidia-smi captures (tests/fixtures/nvidia-smi) where one exists; B200 (sm_100) and
RTX 5090 (sm_120) have no capture here: their records are MADE from NVIDIA's published values (name as nvidia-smi
prints it, VRAM from the product pages, compute capability from developer.nvidia.com/cuda-gpus) and say so.
"""
from __future__ import annotations

import json
import pathlib
import re
import tarfile

import pytest
import yaml
from refusal_catalog import refused

from ansible_collections.sdfleet.toolkit.plugins.filter import gpu_tier as gt
from ansible_collections.sdfleet.toolkit.plugins.filter import torch_build as tb
from ansible_collections.sdfleet.toolkit.plugins.module_utils import nvidia_smi as smi
from ansible_collections.sdfleet.toolkit.plugins.module_utils import torch_builds as table

ROOT = pathlib.Path(__file__).resolve().parents[4]
CAPTURES = ROOT / "tests" / "fixtures" / "nvidia-smi"
TORCH_CAPTURES = ROOT / "tests" / "fixtures" / "torch"
UPSTREAM = ROOT.parent / "shared" / "upstream"
DEFAULTS = yaml.safe_load((ROOT / "roles/nvidia_check/defaults/main.yml").read_text(encoding="utf-8"))
DRIVER = "570.86.15"


def captured(name: str, index: int = 0) -> dict:
    """One GPU of a real capture, as nvidia_gpu_facts reports it."""
    text = (CAPTURES / name).read_text(encoding="utf-8")
    gpus = smi.parse_table(text)[1] if name.startswith("table-") else smi.parse_query_csv(text)
    return gpus[index].as_dict() if hasattr(gpus[index], "as_dict") else dict(vars(gpus[index]))


def device_run() -> dict:
    """The H100 of the real GPU run (tests/fixtures/nvidia-smi-device: a lent machine, driver 580.159.04)."""
    text = (ROOT / "tests/fixtures/nvidia-smi-device/query-h100-80gb-hbm3-driver580.csv").read_text(encoding="utf-8")
    return smi.parse_query_csv(text, smi.QUERY_FIELDS)[0].as_dict()


def made(name: str, mib: int, cap: str) -> dict:
    """A GPU record MADE from NVIDIA's published values (no capture of this card exists here)."""
    return {"index": 0, "name": name, "memory_total_mib": mib, "driver_version": DRIVER, "uuid": None,
            "pci_bus_id": "00000000:01:00.0", "compute_cap": cap, "mig_mode": None}


def host(*gpus: dict, driver: str = DRIVER) -> dict:
    """The sdfleet_gpu plan of a host with these GPUs (default tables of the nvidia_check role)."""
    records = [dict(g, index=i) for i, g in enumerate(gpus)]
    facts = {"state": "ok", "driver_version": driver, "gpus": records}
    return gt.gpu_plan(facts, DEFAULTS["nvidia_check_tier_table"], DEFAULTS["nvidia_check_quirks"],
                       cpu_flags=DEFAULTS["nvidia_check_cpu_flags"])


# sm -> (record, capability expected from it). Real captures first.
CARDS = {
    "sm_50": (lambda: captured("table-2x-mixed-rtx2070-gtx750ti.txt", 1), "5.0"),   # GeForce GTX 750 Ti
    "sm_61": (lambda: captured("table-2x-gtx1080ti-docker-noprocs.txt"), "6.1"),     # GeForce GTX 1080 Ti
    "sm_75": (lambda: captured("table-tesla-t4-driver440.txt"), "7.5"),              # Tesla T4
    "sm_86": (lambda: captured("table-2x-rtx3090-driver560.txt"), "8.6"),            # RTX 3090
    "sm_89": (lambda: captured("csv-rtx4080super-allfields.txt"), "8.9"),            # RTX 4080 SUPER (reported)
    "sm_90": (device_run, "9.0"),                                                     # H100, a real device run
    "sm_100": (lambda: made("NVIDIA B200", 183359, "10.0"), "10.0"),                 # MADE: no capture
    "sm_120": (lambda: made("NVIDIA GeForce RTX 5090", 32607, "12.0"), "12.0"),      # MADE: no capture
}

# sm -> (v1.10.1's choice, dev's choice): a build, or the refusal state.
EXPECTED = {
    "sm_50": ("cu121", "cu126"),
    "sm_61": ("cu121", "cu126"),
    "sm_75": ("cu121", "cu128"),
    "sm_86": ("cu121", "cu128"),
    "sm_89": ("cu121", "cu128"),
    "sm_90": ("cu121", "cu128"),
    "sm_100": ("torch_build_unsupported", "cu128"),
    "sm_120": ("torch_build_unsupported", "cu128"),
}


def test_the_real_h100_run_with_its_own_driver():
    """The device run's own driver (580.159.04, CUDA 13.0) and UUID: cu121 for v1.10.1, cu128 for dev."""
    gpu = device_run()
    plans = {v: tb.torch_plan(host(gpu, driver=gpu["driver_version"]), v) for v in ("v1.10.1", "dev")}
    assert {v: p["torch"]["build"] for v, p in plans.items()} == {"v1.10.1": "cu121", "dev": "cu128"}
    assert plans["dev"]["gpus"][0]["uuid"] == "GPU-2f339f61-6bf7-2e57-c0b3-05f02d35191e"


@pytest.mark.parametrize("sm", sorted(CARDS, key=lambda s: int(s[3:])))
def test_compute_capability_of_each_generation(sm):
    record, cap = CARDS[sm]
    gpu = record()
    assert table.compute_cap_of(gpu["name"] or "", gpu.get("compute_cap"))[0] == cap


@pytest.mark.parametrize("version,column", [("v1.10.1", 0), ("dev", 1)])
@pytest.mark.parametrize("sm", sorted(CARDS, key=lambda s: int(s[3:])))
def test_each_generation_gets_its_build_or_a_refusal(sm, version, column):
    record, _ = CARDS[sm]
    gpu = dict(record(), driver_version=DRIVER)
    result = tb.torch_plan(host(gpu), version)
    expected = EXPECTED[sm][column]
    if expected.startswith("cu"):
        assert result["state"] == "ok", result["message"]
        assert result["torch"]["build"] == expected
        assert result["torch"]["torch"] == table.WEBUI_TORCH[version]["torch"]
        assert result["gpus"][0]["compute_cap"] == CARDS[sm][1]
    else:
        assert result["state"] == expected
        assert result["tier"] is None and result["flags"] == []


def test_blackwell_on_v1101_is_refused_with_the_move_to_dev():
    result = tb.torch_plan(host(made("NVIDIA GeForce RTX 5090", 32607, "12.0")), "v1.10.1")
    assert result["state"] == "torch_build_unsupported"
    message = result["message"]
    assert "sm_120" in message and "no kernels" in message
    assert "sdfleet_webui_version (webui_repo_version) to dev" in message


def test_a_host_that_needs_two_builds_is_refused_with_the_fix():
    """GTX 1080 Ti (only cu126 of dev) + RTX 5090 (only cu128 of dev): no single build."""
    result = tb.torch_plan(host(CARDS["sm_61"][0](), made("NVIDIA GeForce RTX 5090", 32607, "12.0")), "dev")
    assert result["state"] == "torch_build_unsupported"
    assert "no single build runs them all" in result["message"]
    assert "separate hosts" in result["message"]


def test_a_mixed_host_one_build_can_serve_gets_it():
    """RTX 2070 + GTX 750 Ti on dev: cu128 lacks sm_50, cu126 has both."""
    result = tb.torch_plan(host(captured("table-2x-mixed-rtx2070-gtx750ti.txt", 0),
                                captured("table-2x-mixed-rtx2070-gtx750ti.txt", 1)), "dev")
    assert result["state"] == "ok" and result["torch"]["build"] == "cu126"


def test_maxwell_on_dev_gets_sdp_attention_because_xformers_030_has_no_sm50_kernels():
    mixed = host(captured("table-2x-mixed-rtx2070-gtx750ti.txt", 0), captured("table-2x-mixed-rtx2070-gtx750ti.txt", 1))
    assert "--xformers" in mixed["gpus"][1]["flags"]
    result = tb.torch_plan(mixed, "dev")
    assert result["gpus"][0]["flags"].count("--xformers") == 1           # RTX 2070: sm_75, xformers has it
    assert "--xformers" not in result["gpus"][1]["flags"]                # GTX 750 Ti: sm_50
    assert "--opt-sdp-attention" in result["gpus"][1]["flags"]
    assert "--xformers" not in result["flags"]
    # v1.10.1's xformers 0.0.23.post1 has 5.0+PTX: the 750 Ti keeps xformers there
    assert "--xformers" in tb.torch_plan(mixed, "v1.10.1")["gpus"][1]["flags"]


@pytest.mark.parametrize("arch,flags", [("5.0+PTX 6.0 9.0a", ["sm_50", "compute_50", "sm_60", "sm_90"]),
                                        ("7.5;8.0", ["sm_75", "sm_80"])])
def test_arch_lists_read_as_flags(arch, flags):
    assert table.arch_list_flags(arch) == flags


def test_captured_xformers_arch_lists_are_the_tables():
    for capture in TORCH_CAPTURES.glob("*.json"):
        data = json.loads(capture.read_text(encoding="utf-8"))
        version, build = data["torch"].split("+")
        assert table.BUILDS[(version, build)]["xformers_arch"] == data["xformers"]["torch_cuda_arch_list"]


def test_a_pinned_build_that_cannot_run_the_gpu_is_refused_naming_the_variable():
    result = tb.torch_plan(host(CARDS["sm_61"][0]()), "dev", pin="cu128")
    assert result["state"] == "torch_build_unsupported"
    assert result["message"].startswith("nvidia_check_torch_build: torch 2.7.0+cu128 cannot run this host")
    assert "GPU 0 (GeForce GTX 108..., sm_61) has no kernels" in result["message"]  # the name as nvidia-smi cut it


def test_a_pinned_build_the_version_does_not_have_is_refused():
    result = tb.torch_plan(host(CARDS["sm_86"][0]()), "v1.10.1", pin="cu128")
    assert result["state"] == "torch_build_unknown"
    assert "nvidia_check_torch_build: 'cu128' is not a CUDA build of torch 2.1.2" in result["message"]


def test_a_pinned_build_that_runs_is_used():
    result = tb.torch_plan(host(CARDS["sm_90"][0]()), "dev", pin="cu126")
    assert result["state"] == "ok" and result["torch"]["build"] == "cu126"


def test_an_old_driver_is_refused_with_the_upgrade():
    gpu = captured("table-2x-rtx3090-driver560.txt")
    result = tb.torch_plan(host(gpu, driver="470.82.01"), "v1.10.1")
    assert result["state"] == "driver_too_old"
    assert "470.82.01" in result["message"] and "525.60.13" in result["message"]


def test_an_unknown_card_without_compute_cap_is_refused():
    result = tb.torch_plan(host(made("NVIDIA Mystery Card", 16000, None)), "v1.10.1")
    assert result["state"] == "compute_cap_unknown"
    assert "nvidia_check_torch_build" in result["message"]


def test_the_cpu_tier_keeps_its_own_build():
    facts = {"state": "ok", "driver_version": DRIVER, "gpus": [CARDS["sm_120"][0]()]}
    plan = gt.gpu_plan(facts, DEFAULTS["nvidia_check_tier_table"], DEFAULTS["nvidia_check_quirks"], pin="cpu",
                       cpu_flags=DEFAULTS["nvidia_check_cpu_flags"])
    result = tb.torch_plan(plan, "v1.10.1")
    assert result["state"] == "cpu" and result["torch"]["build"] == "cpu"
    assert result["torch"]["xformers"] == ""


def test_a_refused_gpu_plan_passes_through_unchanged():
    refused = {"state": "driver_missing", "message": "m", "tier": None, "flags": [], "gpus": []}
    assert tb.torch_plan(refused, "dev") == refused


def test_a_commit_of_a_listed_version_gets_its_row():
    from ansible_collections.sdfleet.toolkit.plugins.module_utils import webui_flags
    commit = webui_flags.SOURCES["dev"]["commit"][:10]
    result = tb.torch_plan(host(CARDS["sm_120"][0]()), commit)
    assert result["state"] == "ok" and result["torch"]["torch"] == "2.7.0"


def _raised(call, *args, **kwargs) -> str:
    with pytest.raises(Exception) as err:
        call(*args, **kwargs)
    return str(err.value)


@pytest.mark.parametrize("pin", [["cu121"], "", None, 121, {"build": "cu121"}])
def test_wrong_types_name_the_variable(pin):
    refused("nvidia_check", "nvidia_check_torch_build", pin,
            _raised(tb.torch_plan, host(CARDS["sm_86"][0]()), "v1.10.1", pin=pin), expect=["sdfleet_torch_build"])


@pytest.mark.parametrize("version", [["v1.10.1"], {"tag": "v1.10.1"}, True])
def test_a_webui_version_that_is_not_a_ref_names_the_variable(version):
    refused("nvidia_check", "nvidia_check_webui_version", version,
            _raised(tb.torch_plan, host(CARDS["sm_86"][0]()), version), expect=["sdfleet_webui_version"])


@pytest.mark.parametrize("plan", ["ok", ["ok"], {"state": "ok", "gpus": "GPU 0"}, {"state": "ok", "gpus": [1]}])
def test_a_plan_that_is_not_the_gpu_plan_is_refused(plan):
    assert "sdfleet_gpu" in _raised(tb.torch_plan, plan, "v1.10.1")


@pytest.mark.parametrize("args,variable", [
    (("", "https://download.pytorch.org/whl/{build}", "https://download.pytorch.org/whl/cpu"), "webui_repo_torch_build"),
    (("cu121", ["https://x/{build}"], "https://download.pytorch.org/whl/cpu"), "webui_repo_torch_index_url_cuda"),
    (("cu121", "https://download.pytorch.org/whl/{build}", None), "webui_repo_torch_index_url_cpu"),
    (("cu121", "", "https://download.pytorch.org/whl/cpu"), "webui_repo_torch_index_url_cuda"),
])
def test_index_url_arguments_of_the_wrong_type_name_the_variable(args, variable):
    refused("webui_repo", variable, list(args), _raised(tb.torch_index_url, *args))


@pytest.mark.parametrize("hosts", ["gpu1", {"gpu1": {}}, None, 5])
def test_mirror_indexes_refuse_hosts_that_are_not_a_list(hosts):
    assert "not a list" in _raised(tb.torch_mirror_indexes, hosts, {}, "https://x/{build}", "https://x/cpu")


@pytest.mark.parametrize("flags,cap,runs", [
    (["sm_86"], "8.9", True),     # same major, higher minor: binary compatible
    (["sm_86"], "8.0", False),    # lower minor: not
    (["sm_90"], "10.0", False),   # another major: never
    (["compute_90"], "12.0", True),  # PTX is compiled by the driver for any newer GPU
    (["sm_120", "compute_120"], "9.0", False),
])
def test_kernel_compatibility_rule(flags, cap, runs):
    assert table.build_runs(flags, cap) is runs


def test_mirror_downloads_only_the_builds_the_fleet_chose():
    hostvars = {"a": {"sdfleet_gpu": {"torch": {"build": "cu128"}}}, "b": {"sdfleet_gpu": {"torch": {"build": "cu126"}}},
                "c": {"sdfleet_gpu": {"torch": {"build": "cu128"}}}, "d": {"sdfleet_failure": {}}}
    assert tb.torch_mirror_indexes(["a", "b", "c", "d"], hostvars, "http://up/whl/{build}/", "http://up/whl/cpu/") == {
        "cu126": "http://up/whl/cu126/", "cu128": "http://up/whl/cu128/"}
    hostvars["e"] = {"sdfleet_gpu": {"torch": {"build": "cpu"}}}
    # an index without {build} (the real-webui fixture's /simple/) serves every build
    assert tb.torch_mirror_indexes(["e", "a"], hostvars, "http://f/simple/", "http://f/simple/") == {
        "cpu": "http://f/simple/", "cu128": "http://f/simple/"}


@pytest.mark.parametrize("capture", sorted(p.name for p in TORCH_CAPTURES.glob("*.json")))
def test_captured_arch_lists_are_the_tables(capture):
    """The table's arch lists of captured wheels are what the wheels themselves say (scripts/torch_arch_capture.py)."""
    data = json.loads((TORCH_CAPTURES / capture).read_text(encoding="utf-8"))
    version, build = data["torch"].split("+")
    row = table.BUILDS[(version, build)]
    assert row["captured"] == f"tests/fixtures/torch/{capture}"
    assert row["arch_flags"] == data["arch_flags"] and row["cuda"] == data["cuda"]


def test_every_captured_row_has_its_capture():
    for (version, build), row in table.BUILDS.items():
        if row["captured"]:
            assert (ROOT / row["captured"]).is_file(), f"{version}+{build}: {row['captured']} missing"


@pytest.mark.skipif(not UPSTREAM.is_dir(), reason="../shared/upstream (the real webui trees) is not beside the repo")
@pytest.mark.parametrize("version", sorted(table.WEBUI_TORCH))
def test_the_table_pins_are_each_versions_own(version):
    """Pins, first build and xformers of each row are the version's launch_utils.py defaults."""
    with tarfile.open(UPSTREAM / f"stable-diffusion-webui-{version}.tar.gz") as archive:
        member = next(m for m in archive.getmembers() if m.name.endswith("modules/launch_utils.py"))
        text = archive.extractfile(member).read().decode("utf-8")
    row = table.WEBUI_TORCH[version]
    index = re.search(r"TORCH_INDEX_URL', \"https://download.pytorch.org/whl/(\w+)\"", text).group(1)
    command = re.search(r"TORCH_COMMAND', f\"pip install (torch==\S+) (torchvision==\S+)", text)
    xformers = re.search(r"XFORMERS_PACKAGE', '(xformers==\S+)'", text).group(1)
    assert row["builds"][0] == index
    assert (f"torch=={row['torch']}", f"torchvision=={row['torchvision']}") == command.groups()
    assert f"xformers=={row['xformers']}" == xformers
