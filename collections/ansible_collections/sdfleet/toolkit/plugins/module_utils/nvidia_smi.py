# -*- coding: utf-8 -*-
"""Parse ``nvidia-smi`` output and classify its failures (pure Python, no Ansible).

Three inputs are understood:

* the CSV of ``nvidia-smi --query-gpu=<fields> --format=csv[,noheader][,nounits]``
  (with or without a header line, with or without ``MiB`` units);
* the default table that plain ``nvidia-smi`` prints (the fallback for drivers
  whose ``--query-gpu`` fails), from the 390-era 79-column layout to the
  535+/"KMD Version" 89-column layout, including Windows WDDM and MIG boxes;
* the text and exit code of a failed run, mapped to one of the ``STATE_*``
  names below with a remediation message.
"""
from __future__ import annotations

import csv
import dataclasses
import io
import re
from typing import Iterable, Optional, Sequence

# The fields we ask for, in this order. compute_cap (driver 510+) and
# mig.mode.current (450+) are rejected by older drivers with exit code 2:
# the caller drops the named field and asks again.
QUERY_FIELDS: tuple[str, ...] = (
    "index", "name", "memory.total", "driver_version", "uuid", "pci.bus_id", "compute_cap", "mig.mode.current",
)
OPTIONAL_FIELDS: frozenset[str] = frozenset({"compute_cap", "mig.mode.current", "uuid", "pci.bus_id", "driver_version"})
REQUIRED_FIELDS: tuple[str, ...] = ("index", "name", "memory.total")

# Failure states (the public names that end up in sdfleet_gpu.state).
STATE_OK = "ok"
STATE_NO_DEVICE = "no_device"
STATE_DRIVER_MISSING = "driver_missing"
STATE_DRIVER_NOT_LOADED = "driver_not_loaded"
STATE_DRIVER_MISMATCH = "driver_library_mismatch"
STATE_NVML_UNKNOWN = "nvml_unknown_error"
STATE_NVML_LIB_MISSING = "nvml_library_missing"
STATE_NO_DEVICES_FOUND = "no_devices_found"
STATE_DEVICE_HANDLE = "device_handle_error"
STATE_GPU_LOST = "gpu_lost"
STATE_QUERY_FAILED = "query_failed"
STATE_PARSE_ERROR = "parse_error"
STATE_TIMEOUT = "timeout"

FAILURE_STATES: tuple[str, ...] = (
    STATE_NO_DEVICE, STATE_DRIVER_MISSING, STATE_DRIVER_NOT_LOADED, STATE_DRIVER_MISMATCH, STATE_NVML_UNKNOWN,
    STATE_NVML_LIB_MISSING, STATE_NO_DEVICES_FOUND, STATE_DEVICE_HANDLE, STATE_GPU_LOST, STATE_QUERY_FAILED,
    STATE_PARSE_ERROR, STATE_TIMEOUT,
)

_UNIT_SUFFIX = re.compile(r"\s*\[[^\]]*\]\s*$")
_HEADER_CELL = re.compile(r"^[A-Za-z][A-Za-z0-9_.]*(\s*\[[^\]]*\])?$")
_NOT_A_VALUE = re.compile(r"^\[.*\]$")
_MIB = re.compile(r"^(\d+)\s*(MiB)?$")
_UNSUPPORTED_FIELD = re.compile(r'Field "([^"]+)" is not a valid field to query')
_NVIDIA_VENDOR = "0x10de"


class ParseError(ValueError):
    """The text is nvidia-smi output we cannot turn into GPU records."""


@dataclasses.dataclass(frozen=True)
class Gpu:
    """One physical GPU as nvidia-smi reports it."""

    index: int
    name: str
    memory_total_mib: Optional[int]
    driver_version: Optional[str] = None
    uuid: Optional[str] = None
    pci_bus_id: Optional[str] = None
    compute_cap: Optional[str] = None
    mig_mode: Optional[str] = None  # "enabled", "disabled" or None (not supported / not reported)
    name_truncated: bool = False  # the table cut the name ("GeForce GTX 108...")

    def as_dict(self) -> dict:
        """The record as a plain dict (the module's and the fact's shape)."""
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class Failure:
    """A classified failure: a state name and what the operator should do."""

    state: str
    message: str


