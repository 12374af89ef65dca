"""ansible.cfg is safe for real fleets: host keys are checked and no fleet is a default (issue 16, item 7)."""
from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]


def effective() -> dict[str, object]:
    """The settings ansible-config reads from the project's ansible.cfg (what every run of the project gets)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    env["ANSIBLE_CONFIG"] = str(ROOT / "ansible.cfg")
    tool = pathlib.Path(sys.executable).with_name("ansible-config")
    out = subprocess.run([str(tool), "dump", "--format", "json"], capture_output=True, text=True, env=env,
                         cwd=ROOT, check=True, timeout=120).stdout
    return {item["name"]: item for item in json.loads(out) if "name" in item}


def test_host_keys_are_checked_and_no_inventory_is_a_default():
    settings = effective()
    assert settings["HOST_KEY_CHECKING"]["value"] is True
    assert settings["HOST_KEY_CHECKING"]["origin"] != "default", "say it in ansible.cfg, where a reader looks"
    hosts = settings["DEFAULT_HOST_LIST"]
    assert hosts["origin"] == "default", f"ansible.cfg names a default inventory: {hosts['value']}"


def test_no_shipped_inventory_turns_host_key_checking_off():
    for path in sorted((ROOT / "inventories").rglob("*.yml")):
        text = " ".join(path.read_text(encoding="utf-8").split()).lower()  # vault blocks need no parsing here
        for off in ("stricthostkeychecking=no", "host_key_checking: false", "host_key_checking: no"):
            assert off not in text, (path, off)


def test_the_demo_reaches_its_containers_without_ssh():
    hosts = yaml.safe_load((ROOT / "inventories/demo/hosts.yml").read_text(encoding="utf-8"))
    assert "community.docker.docker" in json.dumps(hosts)
