"""Fixtures for the local mirror tests: a fixture built into a tmp dir and the server on a free loopback port."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mirror_helpers import STANDIN, Mirror, free_port, minimal_tree, run_builder


@pytest.fixture(scope="session")
def webui_src(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A snapshot of the stand-in tree (the real input; copied so edits during the run can't skew the
    comparisons), or a minimal tree while the stand-in does not exist yet."""
    tmp = tmp_path_factory.mktemp("standin")
    if STANDIN.is_dir() and any(STANDIN.iterdir()):
        shutil.copytree(STANDIN, tmp / "src", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        return tmp / "src"
    return minimal_tree(tmp)


@pytest.fixture(scope="session")
def fixture_dir(tmp_path_factory: pytest.TempPathFactory, webui_src: Path) -> Path:
    """A freshly built fixture."""
    out = tmp_path_factory.mktemp("fixture") / "fixture"
    result = run_builder(out, webui_src)
    assert result.returncode == 0, result.stderr
    return out


@pytest.fixture(scope="session")
def pins(fixture_dir: Path) -> dict[str, Any]:
    """pins.json of the built fixture."""
    loaded: dict[str, Any] = json.loads((fixture_dir / "pins.json").read_text())
    return loaded


@pytest.fixture(scope="session")
def mirror(fixture_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mirror]:
    """The server from the fixture's bin/, on 127.0.0.1 and a free port, as the containers run it."""
    port = free_port()
    log = tmp_path_factory.mktemp("mirror") / "server.log"
    with log.open("w") as handle:
        proc = subprocess.Popen([sys.executable, str(fixture_dir / "bin" / "mirror_server.py"), "--root",
                                 str(fixture_dir), "--port", str(port), "--bind", "127.0.0.1"],
                                stdout=handle, stderr=subprocess.STDOUT)
    server = Mirror(f"http://127.0.0.1:{port}", port, fixture_dir, log)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                if server.get("/_ping")[0] == 200:
                    break
            except OSError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        yield server
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture
def fresh_mirror(mirror: Mirror) -> Mirror:
    """The mirror with counters and control rules cleared."""
    assert mirror.post_json("/_reset", {})[0] == 200
    return mirror
