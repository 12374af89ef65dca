"""End to end on loopback: the stand-in, cloned from the mirror fixture, installs itself from the mirror and serves.

The way a provisioned host would: git clone v1.10.1 over smart HTTP, a fresh venv, `launch.py --exit --xformers`
with TORCH_INDEX_URL / INDEX_URL / <X>_REPO / <X>_COMMIT_HASH / CLIP_PACKAGE / OPENCLIP_PACKAGE pointing at the
mirror (and pip kept off every other index), then a normal start with --api that installs nothing.
"""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess
import time
from pathlib import Path

from standin_helpers import MirrorFixture, fetch, free_port, git, make_venv, mirror_pip_env


def test_install_from_the_mirror_then_serve(mirror: MirrorFixture, tmp_path: Path) -> None:
    base, pins = mirror.base, mirror.pins
    checkout = tmp_path / "sd-webui"
    git("clone", "-q", "--branch", "v1.10.1", f"{base}/git/stable-diffusion-webui.git", str(checkout))
    python = make_venv(checkout / "venv")
    env = mirror_pip_env(mirror, SDFLEET_STANDIN_FAKE_CUDA="1")

    result = subprocess.run([python, "-u", "launch.py", "--exit", "--xformers"], cwd=checkout, env=env,
                            capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"Version: {pins['webui']['version']}" in result.stdout
    assert f"Commit hash: {pins['webui']['commit']}" in result.stdout
    steps = [line for line in result.stdout.splitlines() if line.startswith("Installing ")]
    assert steps == ["Installing torch and torchvision", "Installing clip", "Installing open_clip",
                     "Installing xformers", "Installing requirements"], result.stdout
    installed = subprocess.run(
        [python, "-c", "import importlib.metadata as m; print(*(m.version(p) for p in "
                       "('torch', 'torchvision', 'six', 'packaging', 'clip', 'open_clip_torch', 'xformers')))"],
        capture_output=True, text=True, check=True).stdout.split()
    assert installed == ["2.1.2+cu121", "0.16.2+cu121", "1.16.0", "24.1", "1.0", "2.7.0", "0.0.23.post1"]
    imported = subprocess.run([python, "-c", "import clip, open_clip, xformers; print(clip.STUB, open_clip.STUB)"],
                              capture_output=True, text=True, check=False)
    assert imported.stdout.split() == ["True", "True"], imported.stderr
    for repo in pins["repos"].values():
        assert git("rev-parse", "HEAD", cwd=checkout / "repositories" / repo["clone_dir"]) == repo["pin"]

    checkpoint = pins["files"]["tiny-v1.safetensors"]
    status, body = fetch(base + checkpoint["path"])
    assert status == 200
    (checkout / "models" / "Stable-diffusion" / "tiny-v1.safetensors").write_bytes(body)
    port = free_port()
    log = tmp_path / "standin.log"
    with log.open("w") as handle:
        proc = subprocess.Popen([python, "-u", "launch.py", "--port", str(port), "--api", "--api-auth", "u:p",
                                 "--xformers"], cwd=checkout, env=env, stdout=handle, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while "Running on local URL" not in log.read_text():
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        assert "Installing" not in log.read_text() and "Cloning" not in log.read_text()  # all met: no network
        auth = {"Authorization": "Basic " + base64.b64encode(b"u:p").decode()}
        status, body = fetch(f"http://127.0.0.1:{port}/sdapi/v1/sd-models", auth)
        assert status == 200
        models = json.loads(body)
        assert [m["hash"] for m in models] == [checkpoint["short_hash"]]
        assert models[0]["sha256"] == checkpoint["sha256"] == hashlib.sha256(
            (checkout / "models" / "Stable-diffusion" / "tiny-v1.safetensors").read_bytes()).hexdigest()
    finally:
        proc.kill()
        proc.wait(timeout=10)
