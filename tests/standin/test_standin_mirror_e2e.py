"""End to end on loopback: the stand-in, cloned from the mirror fixture, installs itself from the mirror and serves.

The way a provisioned host would: git clone v1.10.1 over smart HTTP, a fresh venv, `launch.py --exit` with
TORCH_INDEX_URL / INDEX_URL / <X>_REPO / <X>_COMMIT_HASH pointing at the mirror, then a normal start with --api.
"""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from standin_helpers import STANDIN, clean_env, free_port, git

BUILDER = STANDIN.parent / "mirror" / "build_fixture.py"
WHEEL_CACHE = STANDIN.parents[2] / "build" / "wheel-cache"


def fetch(url: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    """GET without proxies."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(urllib.request.Request(url, headers=headers or {}), timeout=10) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


@pytest.fixture(scope="module")
def mirror(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict[str, Any]]]:
    """A mirror fixture built from the current stand-in tree, served on loopback: (base URL, pins)."""
    if not BUILDER.is_file():
        pytest.skip(f"the mirror builder {BUILDER} is not there")
    out = tmp_path_factory.mktemp("fixture") / "fixture"
    build = subprocess.run([sys.executable, str(BUILDER), "--out", str(out), "--webui-src", str(STANDIN),
                            "--wheel-cache", str(WHEEL_CACHE)], capture_output=True, text=True, timeout=300,
                           check=False)
    if build.returncode != 0 and "pip download" in build.stderr:
        pytest.skip(f"the fixture needs wheels from PyPI, unreachable here: {build.stderr[-300:]}")
    assert build.returncode == 0, build.stderr
    port = free_port()
    log = out.parent / "mirror.log"
    with log.open("w") as handle:
        proc = subprocess.Popen([sys.executable, str(out / "bin" / "mirror_server.py"), "--root", str(out),
                                 "--port", str(port), "--bind", "127.0.0.1"], stdout=handle, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                if fetch(base + "/_ping")[0] == 200:
                    break
            except OSError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        yield base, json.loads((out / "pins.json").read_text())
    finally:
        proc.kill()
        proc.wait(timeout=10)


def test_install_from_the_mirror_then_serve(mirror: tuple[str, dict[str, Any]], tmp_path: Path) -> None:
    base, pins = mirror
    checkout = tmp_path / "sd-webui"
    git("clone", "-q", "--branch", "v1.10.1", f"{base}/git/stable-diffusion-webui.git", str(checkout))
    venv = checkout / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python = str(venv / "bin" / "python")
    env = clean_env(TORCH_INDEX_URL=f"{base}/torch/cu121", INDEX_URL=f"{base}/simple/",
                    PIP_INDEX_URL=f"{base}/simple/",  # so the torch step's default index is not PyPI either
                    PIP_DISABLE_PIP_VERSION_CHECK="1", SDFLEET_STANDIN_FAKE_CUDA="1")
    for repo in pins["repos"].values():
        env[repo["repo_env"]] = base + repo["path"]
        env[repo["commit_env"]] = repo["pin"]

    result = subprocess.run([python, "-u", "launch.py", "--exit"], cwd=checkout, env=env, capture_output=True,
                            text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"Version: {pins['webui']['version']}" in result.stdout
    assert f"Commit hash: {pins['webui']['commit']}" in result.stdout
    installed = subprocess.run(
        [python, "-c", "import importlib.metadata as m; print(*(m.version(p) for p in "
                       "('torch', 'torchvision', 'six', 'packaging')))"],
        capture_output=True, text=True, check=True).stdout.split()
    assert installed == ["2.1.2+cu121", "0.16.2+cu121", "1.16.0", "24.1"]
    for repo in pins["repos"].values():
        assert git("rev-parse", "HEAD", cwd=checkout / "repositories" / repo["clone_dir"]) == repo["pin"]

    checkpoint = pins["files"]["tiny-v1.safetensors"]
    status, body = fetch(base + checkpoint["path"])
    assert status == 200
    (checkout / "models" / "Stable-diffusion" / "tiny-v1.safetensors").write_bytes(body)
    port = free_port()
    log = tmp_path / "standin.log"
    with log.open("w") as handle:
        proc = subprocess.Popen([python, "-u", "launch.py", "--port", str(port), "--api", "--api-auth", "u:p"],
                                cwd=checkout, env=env, stdout=handle, stderr=subprocess.STDOUT)
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
