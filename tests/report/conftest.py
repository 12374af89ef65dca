"""Render the fleet report (playbooks/report.yml) from synthetic hostvars, once per test session."""
from __future__ import annotations

import pathlib
import subprocess
import sys

import pytest
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
PLAYBOOK = ROOT / ".venv" / "bin" / "ansible-playbook"

# A fake token in a source and a failure message: the report must show neither.
REPORT_TOKEN = "rep-T0ken-8086"

# Three GPU hosts and a mirror: one serving two instances (with public URLs that differ from its own),
# one serving one instance that did not answer the probe, one failed in the gpu stage, one never reached.
HOST_VARS: dict[str, dict] = {
    "gpu-dual": {
        "sdfleet_gpu": {
            "state": "ok", "message": "", "driver_version": "550.54.14", "tier": "full",
            "gpus": [
                {"index": 0, "name": "NVIDIA GeForce RTX 4060 Ti", "memory_total_mib": 16380, "tier": "full",
                 "compute_cap": "8.9", "flags": ["--xformers"]},
                {"index": 1, "name": "NVIDIA GeForce RTX 4060 Ti", "memory_total_mib": 16380, "tier": "full",
                 "compute_cap": "8.9", "flags": ["--xformers"]},
            ],
            "torch": {"build": "cu128", "torch": "2.7.0", "torchvision": "0.22.0", "xformers": "0.0.30"},
        },
        "sdfleet_instances": [
            {"index": 0, "port": 7860, "url": "https://gpu-dual:7860/", "tier": "full",
             "flags": ["--xformers", "--listen"]},
            {"index": 1, "port": 7861, "url": "https://gpu-dual:7861/", "tier": "full",
             "flags": ["--xformers", "--listen"]},
        ],
        "sdfleet_public_urls": ["https://127.0.0.1:17880/", "https://127.0.0.1:17881/"],
        "sdfleet_health": {0: "healthy", 1: "healthy"},
        "sdfleet_front_door": {"enabled": True, "scheme": "https", "certificate": "self-signed",
                               "fingerprint_sha256": "ab:cd:" + ":".join(["0f"] * 30), "not_after": "20290305120000Z"},
        "sdfleet_webui": {"dir": "/opt/sd-webui", "version": "v1.10.1",
                          "commit": "82a973c04367123ae98bd9abdf80d9eda9b910e2",
                          "source": "http://mirror:8080/git/stable-diffusion-webui.git"},
        "sdfleet_models": [
            {"name": "tiny-v1", "kind": "checkpoint", "path": "/opt/sd-webui/models/Stable-diffusion/tiny-v1.safetensors",
             "sha256": "7e97e39c1421d987683049c6c9b063354c679da7dbaa23f5c2cd3689632802e3",
             "short_hash": "7e97e39c14", "legacy_hash": "80721b00"},
        ],
    },
    "gpu-small": {
        "sdfleet_gpu": {
            "state": "ok", "message": "", "driver_version": "450.57", "tier": "lowvram",
            "gpus": [{"index": 0, "name": "GeForce GTX 750 Ti", "memory_total_mib": 2002, "tier": "lowvram",
                      "flags": ["--lowvram"]}],
        },
        "sdfleet_instances": [{"index": 0, "port": 7860, "url": "http://gpu-small:7860/", "tier": "lowvram",
                               "flags": ["--lowvram", "--upcast-sampling"]}],
        "sdfleet_health": {0: "HTTP 502"},
        "sdfleet_webui": {"version": "v1.10.1", "commit": "82a973c04367123ae98bd9abdf80d9eda9b910e2",
                          # credentials in a source (REPORT_TOKEN): the report shows them redacted
                          "source": "https://ci:" + REPORT_TOKEN + "@git.example.org/sd/stable-diffusion-webui.git"},
        "sdfleet_models": [],
    },
    "gpu-broken": {
        "sdfleet_gpu": {"state": "driver_mismatch", "tier": "cpu", "gpus": [],
                        "message": "Driver/library version mismatch: reboot the host to load the new driver."},
        "sdfleet_failure": {"stage": "gpu", "task": "Refuse an unusable GPU",
                            "message": "nvidia_check: driver_mismatch: Failed to initialize NVML (pip index "
                                       "https://ci:" + REPORT_TOKEN + "@pypi.example.org/simple/)",
                            "remediation": "Driver/library version mismatch: reboot the host to load the new driver."},
    },
    # unreachable: the gpu stage marked it (a set_fact needs no connection), then nothing answered
    "gpu-gone": {"__sdfleet_in_run": True},
}


@pytest.fixture(scope="session")
def report_dir(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    """Run playbooks/report.yml against an inventory of HOST_VARS; return the report dir."""
    if not PLAYBOOK.exists():
        pytest.skip(f"{PLAYBOOK} missing: run make venv")
    base = tmp_path_factory.mktemp("report")
    inv = base / "inventory"
    (inv / "host_vars").mkdir(parents=True)
    hosts = {"all": {"children": {
        "webui_hosts": {"hosts": {h: None for h in HOST_VARS}},
        "sdfleet_mirror": {"hosts": {"mirror": None}},
    }}}
    (inv / "hosts.yml").write_text(yaml.safe_dump(hosts), encoding="utf-8")
    for host, hv in HOST_VARS.items():
        (inv / "host_vars" / f"{host}.yml").write_text(yaml.safe_dump(hv), encoding="utf-8")
    out = base / "out"
    proc = subprocess.run(
        [str(PLAYBOOK), "-i", str(inv / "hosts.yml"), str(ROOT / "playbooks" / "report.yml"),
         "-e", f"sdfleet_report_dir={out}"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
        env={"ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"), "PATH": f"{ROOT / '.venv' / 'bin'}:/usr/bin:/bin",
             "HOME": str(base), "LANG": "C.UTF-8"},
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return out


