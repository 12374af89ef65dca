"""nvidia_gpu_facts: the module run as Ansible runs it (a subprocess with an args file), against the fake
nvidia-smi of molecule/_shared/fake_nvidia_smi replaying the real captures, plus smi.collect's call sequence.
"""
from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import pytest
from refusal_catalog import refused

from ansible_collections.sdfleet.toolkit.plugins.module_utils import nvidia_smi as smi

ROOT = pathlib.Path(__file__).resolve().parents[4]
CAPTURES = ROOT / "tests" / "fixtures" / "nvidia-smi"
MODULE = ROOT / "collections/ansible_collections/sdfleet/toolkit/plugins/modules/nvidia_gpu_facts.py"
FAKE = ROOT / "molecule/_shared/fake_nvidia_smi/nvidia-smi"


def run_module(tmp_path: pathlib.Path, config: dict | None, **args) -> dict:
    """Run the module with a fake nvidia-smi configured by ``config``; return its JSON result."""
    cfg = tmp_path / "fake.json"
    cfg.write_text(json.dumps(dict(config or {}, captures_dir=str(CAPTURES))), encoding="utf-8")
    args.setdefault("nvidia_smi", str(FAKE))
    argsfile = tmp_path / "args.json"
    argsfile.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": dict(args, _ansible_check_mode=True)}), encoding="utf-8")
    env = dict(os.environ, PYTHONPATH=str(ROOT / "collections"), FAKE_NVIDIA_SMI_CONFIG=str(cfg))
    done = subprocess.run([sys.executable, str(MODULE), str(argsfile)], capture_output=True, text=True, env=env,
                          check=False, timeout=60)
    result = json.loads(done.stdout)
    assert done.returncode == 0, result
    assert result["changed"] is False and not result.get("failed")
    return result


def test_csv_capture_mig(tmp_path):
    result = run_module(tmp_path, {"capture": "csv-h200-mig-allfields.txt"})
    assert result["state"] == "ok" and result["source"] == "query" and result["dropped_fields"] == []
    assert result["driver_version"] == "590.48.01"
    (gpu,) = result["gpus"]
    assert gpu == {"index": 0, "name": "NVIDIA H200", "memory_total_mib": 143771, "driver_version": "590.48.01",
                   "uuid": "GPU-00000000-0000-0000-0000-000000000000", "pci_bus_id": "00000000:83:00.0",
                   "compute_cap": "9.0", "mig_mode": "enabled", "name_truncated": False}


def test_old_driver_drops_compute_cap_and_retries(tmp_path):
    result = run_module(tmp_path, {"capture": "csv-rtx4080super-allfields.txt", "reject_fields": ["compute_cap"]})
    assert result["state"] == "ok" and result["dropped_fields"] == ["compute_cap"]
    assert result["gpus"][0]["compute_cap"] is None
    assert result["gpus"][0]["memory_total_mib"] == 16376


def test_table_fallback_when_query_unsupported(tmp_path):
    result = run_module(tmp_path, {"capture": "table-8x-h100-sxm-80gb.txt"})
    assert result["state"] == "ok" and result["source"] == "table"
    assert [g["memory_total_mib"] for g in result["gpus"]] == [81559] * 8
    assert result["driver_version"] == "565.57.01"


def test_gpu_list_as_data(tmp_path):
    result = run_module(tmp_path, {"driver_version": "450.57", "gpus": [
        {"name": "GeForce RTX 2070", "memory.total": 7981}, {"name": "GeForce GTX 750 Ti", "memory.total": 2002}]})
    assert [(g["index"], g["name"], g["memory_total_mib"]) for g in result["gpus"]] == [
        (0, "GeForce RTX 2070", 7981), (1, "GeForce GTX 750 Ti", 2002)]


ERRORS = [
    ("NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver. Make sure that the latest "
     "NVIDIA driver is installed and running.", 9, "driver_not_loaded"),
    ("Failed to initialize NVML: Driver/library version mismatch", 18, "driver_library_mismatch"),
    ("Failed to initialize NVML: Unknown Error", 255, "nvml_unknown_error"),
    ("NVIDIA-SMI couldn't find libnvidia-ml.so library in your system.", 12, "nvml_library_missing"),
    ("No devices were found", 6, "no_devices_found"),
    ("Unable to determine the device handle for GPU 0000:02:00.0: Unknown Error", 255, "device_handle_error"),
    ("Unable to determine the device handle for GPU 0000:3B:00.0: GPU is lost.  Reboot the system to recover "
     "this GPU", 15, "gpu_lost"),
]


@pytest.mark.parametrize("message,code,state", ERRORS, ids=[e[2] for e in ERRORS])
def test_error_states_are_returned_not_failed(tmp_path, message, code, state):
    result = run_module(tmp_path, {"error": {"message": message, "exit_code": code}})
    assert result["state"] == state
    assert result["raw_error"] == message
    assert result["message"] and result["gpus"] == []


