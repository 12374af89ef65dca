"""Pinned extensions on the REAL webui: the zh_CN localization and sd-dynamic-prompts v2.9.1 (../shared/upstream).

Both hosts converge with them (fleet.yml); real-webui-v1101 has only the fleet mirror to fetch them from, and its
UI is in Chinese (sdfleet_localization: zh_CN). What a user checks: the real /sdapi/v1/extensions lists both,
enabled, at the pinned commits; dynamic-prompts' install.py ran at provision time (the install log) and no start
ever installed anything (the journal); the UI is Chinese where asked, English elsewhere; the report lists them.
Then, on v1101 (this file runs after the others: pytest takes them in name order): bad input is refused before
any change, and one converge moves dynamic-prompts to its next release and disables it, and removes zh_CN (moved
aside, kept): the instance restarts and the webui reports exactly that.
"""
from __future__ import annotations

import json
import os
import pathlib
import re
import shlex
import subprocess
import sys

import pytest

PROJECT = pathlib.Path(os.environ.get("MOLECULE_PROJECT_DIRECTORY", "."))
PINS = json.loads((PROJECT / "build/real-fixture/pins.json").read_text(encoding="utf-8"))
BASE = "https://127.0.0.1:7860"
CERT = "/etc/nginx/sd-webui/front-door.crt"
UI = ("tester", "real-ui-password-1")
API = ("robot", "real-api-password-1")
CHECKOUT = "/opt/sd-webui"
ZH = "stable-diffusion-webui-localization-zh_CN"
DP = "sd-dynamic-prompts"
COMMITS = {ZH: PINS["repos"]["dtlnor/stable-diffusion-webui-localization-zh_CN"]["commit"],
           DP: PINS["repos"]["adieyal/sd-dynamic-prompts"]["commit"]}
NEXT = PINS["repos"]["adieyal/sd-dynamic-prompts"]["next"]
V1101 = "real-webui-v1101"

pytestmark = pytest.mark.skipif(not os.environ.get("MOLECULE_INVENTORY_FILE"), reason="runs in molecule's verify")


def name(host) -> str:
    return host.backend.get_hostname()


def curl(host, path: str, *args: str) -> tuple[int, str]:
    out = host.run(f"curl -s --cacert {CERT} -o /tmp/body-ext -w '%{{http_code}}' "
                   f"{' '.join(shlex.quote(a) for a in args)} {shlex.quote(BASE + path)}; echo; cat /tmp/body-ext")
    status, _, body = out.stdout.partition("\n")
    return int(status or 0), body


def listed(host) -> dict[str, dict]:
    """The real webui's own view: /sdapi/v1/extensions through the front door, with the API login."""
    status, body = curl(host, "/sdapi/v1/extensions", "-u", f"{API[0]}:{API[1]}")
    assert status == 200, body[:500]
    return {e["name"]: e for e in json.loads(body)}


def ui_page(host) -> str:
    status, _ = curl(host, "/login", "-c", "/tmp/jar-ext", "--data-urlencode", f"username={UI[0]}",
                     "--data-urlencode", f"password={UI[1]}")
    assert status == 200
    status, page = curl(host, "/", "-b", "/tmp/jar-ext")
    assert status == 200
    return page


def instance_log(host) -> str:
    return host.run("journalctl --no-pager -o cat -u sd-webui@0").stdout


