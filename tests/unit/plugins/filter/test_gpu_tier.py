"""gpu_tier filters: tiers from VRAM with the role's default tables, quirks, pins, fallbacks, refusals,
and the capture -> tier -> flags table of roles/nvidia_check/README.md (regenerate it with
``PYTHONPATH=collections .venv/bin/python tests/unit/plugins/filter/test_gpu_tier.py``).
"""
from __future__ import annotations

import pathlib
import sys

import pytest
import yaml
from refusal_catalog import refused

from ansible_collections.sdfleet.toolkit.plugins.filter import gpu_tier as gt
from ansible_collections.sdfleet.toolkit.plugins.module_utils import nvidia_smi as smi

ROOT = pathlib.Path(__file__).resolve().parents[4]
CAPTURES = ROOT / "tests" / "fixtures" / "nvidia-smi"
DEFAULTS = yaml.safe_load((ROOT / "roles/nvidia_check/defaults/main.yml").read_text(encoding="utf-8"))
TABLE = DEFAULTS["nvidia_check_tier_table"]
QUIRKS = DEFAULTS["nvidia_check_quirks"]
CPU = DEFAULTS["nvidia_check_cpu_flags"]
README = ROOT / "roles/nvidia_check/README.md"


def plan(facts: dict, **kwargs) -> dict:
    kwargs.setdefault("cpu_flags", CPU)
    return gt.gpu_plan(facts, TABLE, QUIRKS, **kwargs)


def facts_of(gpus: list[smi.Gpu], driver: str | None = "550.54.14") -> dict:
    return smi.Facts(smi.STATE_OK, gpus=gpus, driver_version=driver).as_dict()


def one(name: str, mib: int | None, mig: str | None = None) -> dict:
    return facts_of([smi.Gpu(index=0, name=name, memory_total_mib=mib, mig_mode=mig)])


# What real cards report (MiB) -> tier with the default table.
@pytest.mark.parametrize("mib,tier", [
    (1024, None), (1899, None),
    (1900, "lowvram"), (2002, "lowvram"), (2004, "lowvram"), (2048, "lowvram"), (3019, "lowvram"),
    (3911, "medvram"), (4096, "medvram"), (5934, "medvram"), (6144, "medvram"),
    (7500, "medvram_sdxl"), (7981, "medvram_sdxl"), (7982, "medvram_sdxl"), (8192, "medvram_sdxl"),
    (11019, "medvram_sdxl"), (11178, "medvram_sdxl"),
    (12045, "full"), (12288, "full"), (15109, "full"), (16130, "full"), (16380, "full"),
    (24268, "full"), (24576, "full"), (81559, "full"), (143771, "full"),
    (None, None),
])
def test_tier_of_reported_memory(mib, tier):
    assert gt.gpu_tier(mib, TABLE) == tier


@pytest.mark.parametrize("name,upcast", [
    ("GeForce GTX 1080 Ti", True), ("GeForce GTX 108...", True), ("NVIDIA GeForce GTX 1660 SUPER", True),
    ("NVIDIA GeForce GTX 1650", True), ("GeForce GTX 750 Ti", True), ("GeForce GTX 980", True),
    ("GeForce RTX 2070", False), ("NVIDIA GeForce RTX 2080 ...", False), ("NVIDIA GeForce ...", False),
    ("Tesla T4", False), ("NVIDIA H100 80GB HBM3", False), ("GeForce GTX 650", False),
])
def test_quirks(name, upcast):
    assert (gt.quirk_flags(name, QUIRKS) == ["--upcast-sampling"]) is upcast


@pytest.mark.parametrize("attention,flag", [("xformers", ["--xformers"]), ("sdp", ["--opt-sdp-attention"]),
                                            ("none", [])])
def test_attention_variable(attention, flag):
    got = plan(one("NVIDIA GeForce RTX 3060", 12288), attention=attention)
    assert got["gpus"][0]["flags"] == flag
    assert got["tier"] == "full" and got["state"] == "ok"


def test_flags_order_tier_attention_quirk():
    got = plan(one("GeForce GTX 750 Ti", 2002))
    assert got["gpus"][0]["flags"] == ["--lowvram", "--xformers", "--upcast-sampling"]


