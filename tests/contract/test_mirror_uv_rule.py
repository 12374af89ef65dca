"""The fleet mirror serves uv exactly when a GPU host that uses the mirrors installs with it (roles/sdfleet/vars).

Each case runs the sdfleet role's map on a local inventory with ansible-playbook and reads what the mirror host
would download (fleet_mirror_pip_requirements); the pin is the product's own (sdfleet_uv_package).
"""
from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import pytest
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
UV = yaml.safe_load((ROOT / "roles" / "sdfleet" / "defaults" / "main.yml").read_text())["sdfleet_uv_package"]
PLAY = """- hosts: sdfleet_mirror
  gather_facts: false
  roles: [sdfleet]
  tasks:
    - ansible.builtin.copy:
        content: "{{ fleet_mirror_pip_requirements | to_json }}"
        dest: "{{ out }}"
      delegate_to: localhost
"""


def mirror_requirements(tmp_path: pathlib.Path, hosts: dict, group_vars: dict | None = None,
                        mirror_vars: dict | None = None) -> list[str]:
    """What the mirror host (its own variables `mirror_vars`) downloads besides the webui's sets, for GPU hosts
    `hosts` ({name: host vars}) in group webui_hosts (`group_vars`)."""
    inventory = {"all": {"vars": {"ansible_connection": "local", "ansible_python_interpreter": sys.executable},
                         "children": {"webui_hosts": {"hosts": hosts, "vars": group_vars or {}},
                                      "sdfleet_mirror": {"hosts": {"mirror": mirror_vars or {}}}}}}
    (tmp_path / "hosts.yml").write_text(yaml.safe_dump(inventory))
    (tmp_path / "play.yml").write_text(PLAY)
    out = tmp_path / "out.json"
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_ROLES_PATH=str(ROOT / "roles"))
    done = subprocess.run([str(pathlib.Path(sys.executable).parent / "ansible-playbook"), "-i",
                           str(tmp_path / "hosts.yml"), str(tmp_path / "play.yml"), "-e", f"out={out}"],
                          capture_output=True, text=True, env=env, check=False, timeout=120)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return json.loads(out.read_text())


EXTRA = {"sdfleet_mirror_pip_requirements": ["six==1.16.0"]}


@pytest.mark.parametrize(("hosts", "group_vars", "mirror_vars", "expected"), [
    ({"a": {}, "b": {"sdfleet_webui_installer": "launcher"}}, None, EXTRA, ["six==1.16.0"]),
    ({"a": {"sdfleet_webui_installer": "uv", "sdfleet_use_mirror": False}, "b": {}}, None, None, []),
    ({"a": {"sdfleet_webui_installer": "uv"}, "b": {}}, None, None, [UV]),
    ({"a": {}, "b": {"sdfleet_use_mirror": False}}, {"sdfleet_webui_installer": "uv"}, EXTRA, ["six==1.16.0", UV]),
], ids=["no-uv-host", "uv-host-off-the-mirror", "uv-host-on-the-mirror", "uv-group-beside-extra-requirements"])
def test_the_mirror_serves_uv_only_to_hosts_that_need_it(tmp_path, hosts, group_vars, mirror_vars, expected):
    assert mirror_requirements(tmp_path, hosts, group_vars, mirror_vars) == expected