# --------------------------------------------------------------------------- values

def clean_value(raw: Optional[str]) -> Optional[str]:
    """Strip a cell; ``[N/A]``, ``[Not Supported]``, ``N/A`` and empty cells become None."""
    if raw is None:
        return None
    value = raw.strip()
    if not value or value == "N/A" or _NOT_A_VALUE.match(value):
        return None
    return value


def parse_mib(raw: Optional[str]) -> Optional[int]:
    """``"81559 MiB"`` or ``"81559"`` -> 81559; unknown (``[N/A]``) -> None."""
    value = clean_value(raw)
    if value is None:
        return None
    match = _MIB.match(value)
    if not match:
        raise ParseError(f"memory value {raw!r} is not a MiB count")
    return int(match.group(1))


def parse_mig_mode(raw: Optional[str]) -> Optional[str]:
    """``Enabled``/``Disabled`` -> ``enabled``/``disabled``; anything else -> None."""
    value = clean_value(raw)
    if value is None:
        return None
    lowered = value.lower()
    return lowered if lowered in ("enabled", "disabled") else None


def field_name(header_cell: str) -> str:
    """``"memory.total [MiB]"`` -> ``"memory.total"``."""
    return _UNIT_SUFFIX.sub("", header_cell.strip())


# --------------------------------------------------------------------------- CSV

def read_csv(text: str, fields: Optional[Sequence[str]] = None) -> list[dict[str, Optional[str]]]:
    """Rows of a ``--format=csv`` output as dicts keyed by field name (units dropped from names).

    The header line is used when present (detected: every cell looks like a
    field name); otherwise ``fields`` names the columns. Values are cleaned
    with :func:`clean_value` except that units stay on (``"23028 MiB"``).
    """
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        return []
    rows = list(csv.reader(io.StringIO("\n".join(lines)), skipinitialspace=True))
    first = [cell.strip() for cell in rows[0]]
    if all(_HEADER_CELL.match(cell) for cell in first):
        names = [field_name(cell) for cell in first]
        rows = rows[1:]
    elif fields is not None:
        names = list(fields)
    else:
        raise ParseError("csv output has no header line and no field list was given")
    records = []
    for number, row in enumerate(rows, start=1):
        if len(row) != len(names):
            raise ParseError(f"csv row {number} has {len(row)} cells, expected {len(names)} ({', '.join(names)})")
        records.append({name: clean_value(cell) for name, cell in zip(names, row)})
    return records


def parse_query_csv(text: str, fields: Optional[Sequence[str]] = None) -> list[Gpu]:
    """GPU records from ``--query-gpu`` CSV output (header or ``fields`` give the columns).

    Raises ParseError when a required column (index, name, memory.total) is
    absent: such output (a monitoring loop of timestamps and utilisation, say)
    cannot tell GPUs apart or name them.
    """
    rows = read_csv(text, fields)
    if not rows:
        raise ParseError("nvidia-smi printed no GPU rows")
    missing = [name for name in REQUIRED_FIELDS if name not in rows[0]]
    if missing:
        raise ParseError(f"csv output lacks the columns {', '.join(missing)}; it cannot identify GPUs")
    gpus = []
    for row in rows:
        index = row["index"]
        if index is None or not index.isdigit():
            raise ParseError(f"csv row has no usable GPU index: {row!r}")
        gpus.append(Gpu(
            index=int(index),
            name=row["name"] or "",
            memory_total_mib=parse_mib(row["memory.total"]),
            driver_version=row.get("driver_version"),
            uuid=row.get("uuid"),
            pci_bus_id=row.get("pci.bus_id"),
            compute_cap=row.get("compute_cap"),
            mig_mode=parse_mig_mode(row.get("mig.mode.current")),
        ))
    return sorted(gpus, key=lambda gpu: gpu.index)


