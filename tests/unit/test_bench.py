"""scripts/bench.py's pure helpers: the recap and profile_tasks parsers, curl's figures, the lock filter, the
machine's description, the goal lines and the section selection. No docker: the captures below are real output."""
from __future__ import annotations

import pathlib

import pytest

from script_import import load_script

ROOT = pathlib.Path(__file__).resolve().parents[2]


bench = load_script(ROOT / "scripts" / "bench.py", "bench")

# ansible-playbook with the default stdout callback and ansible.posix.profile_tasks (summary only, all tasks,
# unsorted), as bench.py runs it: the end of a real run.
PLAYBOOK_OUTPUT = """\
TASK [A task with a very long name that goes past the terminal width of eighty columns for sure, yes it does] ***
ok: [localhost] => {
    "msg": "hi"
}

PLAY RECAP *********************************************************************
sdfleet-bench-mid          : ok=120  changed=2    unreachable=0    failed=0    skipped=40   rescued=0    ignored=0
sdfleet-bench-small        : ok=118  changed=0    unreachable=0    failed=0    skipped=41   rescued=0    ignored=0
localhost                  : ok=3    changed=1    unreachable=0    failed=0    skipped=0    rescued=0    ignored=0


TASKS RECAP ********************************************************************
Wednesday 02 December 2026  10:12:48 +0000 (0:00:02.930)       0:00:02.930 ****
===============================================================================
webui_repo : Start launch.py --exit (torch, sub-repos, requirements) ---- 2.06s
webui_repo : Wait for the install to finish ----------------------------- 0.81s
A task with a very long name that goes past the terminal width of eighty columns for sure, yes it does --- 0.03s
webui_repo : Wait for the install to finish ---------------------------- 1234.50s
Gathering Facts  1203.25s
"""

LOCK = """\
# The real webui v1.10.1's wheel set on CPython 3.11 x86_64 (PyPI), in pip's hash-checking format.
# Inputs: torch==2.1.2 ...
accelerate==0.21.0 --hash=sha256:e2609d37f2c6a56e36a0612feae6ff6d9daac9759f4899432b86b1dc97024ebb
GitPython==3.1.32 --hash=sha256:aaaa
open-clip-torch==2.20.0 --hash=sha256:bbbb
typing_extensions==4.12.2 --hash=sha256:cccc
xformers==0.0.23.post1 --hash=sha256:dddd
"""

CPUINFO = """\
processor\t: 0
vendor_id\t: AuthenticAMD
model name\t: AMD EPYC 7B13 64-Core Processor
cpu MHz\t\t: 2449.998

processor\t: 1
model name\t: AMD EPYC 7B13 64-Core Processor
"""

MEMINFO = "MemTotal:       24641380 kB\nMemFree:        22000000 kB\n"


def test_recap_changed_sums_the_last_recap_only() -> None:
    earlier = "PLAY RECAP ***\nhost : ok=1 changed=7 unreachable=0\n\nPLAY [next] ***\n"
    assert bench.recap_changed(earlier + PLAYBOOK_OUTPUT) == 3


def test_task_headers_counts_each_task_once() -> None:
    assert bench.task_headers(PLAYBOOK_OUTPUT) == 1
    assert bench.task_headers(PLAYBOOK_OUTPUT + "TASK [b] ***\nskipping: [x]\nTASK [c : d] ***\n") == 3
    assert bench.task_headers("  TASK [indented, not a header] ***\n") == 0


def test_recap_counts_reads_each_host_of_the_last_recap() -> None:
    counts = bench.recap_counts("PLAY RECAP ***\nold : ok=9 changed=9\n\n" + PLAYBOOK_OUTPUT)
    assert set(counts) == {"sdfleet-bench-mid", "sdfleet-bench-small", "localhost"}
    assert counts["sdfleet-bench-small"]["skipped"] == 41
    assert counts["sdfleet-bench-mid"] == {"ok": 120, "changed": 2, "unreachable": 0, "failed": 0, "skipped": 40,
                                           "rescued": 0, "ignored": 0}


def test_profile_durations_reads_the_tasks_recap() -> None:
    durations = bench.profile_durations(PLAYBOOK_OUTPUT)
    assert durations["webui_repo : Start launch.py --exit (torch, sub-repos, requirements)"] == pytest.approx(2.06)
    # A name met twice (a task included for two hosts' loops) is summed; past 1000 s the dashes are gone.
    assert durations["webui_repo : Wait for the install to finish"] == pytest.approx(0.81 + 1234.50)
    assert durations["Gathering Facts"] == pytest.approx(1203.25)
    long = "A task with a very long name that goes past the terminal width of eighty columns for sure, yes it does"
    assert durations[long] == pytest.approx(0.03)
    assert len(durations) == 4  # neither the timestamp line nor the recap's host lines


def test_profile_durations_without_a_tasks_recap_is_empty() -> None:
    assert bench.profile_durations(PLAYBOOK_OUTPUT.split("TASKS RECAP")[0]) == {}


def test_task_seconds_sums_the_install_tasks() -> None:
    durations = bench.profile_durations(PLAYBOOK_OUTPUT)
    assert bench.task_seconds(durations, bench.INSTALL_TASKS) == pytest.approx(2.06 + 0.81 + 1234.50)
    assert bench.task_seconds(durations, ["no such task"]) is None


def test_key_values_reads_the_client_line() -> None:
    line = "code=206 size=33554432 rc=0 start=1764670000.123456789 end=1764670001.5\n"
    assert bench.key_values(line) == {"code": "206", "size": "33554432", "rc": "0",
                                      "start": "1764670000.123456789", "end": "1764670001.5"}


