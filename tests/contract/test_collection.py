"""The collection as an Ansible user installs it (issue 16, items 1 and 2): scripts/build_collection.py builds the
tarball with the roles, playbooks and templates gathered in, installs it offline into a clean venv that has only
ansible-core and the collections galaxy.yml declares, and there every module, filter and role has its own
ansible-doc page and ``ansible-playbook sdfleet.toolkit.site`` resolves every role and task.
(molecule/site's verify converges its fleet with that same venv and tarball.)"""
from __future__ import annotations

import ast
import json
import os
import pathlib
import subprocess
import sys
import tarfile

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
PLUGINS = ROOT / "collections/ansible_collections/sdfleet/toolkit/plugins"
ROLES = sorted(p.name for p in (ROOT / "roles").iterdir() if (p / "meta" / "argument_specs.yml").is_file())


@pytest.fixture(scope="module")
def clean(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Build, and install into a clean venv under build/collection/unit (its ansible-core is reused between runs)."""
    # Its own build dir: molecule/site builds another beside it, at the same time under make test.
    work = ROOT / "build" / "collection" / "unit"
    out = subprocess.run([sys.executable, str(ROOT / "scripts" / "build_collection.py"),
                          "--out", str(work), "--venv", str(work / "venv")],
                         capture_output=True, text=True, timeout=600, check=False)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    tarball, playbook, path = out.stdout.split()[-3:]
    home = tmp_path_factory.mktemp("home")
    env = {"PATH": f"{pathlib.Path(playbook).parent}:/usr/bin:/bin", "HOME": str(home), "LANG": "C.UTF-8",
           "ANSIBLE_COLLECTIONS_PATH": path, "ANSIBLE_NOCOLOR": "1"}
    return {"tarball": pathlib.Path(tarball), "bin": pathlib.Path(playbook).parent, "env": env, "cwd": home}


def run(clean: dict, *args: str) -> str:
    proc = subprocess.run([str(clean["bin"] / args[0]), *args[1:]], env=clean["env"], cwd=clean["cwd"],
                          capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, f"{args}: {proc.stdout[-2000:]}{proc.stderr[-3000:]}"
    return proc.stdout


def filter_names() -> set[str]:
    """Every filter the plugin files register: the keys of each FilterModule.filters() return dict."""
    names: set[str] = set()
    for path in (PLUGINS / "filter").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.FunctionDef) and node.name == "filters":
                for ret in ast.walk(node):
                    if isinstance(ret, ast.Return) and isinstance(ret.value, ast.Dict):
                        names |= {k.value for k in ret.value.keys if isinstance(k, ast.Constant)}
    return names


def test_the_tarball_carries_roles_playbooks_and_templates(clean):
    with tarfile.open(clean["tarball"]) as tar:
        names = set(tar.getnames())
    for role in ROLES:
        assert f"roles/{role}/meta/argument_specs.yml" in names, role
    assert {"playbooks/site.yml", "playbooks/steps/record_failure.yml", "templates/fleet_report.md.j2",
            "roles/sdfleet/vars/main.yml"} <= names
    assert not any("__pycache__" in n for n in names)


def test_the_clean_venv_has_only_ansible_core_and_the_declared_collections(clean):
    pip = subprocess.run([str(clean["bin"] / "python"), "-m", "pip", "list", "--format", "json"],
                         capture_output=True, text=True, check=True, env=clean["env"]).stdout
    installed = {p["name"].lower() for p in json.loads(pip)}
    assert "ansible" not in installed  # the ansible package, with its collections
    assert {"ansible-core", "passlib"} <= installed  # the collection's declared Python packages
    listed = run(clean, "ansible-galaxy", "collection", "list", "--format", "json")
    found = {name for path in json.loads(listed).values() for name in path if not name.startswith("ansible.")}
    assert found == {"sdfleet.toolkit", "community.general", "community.crypto"}, found


@pytest.mark.parametrize("kind", ["module", "filter", "role"])
def test_ansible_doc_renders_every_plugin_and_role_with_its_own_text(clean, kind):
    listed = json.loads(run(clean, "ansible-doc", "-t", kind, "-l", "sdfleet.toolkit", "--json"))
    if kind == "role":
        expected = {f"sdfleet.toolkit.{r}" for r in ROLES}
    elif kind == "filter":
        expected = {f"sdfleet.toolkit.{f}" for f in filter_names()}
    else:
        expected = {f"sdfleet.toolkit.{p.stem}" for p in (PLUGINS / "modules").glob("*.py") if p.stem != "__init__"}
    assert set(listed) == expected
    pages = json.loads(run(clean, "ansible-doc", "-t", kind, "--json", *sorted(expected)))
    assert set(pages) == expected
    if kind == "role":
        texts = [json.dumps(next(iter(p["entry_points"].values()))["short_description"]) for p in pages.values()]
    else:
        texts = [p["doc"]["short_description"] for p in pages.values()]
    assert len(set(texts)) == len(expected), "two pages share one text"
    print(f"ansible-doc {kind}: {len(expected)} pages")


def test_the_installed_site_playbook_resolves_every_role_and_task(clean):
    inventory = str(ROOT / "inventories" / "example")
    run(clean, "ansible-playbook", "-i", inventory, "sdfleet.toolkit.site", "--syntax-check")
    tasks = run(clean, "ansible-playbook", "-i", inventory, "sdfleet.toolkit.site", "--list-tasks")
    # every stage's play, from the collection's own playbooks, roles by their short names inside it
    for play in ("GPU facts", "Preflight", "Webui - checkout", "Models", "Fleet report"):
        assert play in tasks, play
    for task in ("sdfleet : Refuse the names the fleet contract would ignore", "webui_repo : ", "webui_service : "):
        assert task in tasks, task