def unsupported_field(output: str) -> Optional[str]:
    """The field an old driver rejected (``Field "compute_cap" is not a valid field to query.``), or None."""
    match = _UNSUPPORTED_FIELD.search(output)
    return match.group(1) if match else None


def query_command(nvidia_smi: str, fields: Iterable[str]) -> list[str]:
    """argv of the query run."""
    return [nvidia_smi, f"--query-gpu={','.join(fields)}", "--format=csv,noheader,nounits"]


# --------------------------------------------------------------------------- table

_DRIVER_VERSION = re.compile(r"(?:Driver|KMD) Version:\s*(\S+)")
_GPU_CELL = re.compile(r"^\s*(\d+)\s+(.*?)\s+(On|Off|WDDM|TCC|MCDM|N/A)\s*$")
_BUS_CELL = re.compile(r"^\s*([0-9A-Fa-f]{4,8}:[0-9A-Fa-f]{2}:[0-9A-Fa-f]{2}\.[0-9A-Fa-f])\s+\S+\s*$")
_MEMORY_CELL = re.compile(r"(\d+)MiB\s*/\s*(\d+)MiB")


def _cells(line: str) -> list[str]:
    """``| a | b | c |`` -> ``[" a ", " b ", " c "]`` (empty when not a box row)."""
    stripped = line.rstrip()
    if not stripped.startswith("|") or not stripped.endswith("|"):
        return []
    return stripped[1:-1].split("|")


def parse_table(text: str) -> tuple[Optional[str], list[Gpu]]:
    """(driver version, GPU records) from the default ``nvidia-smi`` table.

    Only the GPU box is read (the first ``|===`` box); the MIG-devices and
    Processes boxes are ignored. Names are as printed, so a name the table cut
    ("GeForce GTX 108...") stays cut and is flagged ``name_truncated``. The
    table prints no UUID and no compute capability: those stay None.
    """
    driver_match = _DRIVER_VERSION.search(text)
    driver = driver_match.group(1) if driver_match else None
    lines = text.splitlines()
    start = next((n for n, line in enumerate(lines) if line.startswith("|=")), None)
    if start is None or driver is None:
        raise ParseError("not an nvidia-smi table: no version header or no GPU box")
    gpus: list[Gpu] = []
    block: list[list[str]] = []

    def flush() -> None:
        if block:
            gpus.append(_gpu_from_block(block, driver))
            block.clear()

    for line in lines[start + 1:]:
        if line.startswith("+"):
            flush()
            continue
        cells = _cells(line)
        if len(cells) < 3:
            break  # blank line or the end of the GPU box
        block.append(cells)
    flush()
    if not gpus:
        raise ParseError("nvidia-smi table lists no GPU")
    return driver, gpus


def _gpu_from_block(block: list[list[str]], driver: str) -> Gpu:
    head = _GPU_CELL.match(block[0][0])
    bus = _BUS_CELL.match(block[0][1])
    memory = _MEMORY_CELL.search(block[1][1]) if len(block) > 1 else None
    if not head or not bus or not memory:
        raise ParseError(f"cannot read GPU row {'|'.join(block[0])!r}")
    name = head.group(2).strip()
    mig_mode = parse_mig_mode(block[2][2]) if len(block) > 2 else None  # pre-450 tables have no MIG M. row
    return Gpu(
        index=int(head.group(1)),
        name=name,
        memory_total_mib=int(memory.group(2)),
        driver_version=driver,
        pci_bus_id=bus.group(1),
        mig_mode=mig_mode,
        name_truncated=name.endswith("..."),
    )


# --------------------------------------------------------------------------- failures

