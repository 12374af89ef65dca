"""nvidia_smi module_utils: the parser over every real capture, and failure classification.

The captures live in ``tests/fixtures/nvidia-smi/`` (copied from the shared reference)
(INDEX.md there lists the GPU names and MiB per GPU asserted below).
"""
from __future__ import annotations

import pathlib

import pytest

from ansible_collections.sdfleet.toolkit.plugins.module_utils import nvidia_smi as smi

ROOT = pathlib.Path(__file__).resolve().parents[4]
CAPTURES = ROOT / "tests" / "fixtures" / "nvidia-smi"

# file -> (driver version or None for csv, [(name as printed, MiB, mig_mode)] in index order)
A100_40_MIG = [("A100-SXM4-40GB", 40537, "disabled")] + [("A100-SXM4-40GB", 40537, "enabled")] * 7
EXPECTED: dict[str, tuple[str | None, list[tuple[str, int, str | None]]]] = {
    "csv-h100-80gb-allfields.txt": ("590.48.01", [("NVIDIA H100 80GB HBM3", 81559, "disabled")]),
    "csv-h200-mig-allfields.txt": ("590.48.01", [("NVIDIA H200", 143771, "enabled")]),
    "csv-rtx4080super-allfields.txt": ("595.71.05", [("NVIDIA GeForce RTX 4080 SUPER", 16376, None)]),
    "table-2x-a100-pcie-40gb.txt": ("455.32.00", [("A100-PCIE-40GB", 40536, "disabled")] * 2),
    "table-2x-gtx1080ti-docker-noprocs.txt": ("440.82", [("GeForce GTX 108...", 11175, None),
                                                         ("GeForce GTX 108...", 11178, None)]),
    "table-2x-mixed-rtx2070-gtx750ti.txt": ("450.57", [("GeForce RTX 2070", 7981, None),
                                                       ("GeForce GTX 750 Ti", 2002, None)]),
    "table-2x-rtx3090-driver560.txt": ("560.35.03", [("NVIDIA GeForce RTX 3090", 24576, None)] * 2),
    "table-2x-rtx4060ti-16gb.txt": ("550.54.14", [("NVIDIA GeForce RTX 4060 Ti", 16380, None)] * 2),
    "table-4x-a100-sxm4-80gb.txt": ("555.42.02", [("NVIDIA A100-SXM4-80GB", 81920, "disabled")] * 4),
    "table-4x-v100-sxm2-16gb.txt": ("418.67", [("Tesla V100-SXM2...", 16130, None)] * 4),
    "table-8x-a100-sxm4-40gb-mig.txt": ("450.80.02", A100_40_MIG),
    "table-8x-gtx1080ti.txt": ("390.25", [("GeForce GTX 108...", 11178, None)] * 8),
    "table-8x-h100-sxm-80gb.txt": ("565.57.01", [("NVIDIA H100 80GB HBM3", 81559, "disabled")] * 8),
    "table-8x-rtx4090.txt": ("550.127.05", [("NVIDIA GeForce RTX 4090", 24564, None)] * 8),
    "table-a100-80gb-pcie-driver535.txt": ("535.54.03", [("NVIDIA A100 80GB PCIe", 81920, "disabled")]),
    "table-h100-80gb-hbm3.txt": ("590.48.01", [("NVIDIA H100 80GB HBM3", 81559, "disabled")]),
    "table-h100-mig.txt": ("590.48.01", [("NVIDIA H100 80GB HBM3", 81559, "enabled")]),
    "table-h200-mig.txt": ("590.48.01", [("NVIDIA H200", 143771, "enabled")]),
    "table-l4.txt": ("550.90.07", [("NVIDIA L4", 23034, None)]),
    "table-l40s.txt": ("595.80", [("NVIDIA L40S", 46068, None)]),
    "table-rtx2080super-driver470-truncated-name.txt": ("470.103.01", [("NVIDIA GeForce ...", 7982, None)]),
    "table-rtx2080super-driver610-kmd.txt": ("610.57.04", [("NVIDIA GeForce RTX 2080 ...", 8192, None)]),
    "table-rtx2080super-windows-wddm.txt": ("591.86", [("NVIDIA GeForce RTX 2080 ...", 8192, None)]),
    "table-rtx3090-driver460.txt": ("460.39", [("GeForce RTX 3090", 24268, None)]),
    "table-rtx4080super.txt": ("595.71.05", [("NVIDIA GeForce RTX 4080 ...", 16376, None)]),
    "table-tesla-t4-driver440.txt": ("440.64.00", [("Tesla T4", 15109, None)]),
}
PARTIAL = "csv-4x-a10-loop-partial.txt"


def _read(name: str) -> str:
    return (CAPTURES / name).read_text(encoding="utf-8")