def test_record_matches_the_contract():
    got = plan(facts_of([smi.Gpu(0, "GeForce RTX 2070", 7981, "450.57", "GPU-1", "00000000:01:00.0", "7.5", None)],
                        "450.57"))
    assert set(got) == {"state", "message", "driver_version", "tier", "flags", "gpus"}
    assert got["gpus"] == [{"index": 0, "name": "GeForce RTX 2070", "memory_total_mib": 7981,
                            "driver_version": "450.57", "uuid": "GPU-1", "pci_bus_id": "00000000:01:00.0",
                            "compute_cap": "7.5", "mig_mode": None, "tier": "medvram_sdxl",
                            "flags": ["--medvram-sdxl", "--xformers"]}]


def test_host_tier_is_the_lowest():
    got = plan(facts_of([smi.Gpu(0, "GeForce RTX 2070", 7981), smi.Gpu(1, "GeForce GTX 750 Ti", 2002)]))
    assert [g["tier"] for g in got["gpus"]] == ["medvram_sdxl", "lowvram"]
    assert got["tier"] == "lowvram" and got["flags"] == ["--lowvram", "--xformers", "--upcast-sampling"]


def test_too_small_is_refused_naming_the_fix():
    got = plan(one("GeForce GT 710", 978))
    assert got["state"] == "vram_too_small" and got["tier"] is None and got["gpus"] == []
    assert "978 MiB" in got["message"] and "nvidia_check_allow_cpu_fallback" in got["message"]


def test_too_small_falls_back_to_cpu_when_allowed():
    got = plan(one("GeForce GT 710", 978), allow_cpu_fallback=True)
    assert got["state"] == "cpu" and got["tier"] == "cpu" and got["flags"] == CPU and got["gpus"] == []


def test_mig_is_refused_unless_pinned():
    got = plan(one("NVIDIA H200", 143771, "enabled"))
    assert got["state"] == "mig_enabled" and "-mig 0" in got["message"] and "nvidia_check_tier" in got["message"]
    assert plan(one("NVIDIA H200", 143771, "enabled"), allow_cpu_fallback=True)["state"] == "mig_enabled"
    pinned = plan(one("NVIDIA H200", 143771, "enabled"), pin="medvram_sdxl")
    assert pinned["state"] == "ok" and pinned["gpus"][0]["flags"] == ["--medvram-sdxl", "--xformers"]
    assert "pinned" in pinned["message"]


def test_unknown_vram_is_refused_unless_pinned():
    got = plan(one("NVIDIA GB10", None))
    assert got["state"] == "vram_unknown" and "nvidia_check_tier" in got["message"]
    assert plan(one("NVIDIA GB10", None), pin="full")["gpus"][0]["tier"] == "full"


def test_pin_cpu_needs_no_gpu():
    broken = smi.Facts(smi.STATE_DRIVER_NOT_LOADED, "driver not loaded").as_dict()
    got = plan(broken, pin="cpu")
    assert got["state"] == "cpu" and got["flags"] == CPU and got["tier"] == "cpu"
    assert plan(one("NVIDIA L4", 23034), pin="cpu")["gpus"] == []


def test_driver_failure_refused_or_cpu():
    broken = smi.Facts(smi.STATE_DRIVER_MISMATCH, "Reboot the host.").as_dict()
    got = plan(broken)
    assert got["state"] == "driver_library_mismatch" and "Reboot the host." in got["message"]
    assert "nvidia_check_tier: cpu" in got["message"]
    assert plan(broken, pin="full")["state"] == "driver_library_mismatch"  # a pin does not fix a driver
    fallback = plan(broken, allow_cpu_fallback=True)
    assert fallback["state"] == "cpu" and "driver_library_mismatch" in fallback["message"]


def test_cpu_advice_is_given_once():
    """no_device's refusal names the CPU variables once (the module states the fact, gpu_plan the CPU way out)."""
    missing = smi.classify_missing(False)
    got = plan(smi.Facts(missing.state, missing.message).as_dict())
    assert got["state"] == "no_device"
    assert got["message"].count("nvidia_check_tier: cpu") == 1


def _raised(*args, **kwargs) -> str:
    with pytest.raises(ValueError) as err:
        gt.gpu_plan(*args, **kwargs)
    return str(err.value)


@pytest.mark.parametrize("kwargs,variable", [
    ({"attention": "flash"}, "nvidia_check_attention"),
    ({"attention": ["sdp"]}, "nvidia_check_attention"),
    ({"attention": None}, "nvidia_check_attention"),
    ({"pin": "huge"}, "nvidia_check_tier"),
    ({"pin": ["full"]}, "nvidia_check_tier"),
    ({"pin": 8}, "nvidia_check_tier"),
    ({"allow_cpu_fallback": "maybe"}, "nvidia_check_allow_cpu_fallback"),
    ({"allow_cpu_fallback": [True]}, "nvidia_check_allow_cpu_fallback"),
    ({"cpu_flags": "--use-cpu all"}, "nvidia_check_cpu_flags"),
    ({"cpu_flags": [True]}, "nvidia_check_cpu_flags"),
    ({"cpu_flags": {"--use-cpu": "all"}}, "nvidia_check_cpu_flags"),
])
def test_bad_variables_raise(kwargs, variable):
    refused("nvidia_check", variable, kwargs, _raised(one("Tesla T4", 15109), TABLE, QUIRKS, **kwargs))


