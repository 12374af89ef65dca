"""Helpers and fixtures for the stand-in webui tests: a private copy of the tree, free ports, a server runner, git repos."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

STANDIN = Path(__file__).resolve().parents[2] / "molecule" / "_shared" / "standin_webui"
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
                          "GRADIO_SERVER_NAME", "GRADIO_SERVER_PORT", "SDFLEET_STANDIN_FAKE_CUDA", "VIRTUAL_ENV"}
           and not key.endswith(("_REPO", "_COMMIT_HASH"))}
    env.update(extra)
    return env


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
    """clean_env with every <X>_REPO / <X>_COMMIT_HASH pointing at the local repos (`extra` wins)."""
    env = clean_env()
    for prefix, repo in repos.items():
        env[f"{prefix}_REPO"] = repo.url
        env[f"{prefix}_COMMIT_HASH"] = repo.pin
    env.update(extra)
    return env
