"""The fleet report is right however the run is made (issue 16 item 4): as part of a site run, alone
(playbooks/report.yml), and with --limit, including a limited run whose only host fails (Ansible ends such a run
before the report stage). On the controller, with two local hosts and a stub stage that publishes what the real
stages publish (or fails into playbooks/steps/record_failure.yml); every run keeps its rows under
<report dir>/state/ and the next run's report reads them for the hosts it did not reach."""
from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import pytest
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
PLAYBOOK = pathlib.Path(sys.executable).with_name("ansible-playbook")

STAGE = [{
    "name": "A stub stage: what the gpu and service stages publish, or a failure",
    "hosts": "webui_hosts", "gather_facts": False, "roles": ["sdfleet"],
    "vars": {"__sdfleet_stage": "service", "fail_on": ""},
    "tasks": [
        {"name": "Mark the host", "ansible.builtin.set_fact": {"__sdfleet_in_run": True}},
        {"name": "The stage", "block": [
            {"name": "Fail where asked", "ansible.builtin.fail": {"msg": "the stub stage failed here"},
             "when": "inventory_hostname == fail_on"},
            {"name": "Publish", "ansible.builtin.set_fact": {
                "sdfleet_gpu": {"state": "ok", "tier": "full", "gpus": []},
                "sdfleet_instances": [{"index": 0, "port": 7860, "url": "http://{{ inventory_hostname }}:7860/",
                                       "tier": "full", "flags": []}],
                "sdfleet_health": {"0": "healthy"}}},
        ], "rescue": [{"name": "Record", "ansible.builtin.import_tasks":
                       str(ROOT / "playbooks" / "steps" / "record_failure.yml")}]},
    ]}]


@pytest.fixture()
def fleet(tmp_path: pathlib.Path):
    if not PLAYBOOK.exists():
        pytest.skip(f"{PLAYBOOK} missing: run make venv")
    local = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}
    (tmp_path / "hosts.yml").write_text(yaml.safe_dump({"all": {"children": {"webui_hosts": {
        "hosts": {"gpu-a": local, "gpu-b": local}}}}}))
    (tmp_path / "stage.yml").write_text(yaml.safe_dump(STAGE, sort_keys=False))
    (tmp_path / "site.yml").write_text(
        f"- ansible.builtin.import_playbook: {tmp_path / 'stage.yml'}\n"
        f"- ansible.builtin.import_playbook: {ROOT / 'playbooks' / 'report.yml'}\n")
    reports = tmp_path / "reports"

    def run(playbook: str, *args: str) -> tuple[int, str, str]:
        proc = subprocess.run(
            [str(PLAYBOOK), "-i", str(tmp_path / "hosts.yml"), playbook, *args], cwd=ROOT, capture_output=True,
            text=True, timeout=300, check=False,
            env=dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_NOCOLOR="1",
                     SDFLEET_REPORT_DIR=str(reports)))
        report = reports / "fleet-report.md"
        return proc.returncode, proc.stdout + proc.stderr, report.read_text() if report.is_file() else ""

    return run, str(tmp_path / "site.yml"), reports


def _summary(report: str) -> str:
    return next(line for line in report.splitlines() if "hosts serving" in line)


def test_site_then_report_alone_then_limited_runs(fleet):
    run, site, reports = fleet
    rc, out, report = run(site)
    assert rc == 0, out[-3000:]
    assert _summary(report) == "2 of 2 hosts serving 2 instances; 0 failed.", report
    assert "Not in this run" not in report
    assert sorted(p.name for p in (reports / "state").iterdir()) == ["host-gpu-a.json", "host-gpu-b.json"]

    # alone: no host's facts in this run; every row from the kept state (before: "0 of 2 hosts serving")
    rc, out, report = run(str(ROOT / "playbooks" / "report.yml"))
    assert rc == 0, out[-3000:]
    assert _summary(report) == "2 of 2 hosts serving 2 instances; 0 failed.", report
    assert "Not in this run (their rows are from an earlier run, kept on the controller): gpu-a, gpu-b." in report
    assert "2 of 2 hosts serving" in out  # the closing line says the same

    # --limit gpu-b, which fails: the run ends in the stub stage (no host left), the failure writes the report,
    # and gpu-a keeps its earlier row (before: the report play was skipped, localhost being outside the limit)
    rc, out, report = run(site, "--limit", "gpu-b", "-e", "fail_on=gpu-b")
    assert rc != 0, out[-3000:]
    assert "Fleet report - what runs where" not in out, "the report stage ran: the test no longer covers the early end"
    assert _summary(report) == "1 of 2 hosts serving 1 instances; 1 failed.", report
    assert "| gpu-b | service | the stub stage failed here |" in report, report
    assert "rerun this host only: ansible-playbook site.yml --limit gpu-b" in report, report
    assert "Not in this run (their rows are from an earlier run, kept on the controller): gpu-a." in report
    kept = json.loads((reports / "state" / "host-gpu-b.json").read_text())
    assert kept["row"]["status"] == "failed"

    # --limit gpu-b again, fixed: its row is this run's, the report stage runs although localhost is not in the limit
    rc, out, report = run(site, "--limit", "gpu-b")
    assert rc == 0, out[-3000:]
    assert "Fleet report - what runs where" in out
    assert _summary(report) == "2 of 2 hosts serving 2 instances; 0 failed.", report
    assert "## gpu-b (ok)" in report and "## gpu-a (ok, from an earlier run)" in report, report


def test_a_report_with_nothing_kept_says_no_run_reached_the_hosts(fleet):
    run, _, _ = fleet
    rc, out, report = run(str(ROOT / "playbooks" / "report.yml"))
    assert rc == 0, out[-3000:]
    assert _summary(report) == "0 of 2 hosts serving 0 instances; 2 failed.", report
    assert report.count("No run has reached this host yet") == 2, report


def test_a_second_identical_run_changes_nothing(fleet):
    run, site, _ = fleet
    assert run(site)[0] == 0
    rc, out, _ = run(site)
    assert rc == 0, out[-2000:]
    recap = out.split("PLAY RECAP", 1)[1]
    assert all(" changed=0 " in line for line in recap.splitlines() if " ok=" in line), recap
