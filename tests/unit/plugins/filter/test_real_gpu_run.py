"""The GPU layer reproduces, without a GPU, what it published on a real H100 (tests/fixtures/nvidia-smi-device)."""
from __future__ import annotations

import json
import pathlib

import pytest
import yaml

from ansible_collections.sdfleet.toolkit.plugins.filter import gpu_tier as gt
from ansible_collections.sdfleet.toolkit.plugins.module_utils import nvidia_smi as smi

ROOT = pathlib.Path(__file__).resolve().parents[4]
RUN = ROOT / "tests" / "fixtures" / "nvidia-smi-device"
DEFAULTS = yaml.safe_load((ROOT / "roles/nvidia_check/defaults/main.yml").read_text(encoding="utf-8"))
RECORDED = json.loads((RUN / "sdfleet_gpu.json").read_text(encoding="utf-8"))


def _plan(facts: dict) -> dict:
    return gt.gpu_plan(facts, DEFAULTS["nvidia_check_tier_table"], DEFAULTS["nvidia_check_quirks"],
                       attention=DEFAULTS["nvidia_check_attention"], pin=DEFAULTS["nvidia_check_tier"],
                       allow_cpu_fallback=DEFAULTS["nvidia_check_allow_cpu_fallback"],
                       cpu_flags=DEFAULTS["nvidia_check_cpu_flags"])


def test_module_query_reproduces_the_published_fact() -> None:
    gpus = smi.parse_query_csv((RUN / "query-h100-80gb-hbm3-driver580.csv").read_text(), smi.QUERY_FIELDS)
    facts = smi.Facts(smi.STATE_OK, gpus=gpus, driver_version=gpus[0].driver_version).as_dict()
    assert _plan(facts) == RECORDED


@pytest.mark.parametrize("field", ["name", "memory_total_mib", "pci_bus_id"])
def test_table_agrees_with_the_query(field: str) -> None:
    driver, gpus = smi.parse_table((RUN / "table-h100-80gb-hbm3-driver580.txt").read_text())
    assert driver == RECORDED["driver_version"]
    assert [getattr(g, field) for g in gpus] == [g[field] for g in RECORDED["gpus"]]