# (state, pattern, remediation). Order matters: "GPU is lost" is printed as the
# reason of an "Unable to determine the device handle" line.
_FAILURES: tuple[tuple[str, re.Pattern, str], ...] = (
    (STATE_DRIVER_MISMATCH, re.compile(r"Driver/library version mismatch"),
     "The NVIDIA driver was upgraded but the old kernel module is still loaded (driver/library version mismatch). "
     "Reboot the host (or unload and reload the nvidia kernel modules). Set nvidia_check_reboot_on_mismatch: true "
     "to let the role reboot it."),
    (STATE_DRIVER_NOT_LOADED, re.compile(r"couldn't communicate with the NVIDIA driver"),
     "nvidia-smi is installed but the NVIDIA kernel driver is not loaded. Check `lsmod | grep nvidia` and "
     "`dmesg | grep -i nvidia`; reinstall the driver for the running kernel (DKMS), check Secure Boot module "
     "signing, then reboot."),
    (STATE_NVML_LIB_MISSING, re.compile(r"couldn't find libnvidia-ml\.so"),
     "nvidia-smi cannot find libnvidia-ml.so: the driver's user-space libraries are missing or not on the loader "
     "path. Reinstall the NVIDIA driver package (in a container: run it with the NVIDIA container toolkit)."),
    (STATE_GPU_LOST, re.compile(r"GPU is lost"),
     "A GPU fell off the bus (\"GPU is lost\"). Reboot the host; if it recurs, check power, cooling, PCIe seating "
     "and `dmesg` for Xid 79 errors."),
    (STATE_DEVICE_HANDLE, re.compile(r"Unable to determine the device handle for GPU"),
     "nvidia-smi sees a GPU but cannot open it (\"Unable to determine the device handle\"). Reboot the host; if it "
     "recurs, check `dmesg` for Xid errors and the card's power and seating."),
    (STATE_NVML_UNKNOWN, re.compile(r"NVML: Unknown Error"),
     "NVML failed with \"Unknown Error\". On a host: reboot. In a container: the device cgroup lost the GPU "
     "(often after `systemctl daemon-reload`); restart the container."),
    (STATE_NO_DEVICES_FOUND, re.compile(r"No devices were found"),
     "The NVIDIA driver is loaded but reports no GPU (\"No devices were found\"). Check that the GPU is not bound "
     "to vfio/nouveau (`lspci -k -d 10de:`), that the driver supports this GPU, and `dmesg` for RmInitAdapter "
     "errors."),
)


def classify_failure(rc: int, output: str) -> Failure:
    """The state and remediation of a failed nvidia-smi run (rc != 0 or unusable output)."""
    for state, pattern, message in _FAILURES:
        if pattern.search(output):
            return Failure(state, message)
    first = next((line.strip() for line in output.splitlines() if line.strip()), "no output")
    return Failure(STATE_QUERY_FAILED, f"nvidia-smi failed with exit code {rc}: {first}")


def classify_missing(nvidia_on_pci: Optional[bool]) -> Failure:
    """The state when there is no nvidia-smi, from what the PCI bus shows."""
    if nvidia_on_pci is False:
        return Failure(STATE_NO_DEVICE, "No NVIDIA GPU on this host's PCI bus and no nvidia-smi: pick a GPU host.")
    if nvidia_on_pci is True:
        return Failure(STATE_DRIVER_MISSING, "An NVIDIA GPU is on the PCI bus but nvidia-smi is missing: the NVIDIA "
                                             "driver is not installed. Install it (Debian: nvidia-driver from "
                                             "non-free; Ubuntu: `ubuntu-drivers install`), then reboot.")
    return Failure(STATE_DRIVER_MISSING, "nvidia-smi is missing and the PCI bus could not be inspected (no sysfs, no "
                                         "lspci). Install the NVIDIA driver if the host has an NVIDIA GPU.")


