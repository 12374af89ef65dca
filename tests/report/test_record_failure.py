"""playbooks/steps/record_failure.yml keeps a stage's failure for the report with credentials in URLs redacted."""
from __future__ import annotations

import json
import pathlib
import subprocess

import pytest
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
PLAYBOOK = ROOT / ".venv" / "bin" / "ansible-playbook"
TOKEN = "rec-T0ken-2718"


@pytest.mark.parametrize("failing", [
    # a module's msg naming a credentialed URL (slurp: "file not found: <path>")
    {"ansible.builtin.slurp": {"src": f"/nonexistent/https://ci:{TOKEN}@git.example.org/sd/webui.git"}},
    {"ansible.builtin.command": {"argv": ["sh", "-c", f"echo 'proxy http://u:{TOKEN}@proxy.lan:3128 refused' >&2; exit 3"]},
     "loop": [1], "changed_when": False},
], ids=["msg", "looped-stderr"])
def test_recorded_failure_and_its_reprint_are_redacted(tmp_path, failing):
    if not PLAYBOOK.exists():
        pytest.skip(f"{PLAYBOOK} missing: run make venv")
    out = tmp_path / "failure.json"
    play = [{"hosts": "localhost", "gather_facts": False, "vars": {"__sdfleet_stage": "webui"}, "roles": ["sdfleet"],
             "tasks": [
        {"name": "A stage", "block": [{"name": "Fail with a credentialed URL", "no_log": True, **failing}],
         "rescue": [{"name": "Record", "ansible.builtin.import_tasks": str(ROOT / "playbooks/steps/record_failure.yml")}],
         "always": [{"name": "Save", "ansible.builtin.copy": {"content": "{{ sdfleet_failure | to_json }}",
                                                               "dest": str(out), "mode": "0600"}}]},
    ]}]
    (tmp_path / "p.yml").write_text(yaml.safe_dump(play, sort_keys=False))
    (tmp_path / "hosts.yml").write_text(yaml.safe_dump({"all": {"children": {"webui_hosts": {"hosts": {"localhost": None}}}}}))
    proc = subprocess.run([str(PLAYBOOK), "-i", str(tmp_path / "hosts.yml"), "-c", "local", str(tmp_path / "p.yml"), "-v",
                           "-e", f"ansible_python_interpreter={ROOT / '.venv/bin/python'}",
                           "-e", f"sdfleet_report_dir={tmp_path / 'reports'}"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120,
                          env={"ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"), "HOME": str(tmp_path),
                               "PATH": f"{ROOT / '.venv' / 'bin'}:/usr/bin:/bin", "LANG": "C.UTF-8"})
    recorded = json.loads(out.read_text())
    assert TOKEN not in json.dumps(recorded) and "://***@" in recorded["message"], recorded
    # everything from record_failure on is redacted (ansible-core 2.19 prints a failed module's msg even under
    # no_log, so the failing task's own line is the module's business: sdfleet's modules redact their messages)
    after = proc.stdout.split("TASK [Record the failure for the fleet report]", 1)[1]
    assert TOKEN not in after + proc.stderr, after[-3000:]
    assert "webui failed on localhost: " in after and "://***@" in after
    # the report the failure wrote at once (a run whose hosts all fail ends before the report stage): redacted too
    for name in ("fleet-report.md", "state/host-localhost.json"):
        text = (tmp_path / "reports" / name).read_text()
        assert TOKEN not in text and "://***@" in text, text[-2000:]
