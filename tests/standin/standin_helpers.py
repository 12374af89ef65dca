"""Helpers and fixtures for the stand-in webui tests: a private copy of the tree, free ports, a server runner, git
repos, a recording pip, the mirror fixture on loopback."""

from __future__ import annotations

import atexit
import functools
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

STANDIN = Path(__file__).resolve().parents[2] / "molecule" / "_shared" / "standin_webui"
BUILDER = STANDIN.parent / "mirror" / "build_fixture.py"
WHEEL_CACHE = STANDIN.parents[2] / "build" / "wheel-cache"
SUB_REPOS = {  # env prefix -> directory under repositories/
    "ASSETS": "stable-diffusion-webui-assets",
    "STABLE_DIFFUSION": "stable-diffusion-stability-ai",
    "STABLE_DIFFUSION_XL": "generative-models",
    "K_DIFFUSION": "k-diffusion",
    "BLIP": "BLIP",
}
START_TIMEOUT = 15.0


def free_port() -> int:
    """A port nobody listens on right now (bound by the kernel, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def clean_env(**extra: str) -> dict[str, str]:
    """os.environ without any webui variable that would leak into the stand-in, plus `extra`."""
    env = {key: value for key, value in os.environ.items()
           if key not in {"COMMANDLINE_ARGS", "IGNORE_CMD_ARGS_ERRORS", "INDEX_URL", "TORCH_COMMAND", "REQS_FILE",
                          "GRADIO_SERVER_NAME", "GRADIO_SERVER_PORT", "SDFLEET_STANDIN_FAKE_CUDA", "VIRTUAL_ENV",
                          "CLIP_PACKAGE", "OPENCLIP_PACKAGE", "XFORMERS_PACKAGE", "PYTHONPATH"}
           and not key.endswith(("_REPO", "_COMMIT_HASH"))}
    env.update(extra)
    return env


@functools.cache
def importable_stubs() -> str:
    """A directory holding empty `clip` and `open_clip` packages: on PYTHONPATH, the launcher finds both
    importable (its check falls back to find_spec) and has nothing to pip-install for them."""
    root = Path(tempfile.mkdtemp(prefix="standin-importable-"))
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    for module in ("clip", "open_clip"):
        (root / module).mkdir()
        (root / module / "__init__.py").write_text('"""Empty stand-in of the package for the tests."""\n')
    return str(root)


FAKE_PIP = '''"""A recording pip for the stand-in tests: appends its argv to $FAKE_PIP_LOG (JSON lines); an
argument that contains a key of $FAKE_PIP_PROVIDES (JSON) creates that module next to this package; one containing
FAIL exits 1."""
import json, os, pathlib, sys
args = sys.argv[1:]
with open(os.environ["FAKE_PIP_LOG"], "a") as log:
    log.write(json.dumps(args) + "\\n")
if any("FAIL" in arg for arg in args):
    print("fake pip: told to fail", file=sys.stderr)
    sys.exit(1)
here = pathlib.Path(__file__).resolve().parents[1]
for needle, module in json.loads(os.environ.get("FAKE_PIP_PROVIDES", "{}")).items():
    if any(needle in arg for arg in args):
        (here / module).mkdir(exist_ok=True)
        (here / module / "__init__.py").write_text("")
'''
# Argument substrings the recording pip turns into an importable module.
FAKE_PIP_PROVIDES = {"openai/CLIP": "clip", "open_clip/archive": "open_clip", "xformers": "xformers",
                     "clip.zip": "clip", "openclip.zip": "open_clip"}


@pytest.fixture
def fake_pip(tmp_path: Path) -> Path:
    """A directory with the recording pip; returns the log file it writes."""
    site = tmp_path / "fake-site"
    (site / "pip").mkdir(parents=True)
    (site / "pip" / "__init__.py").write_text("")
    (site / "pip" / "__main__.py").write_text(FAKE_PIP)
    return tmp_path / "pip.log"


def pip_env(repos: dict[str, SubRepoFixture], log: Path, tmp_path: Path, **extra: str) -> dict[str, str]:
    """An install-only environment: local sub-repos, nothing pinned, the recording pip (which is also what the
    torch step's `python -m pip --version` runs)."""
    reqs = tmp_path / "no-requirements.txt"
    reqs.write_text("# nothing pinned\n")
    env = clean_env(PYTHONPATH=str(log.parent / "fake-site"), FAKE_PIP_LOG=str(log),
                    FAKE_PIP_PROVIDES=json.dumps(FAKE_PIP_PROVIDES), TORCH_COMMAND="pip --version",
                    REQS_FILE=str(reqs))
    for prefix, repo in repos.items():
        env[f"{prefix}_REPO"] = repo.url
        env[f"{prefix}_COMMIT_HASH"] = repo.pin
    env.update(extra)
    return env


def pip_calls(log: Path) -> list[list[str]]:
    """Every recorded pip argv but the torch step's `--version`."""
    if not log.exists():
        return []
    calls = [json.loads(line) for line in log.read_text().splitlines()]
    return [call for call in calls if call != ["--version"]]


@pytest.fixture
def webui(tmp_path: Path) -> Path:
    """A private copy of the stand-in tree (so repositories/, config.json and models land in tmp)."""
    target = tmp_path / "stable-diffusion-webui"
    shutil.copytree(STANDIN, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "repositories", "venv"))
    return target