def test_throughput_spans_the_first_start_to_the_last_end() -> None:
    runs = [{"size": "100000000", "start": "10.0", "end": "11.0"},
            {"size": "100000000", "start": "10.5", "end": "12.0"}]
    assert bench.throughput_mb_s(runs) == pytest.approx(200 / 2.0)
    assert bench.throughput_mb_s(runs[:1]) == pytest.approx(100.0)


def test_failed_runs_names_each_bad_download() -> None:
    good = {"rc": "0", "code": "200", "size": "64"}
    short = {"rc": "18", "code": "200", "size": "10", "stderr": "curl: (18) transfer closed"}
    refused = {"rc": "7", "code": "000", "size": "0"}
    assert bench.failed_runs([good], 64) == []
    assert bench.failed_runs([good, short, refused], 64) == [
        "rc=18 code=200 size=10 curl: (18) transfer closed", "rc=7 code=000 size=0"]
    assert bench.failed_runs([{"rc": "0", "code": "206", "size": "64"}], 64)  # a partial answer is not the file


def test_bare_requirements_pin_what_the_venv_holds_at_its_versions() -> None:
    """The venv's own versions (what its index served), even where the lock says otherwise: a bare install of the
    lock's would ask the index for a version it may not have."""
    installed = {"accelerate": "0.21.0", "gitpython": "3.1.33", "open_clip_torch": "2.20.0",
                 "typing-extensions": "4.12.2", "clip": "1.0", "pip": "24.0"}
    lines, not_installed, not_locked, moved = bench.bare_requirements(LOCK, installed)
    assert lines == ["accelerate==0.21.0", "gitpython==3.1.33", "open_clip_torch==2.20.0", "typing-extensions==4.12.2"]
    assert not_installed == ["xformers"]
    assert not_locked == ["clip", "pip"]
    assert moved == ["gitpython 3.1.32 -> 3.1.33"]


def test_normalize_follows_pep_503() -> None:
    assert bench.normalize("Typing__Extensions.x-y") == "typing-extensions-x-y"


def test_machine_parsers() -> None:
    assert bench.cpu_model(CPUINFO) == "AMD EPYC 7B13 64-Core Processor"
    assert bench.cpu_model("processor : 0\n") == "unknown CPU"
    assert bench.mem_total_bytes(MEMINFO) == 24641380 * 1024
    assert bench.mem_total_bytes("") == 0


def test_ratio_never_divides_by_zero() -> None:
    assert bench.ratio(3.0, 2.0) == pytest.approx(1.5)
    assert bench.ratio(1.0, 0.0) == float("inf")


@pytest.mark.parametrize(("goal", "line"), [
    (bench.Goal("first", 1.234), "first converge, 3 hosts / 1 host: 1.23x (goal <= 1.5x): met"),
    (bench.Goal("first", 1.5), "first converge, 3 hosts / 1 host: 1.50x (goal <= 1.5x): met"),
    (bench.Goal("noop", 7.0), "no-op converge / ansible -m setup: 7.00x (goal <= 5x): NOT met"),
    (bench.Goal("throughput", 1.8), "mirror throughput, 4 hosts at once / 1 host: 1.80x (goal none): reported (no goal)"),
    (bench.Goal("resume", 1.0, problem="the mirror ignores Range"),
     "bytes served for a cut + resumed download / the file: 1.00x (goal <= 1.05x): NOT met (the mirror ignores Range)"),
    (bench.Goal("real", None, note="build/real-fixture/pins.json missing"),
     "real webui: provision-time install (launcher) / bare pip install: - (goal <= 1.2x):"
     " not measured (build/real-fixture/pins.json missing)"),
])
def test_goal_line(goal: object, line: str) -> None:
    assert bench.goal_line(goal) == line


def test_every_goal_has_a_section() -> None:
    keys = [k for section in bench.SECTIONS for k in bench.SECTION_GOALS[section]]
    assert sorted(keys) == sorted(bench.GOALS)


def test_summary_counts_the_goals_met() -> None:
    goals = [bench.Goal("first", 1.2), bench.Goal("noop", 6.0), bench.Goal("throughput", 2.0),
             bench.Goal("real", None, note="skipped")]
    lines = bench.summary_lines(goals)
    assert lines[0] == "summary:"
    assert lines[1:5] == [f"  {bench.goal_line(g)}" for g in goals]
    assert lines[-1] == "  goals met: 1 of 3"


@pytest.mark.parametrize(("only", "skip", "sections"), [
    (None, None, ["converge", "mirror", "real", "pipelining"]),
    (["mirror"], None, ["mirror"]),
    (["real", "converge"], None, ["converge", "real"]),
    (None, ["real"], ["converge", "mirror", "pipelining"]),
    (["mirror"], ["mirror"], []),
])
def test_selected_sections(only: list[str] | None, skip: list[str] | None, sections: list[str]) -> None:
    assert bench.selected_sections(only, skip) == sections


def test_parse_args_defaults_and_sections() -> None:
    args = bench.parse_args(["--only", "mirror", "--file-mib", "64"])
    assert (args.only, args.skip, args.file_mib) == (["mirror"], None, 64)
    assert bench.parse_args([]).file_mib == 1024
    with pytest.raises(SystemExit):
        bench.parse_args(["--only", "nosuch"])


def test_client_script_waits_then_writes_key_values() -> None:
    script = bench.client_script("http://m:8080/files/x.bin", 12.5, "/var/tmp/out", "-C -")
    assert "float(sys.argv[1]) - time.time()" in script and " 12.500;" in script
    assert "curl -sS --max-time 900 -C - -o /var/tmp/out -w 'code=%{http_code} size=%{size_download} '" in script
    assert script.endswith('echo "rc=$rc start=$s end=$e"')