def _sysfs(tmp_path: pathlib.Path, devices: dict[str, tuple[str, str]]) -> str:
    root = tmp_path / "pci"
    for name, (vendor, cls) in devices.items():
        (root / name).mkdir(parents=True)
        (root / name / "vendor").write_text(vendor + "\n")
        (root / name / "class").write_text(cls + "\n")
    return str(root)


def test_missing_nvidia_smi_with_nvidia_on_pci_is_driver_missing(tmp_path):
    pci = _sysfs(tmp_path, {"0000:00:02.0": ("0x8086", "0x030000"), "0000:01:00.0": ("0x10de", "0x030000")})
    result = run_module(tmp_path, None, nvidia_smi=str(tmp_path / "absent"), pci_devices_dir=pci)
    assert result["state"] == "driver_missing" and "not installed" in result["message"]


def test_missing_nvidia_smi_without_nvidia_is_no_device(tmp_path):
    pci = _sysfs(tmp_path, {"0000:00:02.0": ("0x8086", "0x030000")})
    result = run_module(tmp_path, None, nvidia_smi="no-such-nvidia-smi-here", pci_devices_dir=pci)
    assert result["state"] == "no_device"


def test_hung_nvidia_smi_is_timeout(tmp_path):
    hung = tmp_path / "hung-smi"
    hung.write_text("#!/bin/sh\nsleep 30\n")
    hung.chmod(0o755)
    result = run_module(tmp_path, None, nvidia_smi=str(hung), timeout=1)
    assert result["state"] == "timeout"


def _failed(tmp_path: pathlib.Path, **args) -> str:
    argsfile = tmp_path / "args.json"
    argsfile.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": args}))
    done = subprocess.run([sys.executable, str(MODULE), str(argsfile)], capture_output=True, text=True,
                          env=dict(os.environ, PYTHONPATH=str(ROOT / "collections")), check=False)
    result = json.loads(done.stdout)
    assert result.get("failed"), result
    return result["msg"]


def test_bad_timeout_fails(tmp_path):
    refused("nvidia_check", "nvidia_check_timeout", 0, _failed(tmp_path, timeout=0),
            expect=["timeout (nvidia_check_timeout) must be at least 1"])


@pytest.mark.parametrize("args,variable", [
    ({"timeout": -5}, "nvidia_check_timeout"),
    ({"timeout": "soon"}, "nvidia_check_timeout"),
    ({"timeout": [30]}, "nvidia_check_timeout"),
    ({"timeout": {"s": 30}}, "nvidia_check_timeout"),
    ({"nvidia_smi": ""}, "nvidia_check_nvidia_smi"),
    ({"nvidia_smi": "nvidia-smi\n--help"}, "nvidia_check_nvidia_smi"),
    ({"nvidia_smi": ["nvidia-smi"]}, "nvidia_check_nvidia_smi"),
    ({"no_such_option": 1}, "no_such_option"),
])
def test_options_of_the_wrong_type_name_the_variable(tmp_path, args, variable):
    message = _failed(tmp_path, **args)
    if variable.startswith("nvidia_check_"):
        refused("nvidia_check", variable, args, message)
    else:
        assert variable in message


class Recorder:
    """A run() for smi.collect answering from a list of (rc, stdout) and recording the argv."""

    def __init__(self, answers: list[tuple[int, str]]):
        self.answers = list(answers)
        self.calls: list[list[str]] = []

    def __call__(self, argv: list[str]) -> tuple[int, str, str]:
        self.calls.append(argv)
        rc, out = self.answers.pop(0)
        return rc, out, ""


def _no_pci():
    raise AssertionError("the PCI probe runs only when nvidia-smi is missing")


def test_collect_retries_each_rejected_field_then_falls_back_to_table():
    table = (CAPTURES / "table-tesla-t4-driver440.txt").read_text()
    run = Recorder([(2, 'Field "compute_cap" is not a valid field to query.\n'),
                    (2, 'Field "mig.mode.current" is not a valid field to query.\n'),
                    (2, "Invalid combination of input arguments.\n"),
                    (0, table)])
    facts = smi.collect(run, "/usr/bin/nvidia-smi", _no_pci)
    assert facts.state == "ok" and facts.source == "table"
    assert facts.dropped_fields == ["compute_cap", "mig.mode.current"]
    assert "compute_cap" not in run.calls[1][1] and "mig.mode.current" not in run.calls[2][1]
    assert run.calls[3] == ["/usr/bin/nvidia-smi"]
    assert facts.gpus[0].name == "Tesla T4" and facts.gpus[0].memory_total_mib == 15109


def test_collect_classified_failure_skips_the_table():
    run = Recorder([(9, "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver.\n")])
    facts = smi.collect(run, "/usr/bin/nvidia-smi", _no_pci)
    assert facts.state == "driver_not_loaded" and len(run.calls) == 1


