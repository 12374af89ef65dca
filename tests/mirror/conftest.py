"""Fixtures for the local mirror tests: a fixture built into a tmp dir and the server on a free loopback port."""

from __future__ import annotations

import json
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
    """The stand-in tree when it exists (the real input), else a minimal one so the mirror is still tested."""
    if STANDIN.is_dir() and any(STANDIN.iterdir()):
        return STANDIN
    return minimal_tree(tmp_path_factory.mktemp("standin"))


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
