"""The real upstream fixture's recipe: locks that match the real trees, GitHub-shaped serving.

The locks are read from ../shared/upstream without any network: a webui or extension whose requirements changed
makes the lock stale, and this fails until `make wheels-lock` is run. The server part builds a small tree in tmp.
"""
from __future__ import annotations

import json
import os
import pathlib
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
MIRROR = ROOT / "molecule/_shared/mirror"
sys.path.insert(0, str(MIRROR))

import real_wheels as rw  # noqa: E402

UPSTREAM = ROOT.parent / "shared" / "upstream"
needs_upstream = pytest.mark.skipif(not (UPSTREAM / "manifest.json").is_file(),
                                    reason=f"{UPSTREAM} (the real webui trees) is not on this machine")


@needs_upstream
@pytest.mark.parametrize("version", rw.VERSIONS)
def test_lock_was_resolved_from_the_real_trees_inputs(version):
    reqs, xformers = rw.version_inputs(version)
    header = (rw.LOCK_DIR / f"{version}.txt").read_text().splitlines()[2]
    assert header == f"# Inputs: {' '.join(reqs)}; {xformers} (--no-deps)", "stale lock: run make wheels-lock"


@needs_upstream
def test_inputs_take_each_versions_own_torch_and_xformers_pins():
    v1101, x1101 = rw.version_inputs("v1.10.1")
    dev, xdev = rw.version_inputs("dev")
    assert v1101[:2] == ["torch==2.1.2", "torchvision==0.16.2"] and x1101 == "xformers==0.0.23.post1"
    assert dev[:2] == ["torch==2.7.0", "torchvision==0.22.0"] and xdev == "xformers==0.0.30"
    assert "setuptools==69.5.1" in v1101 and "jsonmerge==1.8.0" in v1101


@pytest.mark.parametrize("version", rw.VERSIONS)
def test_lock_pins_the_versions_torch_and_the_source_only_packages(version):
    pins = {name.lower(): ver for name, ver, digest in rw.locked(version) if len(digest) == 64}
    torch = {"v1.9.4": ("2.1.2", "0.16.2"), "v1.10.1": ("2.1.2", "0.16.2"), "dev": ("2.7.0", "0.22.0")}[version]
    assert (pins["torch"], pins["torchvision"]) == torch
    # v1.9.4 and v1.10.1 differ in spandrel (requirements_versions.txt): what the update test installs
    assert pins["spandrel"] == {"v1.9.4": "0.1.6"}.get(version, "0.3.4")
    assert pins["jsonmerge"] == "1.8.0" and pins["antlr4-python3-runtime"] == "4.9.3"  # sdists only on PyPI
    assert pins["setuptools"] == "69.5.1"
    assert len(rw.locked(version)) == len(pins), "every locked file has a name, a version and a sha256"


def test_tools_lock_pins_the_products_uv():
    pin = rw.uv_requirement()
    header = (rw.LOCK_DIR / f"{rw.TOOLS}.txt").read_text().splitlines()[2]
    assert header.startswith(f"# Inputs: {pin} (--no-deps"), "stale tools lock: run make wheels-lock"
    assert [(name, ver) for name, ver, _ in rw.locked(rw.TOOLS)] == [tuple(pin.split("=="))]
    assert all(len(digest) == 64 for _, _, digest in rw.locked(rw.TOOLS))


def test_pip_reads_no_machine_config():
    env = rw.pip_env()
    assert env["PIP_CONFIG_FILE"] == os.devnull
    assert not [k for k in env if k.startswith("PIP_") and k not in {"PIP_CONFIG_FILE", "PIP_DISABLE_PIP_VERSION_CHECK"}]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """mirror_server.py over a tree laid out as the real fixture: git/<owner>/<repo>.git and an archive path."""
    root = tmp_path_factory.mktemp("real")
    work = root.parent / "work"
    env = {**os.environ, "GIT_CONFIG_GLOBAL": os.devnull, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}
    subprocess.run(["git", "init", "-q", "-b", "master", str(work)], check=True, env=env)
    (work / "f").write_text("x\n")
    subprocess.run(["git", "-C", str(work), "add", "f"], check=True, env=env)
    subprocess.run(["git", "-C", str(work), "commit", "-qm", "one"], check=True, env=env)
    (root / "git" / "owner").mkdir(parents=True)
    subprocess.run(["git", "clone", "-q", "--bare", str(work), str(root / "git/owner/repo.git")], check=True, env=env)
    (root / "openai/CLIP/archive").mkdir(parents=True)
    (root / "openai/CLIP/archive/abc.zip").write_bytes(b"zip bytes")
    port = free_port()
    proc = subprocess.Popen([sys.executable, str(MIRROR / "mirror_server.py"), "--root", str(root), "--port",
                             str(port), "--bind", "127.0.0.1"], stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    for _ in range(50):
        try:
            urllib.request.urlopen(base + "/_ping", timeout=1)
            break
        except OSError:
            time.sleep(0.1)
    yield base, env
    proc.terminate()
    proc.wait()


def test_git_is_served_at_githubs_owner_repo_path(served, tmp_path):
    base, env = served
    done = subprocess.run(["git", "clone", "-q", f"{base}/owner/repo.git", str(tmp_path / "c")],
                          env={**env, "GIT_TERMINAL_PROMPT": "0"}, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "c/f").read_text() == "x\n"


def test_archive_is_served_at_githubs_archive_path_and_others_are_404(served):
    base, _ = served
    assert urllib.request.urlopen(f"{base}/openai/CLIP/archive/abc.zip").read() == b"zip bytes"
    for path in ("/owner/nope.git/info/refs", "/openai/CLIP/archive/nope.zip", "/bin/mirror_server.py"):
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(base + path)
        assert err.value.code == 404, path


def test_build_without_upstream_skips_with_the_reason(tmp_path):
    done = subprocess.run([sys.executable, str(MIRROR / "build_real_fixture.py"), "--out", str(tmp_path / "o"),
                           "--upstream", str(tmp_path / "absent")], capture_output=True, text=True, check=False)
    assert done.returncode == 3
    assert "is missing" in done.stderr and "skipped" in done.stderr
    assert not (tmp_path / "o").exists()


@pytest.mark.skipif(not (ROOT / "build/real-fixture/pins.json").is_file(), reason="make real-fixture has not run")
def test_built_fixture_indexes_every_locked_file():
    pins = json.loads((ROOT / "build/real-fixture/pins.json").read_text())
    for version in rw.VERSIONS:
        assert len(pins["wheels"]["sets"][version]) == len(rw.locked(version))
    (uv, _, digest), = rw.locked(rw.TOOLS)
    page = (ROOT / "build/real-fixture/simple" / uv / "index.html").read_text()
    assert f"#sha256={digest}" in page, "the index serves the uv installer's wheel"
    assert pins["webui"]["branches"]["master"] == pins["webui"]["commits"]["v1.10.1"]
