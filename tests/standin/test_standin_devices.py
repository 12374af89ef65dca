"""The stand-in's CUDA emulation: which GPU an instance runs on (CUDA_DEVICE_ORDER, CUDA_VISIBLE_DEVICES by index or
UUID), /sdapi/v1/memory as the real webui answers it, and the "no kernel image" failure of a GPU its torch lacks.

The GPUs come from the fake nvidia-smi (molecule/_shared/fake_nvidia_smi) with the rows of the real capture
table-2x-mixed-rtx2070-gtx750ti.txt, on a host whose PCI order puts the slower card first, so nvidia-smi's order
(PCI bus) and CUDA's default (fastest first) differ. The stub torch is the mirror fixture's (its arch list is the
real build's, from the compatibility table).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from standin_helpers import STANDIN, clean_env, fetch

sys.path.insert(0, str(STANDIN))
from modules import devices  # noqa: E402  pylint: disable=wrong-import-position
sys.path.pop(0)

FAKE_SMI = STANDIN.parent / "fake_nvidia_smi" / "nvidia-smi"
BUILDER = STANDIN.parent / "mirror"
SLOW = {"name": "GeForce GTX 750 Ti", "memory.total": 2002, "pci.bus_id": "00000000:01:00.0", "compute_cap": "5.0",
        "uuid": "GPU-750aaaaa-0000-4000-8000-000000000000"}
FAST = {"name": "GeForce RTX 2070", "memory.total": 7981, "pci.bus_id": "00000000:04:00.0", "compute_cap": "7.5",
        "uuid": "GPU-2070bbbb-0000-4000-8000-000000000001"}
BLACKWELL = {"name": "NVIDIA GeForce RTX 5090", "memory.total": 32607, "pci.bus_id": "00000000:01:00.0",
             "compute_cap": "12.0", "uuid": "GPU-5090cccc-0000-4000-8000-000000000002"}  # MADE: no capture exists


def fake_host(tmp_path: Path, *gpus: dict) -> dict[str, str]:
    """PATH with the fake nvidia-smi answering these GPUs, and its config."""
    bindir = tmp_path / "bin"
    bindir.mkdir(exist_ok=True)
    (bindir / "nvidia-smi").write_bytes(FAKE_SMI.read_bytes())
    (bindir / "nvidia-smi").chmod(0o755)
    config = tmp_path / "fake-nvidia-smi.json"
    config.write_text(json.dumps({"driver_version": "535.183.01", "gpus": list(gpus)}))
    return {"PATH": f"{bindir}:/usr/bin:/bin", "FAKE_NVIDIA_SMI_CONFIG": str(config)}


def stub_torch(tmp_path: Path, variant: str) -> str:
    """A directory with the mirror fixture's stub torch of ``variant`` (2.1.2) unpacked."""
    sys.path.insert(0, str(BUILDER))
    try:
        import build_fixture  # noqa: PLC0415
    finally:
        sys.path.pop(0)
    root = tmp_path / f"torch-{variant}"
    for rel, text in build_fixture.torch_stub_files("torch", f"2.1.2+{variant}", variant).items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return str(root)