def run_launch(webui_dir: Path, *args: str, env: dict[str, str] | None = None, python: str = sys.executable,
               timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run launch.py to completion (for runs that must exit by themselves)."""
    return subprocess.run([python, "launch.py", *args], cwd=webui_dir, env=env or clean_env(), capture_output=True,
                          text=True, timeout=timeout, check=False)


@dataclass
class Running:
    """A started stand-in server."""

    proc: subprocess.Popen[str]
    port: int
    log: Path
    lines: list[str] = field(default_factory=list)

    def output(self) -> str:
        """Everything it printed so far."""
        return self.log.read_text(errors="replace")

    def url(self, path: str) -> str:
        """URL on loopback."""
        return f"http://127.0.0.1:{self.port}{path}"


@pytest.fixture
def start_server(webui: Path, tmp_path: Path) -> Iterator:
    """Factory: start launch.py with args (always --skip-prepare-environment), wait for the `Running on` line."""
    started: list[Running] = []

    def _start(*args: str, port: int | None = None, env: dict[str, str] | None = None,
               wait: bool = True) -> Running:
        port = port or free_port()
        log = tmp_path / f"server-{len(started)}.log"
        with log.open("w") as handle:
            proc = subprocess.Popen(
                [sys.executable, "launch.py", "--skip-prepare-environment", "--port", str(port), *args],
                cwd=webui, env=env or clean_env(), stdout=handle, stderr=subprocess.STDOUT, text=True)
        running = Running(proc, port, log)
        started.append(running)
        if wait:
            deadline = time.monotonic() + START_TIMEOUT
            while "Running on local URL" not in running.output():
                if proc.poll() is not None:
                    raise AssertionError(f"stand-in exited {proc.returncode}:\n{running.output()}")
                if time.monotonic() > deadline:
                    raise AssertionError(f"stand-in did not start in {START_TIMEOUT}s:\n{running.output()}")
                time.sleep(0.05)
        return running

    yield _start
    for running in started:
        if running.proc.poll() is None:
            running.proc.kill()
        running.proc.wait(timeout=10)


def git(*args: str, cwd: Path | None = None) -> str:
    """Run git quietly with a fixed identity; return stdout."""
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t.invalid", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@t.invalid", "GIT_CONFIG_GLOBAL": "/dev/null", "GIT_CONFIG_NOSYSTEM": "1"}
    result = subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True, check=True)
    return result.stdout.strip()


@dataclass(frozen=True)
class SubRepoFixture:
    """A tiny local repo: url, pin (first commit) and head (second commit)."""

    url: str
    pin: str
    head: str


@pytest.fixture
def sub_repos(tmp_path: Path) -> dict[str, SubRepoFixture]:
    """Five two-commit repos under tmp; the pin is the first commit, HEAD the second (as in the mirror)."""
    repos = {}
    for prefix, name in SUB_REPOS.items():
        path = tmp_path / "upstream" / f"{name}.git"
        path.mkdir(parents=True)
        git("init", "-q", "-b", "main", cwd=path)
        (path / "README").write_text(f"{name} v1\n")
        git("add", "README", cwd=path)
        git("commit", "-q", "-m", "one", cwd=path)
        pin = git("rev-parse", "HEAD", cwd=path)
        (path / "README").write_text(f"{name} v2\n")
        git("commit", "-q", "-am", "two", cwd=path)
        repos[prefix] = SubRepoFixture(path.as_uri(), pin, git("rev-parse", "HEAD", cwd=path))
    return repos


def repo_env(repos: dict[str, SubRepoFixture], **extra: str) -> dict[str, str]:
    """clean_env with every <X>_REPO / <X>_COMMIT_HASH pointing at the local repos and CLIP / open_clip
    importable (`importable_stubs`), so an install-only run needs no network (`extra` wins)."""
    env = clean_env(PYTHONPATH=importable_stubs())
    for prefix, repo in repos.items():
        env[f"{prefix}_REPO"] = repo.url
        env[f"{prefix}_COMMIT_HASH"] = repo.pin
    env.update(extra)
    return env


# -- the mirror fixture on loopback, and pip limited to it ------------------------------------------------------
def fetch(url: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    """GET without proxies; (status, body), HTTP errors returned."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(urllib.request.Request(url, headers=headers or {}), timeout=10) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


@dataclass(frozen=True)
class MirrorFixture:
    """A running mirror: base URL and pins.json."""

    base: str
    pins: dict[str, Any]


@pytest.fixture(scope="session")
def mirror(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MirrorFixture]:
    """A mirror fixture built from the current stand-in tree, served on loopback."""
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
        yield MirrorFixture(base, json.loads((out / "pins.json").read_text()))
    finally:
        proc.kill()
        proc.wait(timeout=10)


def mirror_pip_env(mirror: MirrorFixture, **extra: str) -> dict[str, str]:
    """clean_env for pip runs that may reach the mirror and nothing else: no pip config file or PIP_* variable
    of this machine (extra indexes, find-links), the mirror's index as INDEX_URL and PIP_INDEX_URL, the
    sub-repos and URL packages from the mirror, a fast failure instead of retries."""
    env = {key: value for key, value in clean_env().items() if not key.startswith("PIP_")}
    env.update(PIP_CONFIG_FILE=os.devnull, PIP_NO_INPUT="1", PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_RETRIES="0",
               PIP_NO_CACHE_DIR="1", INDEX_URL=f"{mirror.base}/simple/", PIP_INDEX_URL=f"{mirror.base}/simple/",
               TORCH_INDEX_URL=f"{mirror.base}/torch/cu121")
    for repo in mirror.pins["repos"].values():
        env[repo["repo_env"]] = mirror.base + repo["path"]
        env[repo["commit_env"]] = repo["pin"]
    for variable, archive in mirror.pins["archives"].items():
        env[variable] = mirror.base + archive["path"]
    env.update(extra)
    return env


def make_venv(path: Path) -> str:
    """A fresh venv (with pip) from the test interpreter; its python."""
    subprocess.run([sys.executable, "-m", "venv", str(path)], check=True, timeout=180)
    return str(path / "bin" / "python")