@pytest.mark.parametrize("table", [[{"tier": "giant", "min_mib": 1}], [{"tier": "full", "min_mib": "lots"}],
                                   [{"tier": "full", "min_mib": -1}], [{"tier": "full", "min_mib": True}],
                                   [{"tier": "full", "min_mib": 0, "flags": "--xformers"}],
                                   [{"tier": "full", "min_mib": 0, "flags": [1]}], ["full"],
                                   {"full": 11000}, "full", None])
def test_bad_tier_tables_raise(table):
    refused("nvidia_check", "nvidia_check_tier_table", table, _raised(one("Tesla T4", 15109), table, QUIRKS))


@pytest.mark.parametrize("quirks", [[{"match": "(", "flags": []}], [{"flags": ["--no-half"]}], [{"match": 5}],
                                    [{"match": "T4", "flags": "--no-half"}], {"match": "T4"}, "T4", None])
def test_bad_quirks_raise(quirks):
    refused("nvidia_check", "nvidia_check_quirks", quirks, _raised(one("Tesla T4", 15109), TABLE, quirks))


def test_a_pinned_tier_without_a_row_raises():
    refused("nvidia_check", "nvidia_check_tier", {"pin": "lowvram", "tier_table": "full row only"},
            _raised(one("Tesla T4", 15109), TABLE[:1], QUIRKS, pin="lowvram"), expect=["has no row"])


@pytest.mark.parametrize("facts", [["ok"], "ok", {"state": "ok", "gpus": "GPU 0"}, {"state": "ok", "gpus": ["GPU 0"]}])
def test_facts_of_the_wrong_shape_raise(facts):
    assert "nvidia_gpu_facts" in _raised(facts, TABLE, QUIRKS)


@pytest.mark.parametrize("memory", ["8 GiB", [8192], True])
def test_gpu_tier_refuses_a_memory_that_is_not_a_number(memory):
    with pytest.raises(ValueError, match="memory_total_mib"):
        gt.gpu_tier(memory, TABLE)


def test_filter_module_raises_ansible_errors():
    from ansible.errors import AnsibleFilterError
    filters = gt.FilterModule().filters()
    assert filters["gpu_tier"](8192, TABLE) == "medvram_sdxl"
    with pytest.raises(AnsibleFilterError, match="nvidia_check_attention"):
        filters["gpu_plan"](one("Tesla T4", 15109), TABLE, QUIRKS, attention="x")


# ---------------------------------------------------------------- every capture

def capture_plan(name: str) -> dict:
    text = (CAPTURES / name).read_text(encoding="utf-8")
    try:
        if name.startswith("table-"):
            driver, gpus = smi.parse_table(text)
        else:
            gpus = smi.parse_query_csv(text)
            driver = gpus[0].driver_version
        facts = facts_of(gpus, driver)
    except smi.ParseError as exc:
        facts = smi.Facts(smi.STATE_PARSE_ERROR, str(exc)).as_dict()
    return plan(facts)