@pytest.fixture
def on_host(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Factory: point this process at the fake nvidia-smi answering these GPUs (PATH and its config)."""
    def _on(*gpus: dict) -> Path:
        host = fake_host(tmp_path, *gpus)
        for key, value in host.items():
            monkeypatch.setenv(key, value)
        return Path(host["FAKE_NVIDIA_SMI_CONFIG"])
    return _on


@pytest.fixture
def devices_seen(on_host):
    """Factory: the names of the CUDA devices a process with ``env`` sees on a host with these GPUs."""
    def _seen(*gpus: dict, **env: str) -> list[str]:
        on_host(*gpus)
        return [d["name"] for d in devices.cuda_devices(devices.nvidia_gpus(), env)]
    return _seen


def test_cuda_default_order_is_fastest_first_not_nvidia_smis(devices_seen) -> None:
    assert devices_seen(SLOW, FAST) == ["GeForce RTX 2070", "GeForce GTX 750 Ti"]
    assert devices_seen(SLOW, FAST, CUDA_DEVICE_ORDER="PCI_BUS_ID") == ["GeForce GTX 750 Ti",
                                                                                   "GeForce RTX 2070"]


def test_an_index_alone_names_the_other_card(devices_seen) -> None:
    """nvidia-smi's index 0 is the 750 Ti; CUDA_VISIBLE_DEVICES=0 without the bus order gets the 2070."""
    assert devices_seen(SLOW, FAST, CUDA_VISIBLE_DEVICES="0") == ["GeForce RTX 2070"]
    assert devices_seen(SLOW, FAST, CUDA_VISIBLE_DEVICES="0",
                        CUDA_DEVICE_ORDER="PCI_BUS_ID") == ["GeForce GTX 750 Ti"]


def test_a_uuid_names_the_card_in_any_order(devices_seen) -> None:
    for order in ({}, {"CUDA_DEVICE_ORDER": "PCI_BUS_ID"}):
        assert devices_seen(SLOW, FAST, CUDA_VISIBLE_DEVICES=SLOW["uuid"], **order) == ["GeForce GTX 750 Ti"]
    assert devices_seen(SLOW, FAST, CUDA_VISIBLE_DEVICES="GPU-2070") == ["GeForce RTX 2070"]  # prefix


def test_a_table_only_driver_still_lists_its_gpus(on_host) -> None:
    """The fake answers a table capture's --query-gpu like a driver without it: the table is read instead."""
    on_host().write_text(json.dumps({
        "capture": str(Path(__file__).resolve().parents[1] / "fixtures/nvidia-smi/table-2x-rtx4060ti-16gb.txt")}))
    gpus = devices.nvidia_gpus()
    assert [(g["index"], g["name"], g["memory_mib"], g["pci_bus_id"]) for g in gpus] == [
        ("0", "NVIDIA GeForce RTX 4060 Ti", 16380, "00000000:03:00.0"),
        ("1", "NVIDIA GeForce RTX 4060 Ti", 16380, "00000000:09:00.0")]


def test_cuda_stops_at_the_first_invalid_entry(devices_seen) -> None:
    assert devices_seen(SLOW, FAST, CUDA_VISIBLE_DEVICES="1,7,0") == ["GeForce GTX 750 Ti"]
    assert devices_seen(SLOW, FAST, CUDA_VISIBLE_DEVICES="") == []


@pytest.mark.parametrize("flags,cap,runs", [(["sm_50", "sm_86"], "8.9", True), (["sm_90"], "12.0", False),
                                            (["sm_90", "compute_90"], "12.0", True), (["sm_75"], "7.0", False)])
def test_kernel_rule(flags: list[str], cap: str, runs: bool) -> None:
    assert devices.has_kernels(flags, cap) is runs


def server_env(tmp_path: Path, *gpus: dict, variant: str = "cu121", **extra: str) -> dict[str, str]:
    host = fake_host(tmp_path, *gpus)
    return clean_env(PATH=host["PATH"], FAKE_NVIDIA_SMI_CONFIG=host["FAKE_NVIDIA_SMI_CONFIG"],
                     SDFLEET_STANDIN_FAKE_CUDA="1", PYTHONPATH=stub_torch(tmp_path, variant), **extra)


def get_json(url: str) -> dict:
    status, body = fetch(url)
    assert status == 200, body
    return json.loads(body)


def post_json(url: str, data: dict) -> tuple[int, dict]:
    import urllib.error  # noqa: PLC0415
    import urllib.request  # noqa: PLC0415
    req = urllib.request.Request(url, data=json.dumps(data).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def add_checkpoint(webui: Path) -> None:
    (webui / "models" / "Stable-diffusion" / "tiny.safetensors").write_bytes(b"not a real model")


def test_memory_reports_the_device_the_instance_landed_on(start_server, tmp_path: Path) -> None:
    by_index = start_server("--api", env=server_env(tmp_path, SLOW, FAST, CUDA_VISIBLE_DEVICES="0"))
    assert get_json(by_index.url("/sdapi/v1/memory"))["cuda"]["system"]["total"] == 7981 * 1024 * 1024
    by_uuid = start_server("--api", env=server_env(tmp_path, SLOW, FAST, CUDA_VISIBLE_DEVICES=SLOW["uuid"],
                                                   CUDA_DEVICE_ORDER="PCI_BUS_ID"))
    assert get_json(by_uuid.url("/sdapi/v1/memory"))["cuda"]["system"]["total"] == 2002 * 1024 * 1024


def test_memory_says_unavailable_without_cuda(start_server, tmp_path: Path) -> None:
    env = server_env(tmp_path, SLOW)
    env.pop("SDFLEET_STANDIN_FAKE_CUDA")
    server = start_server("--api", env=env)
    assert get_json(server.url("/sdapi/v1/memory"))["cuda"] == {"error": "unavailable"}


def test_txt2img_fails_with_no_kernel_image_on_a_gpu_its_torch_lacks(start_server, webui: Path,
                                                                     tmp_path: Path) -> None:
    add_checkpoint(webui)
    server = start_server("--api", env=server_env(tmp_path, BLACKWELL, variant="cu121"))
    status, body = post_json(server.url("/sdapi/v1/txt2img"), {"prompt": "x", "steps": 1, "width": 64, "height": 64})
    assert (status, body["error"], body["errors"]) == (500, "RuntimeError", devices.NO_KERNEL)


def test_txt2img_answers_an_image_where_the_torch_has_kernels(start_server, webui: Path, tmp_path: Path) -> None:
    add_checkpoint(webui)
    server = start_server("--api", env=server_env(tmp_path, FAST, variant="cu121"))
    status, body = post_json(server.url("/sdapi/v1/txt2img"), {"prompt": "x", "steps": 1, "width": 64, "height": 64})
    assert status == 200 and json.loads(body["info"])["device"] == "GeForce RTX 2070"
    import base64  # noqa: PLC0415
    png = base64.b64decode(body["images"][0])
    assert png.startswith(b"\x89PNG") and int.from_bytes(png[16:20], "big") == 64


def test_txt2img_without_a_checkpoint_fails_like_the_real_one(start_server, tmp_path: Path) -> None:
    server = start_server("--api", env=server_env(tmp_path, FAST))
    status, body = post_json(server.url("/sdapi/v1/txt2img"), {"prompt": "x", "steps": 1})
    assert status == 500 and body["error"] == "FileNotFoundError"