def parse_capture(name: str) -> tuple[str | None, list[smi.Gpu]]:
    """(driver version, GPUs) of one capture, with the parser its kind calls for."""
    text = _read(name)
    if name.startswith("table-"):
        return smi.parse_table(text)
    gpus = smi.parse_query_csv(text)
    return gpus[0].driver_version, gpus


def test_every_capture_has_an_expectation():
    on_disk = {p.name for p in CAPTURES.glob("*.txt")}
    assert len(on_disk) == 27, f"expected the 27 captures of INDEX.md in {CAPTURES}, found {len(on_disk)}"
    assert on_disk == set(EXPECTED) | {PARTIAL}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_capture_parses_to_expected_gpus(name):
    driver, gpus = parse_capture(name)
    want_driver, want = EXPECTED[name]
    assert driver == want_driver
    assert [g.index for g in gpus] == list(range(len(want)))
    assert [(g.name, g.memory_total_mib, g.mig_mode) for g in gpus] == want
    assert all(g.driver_version == want_driver for g in gpus)
    assert all(g.pci_bus_id and g.pci_bus_id.count(":") == 2 for g in gpus)


@pytest.mark.parametrize("name", sorted(n for n in EXPECTED if n.startswith("table-")))
def test_table_flags_truncated_names_and_has_no_uuid(name):
    _driver, gpus = smi.parse_table(_read(name))
    for gpu in gpus:
        assert gpu.name_truncated == gpu.name.endswith("...")
        assert gpu.uuid is None and gpu.compute_cap is None


def test_truncated_names_are_flagged():
    _driver, gpus = smi.parse_table(_read("table-8x-gtx1080ti.txt"))
    assert all(g.name_truncated for g in gpus)
    _driver, gpus = smi.parse_table(_read("table-tesla-t4-driver440.txt"))
    assert not gpus[0].name_truncated


def test_allfields_csv_reads_uuid_bus_and_compute_cap():
    gpus = smi.parse_query_csv(_read("csv-h100-80gb-allfields.txt"))
    assert gpus[0].uuid == "GPU-00000000-0000-0000-0000-000000000000"
    assert gpus[0].pci_bus_id == "00000000:00:09.0"
    assert gpus[0].compute_cap == "9.0"
    rtx = smi.parse_query_csv(_read("csv-rtx4080super-allfields.txt"))[0]
    assert rtx.compute_cap == "8.9" and rtx.mig_mode is None  # [N/A] on GeForce


def test_partial_loop_capture_is_refused_but_readable():
    """The looping capture has no index/name columns: the GPU parser refuses it, naming the columns.

    The lenient reader still reads its memory.total column (23028 MiB, one A10, in all five rows).
    """
    text = _read(PARTIAL)
    with pytest.raises(smi.ParseError, match="lacks the columns index, name"):
        smi.parse_query_csv(text)
    rows = smi.read_csv(text)
    assert len(rows) == 5
    assert {smi.parse_mib(r["memory.total"]) for r in rows} == {23028}


@pytest.mark.parametrize("name", ["csv-h100-80gb-allfields.txt", "csv-h200-mig-allfields.txt",
                                  "csv-rtx4080super-allfields.txt"])
def test_noheader_nounits_projection_matches_allfields(name):
    """The module's own query (noheader, nounits, our field order) parses like the full capture."""
    full = smi.read_csv(_read(name))[0]
    line = ", ".join((full[f] or "[N/A]").removesuffix(" MiB") for f in smi.QUERY_FIELDS)
    assert smi.parse_query_csv(line + "\n", smi.QUERY_FIELDS) == smi.parse_query_csv(_read(name))


def test_query_without_optional_fields():
    fields = [f for f in smi.QUERY_FIELDS if f not in ("compute_cap", "mig.mode.current")]
    text = "0, GeForce GTX 1080 Ti, 11178, 470.82.01, GPU-abc, 00000000:01:00.0\n" \
           "1, GeForce GTX 750 Ti, 2002, 470.82.01, GPU-def, 00000000:04:00.0\n"
    gpus = smi.parse_query_csv(text, fields)
    assert [(g.index, g.name, g.memory_total_mib, g.compute_cap, g.mig_mode) for g in gpus] == [
        (0, "GeForce GTX 1080 Ti", 11178, None, None), (1, "GeForce GTX 750 Ti", 2002, None, None)]


def test_unknown_memory_is_none():
    gpus = smi.parse_query_csv("0, NVIDIA GB10, [N/A], 580.95.05, GPU-x, 0000000F:01:00.0, 12.1, [N/A]\n",
                               smi.QUERY_FIELDS)
    assert gpus[0].memory_total_mib is None and gpus[0].name == "NVIDIA GB10"


@pytest.mark.parametrize("raw,want", [("[N/A]", None), ("[Not Supported]", None), ("N/A", None), ("", None),
                                      (" 8.6 ", "8.6")])
