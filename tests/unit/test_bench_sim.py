"""scripts/bench_sim.py on a small simulated fleet: it exits 0, prints one line per step and the ``sim:`` summary,
and the Markdown report it rendered lists every host, the failed ones as failed."""
from __future__ import annotations

import contextlib
import io
import pathlib
import re
from types import ModuleType

import pytest

from script_import import load_script

ROOT = pathlib.Path(__file__).resolve().parents[2]
HOSTS = 20


def _load_bench() -> ModuleType:
    return load_script(ROOT / "scripts" / "bench_sim.py", "bench_sim")


@pytest.fixture(scope="module")
def bench_run() -> tuple[ModuleType, int, str]:
    """bench_sim.main(--hosts 20), once: (the module, its exit code, what it printed)."""
    bench = _load_bench()
    out = io.StringIO()  # capsys is function-scoped; the run is shared by the module's tests
    with contextlib.redirect_stdout(out):
        rc = bench.main(["--hosts", str(HOSTS), "--repeat", "1"])
    return bench, rc, out.getvalue()


def test_exits_0_and_prints_every_step_and_the_summary(bench_run):
    bench, rc, printed = bench_run
    assert rc == 0
    lines = printed.splitlines()
    steps = [line for line in lines if re.fullmatch(r".+: \d+\.\d{3} s, peak \d+\.\d MiB", line)]
    assert len(steps) == len(bench.last_result().steps) == 9
    assert any(line.startswith(f"plan {HOSTS} hosts") for line in steps)
    assert lines[-1].startswith(f"sim: {HOSTS} hosts + 1 mirror,")
    assert re.search(r"max RSS \d+\.\d MiB$", lines[-1])


def test_the_markdown_lists_every_host_and_the_failed_ones_as_failed(bench_run):
    bench, _, _ = bench_run
    result, markdown = bench.last_result(), bench.last_markdown()
    names = [spec.name for spec in result.hosts]
    assert len(names) == HOSTS
    sections = dict(re.findall(r"^## (gpu-\d{4}) \(([^)]*)\)$", markdown, re.M))
    assert sorted(sections) == sorted(names)
    assert result.failed and all(sections[name] == "failed" for name in result.failed)
    assert {kind for spec in result.hosts for kind in [spec.kind] if spec.name in result.failed} == \
        set(bench.FAILURE_KINDS)
    assert all(sections[name] == "not reached" for name in result.not_reached)
    ok = [name for name in names if name not in result.failed + result.not_reached]
    assert all(sections[name] == "ok" for name in ok)
    assert f"{len(ok)} of {HOSTS} hosts serving {result.instances} instances;" in markdown
    failures = markdown.split("## Failures", 1)[1].split("\n## ", 1)[0]
    assert all(f"| {name} | " in failures for name in result.failed + result.not_reached)
    assert bench.TOKEN not in markdown + result.html and "https://***@git.example.org" in markdown


def test_the_three_report_data_runs_agree(bench_run):
    bench, _, _ = bench_run
    assert bench.last_result().hostvars_same
