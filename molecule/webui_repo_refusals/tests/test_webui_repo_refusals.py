"""webui_repo refusals leave the host as it was."""
from __future__ import annotations

import json
import os

import pytest

testinfra_hosts = ["webui_repo_refusals-dead", "webui_repo_refusals-dirty"]

PINS = json.load(open(os.environ["MOLECULE_PROJECT_DIRECTORY"] + "/build/fixture/pins.json", encoding="utf-8"))
DIR = "/opt/sd-webui"


def head(host) -> str:
    cmd = host.run("git -c safe.directory=* -C %s rev-parse HEAD", DIR)
    assert cmd.rc == 0, cmd.stderr
    return cmd.stdout.strip()


def test_checkout_stays_at_its_old_commit(host):
    assert head(host) == PINS["webui"]["tags"]["v1.10.0"]


def test_nothing_was_installed(host):
    assert not host.file(DIR + "/venv").exists
    assert not host.file("/var/log/sd-webui").exists


def test_dead_sources_left_marker_and_created_no_user(host):
    if not host.backend.get_hostname().endswith("dead"):
        pytest.skip("only the dead-sources host had a marker and no service user")
    assert host.file(DIR + "/marker.txt").content_string == "existing install\n"
    assert host.file(DIR).user == "root"
    assert not host.user("sdwebui").exists


def test_local_edits_survive(host):
    if not host.backend.get_hostname().endswith("dirty"):
        pytest.skip("only the dirty host has local edits")
    for name in ("launch.py", "CHANGELOG.md"):
        assert host.file(f"{DIR}/{name}").content_string.rstrip("\n").endswith("# local edit"), name
