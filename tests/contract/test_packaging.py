"""What a minimal controller, AWX or an execution environment needs besides sdfleet.toolkit is declared
(issue 16, items 1 and 6): the collections the roles call, in collections/requirements.yml and galaxy.yml, and an
execution-environment.yml that ansible-builder accepts."""
from __future__ import annotations

import pathlib
import re
import shutil
import subprocess
import sys

import pytest
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
GALAXY = ROOT / "collections/ansible_collections/sdfleet/toolkit/galaxy.yml"
FQCN = re.compile(r"\b((?:community|ansible)\.[a-z_]+)\.[a-z_0-9]+\b")


def used_collections() -> set[str]:
    """Every collection the roles, playbooks and site.yml call by FQCN (ansible.builtin comes with core)."""
    found: set[str] = set()
    for path in [ROOT / "site.yml", *(ROOT / "playbooks").rglob("*.yml"), *(ROOT / "roles").rglob("*.yml"),
                 *(ROOT / "roles").rglob("*.j2")]:
        found.update(m.group(1) for m in FQCN.finditer(path.read_text(encoding="utf-8")))
    return found - {"ansible.builtin", "ansible.legacy"}


def requirements() -> dict[str, str]:
    data = yaml.safe_load((ROOT / "collections/requirements.yml").read_text(encoding="utf-8"))
    return {c["name"]: c["version"] for c in data["collections"]}


def test_every_collection_the_roles_call_is_declared_in_both_places():
    used = used_collections()
    assert {"community.general", "community.crypto"} <= used  # what this test exists for: the scan finds them
    assert used <= set(requirements()), f"undeclared in collections/requirements.yml: {used - set(requirements())}"
    galaxy = yaml.safe_load(GALAXY.read_text(encoding="utf-8"))
    assert galaxy["dependencies"] == requirements()


def test_the_declared_ranges_hold_the_collections_the_toolchain_ships():
    import json

    from ansible.galaxy.dependency_resolution.versioning import meets_requirements
    for name, spec in requirements().items():
        manifest = pathlib.Path(sys.prefix) / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / \
            "site-packages" / "ansible_collections" / name.replace(".", "/") / "MANIFEST.json"
        if not manifest.exists():
            pytest.skip(f"{name} is not installed in this venv (make venv installs the ansible package)")
        version = json.loads(manifest.read_text())["collection_info"]["version"]
        assert meets_requirements(version, spec), (name, version, spec)


def test_ansible_builder_creates_the_execution_environment_context(tmp_path):
    builder = pathlib.Path(sys.executable).with_name("ansible-builder")
    if not builder.exists():
        pytest.skip("ansible-builder is not installed: run make venv")
    shutil.copy(ROOT / "execution-environment.yml", tmp_path)
    (tmp_path / "collections").mkdir()
    shutil.copy(ROOT / "collections/requirements.yml", tmp_path / "collections")
    # the controller-side Python packages, as the collection declares them (execution-environment.yml points there)
    declared = "collections/ansible_collections/sdfleet/toolkit/requirements.txt"
    (tmp_path / declared).parent.mkdir(parents=True)
    shutil.copy(ROOT / declared, tmp_path / declared)
    proc = subprocess.run([str(builder), "create", "-f", "execution-environment.yml", "-c", "context",
                           "--output-filename", "Containerfile"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    containerfile = (tmp_path / "context/Containerfile").read_text(encoding="utf-8")
    assert "ansible-galaxy" in containerfile and "requirements.yml" in containerfile
    build = tmp_path / "context/_build"
    galaxy = yaml.safe_load((build / "requirements.yml").read_text(encoding="utf-8"))
    assert {c["name"] for c in galaxy["collections"]} == set(requirements())
    assert "passlib==1.7.4" in (build / "requirements.txt").read_text(encoding="utf-8")
    assert "git [platform:rpm platform:dpkg]" in (build / "bindep.txt").read_text(encoding="utf-8")