def test_clean_value(raw, want):
    assert smi.clean_value(raw) == want


def test_bad_memory_value_raises():
    with pytest.raises(smi.ParseError):
        smi.parse_mib("lots")


def test_row_with_wrong_cell_count_raises():
    with pytest.raises(smi.ParseError, match="has 2 cells"):
        smi.parse_query_csv("0, GPU\n", smi.QUERY_FIELDS)


def test_empty_output_raises():
    with pytest.raises(smi.ParseError, match="no GPU rows"):
        smi.parse_query_csv("\n", smi.QUERY_FIELDS)


def test_garbage_is_not_a_table():
    with pytest.raises(smi.ParseError):
        smi.parse_table("Segmentation fault\n")


def test_unsupported_field_is_named():
    out = 'Field "compute_cap" is not a valid field to query.\n\n'
    assert smi.unsupported_field(out) == "compute_cap"
    assert smi.unsupported_field("No devices were found") is None


def test_query_command():
    assert smi.query_command("/usr/bin/nvidia-smi", ["index", "name"]) == [
        "/usr/bin/nvidia-smi", "--query-gpu=index,name", "--format=csv,noheader,nounits"]


# Real messages (exact wording as printed by nvidia-smi) -> state, and a word the remediation must carry.
FAILURES = [
    (9, "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver. Make sure that the latest "
        "NVIDIA driver is installed and running.\n", smi.STATE_DRIVER_NOT_LOADED, "kernel driver"),
    (18, "Failed to initialize NVML: Driver/library version mismatch\n", smi.STATE_DRIVER_MISMATCH,
     "nvidia_check_reboot_on_mismatch"),
    (18, "Failed to initialize NVML: Driver/library version mismatch\nNVML library version: 535.183\n",
     smi.STATE_DRIVER_MISMATCH, "upgraded"),
    (255, "Failed to initialize NVML: Unknown Error\n", smi.STATE_NVML_UNKNOWN, "restart the container"),
    (12, "NVIDIA-SMI couldn't find libnvidia-ml.so library in your system. Please make sure that the NVIDIA Display "
         "Driver is properly installed and present in your system.\nPlease also try adding directory that contains "
         "libnvidia-ml.so to your system PATH.\n", smi.STATE_NVML_LIB_MISSING, "Reinstall"),
    (6, "No devices were found\n", smi.STATE_NO_DEVICES_FOUND, "vfio"),
    (255, "Unable to determine the device handle for GPU 0000:02:00.0: Unknown Error\n", smi.STATE_DEVICE_HANDLE,
     "Reboot"),
    (15, "Unable to determine the device handle for GPU0000:3B:00.0: GPU is lost.  Reboot the system to recover "
         "this GPU\n", smi.STATE_GPU_LOST, "Xid 79"),
    (3, "Some new message\nsecond line\n", smi.STATE_QUERY_FAILED, "exit code 3: Some new message"),
]


@pytest.mark.parametrize("rc,output,state,hint", FAILURES, ids=[f[2] + str(i) for i, f in enumerate(FAILURES)])
def test_failures_are_classified(rc, output, state, hint):
    failure = smi.classify_failure(rc, output)
    assert failure.state == state
    assert hint in failure.message
    assert "Traceback" not in failure.message


def test_failure_states_are_distinct():
    states = {smi.classify_failure(rc, out).state for rc, out, _s, _h in FAILURES}
    assert len(states) == 8


@pytest.mark.parametrize("on_pci,state,hint", [(False, smi.STATE_NO_DEVICE, "No NVIDIA GPU"),
                                               (True, smi.STATE_DRIVER_MISSING, "driver is not installed"),
                                               (None, smi.STATE_DRIVER_MISSING, "could not be inspected")])
def test_missing_nvidia_smi(on_pci, state, hint):
    failure = smi.classify_missing(on_pci)
    assert failure.state == state and hint in failure.message


def test_sysfs_detection_ignores_other_vendors_and_the_audio_function():
    assert smi.nvidia_on_sysfs([("0x8086", "0x030000"), ("0x10de", "0x030200")])
    assert not smi.nvidia_on_sysfs([("0x8086", "0x030000"), ("0x10de", "0x040300")])  # HDMI audio only
    assert not smi.nvidia_on_sysfs([])


def test_lspci_detection():
    assert smi.nvidia_on_lspci("01:00.0 0300: 10de:1f02 (rev a1)\n01:00.1 0403: 10de:10f9 (rev a1)\n")
    assert smi.nvidia_on_lspci("3b:00.0 0302: 10de:2330 (rev a1)\n")
    assert not smi.nvidia_on_lspci("00:02.0 0300: 8086:3e92\n01:00.1 0403: 10de:10f9 (rev a1)\n")