UPCAST_SDXL = ["--medvram-sdxl", "--xformers", "--upcast-sampling"]
CAPTURE_TIERS = {  # file -> (host state, host tier, per-GPU flags)
    "csv-4x-a10-loop-partial.txt": ("parse_error", None, []),
    "csv-h100-80gb-allfields.txt": ("ok", "full", [["--xformers"]]),
    "csv-h200-mig-allfields.txt": ("mig_enabled", None, []),
    "csv-rtx4080super-allfields.txt": ("ok", "full", [["--xformers"]]),
    "table-2x-a100-pcie-40gb.txt": ("ok", "full", [["--xformers"]] * 2),
    "table-2x-gtx1080ti-docker-noprocs.txt": ("ok", "medvram_sdxl", [UPCAST_SDXL] * 2),
    "table-2x-mixed-rtx2070-gtx750ti.txt": ("ok", "lowvram", [["--medvram-sdxl", "--xformers"],
                                                               ["--lowvram", "--xformers", "--upcast-sampling"]]),
    "table-2x-rtx3090-driver560.txt": ("ok", "full", [["--xformers"]] * 2),
    "table-2x-rtx4060ti-16gb.txt": ("ok", "full", [["--xformers"]] * 2),
    "table-4x-a100-sxm4-80gb.txt": ("ok", "full", [["--xformers"]] * 4),
    "table-4x-v100-sxm2-16gb.txt": ("ok", "full", [["--xformers"]] * 4),
    "table-8x-a100-sxm4-40gb-mig.txt": ("mig_enabled", None, []),
    "table-8x-gtx1080ti.txt": ("ok", "medvram_sdxl", [UPCAST_SDXL] * 8),
    "table-8x-h100-sxm-80gb.txt": ("ok", "full", [["--xformers"]] * 8),
    "table-8x-rtx4090.txt": ("ok", "full", [["--xformers"]] * 8),
    "table-a100-80gb-pcie-driver535.txt": ("ok", "full", [["--xformers"]]),
    "table-h100-80gb-hbm3.txt": ("ok", "full", [["--xformers"]]),
    "table-h100-mig.txt": ("mig_enabled", None, []),
    "table-h200-mig.txt": ("mig_enabled", None, []),
    "table-l4.txt": ("ok", "full", [["--xformers"]]),
    "table-l40s.txt": ("ok", "full", [["--xformers"]]),
    "table-rtx2080super-driver470-truncated-name.txt": ("ok", "medvram_sdxl", [["--medvram-sdxl", "--xformers"]]),
    "table-rtx2080super-driver610-kmd.txt": ("ok", "medvram_sdxl", [["--medvram-sdxl", "--xformers"]]),
    "table-rtx2080super-windows-wddm.txt": ("ok", "medvram_sdxl", [["--medvram-sdxl", "--xformers"]]),
    "table-rtx3090-driver460.txt": ("ok", "full", [["--xformers"]]),
    "table-rtx4080super.txt": ("ok", "full", [["--xformers"]]),
    "table-tesla-t4-driver440.txt": ("ok", "full", [["--xformers"]]),
}


def test_every_capture_is_in_the_matrix():
    assert {p.name for p in CAPTURES.glob("*.txt")} == set(CAPTURE_TIERS)


@pytest.mark.parametrize("name", sorted(CAPTURE_TIERS))
def test_capture_tier(name):
    got = capture_plan(name)
    state, tier, flags = CAPTURE_TIERS[name]
    assert (got["state"], got["tier"], [g["flags"] for g in got["gpus"]]) == (state, tier, flags)


def _groups(items: list) -> list[tuple[object, int]]:
    """[(item, how many in a row)] preserving order."""
    out: list[tuple[object, int]] = []
    for item in items:
        if out and out[-1][0] == item:
            out[-1] = (item, out[-1][1] + 1)
        else:
            out.append((item, 1))
    return out


def readme_table() -> str:
    """The capture -> tier -> flags table (default variables: tier auto, attention xformers, no CPU fallback)."""
    lines = ["| Capture | GPUs (MiB) | State | Host tier | Flags per GPU |", "|---|---|---|---|---|"]
    for name in sorted(CAPTURE_TIERS):
        got = capture_plan(name)
        text = (CAPTURES / name).read_text(encoding="utf-8")
        try:
            gpus = smi.parse_table(text)[1] if name.startswith("table-") else smi.parse_query_csv(text)
            summary = ", ".join(f"{n}x " * (n > 1) + f"{gpu_name} ({mib})"
                                for (gpu_name, mib), n in _groups([(g.name, g.memory_total_mib) for g in gpus]))
        except smi.ParseError:
            summary = "(no index/name columns)"
        flags = "; ".join(f"{n}x " * (n > 1) + f"`{' '.join(f)}`"
                          for f, n in _groups([tuple(g["flags"]) for g in got["gpus"]])) or "-"
        lines.append(f"| `{name}` | {summary} | {got['state']} | {got['tier'] or '-'} | {flags} |")
    return "\n".join(lines) + "\n"


def test_readme_table_is_current():
    assert readme_table() in README.read_text(encoding="utf-8"), (
        "roles/nvidia_check/README.md: regenerate the capture table with "
        "`PYTHONPATH=collections .venv/bin/python tests/unit/plugins/filter/test_gpu_tier.py`")


if __name__ == "__main__":  # PYTHONPATH=collections .venv/bin/python tests/unit/plugins/filter/test_gpu_tier.py
    sys.stdout.write(readme_table())
