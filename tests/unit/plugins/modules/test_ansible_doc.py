"""Every module of the collection (model_fetch_wait's action plugin included) and every filter renders with
ansible-doc, each filter on a page of its own that matches the function's signature."""
from __future__ import annotations

import importlib
import inspect
import json
import os
import pathlib
import subprocess
import sys
from typing import Any, Callable

import pytest

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


def _unwrapped(func: Callable[..., Any]) -> Callable[..., Any]:
    """The function behind a ``(*args, **kwargs)`` wrapper (gpu_tier's and fleet_mirror's turn their errors into
    AnsibleFilterError) whose closure holds it; any other function as it is."""
    while True:
        params = list(inspect.signature(func).parameters.values())
        kinds = [p.kind for p in params]
        cells = [c.cell_contents for c in (getattr(func, "__closure__", None) or ()) if inspect.isfunction(c.cell_contents)]
        if kinds != [inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD] or len(cells) != 1:
            return func
        func = cells[0]


def _filters() -> dict[str, Callable[..., Any]]:
    """Every filter of the collection: the keys of each plugins/filter/*.py FilterModule's filters(), with the
    function behind each."""
    found: dict[str, Callable[..., Any]] = {}
    for path in sorted((COLLECTION / "plugins" / "filter").glob("*.py")):
        if path.stem == "__init__":
            continue
        module = importlib.import_module(f"ansible_collections.sdfleet.toolkit.plugins.filter.{path.stem}")
        plugin = getattr(module, "FilterModule", None)
        if plugin is None:
            continue
        for name, func in plugin().filters().items():
            assert name not in found, f"{name}: defined by two filter files"
            found[name] = _unwrapped(func)
    return found


FILTERS = _filters()


def _normal(value: Any) -> Any:
    """A default as ansible-doc's JSON shows it (tuples are lists)."""
    if isinstance(value, (tuple, list)):
        return [_normal(item) for item in value]
    return value


@pytest.fixture(scope="module")
def filter_docs() -> dict[str, dict]:
    return ansible_doc("filter", [f"sdfleet.toolkit.{name}" for name in sorted(FILTERS)])


def test_filters_are_collected() -> None:
    assert len(FILTERS) >= 40, sorted(FILTERS)


@pytest.mark.parametrize("name", sorted(FILTERS))
def test_every_filter_has_its_own_page(filter_docs: dict[str, dict], name: str) -> None:
    """Each filter renders a page of its own (not a neighbour's in the same file), whose options are the
    function's real parameters and whose examples use the filter."""
    entry = filter_docs[f"sdfleet.toolkit.{name}"]
    doc = entry["doc"]
    assert doc.get("name") == name, f"{name}: ansible-doc shows the page of {doc.get('name')!r} ({doc.get('filename')})"
    assert str(doc.get("short_description") or "").strip(), f"{name}: no short_description"
    assert doc.get("description"), f"{name}: no description"

    params = list(inspect.signature(FILTERS[name]).parameters.values())
    first = next(p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD))
    by_name = {p.name: p for p in params if p.kind != p.VAR_KEYWORD}
    options = doc.get("options") or {}
    assert options, f"{name}: no options"
    for option, spec in options.items():
        param = first if option == "_input" else by_name.get(option)
        assert param is not None, (f"{name}: option {option!r} is not a parameter of "
                                   f"{FILTERS[name].__name__}{inspect.signature(FILTERS[name])}")
        if spec.get("required"):
            assert param.default is param.empty, f"{name}: option {option!r} is required but has a default"
        elif param.kind != param.VAR_POSITIONAL:
            assert param.default is not param.empty, f"{name}: option {option!r} has no default, so it is required"
            assert spec.get("default") == _normal(param.default), (
                f"{name}: option {option!r} documents default {spec.get('default')!r}, the function has "
                f"{param.default!r}")
    documented = {first.name if option == "_input" else option for option in options}
    missing = [p.name for p in params if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD) and p.name not in documented]
    assert not missing, f"{name}: parameters without an option: {missing}"

    examples = entry.get("examples")
    text = examples if isinstance(examples, str) else json.dumps(examples)
    assert f"sdfleet.toolkit.{name}" in (text or ""), f"{name}: EXAMPLES do not use sdfleet.toolkit.{name}"
    assert (entry.get("return") or {}).get("_value", {}).get("type"), f"{name}: RETURN has no typed _value"