def test_collect_unreadable_output_everywhere_is_parse_error():
    run = Recorder([(0, "garbage without commas\n"), (0, "garbage\n")])
    facts = smi.collect(run, "/usr/bin/nvidia-smi", _no_pci)
    assert facts.state == "parse_error" and "table fallback failed" in facts.message


# ---------------------------------------------------------------- the fake nvidia-smi itself

def fake(tmp_path: pathlib.Path, config: dict, *argv: str) -> subprocess.CompletedProcess:
    cfg = tmp_path / "fake.json"
    cfg.write_text(json.dumps(dict(config, captures_dir=str(CAPTURES))), encoding="utf-8")
    return subprocess.run([sys.executable, str(FAKE), *argv], capture_output=True, text=True, check=False,
                          env=dict(os.environ, FAKE_NVIDIA_SMI_CONFIG=str(cfg)))


def test_fake_selects_columns_by_name_with_header_and_units(tmp_path):
    done = fake(tmp_path, {"capture": "csv-h200-mig-allfields.txt"}, "--query-gpu=name,memory.total,mig.mode.current",
                "--format=csv")
    assert (done.returncode, done.stdout) == (0, "name, memory.total [MiB], mig.mode.current\n"
                                                 "NVIDIA H200, 143771 MiB, Enabled\n")


def test_fake_honours_order_noheader_nounits(tmp_path):
    done = fake(tmp_path, {"capture": "csv-h100-80gb-allfields.txt"}, "--query-gpu=memory.total,index,compute_cap",
                "--format=csv,noheader,nounits")
    assert (done.returncode, done.stdout) == (0, "81559, 0, 9.0\n")


def test_fake_rejects_fields_like_an_old_driver(tmp_path):
    done = fake(tmp_path, {"capture": "csv-h100-80gb-allfields.txt", "reject_fields": ["compute_cap"]},
                "--query-gpu=index,compute_cap", "--format=csv")
    assert done.returncode == 2 and done.stdout.startswith('Field "compute_cap" is not a valid field to query.')
    unknown = fake(tmp_path, {"capture": "csv-h100-80gb-allfields.txt"}, "--query-gpu=index,bogus", "--format=csv")
    assert unknown.returncode == 2 and 'Field "bogus"' in unknown.stdout


def test_fake_table_capture_prints_the_capture_and_refuses_queries(tmp_path):
    name = "table-2x-mixed-rtx2070-gtx750ti.txt"
    plain = fake(tmp_path, {"capture": name})
    assert plain.returncode == 0 and plain.stdout.rstrip("\n") == (CAPTURES / name).read_text().rstrip("\n")
    query = fake(tmp_path, {"capture": name}, "--query-gpu=index", "--format=csv")
    assert query.returncode == 2 and "Invalid combination" in query.stdout


def test_fake_query_unsupported_mode(tmp_path):
    done = fake(tmp_path, {"capture": "csv-h100-80gb-allfields.txt", "query_unsupported": True},
                "--query-gpu=index", "--format=csv")
    assert done.returncode == 2


def test_fake_gpu_data_with_units(tmp_path):
    done = fake(tmp_path, {"driver_version": "450.57", "gpus": [{"name": "GeForce RTX 2070", "memory.total": 7981}]},
                "--query-gpu=index,name,memory.total,driver_version,uuid", "--format=csv")
    assert done.stdout == ("index, name, memory.total [MiB], driver_version, uuid\n"
                           "0, GeForce RTX 2070, 7981 MiB, 450.57, [N/A]\n")


def test_fake_error_mode(tmp_path):
    done = fake(tmp_path, {"error": {"message": "No devices were found", "exit_code": 6}})
    assert (done.returncode, done.stdout) == (6, "No devices were found\n")


def test_fake_renders_a_table_for_gpu_data_that_the_parser_reads(tmp_path):
    """Plain nvidia-smi on a data config prints a 535+-layout table; the table parser reads it back."""
    config = {"driver_version": "450.57", "gpus": [
        {"name": "GeForce RTX 2070", "memory.total": 7981, "pci.bus_id": "00000000:01:00.0"},
        {"name": "NVIDIA GeForce RTX 4080 SUPER", "memory.total": 16376, "mig.mode.current": "Disabled"}]}
    done = fake(tmp_path, config)
    assert done.returncode == 0
    assert {len(line) for line in done.stdout.splitlines()} == {91}
    driver, gpus = smi.parse_table(done.stdout)
    assert driver == "450.57"
    assert [(g.index, g.name, g.memory_total_mib, g.mig_mode, g.name_truncated) for g in gpus] == [
        (0, "GeForce RTX 2070", 7981, None, False), (1, "NVIDIA GeForce RTX 4080 ...", 16376, "disabled", True)]


def test_module_falls_back_to_the_rendered_table(tmp_path):
    result = run_module(tmp_path, {"query_unsupported": True, "driver_version": "450.57",
                                   "gpus": [{"name": "GeForce GTX 750 Ti", "memory.total": 2002}]})
    assert result["source"] == "table" and result["gpus"][0]["memory_total_mib"] == 2002
