"""The inventory contract (roles/sdfleet): every name an inventory sets is known, and inventories hold only overrides."""
from __future__ import annotations

import pathlib
import re

import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
INVENTORIES = [ROOT / "inventories" / "demo", ROOT / "inventories" / "example"]


class _Loader(yaml.SafeLoader):
    """yaml.safe_load that reads an inline ``!vault`` value as its ciphertext."""


_Loader.add_constructor("!vault", lambda loader, node: loader.construct_scalar(node))


def _load(path: pathlib.Path) -> object:
    return yaml.load(path.read_text(encoding="utf-8"), Loader=_Loader)  # noqa: S506 - a SafeLoader subclass


def _contract() -> tuple[dict, dict, str]:
    role = ROOT / "roles" / "sdfleet"
    spec = yaml.safe_load((role / "meta" / "argument_specs.yml").read_text(encoding="utf-8"))
    mapping_text = (role / "vars" / "main.yml").read_text(encoding="utf-8")
    return spec["argument_specs"]["check"]["options"], yaml.safe_load(mapping_text), mapping_text


def test_no_inventory_carries_the_contract() -> None:
    """Inventories hold only overrides: no defaults or map copies, nothing in group_vars/all set to its default
    value (a narrower group may set a default back over a wider one), no role variable the map owns."""
    options, mapping, _ = _contract()
    for inv in INVENTORIES:
        for path in sorted((inv / "group_vars").rglob("*.yml")) + sorted((inv / "host_vars").rglob("*.yml")):
            data = _load(path) or {}
            if not isinstance(data, dict):
                continue
            widest = path.parent.name == "all"
            same = [k for k, v in data.items()
                    if widest and k in options and options[k].get("default", object()) == v]
            assert not same, f"{path.relative_to(ROOT)} repeats defaults: {same}"
            mapped = [k for k in data if not k.startswith(("sdfleet_", "__")) and k in mapping]
            assert not mapped, f"{path.relative_to(ROOT)} sets role variables the map owns: {mapped}"


def test_every_fleet_name_the_mapping_reads_has_a_spec() -> None:
    options, mapping, mapping_text = _contract()
    # sdfleet_mirror: a group name; sdfleet_* names the map itself sets (sdfleet_mirror_urls) are outputs.
    text = " ".join(str(v) for k, v in mapping.items() if k != "__sdfleet_published_facts")
    read = set(re.findall(r"\bsdfleet_[a-z_]+", text)) - set(mapping) - {"sdfleet_mirror"}
    assert read, "the mapping reads no sdfleet_* names"
    assert sorted(read - set(options)) == []


def test_every_inventory_name_used_has_a_spec() -> None:
    """Each sdfleet_* name an inventory sets is in the spec (the check would refuse it otherwise)."""
    options, mapping, _ = _contract()
    published = set(mapping["__sdfleet_published_facts"])
    for inv in INVENTORIES:
        for path in sorted(inv.rglob("*.yml")):
            data = _load(path) or {}
            names = {k for k in data if isinstance(k, str) and k.startswith("sdfleet_")} if isinstance(data, dict) else set()
            assert sorted(names - set(options) - published) == [], path.relative_to(ROOT)


def _set_facts(node: object) -> set[str]:
    """The names every ``set_fact`` task under ``node`` (a loaded tasks or playbook file) sets."""
    found: set[str] = set()
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("ansible.builtin.set_fact", "set_fact") and isinstance(value, dict):
                found |= {k for k in value if k != "cacheable"}
            else:
                found |= _set_facts(value)
    elif isinstance(node, list):
        for item in node:
            found |= _set_facts(item)
    return found


def test_every_published_sdfleet_fact_is_listed() -> None:
    """A fact a role or playbook sets under an sdfleet_* name is listed in __sdfleet_published_facts, and the list
    holds nothing else (the check refuses unknown sdfleet_* names, facts included)."""
    options, mapping, _ = _contract()
    published = set(mapping["__sdfleet_published_facts"])
    facts: set[str] = set()
    for path in sorted((ROOT / "roles").rglob("*.yml")) + sorted((ROOT / "playbooks").rglob("*.yml")):
        facts |= {n for n in _set_facts(_load(path)) if n.startswith("sdfleet_")}
    assert {"sdfleet_gpu", "sdfleet_failure"} <= facts, "the set_fact scan is broken"
    assert sorted(facts - published) == [], "publish these in __sdfleet_published_facts"
    # sdfleet_mirror_urls: the map's output, not a fact
    assert sorted(published - facts - {"sdfleet_mirror_urls"}) == []
    # sdfleet_front_door: the front door's published record replaces the input of the same name (documented)
    assert sorted(published & set(options)) == ["sdfleet_front_door"]


def test_readme_documents_every_fleet_name() -> None:
    options, _, _ = _contract()
    table = (ROOT / "README.md").read_text(encoding="utf-8").split("## Inventory variables", 1)[1]
    assert sorted(n for n in options if f"`{n}`" not in table) == []


def test_mapping_sets_only_role_or_internal_names() -> None:
    roles = {p.name for p in (ROOT / "roles").iterdir() if p.is_dir()}
    _, mapping, _ = _contract()
    for key in mapping:
        assert key.startswith("__sdfleet_") or key == "sdfleet_mirror_urls" or \
            any(key.startswith(r + "_") for r in roles - {"sdfleet"}), key


def test_demo_published_ports_match_the_report_urls() -> None:
    script = (ROOT / "scripts" / "demo.sh").read_text(encoding="utf-8")
    for host_vars in (INVENTORIES[0] / "host_vars").glob("*.yml"):
        urls = yaml.safe_load(host_vars.read_text(encoding="utf-8")).get("sdfleet_public_urls", [])
        ports = re.search(rf'\[{re.escape(host_vars.stem)}\]="([^"]*)"', script)
        assert ports, f"{host_vars.stem} missing from demo.sh PORTS"
        published = [p.split(":")[0] for p in ports.group(1).split()]
        assert [re.search(r":(\d+)/", u).group(1) for u in urls] == published, host_vars.stem
        # instance N listens on 7860 + N inside the container
        assert [p.split(":")[1] for p in ports.group(1).split()] == [str(7860 + i) for i in range(len(urls))]
