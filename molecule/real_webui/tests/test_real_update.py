"""Updates that cannot lose a host, on the REAL webui: playbooks/update.yml on real-webui-v1101.

The scenario converges real-webui-v1101 (and the mirror's package set) at v1.9.4; these tests run first
(pytest takes the files in name order) and move it, as a user would, with
`playbooks/update.yml -e sdfleet_webui_version=...`:
1. to v1.10.1 while a user's untracked file sits where v1.10.1 tracks one: refused, nothing changes, it serves;
2. to v1.10.1 with that file gone: done, users' files (an extension, a model, user.css) kept, serving v1.10.1;
3. to a release that fails its health gate (the fixture's tag sdfleet-test-broken): put back on v1.10.1's commit
   and venv, serving again, and the recorded failure (sdfleet_failure, the run's output) says so.
The other test file then checks the host at v1.10.1.
"""
from __future__ import annotations

import base64
import json
import os
import pathlib
import re
import subprocess
import sys
import time

import pytest

PROJECT = pathlib.Path(os.environ.get("MOLECULE_PROJECT_DIRECTORY", "."))
PINS = json.loads((PROJECT / "build/real-fixture/pins.json").read_text(encoding="utf-8"))
HOST = "real-webui-v1101"
CHECKOUT = "/opt/sd-webui"
BACKEND = "http://127.0.0.1:27860"
SECRETS = ("real-ui-password-1", "real-api-password-1")
# Files a user keeps in the checkout (git ignores them), checked byte for byte across the updates.
USER_FILES = {
    f"{CHECKOUT}/extensions/my-extension/scripts/hello.py": "print('a user extension')\n",
    f"{CHECKOUT}/models/Lora/my-lora.safetensors": "not really a lora\n",
    f"{CHECKOUT}/user.css": "body { color: teal; }\n",
}
# Tracked by v1.10.1, not by v1.9.4: a user's file there would be overwritten by the checkout.
IN_THE_WAY = f"{CHECKOUT}/configs/sd3-inference.yaml"

pytestmark = pytest.mark.skipif(not os.environ.get("MOLECULE_INVENTORY_FILE"), reason="runs in molecule's verify")


def update(version: str, *extra: str) -> tuple[int, str]:
    """Run playbooks/update.yml for the v1101 host (and the mirror, which goes first)."""
    cmd = [str(pathlib.Path(sys.executable).with_name("ansible-playbook")), "-i", os.environ["MOLECULE_INVENTORY_FILE"],
           # localhost: the report play runs there (a --limit without it would skip the report)
           str(PROJECT / "playbooks/update.yml"), "--limit", f"real-webui-mirror,{HOST},localhost",
           "-e", f"sdfleet_webui_version={version}", *extra]
    # Its own report dir: the scenario's report (read by test_real_webui.py) stays the converge's.
    env = dict(os.environ, ANSIBLE_NOCOLOR="1",
               SDFLEET_REPORT_DIR=str(pathlib.Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"]) / "update-reports"))
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=2400, check=False)
    out = proc.stdout + proc.stderr
    assert not any(secret in out for secret in SECRETS), "a password in the update's output"
    return proc.returncode, " ".join(out.split())  # Ansible wraps long messages: compare words, not lines


def on_v1101(host):
    if host.backend.get_hostname() != HOST:
        pytest.skip(f"the update tests run on {HOST}")


def head(host) -> str:
    return host.check_output(f"git -C {CHECKOUT} rev-parse HEAD")


def serves(host, timeout: int = 300) -> bool:
    """The instance answers /internal/ping (on its loopback backend port)."""
    for _ in range(timeout):
        out = host.run(f"curl -s -o /dev/null -w '%{{http_code}}' {BACKEND}/internal/ping")
        if out.stdout.strip() == "200":
            return True
        time.sleep(1)
    return False


def test_update_starts_from_v194_serving(host):
    on_v1101(host)
    assert head(host) == PINS["webui"]["commits"]["v1.9.4"]
    assert serves(host, 60)
    for path, content in USER_FILES.items():
        data = base64.b64encode(content.encode()).decode()
        host.check_output(f"sudo -u sdwebui mkdir -p $(dirname {path}) && echo {data} | base64 -d | "
                          f"sudo -u sdwebui tee {path} >/dev/null")
        assert host.file(path).content_string == content, path


def test_an_untracked_file_in_the_way_is_refused_and_nothing_changes(host):
    on_v1101(host)
    before = head(host)
    host.check_output(f"printf 'my own sd3 config\\n' | sudo -u sdwebui tee {IN_THE_WAY} >/dev/null")
    rc, out = update("v1.10.1")
    assert rc != 0, out[-3000:]
    assert "configs/sd3-inference.yaml" in out, out[-3000:]
    assert head(host) == before
    assert host.file(IN_THE_WAY).content_string == "my own sd3 config\n"
    assert serves(host, 120)
    host.check_output(f"rm -f {IN_THE_WAY}")


def test_update_to_v1101_keeps_the_users_files_and_serves(host):
    on_v1101(host)
    rc, out = update("v1.10.1")
    assert rc == 0, out[-4000:]
    assert head(host) == PINS["webui"]["commits"]["v1.10.1"]
    for path, content in USER_FILES.items():
        assert host.file(path).content_string == content, path
    assert serves(host, 60)
    spandrel = host.check_output(f"{CHECKOUT}/venv/bin/python -c 'import spandrel; print(spandrel.__version__)'")
    assert spandrel == "0.3.4"  # v1.10.1's pin (v1.9.4 has 0.1.6)
    kept = host.file(f"{CHECKOUT}.sdfleet-kept-venv/.sdfleet-commit").content_string.strip()
    assert kept == PINS["webui"]["commits"]["v1.9.4"]
    assert re.search(rf"{HOST} : ok=\d+ changed=\d+ unreachable=0 failed=0", out), out[-2000:]  # the recap


def test_a_release_that_fails_its_gate_is_rolled_back_and_the_host_serves(host):
    on_v1101(host)
    good = head(host)
    rc, out = update("sdfleet-test-broken", "-e", "sdfleet_update_health_timeout=60")
    assert rc != 0, out[-4000:]
    assert "Version: sdfleet-test-broken" in out, out[-4000:]  # the broken instance's own output, from its journal
    assert f"Rolled back to {good[:12]}" in out, out[-4000:]
    assert head(host) == good
    assert serves(host, 60)
    spandrel = host.check_output(f"{CHECKOUT}/venv/bin/python -c 'import spandrel; print(spandrel.__version__)'")
    assert spandrel == "0.3.4"
    for path, content in USER_FILES.items():
        assert host.file(path).content_string == content, path