def converge(*extra: str, tags: str = "webui,service") -> tuple[int, str]:
    """site.yml for the v1101 host only, limited to the stages that own extensions (the GPU stage always runs)."""
    cmd = [str(pathlib.Path(sys.executable).with_name("ansible-playbook")), "-i", os.environ["MOLECULE_INVENTORY_FILE"],
           str(PROJECT / "site.yml"), "--limit", V1101, "--tags", tags, *extra]
    env = dict(os.environ, ANSIBLE_NOCOLOR="1",
               SDFLEET_REPORT_DIR=str(pathlib.Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"]) / "ext-reports"))
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=2400, check=False)
    out = proc.stdout + proc.stderr
    assert UI[1] not in out and API[1] not in out, "a password in the run's output"
    return proc.returncode, " ".join(out.split())


def extensions_var(entries: list[dict]) -> str:
    """-e in its JSON form (key=value would split the list at its spaces)."""
    return json.dumps({"sdfleet_webui_extensions": entries})


def git(host, path: str, *args: str) -> str:
    """git in an extension checkout, as its owner (git refuses root in a repository another user owns)."""
    return host.check_output(f"sudo -u sdwebui git -C {shlex.quote(path)} {' '.join(shlex.quote(a) for a in args)}")


def fleet_entries(upstream: str = "http://real-webui-upstream:8081") -> list[dict]:
    """The fleet's two entries (fleet.yml), as the v1101 host sees them (its upstream URLs are dead)."""
    return [{"name": ZH, "sources": [f"{upstream}/dtlnor/{ZH}.git"], "version": COMMITS[ZH]},
            {"name": DP, "sources": [f"{upstream}/adieyal/{DP}.git"], "version": "v2.9.1"}]


def test_the_real_webui_lists_both_extensions_enabled_at_their_pinned_commits(host):
    ext = listed(host)
    for wanted in (ZH, DP):
        assert wanted in ext, sorted(ext)
        assert ext[wanted]["enabled"] is True, ext[wanted]
        assert ext[wanted]["commit_hash"] == COMMITS[wanted], ext[wanted]
    # v1101's only source was the fleet mirror (its own upstream URLs are dead)
    origin = git(host, f"{CHECKOUT}/extensions/{DP}", "config", "--get", "remote.origin.url")
    expected = "http://real-webui-mirror:8080/git/extensions/" if name(host) == V1101 else "http://real-webui-upstream:8080/"
    assert origin.startswith(expected), origin
    # one copy, shared by the instances: the data dir's extensions/ is the checkout's
    assert host.file("/var/lib/sd-webui/instance-0/extensions").linked_to == f"{CHECKOUT}/extensions"


def test_the_installer_ran_at_provision_time_and_no_start_installed_anything(host):
    install = host.file("/var/log/sd-webui/install.log").content_string
    assert f"Installing {DP} requirements.txt" in install
    version = host.check_output(f"{CHECKOUT}/venv/bin/python -c "
                                "'import importlib.metadata as m; print(m.version(\"dynamicprompts\"))'")
    assert version == "0.20.2"
    log = instance_log(host)  # every start of this host (the update tests' too), all with --skip-install
    assert log.count("Launching Web UI with arguments") >= 1
    assert "--skip-install" in host.file("/etc/systemd/system/sd-webui@0.service.d/10-instance.conf").content_string
    for word in ("Installing", "pip install", "Requirement already satisfied", "Failed to create wildcard directory"):
        assert word not in log, f"{word!r} in the instance's journal"


def test_the_ui_is_chinese_where_the_fleet_asked_for_it_and_english_elsewhere(host):
    page = ui_page(host)
    data = re.search(r"window\.localization = (\{.*?\})</script>", page, re.S)
    assert data, page[:1000]
    localization = json.loads(data.group(1))
    config = json.loads(host.file("/var/lib/sd-webui/instance-0/config.json").content_string)
    if name(host) == V1101:
        assert localization.get("txt2img") == "文生图" and localization.get("Generate") == "生成"
        assert config["localization"] == "zh_CN"
    else:
        assert localization == {}
        assert config.get("localization", "None") == "None"


def test_the_report_lists_each_hosts_extensions(host):
    report = (pathlib.Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"]) / "reports/fleet-report.md").read_text()
    section = report.split(f"## {name(host)} ")[1].split("\n## ")[0]
    for wanted in (ZH, DP):
        assert re.search(rf"^\| {re.escape(wanted)} \| \S+ \| `{COMMITS[wanted][:12]}` \| present \|$", section, re.M), \
            section


def test_bad_extension_input_is_refused_before_any_change(host):
    if name(host) != V1101:
        pytest.skip(f"the changes run on {V1101}")
    head = git(host, f"{CHECKOUT}/extensions/{DP}", "rev-parse", "HEAD")
    token = "ext-s3cr3t-token-77"
    bad = [{"name": "../evil", "sources": ["http://real-webui-mirror:8080/git/x.git"], "version": "v1"},
           {"name": DP, "sources": [f"https://ci:{token}@git.example.org/{DP}.git"], "version": "v2.9.1"},
           {"name": DP, "sources": ["http://real-webui-mirror:8080/git/x.git"], "version": "v2.9.1"}]
    rc, out = converge("-e", extensions_var(bad), tags="preflight,webui,service")
    assert rc != 0
    # (no quote characters in the fragments: the YAML result format may quote the message its own way)
    for fragment in ("sdfleet_webui_extensions[0].name", "../evil", "is not a plain directory name",
                     "sdfleet_webui_extensions[1].sources[0]", "holds credentials",
                     "sdfleet_webui_extensions[2].name", "also the name of sdfleet_webui_extensions[1]"):
        assert fragment in out, (fragment, out[-3000:])
    assert token not in out
    # a version no source has: refused by the source probes (read-only), listing every source tried
    missing = fleet_entries()
    missing[1]["version"] = "v9.9.9"
    rc, out = converge("-e", extensions_var(missing))
    assert rc != 0
    assert "extension sd-dynamic-prompts" in out and "v9.9.9" in out, out[-3000:]
    assert f"http://real-webui-mirror:8080/git/extensions/{DP}.git" in out
    assert f"http://real-webui-upstream:8081/adieyal/{DP}.git" in out
    assert git(host, f"{CHECKOUT}/extensions/{DP}", "rev-parse", "HEAD") == head
    assert listed(host)[DP]["enabled"] is True


def test_a_version_change_a_disable_and_a_removal_in_one_converge(host):
    if name(host) != V1101:
        pytest.skip(f"the changes run on {V1101}")
    pid = host.check_output("systemctl show -p MainPID --value sd-webui@0")
    install_before = len(host.file("/var/log/sd-webui/install.log").content_string)
    entries = fleet_entries()
    entries[0]["state"] = "absent"
    entries[1].update(version=NEXT["tag"], state="disabled")
    rc, out = converge("-e", extensions_var(entries), "-e", "sdfleet_localization=None")
    assert rc == 0, out[-4000:]
    # the version change: the checkout moved (the next release's file is there), and the instance restarted
    assert git(host, f"{CHECKOUT}/extensions/{DP}", "rev-parse", "HEAD") == NEXT["commit"]
    assert host.file(f"{CHECKOUT}/extensions/{DP}/{NEXT['file']}").exists
    assert host.check_output("systemctl show -p MainPID --value sd-webui@0") != pid
    # disabled, by the webui's own setting; its installer did not run in this converge's install
    config = json.loads(host.file("/var/lib/sd-webui/instance-0/config.json").content_string)
    assert DP in config["disabled_extensions"] and config["localization"] == "None"
    assert f"Installing {DP}" not in host.file("/var/log/sd-webui/install.log").content_string[install_before:]
    ext = listed(host)
    assert ext[DP]["enabled"] is False and ext[DP]["commit_hash"] == NEXT["commit"]
    # absent: gone from extensions/ and from the webui, kept aside whole
    assert ZH not in ext and not host.file(f"{CHECKOUT}/extensions/{ZH}").exists
    kept = host.check_output(f"ls -d /var/lib/sd-webui/extensions-removed/{ZH}.*").split()
    assert len(kept) == 1
    assert host.file(f"{kept[0]}/localizations/zh_CN.json").size > 100_000
    assert git(host, kept[0], "rev-parse", "HEAD") == COMMITS[ZH]
