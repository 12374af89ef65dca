"""build_fixture.py: a cached no-op when nothing changed, deterministic output, pins that match the repos."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import shutil
import sys
from pathlib import Path
from typing import Any

from mirror_helpers import BUILDER, git, run_builder


def manifest(root: Path) -> dict[str, str]:
    """relative path -> sha256 of every file under `root`."""
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_second_build_is_a_no_op(fixture_dir: Path, webui_src: Path) -> None:
    before = {p: p.stat().st_mtime_ns for p in fixture_dir.rglob("*")}
    result = run_builder(fixture_dir, webui_src)
    assert result.returncode == 0, result.stderr
    assert "up to date" in result.stdout
    assert {p: p.stat().st_mtime_ns for p in fixture_dir.rglob("*")} == before


def test_fresh_build_is_byte_identical(fixture_dir: Path, webui_src: Path, tmp_path: Path) -> None:
    other = tmp_path / "again"
    result = run_builder(other, webui_src)
    assert result.returncode == 0, result.stderr
    assert "built" in result.stdout
    assert manifest(other) == manifest(fixture_dir)


def test_changed_input_rebuilds_with_new_commits(fixture_dir: Path, webui_src: Path, tmp_path: Path,
                                                 pins: dict[str, Any]) -> None:
    src = tmp_path / "src"
    shutil.copytree(webui_src, src, ignore=shutil.ignore_patterns("__pycache__"))
    out = tmp_path / "out"
    shutil.copytree(fixture_dir, out)
    (src / "EXTRA.txt").write_text("changed\n")
    result = run_builder(out, src)
    assert result.returncode == 0 and "built" in result.stdout, result.stderr
    changed = json.loads((out / "pins.json").read_text())
    assert changed["webui"]["tags"]["v1.10.1"] != pins["webui"]["tags"]["v1.10.1"]
    assert changed["repos"] == pins["repos"] and changed["files"] == pins["files"]


def test_pins_match_the_bare_repos(fixture_dir: Path, pins: dict[str, Any]) -> None:
    webui = fixture_dir / "git" / "stable-diffusion-webui.git"
    assert git("symbolic-ref", "HEAD", cwd=webui).stdout.strip() == "refs/heads/master"
    for branch, commit in pins["webui"]["branches"].items():
        assert git("rev-parse", f"refs/heads/{branch}", cwd=webui).stdout.strip() == commit
    for name, sub in pins["repos"].items():
        repo = fixture_dir / "git" / f"{name}.git"
        assert git("rev-parse", "HEAD", cwd=repo).stdout.strip() == sub["head"]
        assert git("rev-parse", "HEAD~1", cwd=repo).stdout.strip() == sub["pin"]


def test_webui_commit_holds_the_standin_tree(fixture_dir: Path, webui_src: Path) -> None:
    webui = fixture_dir / "git" / "stable-diffusion-webui.git"
    listed = set(git("ls-tree", "-r", "--name-only", "v1.10.1", cwd=webui).stdout.split("\n"))
    wanted = {p.relative_to(webui_src).as_posix() for p in webui_src.rglob("*")
              if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"}
    assert wanted - {"CHANGELOG.md"} <= listed
    changelog = git("show", "v1.10.1:CHANGELOG.md", cwd=webui).stdout
    older = git("show", "v1.10.0:CHANGELOG.md", cwd=webui).stdout
    assert changelog.startswith("## 1.10.1\n") and older.startswith("## 1.10.0\n")
    assert changelog.endswith(older) and len(changelog) > len(older)
    source = webui_src / "CHANGELOG.md"
    if source.is_file() and source.read_text().startswith("## 1.10.1\n"):
        assert changelog == source.read_text()  # the stand-in's own file, whole, at v1.10.1


def test_server_copy_is_current(fixture_dir: Path) -> None:
    source = Path(__file__).resolve().parents[2] / "molecule" / "_shared" / "mirror" / "mirror_server.py"
    assert (fixture_dir / "bin" / "mirror_server.py").read_bytes() == source.read_bytes()


def test_source_files_honour_the_standin_gitignore(tmp_path: Path) -> None:
    """What a hand-run stand-in leaves behind (venv/, repositories/, config.json) never enters the fixture."""
    spec = importlib.util.spec_from_file_location("build_fixture", BUILDER)
    assert spec and spec.loader
    build_fixture = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("build_fixture", build_fixture)  # dataclasses look their module up there
    spec.loader.exec_module(build_fixture)

    src = tmp_path / "webui"
    (src / "venv" / "bin").mkdir(parents=True)
    (src / "repositories" / "k-diffusion").mkdir(parents=True)
    (src / "webui.sh").write_text("#!/bin/sh\n")
    (src / ".gitignore").write_text("/venv\n/repositories\n/config.json\n")
    (src / "config.json").write_text("{}\n")
    (src / "venv" / "bin" / "python").write_text("")
    (src / "repositories" / "k-diffusion" / "x.py").write_text("")
    git("init", "-q", str(src))
    names = {p.relative_to(src).as_posix() for p in build_fixture.source_files(src)}
    assert names == {".gitignore", "webui.sh"}
