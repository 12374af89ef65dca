"""Every module of the collection (model_fetch_wait's action plugin included) and every documented filter
renders with ansible-doc."""
from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[4]
COLLECTION = ROOT / "collections" / "ansible_collections" / "sdfleet" / "toolkit"
MODULES = sorted(p.stem for p in (COLLECTION / "plugins" / "modules").glob("*.py") if p.stem != "__init__")


def ansible_doc(plugin_type: str, names: list[str]) -> dict:
    """ansible-doc --json for these plugins; fails the test unless every one of them renders."""
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(ROOT / "collections"), ANSIBLE_NOCOLOR="1")
    doc = pathlib.Path(sys.executable).with_name("ansible-doc")
    proc = subprocess.run([str(doc), "--json", "-t", plugin_type, *names], capture_output=True, text=True,
                          env=env, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    rendered = json.loads(proc.stdout)
    assert sorted(rendered) == sorted(names), proc.stderr
    return rendered


def test_every_module_renders_with_ansible_doc() -> None:
    rendered = ansible_doc("module", [f"sdfleet.toolkit.{m}" for m in MODULES])
    for name, entry in rendered.items():
        assert entry["doc"].get("short_description"), f"{name}: no short_description"
        assert entry["doc"].get("options") is not None, f"{name}: no options"
        assert entry.get("examples"), f"{name}: no EXAMPLES"


def _documented_filters() -> list[str]:
    """Filters documented by a sidecar YAML file or by DOCUMENTATION in the file named after them."""
    fdir = COLLECTION / "plugins" / "filter"
    sidecars = [p.stem for p in fdir.glob("*.yml")]
    inline = [p.stem for p in fdir.glob("*.py") if "\nDOCUMENTATION = " in p.read_text(encoding="utf-8")]
    return sorted(set(sidecars + inline))


def test_documented_filters_render_with_ansible_doc() -> None:
    names = [f"sdfleet.toolkit.{f}" for f in _documented_filters()]
    assert len(names) >= 3
    rendered = ansible_doc("filter", names)
    for name, entry in rendered.items():
        assert entry["doc"].get("short_description"), f"{name}: no short_description"
