"""The inventory contract: one mapping of sdfleet_* onto role variables, shared by every inventory."""
from __future__ import annotations

import pathlib
import re

import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
INVENTORIES = [ROOT / "inventories" / "demo", ROOT / "inventories" / "example"]
SHARED = ["00_sdfleet_defaults.yml", "10_sdfleet_map.yml"]


def test_mapping_and_defaults_identical_in_every_inventory() -> None:
    for name in SHARED:
        texts = {inv.name: (inv / "group_vars" / "all" / name).read_text(encoding="utf-8") for inv in INVENTORIES}
        assert len(set(texts.values())) == 1, f"{name} differs between {sorted(texts)}"


def test_every_fleet_name_the_mapping_reads_has_a_default() -> None:
    all_dir = INVENTORIES[0] / "group_vars" / "all"
    defaults = yaml.safe_load((all_dir / SHARED[0]).read_text(encoding="utf-8"))
    mapping_text = (all_dir / SHARED[1]).read_text(encoding="utf-8")
    mapping = yaml.safe_load(mapping_text)
    # sdfleet_mirror: a group name; sdfleet_mirror_address: an optional host var of the mirror host (default: its name).
    read = set(re.findall(r"\bsdfleet_[a-z_]+", mapping_text)) - set(mapping) - {"sdfleet_mirror", "sdfleet_mirror_address"}
    assert read, "the mapping reads no sdfleet_* names"
    assert sorted(read - set(defaults)) == []


def test_mapping_sets_only_role_or_internal_names() -> None:
    roles = {p.name for p in (ROOT / "roles").iterdir() if p.is_dir()}
    mapping = yaml.safe_load((INVENTORIES[0] / "group_vars" / "all" / SHARED[1]).read_text(encoding="utf-8"))
    for key in mapping:
        assert key.startswith("__sdfleet_") or key == "sdfleet_mirror_url" or \
            any(key.startswith(r + "_") for r in roles), key


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
