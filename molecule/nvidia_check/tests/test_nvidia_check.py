"""nvidia_check on fake-nvidia-smi hosts: the published sdfleet_gpu per host, and nothing else changed."""
import json

import pytest


def _published(host):
    return json.loads(host.file("/var/tmp/sdfleet_gpu.json").content_string)


def _expected(host):
    return host.ansible.get_variables()["expected"]


def test_sdfleet_gpu_state_and_tier_as_expected(host):
    got, want = _published(host)["sdfleet_gpu"], _expected(host)
    assert (got["state"], got["tier"]) == (want["state"], want["tier"])
    assert set(got) == {"state", "message", "driver_version", "tier", "flags", "gpus", "torch"}


def test_sdfleet_gpu_torch_build_as_expected(host):
    got, want = _published(host)["sdfleet_gpu"]["torch"], _expected(host)
    assert got["build"] == want["torch_build"]
    assert got["packages"] == [f"torch=={got['torch']}", f"torchvision=={got['torchvision']}"]


def test_sdfleet_gpu_records_as_expected(host):
    got, want = _published(host)["sdfleet_gpu"]["gpus"], _expected(host)["gpus"]
    assert [g["index"] for g in got] == list(range(len(want)))
    for record, expected in zip(got, want):
        assert {key: record[key] for key in expected} == expected
        assert set(record) == {"index", "name", "memory_total_mib", "driver_version", "uuid", "pci_bus_id",
                               "compute_cap", "compute_cap_source", "mig_mode", "tier", "flags"}


def test_sdfleet_gpu_source_and_retries(host):
    published, name = _published(host), host.backend.get_hostname()
    if name == "nvidia-check-h100x8":
        assert published["source"] == "table" and published["sdfleet_gpu"]["driver_version"] == "565.57.01"
    elif name == "nvidia-check-2gb":  # compute_cap [N/A]: the name table's
        assert published["dropped_fields"] == [] and published["source"] == "query"
        assert [g["compute_cap_source"] for g in published["sdfleet_gpu"]["gpus"]] == ["name table"]
    elif name == "nvidia-check-cpupin":
        assert published["sdfleet_gpu"]["flags"] == ["--use-cpu", "all", "--precision", "full", "--no-half",
                                                     "--skip-torch-cuda-test"]
    else:
        assert published["source"] == "query" and published["dropped_fields"] == []


@pytest.mark.parametrize("tree", ["/etc", "/opt", "/usr", "/var/lib", "/var/tmp"])
def test_role_changed_nothing_on_the_host(host, tree):
    """Nothing under these trees is newer than prepare's marker except the test's own report file."""
    cmd = host.run(f"find {tree} -xdev -mindepth 1 -newer /var/tmp/sdfleet-prepared ! -path /var/tmp/sdfleet_gpu.json "
                   "! -path /var/tmp/sdfleet-prepared -print")
    assert cmd.rc == 0, cmd.stderr
    assert cmd.stdout.strip() == ""