def nvidia_on_sysfs(devices: Iterable[tuple[str, str]]) -> bool:
    """Whether any (vendor, class) pair read from /sys/bus/pci/devices/* is an NVIDIA display controller."""
    return any(vendor.strip().lower() == _NVIDIA_VENDOR and cls.strip().lower().startswith("0x03")
               for vendor, cls in devices)


def nvidia_on_lspci(output: str) -> bool:
    """Whether ``lspci -n`` output lists an NVIDIA display controller (class 03xx, vendor 10de)."""
    return any(re.search(r"\s03[0-9a-f]{2}:\s+10de:", line, re.I) for line in output.splitlines())


# --------------------------------------------------------------------------- the whole probe

@dataclasses.dataclass
class Facts:
    """What the probe found: the module returns this as its result."""

    state: str
    message: str = ""
    gpus: list[Gpu] = dataclasses.field(default_factory=list)
    driver_version: Optional[str] = None
    raw_error: str = ""
    source: str = ""  # "query", "table" (fallback) or "" when nothing was read
    dropped_fields: list[str] = dataclasses.field(default_factory=list)

    def as_dict(self) -> dict:
        """The module result keys."""
        return {
            "state": self.state, "message": self.message, "gpus": [g.as_dict() for g in self.gpus],
            "driver_version": self.driver_version, "raw_error": self.raw_error, "source": self.source,
            "dropped_fields": list(self.dropped_fields),
        }


class Timeout(Exception):
    """The runner gave up on nvidia-smi."""


def collect(run, nvidia_smi: Optional[str], nvidia_on_pci) -> Facts:
    """Probe the GPUs: query, drop fields an old driver rejects, fall back to the table, classify failures.

    ``run(argv) -> (rc, stdout, stderr)`` may raise :class:`Timeout`; ``nvidia_smi``
    is the resolved binary path or None when missing; ``nvidia_on_pci()`` returns
    True/False/None (unknown) and is only called when nvidia-smi is missing.
    """
    if nvidia_smi is None:
        failure = classify_missing(nvidia_on_pci())
        return Facts(failure.state, failure.message)
    fields = list(QUERY_FIELDS)
    dropped: list[str] = []
    try:
        while True:
            rc, out, err = run(query_command(nvidia_smi, fields))
            rejected = unsupported_field(out + "\n" + err) if rc != 0 else None
            if rejected in fields and rejected in OPTIONAL_FIELDS:
                fields.remove(rejected)
                dropped.append(rejected)
                continue
            break
        if rc == 0:
            try:
                gpus = parse_query_csv(out, fields)
                return Facts(STATE_OK, gpus=gpus, driver_version=gpus[0].driver_version, source="query",
                             dropped_fields=dropped)
            except ParseError as exc:
                query_error = f"query output not understood ({exc})"
        else:
            failure = classify_failure(rc, out + "\n" + err)
            if failure.state != STATE_QUERY_FAILED:
                return Facts(failure.state, failure.message, raw_error=(err or out).strip(), dropped_fields=dropped)
            query_error = failure.message
        # The query failed in a way we cannot name (a very old driver without
        # --query-gpu, say): the default table is the last resort.
        rc, out, err = run([nvidia_smi])
    except Timeout as exc:
        return Facts(STATE_TIMEOUT, f"nvidia-smi did not answer in time ({exc}); a hung GPU or driver usually "
                                    "needs a reboot.", dropped_fields=dropped)
    if rc != 0:
        failure = classify_failure(rc, out + "\n" + err)
        return Facts(failure.state, failure.message, raw_error=(err or out).strip(), dropped_fields=dropped)
    try:
        driver, gpus = parse_table(out)
    except ParseError as exc:
        return Facts(STATE_PARSE_ERROR, f"{query_error}; the table fallback failed too: {exc}. Report the output of "
                                        "`nvidia-smi` to the sdfleet maintainers.", raw_error=out[:2000],
                     dropped_fields=dropped)
    return Facts(STATE_OK, gpus=gpus, driver_version=driver, source="table", dropped_fields=dropped)
