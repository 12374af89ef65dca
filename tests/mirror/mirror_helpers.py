"""Helpers for the local mirror tests (a module with a unique name, so no other conftest can shadow it)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]
MIRROR_DIR = REPO_ROOT / "molecule" / "_shared" / "mirror"
BUILDER = MIRROR_DIR / "build_fixture.py"
STANDIN = REPO_ROOT / "molecule" / "_shared" / "standin_webui"
WHEEL_CACHE = REPO_ROOT / "build" / "wheel-cache"


def run_builder(out: Path, src: Path) -> subprocess.CompletedProcess[str]:
    """Run build_fixture.py the way `make fixture` does (shared wheel cache, so PyPI is asked once)."""
    return subprocess.run([sys.executable, str(BUILDER), "--out", str(out), "--webui-src", str(src),
                           "--wheel-cache", str(WHEEL_CACHE)], capture_output=True, text=True, check=False,
                          timeout=300)


def minimal_tree(path: Path) -> Path:
    """A small webui-like tree, used only while the real stand-in tree is not there yet."""
    (path / "models" / "Stable-diffusion").mkdir(parents=True)
    (path / "webui.sh").write_text("#!/usr/bin/env bash\necho stand-in\n")
    (path / "webui.sh").chmod(0o755)
    (path / "launch.py").write_text("print('stand-in')\n")
    (path / "requirements_versions.txt").write_text("six==1.16.0\npackaging==24.1\n")
    (path / "models" / "Stable-diffusion" / "Put Stable Diffusion checkpoints here.txt").write_text("")
    return path


def free_port() -> int:
    """A loopback port nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Mirror:
    """A running mirror_server.py."""

    url: str
    port: int
    root: Path
    log: Path

    def get(self, path: str, headers: dict[str, str] | None = None, method: str = "GET",
            body: bytes | None = None) -> tuple[int, dict[str, str], bytes]:
        """(status, headers, body) of one request; HTTP errors are returned, not raised."""
        request = urllib.request.Request(self.url + path, data=body, headers=headers or {}, method=method)
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, dict(response.headers), response.read()
        except urllib.error.HTTPError as err:
            return err.code, dict(err.headers), err.read()

    def post_json(self, path: str, data: Any) -> tuple[int, Any]:
        """POST a JSON body; (status, decoded JSON answer)."""
        status, _, body = self.get(path, {"Content-Type": "application/json"}, "POST", json.dumps(data).encode())
        return status, json.loads(body)

    def stats(self) -> dict[str, dict[str, int]]:
        """GET /_stats."""
        stats: dict[str, dict[str, int]] = json.loads(self.get("/_stats")[2])
        return stats


def git_env() -> dict[str, str]:
    """Git without the user's config and never prompting."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update(GIT_CONFIG_NOSYSTEM="1", GIT_CONFIG_GLOBAL=os.devnull, GIT_TERMINAL_PROMPT="0",
               GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@t", GIT_COMMITTER_NAME="t", GIT_COMMITTER_EMAIL="t@t")
    return env


def git(*args: str, cwd: Path | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run git and return the finished process (raising with its stderr when `check`)."""
    proc = subprocess.run(["git", *args], cwd=cwd, env=git_env(), capture_output=True, text=True, timeout=60,
                          check=False)
    if check and proc.returncode != 0:
        raise AssertionError(f"git {' '.join(args)} -> {proc.returncode}\n{proc.stderr}")
    return proc
