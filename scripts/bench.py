#!/usr/bin/env python3
"""Benchmark the fleet layer on demo-like containers (make bench). Not a test: prints figures.

Fresh containers for every first converge (network sdfleet-bench, names sdfleet-bench-*), the demo's
inventory settings (inventories/demo) with the upstream fixture server as "upstream". Four sections, each
runnable alone (--only SECTION, --skip SECTION):

converge (the demo fleet: 3 GPU hosts, the fleet mirror, build/fixture):
  1. first converge time, 1 GPU host vs 3 GPU hosts (with the fleet mirror);
  2. idempotent re-run time / first converge time, and its changed count (3 hosts); the re-run against
     `ansible -m setup` on the same hosts, timed right before and right after it; the same re-run under
     scripts/with_mitogen.sh (mitogen's strategy, opt-in) and its changed count;
  3. --check changed count on the converged fleet (3 hosts);
  4. bytes served by upstream, 1 vs 3 hosts, with the fleet mirror and without it (the fixture's /_stats).
mirror (the fleet mirror alone, converged by site.yml; --file-mib, default 1024):
  5. one host downloading a file from the mirror, then four at once (aggregate MB/s); a download cut halfway
     (a Range request for the first half), resumed with `curl -C -`: bytes served and the file's sha256.
real (the real webui v1.10.1 from a fleet mirror seeded from the real fixture, build/real-fixture):
  6. the provision-time dependency install (launch.py --exit, timed by ansible.posix.profile_tasks) against a
     bare `pip install` of the same packages (the versions the venv holds) into an empty venv, on the same host,
     from the same index.
pipelining (one plain container):
  7. the same 30 small tasks (stat as root, command as another user) with ANSIBLE_PIPELINING off and on.

The machine the figures ran on comes first; a summary of every goal (figure, goal, met or not) comes last.
Every ratio comes from runs of this one invocation.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import pathlib
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable

import yaml

ROOT = pathlib.Path(__file__).resolve().parents[1]
DEMO = ROOT / "inventories" / "demo"
PLAYBOOK = ROOT / ".venv" / "bin" / "ansible-playbook"
ADHOC = ROOT / ".venv" / "bin" / "ansible"
FIXTURE = ROOT / "build" / "fixture"
REAL_FIXTURE = ROOT / "build" / "real-fixture"
REAL_SCENARIO = ROOT / "molecule" / "real_webui" / "inventory"
REAL_LOCKS = ROOT / "molecule" / "_shared" / "mirror" / "real-locks"
IMAGE = "sdfleet/webui-host:bookworm"
NET = "sdfleet-bench"
UPSTREAM = "sdfleet-bench-upstream"
MIRROR = "sdfleet-bench-mirror"
GPU_HOSTS = ["small", "mid", "dual"]
SYSTEMD = ["--cap-add", "SYS_ADMIN", "--security-opt", "seccomp=unconfined", "--security-opt",
           "apparmor=unconfined", "-v", "/sys/fs/cgroup:/sys/fs/cgroup:rw", "--tmpfs", "/run",
           "--tmpfs", "/run/lock", "--tmpfs", "/tmp", "--cgroupns", "host"]
SECTIONS = ("converge", "mirror", "real", "pipelining")
MIB = 1024 * 1024

# The mirror section: the file's place and URL in the fleet mirror (roles/fleet_mirror's defaults), its clients.
MIRROR_ROOT = "/srv/sdfleet-mirror"
MIRROR_USER = "sdmirror"
MIRROR_PORT = 8080
BENCH_FILE = "files/sdfleet-bench.bin"
CLIENTS = 4

# The real section: the webui version (the scenario's v1.10.1 host), its host, and webui_repo's defaults.
REAL_VERSION = "v1.10.1"
REAL_HOST = "sdfleet-bench-real"
WEBUI_USER = "sdwebui"
WEBUI_VENV = "/opt/sd-webui/venv"
INSTALL_ENV = "/var/lib/sd-webui/.sdfleet/install.env"
BARE_VENV = "/var/tmp/sdfleet-bench-bare-venv"
BARE_REQS = "/var/tmp/sdfleet-bench-bare-requirements.txt"
# webui_repo's install run: the async start and the wait for it (deps.yml); their sum is the install's duration.
INSTALL_TASKS = ("Start launch.py --exit", "Wait for the install to finish")
# Every goal, named once: {key: (what is divided by what, its limit; None: reported without a goal)}.
GOALS: dict[str, tuple[str, float | None]] = {
    "first": ("first converge, 3 hosts / 1 host", 1.5),
    "noop": ("no-op converge / ansible -m setup", 5.0),
    "noop_mitogen": ("no-op converge with mitogen (opt-in) / ansible -m setup", 5.0),
    "upstream": ("upstream bytes with the mirror, 3 hosts / 1 host", 1.05),
    "throughput": (f"mirror throughput, {CLIENTS} hosts at once / 1 host", None),
    "resume": ("bytes served for a cut + resumed download / the file", 1.05),
    "real": ("real webui: provision-time install (launcher) / bare pip install", 1.2),
    "real_uv": ("real webui: provision-time install with sdfleet_webui_installer: uv / bare pip install", 1.2),
    "pipelining": ("30 small tasks on one host, pipelining on / off", None),
}
SECTION_GOALS = {"converge": ("first", "noop", "noop_mitogen", "upstream"), "mirror": ("throughput", "resume"), "real": ("real", "real_uv"), "pipelining": ("pipelining",)}
PROFILE_ENV = {"ANSIBLE_CALLBACKS_ENABLED": "ansible.posix.profile_tasks", "PROFILE_TASKS_SUMMARY_ONLY": "true",
               "PROFILE_TASKS_TASK_OUTPUT_LIMIT": "all", "PROFILE_TASKS_SORT_ORDER": "none"}


@dataclasses.dataclass(frozen=True)
class Goal:
    """One figure against its goal: value <= limit ("x" ratios); no limit: reported only."""

    key: str  # its GOALS entry
    value: float | None  # None: not measured (note says why)
    note: str = ""
    problem: str = ""  # set: the goal is not met whatever the value (a resume that failed, a wrong checksum)

    @property
    def name(self) -> str:
        """What is divided by what."""
        return GOALS[self.key][0]

    @property
    def limit(self) -> float | None:
        """The most the ratio may be (None: no goal)."""
        return GOALS[self.key][1]

    @property
    def verdict(self) -> str:
        """met / NOT met / reported / not measured, with the reason where there is one."""
        if self.value is None:
            return f"not measured ({self.note or 'no figure'})"
        if self.problem:
            return f"NOT met ({self.problem})"
        if self.limit is None:
            return "reported (no goal)"
        return "met" if self.value <= self.limit else "NOT met"


# --- Pure helpers (tests/unit/test_bench.py) --------------------------------------------------------------------

def goal_line(goal: Goal) -> str:
    """One line: the figure, its goal and the verdict."""
    value = "-" if goal.value is None else f"{goal.value:.2f}x"
    limit = "none" if goal.limit is None else f"<= {goal.limit:g}x"
    return f"{goal.name}: {value} (goal {limit}): {goal.verdict}"


def summary_lines(goals: Iterable[Goal]) -> list[str]:
    """The closing block: one goal_line per goal, and how many of those with a goal are met."""
    goals = list(goals)
    judged = [g for g in goals if g.limit is not None]
    met = sum(1 for g in judged if g.verdict == "met")
    return ["summary:"] + [f"  {goal_line(g)}" for g in goals] + [f"  goals met: {met} of {len(judged)}"]


def selected_sections(only: list[str] | None, skip: list[str] | None) -> list[str]:
    """The sections to run, in SECTIONS order: --only's (all without it), less --skip's."""
    wanted = set(only or SECTIONS) - set(skip or [])
    return [s for s in SECTIONS if s in wanted]


def ratio(num: float, den: float) -> float:
    """num / den, with a zero denominator read as a tiny one (a ratio, never a crash)."""
    return num / den if den else float("inf")


def task_headers(output: str) -> int:
    """How many task headers (``TASK [...]``) a playbook's output holds: the tasks Ansible went through, skipped ones
    included, all hosts at once."""
    return len(re.findall(r"^TASK \[", output, re.M))


def recap_counts(output: str) -> dict[str, dict[str, int]]:
    """{host: {ok, changed, skipped, ...}} from the last PLAY RECAP."""
    counts: dict[str, dict[str, int]] = {}
    for host, fields in re.findall(r"^(\S+)\s+:\s+(ok=.*)$", output.split("PLAY RECAP")[-1], re.M):
        counts[host] = {key: int(value) for key, value in re.findall(r"(\w+)=(\d+)", fields)}
    return counts


def recap_changed(output: str) -> int:
    """The changed count summed over the hosts of the last PLAY RECAP."""
    return sum(host.get("changed", 0) for host in recap_counts(output).values())


_PROFILE_LINE = re.compile(r"^(?P<name>.+?) -*\s(?P<secs>\d+\.\d{2})s$")


def profile_durations(output: str) -> dict[str, float]:
    """{task name: seconds} from ansible.posix.profile_tasks' TASKS RECAP (a name met twice: summed)."""
    if "TASKS RECAP" not in output:
        return {}
    durations: dict[str, float] = {}
    for line in output.split("TASKS RECAP")[-1].splitlines():
        match = _PROFILE_LINE.match(line.strip())
        if match:
            name = match["name"].rstrip(" -")
            durations[name] = durations.get(name, 0.0) + float(match["secs"])
    return durations


def task_seconds(durations: dict[str, float], names: Iterable[str]) -> float | None:
    """The summed seconds of the tasks whose name contains one of `names` (None when none ran)."""
    found = [secs for task, secs in durations.items() if any(n in task for n in names)]
    return sum(found) if found else None


def key_values(text: str) -> dict[str, str]:
    """The key=value words of a line (curl's --write-out and the client script's own)."""
    return dict(word.split("=", 1) for word in text.split() if "=" in word)


def throughput_mb_s(runs: list[dict[str, str]]) -> float:
    """MB/s (10^6 bytes) of downloads side by side: every byte over the window from the first start to the last end."""
    size = sum(int(r["size"]) for r in runs)
    window = max(float(r["end"]) for r in runs) - min(float(r["start"]) for r in runs)
    return size / 1e6 / window if window > 0 else 0.0


def normalize(name: str) -> str:
    """A project name as PEP 503 compares them."""
    return re.sub(r"[-_.]+", "-", name).lower()


def lock_entries(lock_text: str) -> dict[str, str]:
    """{normalized name: its lock line} of a hash-checking lock (`name==version --hash=sha256:...`)."""
    entries = {}
    for line in lock_text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            entries[normalize(line.split("==", 1)[0])] = line
    return entries


def bare_requirements(lock_text: str, installed: dict[str, str]) -> tuple[list[str], list[str], list[str], list[str]]:
    """What a bare install of the venv's set takes: (``name==version`` of each locked package the venv holds, at the
    version it holds, the one its index served; locked but not installed; installed but not locked: built from
    archives, or the venv's own; the packages whose installed version is not the lock's), names sorted."""
    entries = lock_entries(lock_text)
    have = {normalize(n): (n, v) for n, v in installed.items()}
    locked_version = {n: line.split("==", 1)[1].split()[0] for n, line in entries.items()}
    both = sorted(have.keys() & entries.keys())
    return ([f"{have[n][0]}=={have[n][1]}" for n in both], sorted(entries.keys() - have.keys()),
            sorted(have.keys() - entries.keys()),
            [f"{n} {locked_version[n]} -> {have[n][1]}" for n in both if have[n][1] != locked_version[n]])


def cpu_model(cpuinfo: str) -> str:
    """The first `model name` of /proc/cpuinfo."""
    match = re.search(r"^model name\s*:\s*(.+)$", cpuinfo, re.MULTILINE)
    return match[1].strip() if match else "unknown CPU"


def mem_total_bytes(meminfo: str) -> int:
    """MemTotal of /proc/meminfo, in bytes."""
    match = re.search(r"^MemTotal:\s*(\d+) kB", meminfo, re.MULTILINE)
    return int(match[1]) * 1024 if match else 0


def mib(n: int) -> str:
    return f"{n / MIB:.2f} MiB"


# --- Containers and Ansible -------------------------------------------------------------------------------------

def sh(*args: str, check: bool = True, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), check=check, capture_output=True, text=True, input=stdin)


def machine() -> str:
    """What the figures ran on: cores, CPU model, RAM, load."""
    cpuinfo = pathlib.Path("/proc/cpuinfo").read_text()
    meminfo = pathlib.Path("/proc/meminfo").read_text()
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    return (f"machine: {len(os.sched_getaffinity(0))} cores ({cpu_model(cpuinfo)}), "
            f"{mem_total_bytes(meminfo) / 1024 ** 3:.1f} GiB RAM, load average {load}")


def teardown() -> None:
    names = sh("docker", "ps", "-aq", "--filter", "name=^sdfleet-bench-", check=False).stdout.split()
    if names:
        sh("docker", "rm", "-f", *names, check=False)
    sh("docker", "network", "rm", NET, check=False)


def bring_up(hosts: list[str], mirror: bool, fixture: pathlib.Path = FIXTURE) -> None:
    """Fresh containers: the upstream fixture server, the GPU hosts and (optionally) the mirror host."""
    teardown()
    sh("docker", "network", "create", NET)
    sh("docker", "run", "-d", "--name", UPSTREAM, "--hostname", UPSTREAM, "--network", NET,
       "-v", f"{fixture}:/srv/fixture:ro", IMAGE,
       "python3", "/srv/fixture/bin/mirror_server.py", "--root", "/srv/fixture", "--port", "8080")
    for h in [f"sdfleet-bench-{x}" for x in hosts] + ([MIRROR] if mirror else []):
        sh("docker", "run", "-d", "--name", h, "--hostname", h, "--network", NET, *SYSTEMD, IMAGE,
           "/lib/systemd/systemd")
    for _ in range(60):
        if upstream("/_ping", check=False) is not None:
            return
        time.sleep(1)
    raise SystemExit("the upstream fixture server did not start")


def upstream(path: str, method: str = "GET", check: bool = True) -> str | None:
    data = ", data=b''" if method == "POST" else ""
    code = (f"import urllib.request; r=urllib.request.Request('http://127.0.0.1:8080{path}', method='{method}'"
            f"{data}); print(urllib.request.urlopen(r).read().decode())")
    out = sh("docker", "exec", UPSTREAM, "python3", "-c", code, check=False)
    if out.returncode != 0:
        if check:
            raise SystemExit(f"upstream {path}: {out.stderr}")
        return None
    return out.stdout


def upstream_bytes() -> int:
    stats = json.loads(upstream("/_stats") or "{}")
    return sum(v["bytes"] for v in stats.values())


def hosts_file(inv: pathlib.Path, hosts: list[str], mirror: bool) -> None:
    """hosts.yml: these webui hosts (container names) and, optionally, the mirror host."""
    lines = ["all:", "  vars:", "    ansible_connection: community.docker.docker", "  children:",
             "    webui_hosts:", "      hosts:"] + [f"        {h}:" for h in hosts]
    if mirror:
        lines += ["    sdfleet_mirror:", "      hosts:", f"        {MIRROR}:"]
    (inv / "hosts.yml").write_text("\n".join(lines) + "\n")


def inventory(hosts: list[str], mirror: bool) -> pathlib.Path:
    """A copy of the demo inventory for these container names, with or without the mirror host."""
    inv = pathlib.Path(tempfile.mkdtemp(prefix="sdfleet-bench-inv-"))
    shutil.copytree(DEMO / "group_vars", inv / "group_vars")
    fleet = inv / "group_vars" / "all" / "fleet.yml"
    fleet.write_text(fleet.read_text().replace("sdfleet-demo-upstream", UPSTREAM)
                     .replace("inventory_dir ~ '/../../build/fixture/pins.json'", repr(str(FIXTURE / "pins.json"))))
    (inv / "host_vars").mkdir()
    for h in hosts:
        shutil.copy(DEMO / "host_vars" / f"sdfleet-demo-{h}.yml", inv / "host_vars" / f"sdfleet-bench-{h}.yml")
    hosts_file(inv, [f"sdfleet-bench-{h}" for h in hosts], mirror)
    return inv


def ansible_env(inv: pathlib.Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of every ansible run here: the project's config, the venv's tools, nothing else."""
    env = {"ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"), "PATH": f"{ROOT / '.venv/bin'}:/usr/bin:/bin",
           "HOME": str(pathlib.Path.home()), "SDFLEET_REPORT_DIR": str(inv / "reports"), "LANG": "C.UTF-8"}
    return env | (extra or {})


def run_ansible(argv: list[str], inv: pathlib.Path, what: str,
                extra_env: dict[str, str] | None = None) -> tuple[float, str]:
    """Run an ansible command; (seconds, stdout). A failure prints the output's end and stops the section."""
    start = time.monotonic()
    out = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, env=ansible_env(inv, extra_env))
    took = time.monotonic() - start
    if out.returncode != 0:
        print(out.stdout[-4000:], out.stderr[-2000:], sep="\n", file=sys.stderr)
        raise SystemExit(f"{what} failed (rc={out.returncode})")
    return took, out.stdout


def play(inv: pathlib.Path, playbook: str, *extra: str, env: dict[str, str] | None = None,
         wrapper: tuple[str, ...] = ()) -> tuple[float, int, str]:
    """Run a playbook (under ``wrapper``, a command that runs it, when given); (seconds, changed count from the
    recap, output)."""
    took, stdout = run_ansible([*wrapper, str(PLAYBOOK), "-i", str(inv), str(ROOT / playbook), *extra], inv,
                               playbook, env)
    return took, recap_changed(stdout), stdout


def setup_seconds(inv: pathlib.Path) -> float:
    """`ansible -m setup` on the fleet's hosts (webui hosts and mirror): seconds."""
    took, _ = run_ansible([str(ADHOC), "-i", str(inv), "webui_hosts:sdfleet_mirror", "-m", "ansible.builtin.setup"],
                          inv, "ansible -m setup")
    return took


def converge(hosts: list[str], mirror: bool) -> tuple[pathlib.Path, float, int]:
    """Fresh fleet, first converge; (inventory, seconds, upstream bytes)."""
    bring_up(hosts, mirror)
    inv = inventory(hosts, mirror)
    play(inv, "playbooks/demo_prepare.yml")
    upstream("/_reset", method="POST")
    took, _, _ = play(inv, "site.yml")
    return inv, took, upstream_bytes()


# --- Section: converge ------------------------------------------------------------------------------------------

def section_converge(_: argparse.Namespace) -> list[Goal]:
    """(1)-(4): first converges, the idempotent re-run against `ansible -m setup`, --check, upstream bytes."""
    _, t1, b1_mirror = converge(GPU_HOSTS[:1], mirror=True)
    print(f"(1) first converge, 1 GPU host + mirror:  {t1:7.1f} s   upstream {mib(b1_mirror)}")
    inv3, t3, b3_mirror = converge(GPU_HOSTS, mirror=True)
    first = Goal("first", ratio(t3, t1))
    print(f"(1) first converge, 3 GPU hosts + mirror: {t3:7.1f} s   upstream {mib(b3_mirror)}")
    print(f"    {goal_line(first)}")
    s_before = setup_seconds(inv3)
    t_re, changed_re, out_re = play(inv3, "site.yml")
    s_after = setup_seconds(inv3)
    s_mean = (s_before + s_after) / 2
    noop = Goal("noop", ratio(t_re, s_mean))
    print(f"(2) idempotent re-run, 3 hosts:           {t_re:7.1f} s   = {t_re / t3:.2f} of the first converge;"
          f" changed={changed_re}")
    per_host = recap_counts(out_re)
    print(f"    {task_headers(out_re)} task headers; per host ok/skipped: "
          + ", ".join(f"{h.removeprefix('sdfleet-bench-')} {c.get('ok', 0)}/{c.get('skipped', 0)}"
                      for h, c in per_host.items()))
    print(f"(2) ansible -m setup, 3 hosts + mirror:   {s_before:7.1f} s before the re-run, {s_after:.1f} s after")
    print(f"    {goal_line(noop)}")
    print(f"    full run: {full_run_seconds(inv3):.1f} s (-e sdfleet_full_run=true: every role runs every task)")
    task_floor(inv3)
    noop_mitogen = noop_with_mitogen(inv3, s_mean)
    _, changed_check, _ = play(inv3, "site.yml", "--check")
    print(f"(3) --check on the converged fleet:        changed={changed_check}")
    _, _, b1_direct = converge(GPU_HOSTS[:1], mirror=False)
    _, _, b3_direct = converge(GPU_HOSTS, mirror=False)
    upstream_goal = Goal("upstream", ratio(b3_mirror, max(b1_mirror, 1)))
    print(f"(4) upstream bytes without the mirror:     1 host {mib(b1_direct)}, 3 hosts {mib(b3_direct)}"
          f" ({b3_direct / max(b1_direct, 1):.2f}x)")
    print(f"(4) upstream bytes with the mirror:        1 host {mib(b1_mirror)}, 3 hosts {mib(b3_mirror)}")
    print(f"    {goal_line(upstream_goal)}")
    print(f"    re-run changed={changed_re}, --check changed={changed_check}; upstream 3 hosts: {mib(b3_direct)} direct"
          f" vs {mib(b3_mirror)} via the mirror ({b3_direct / max(b3_mirror, 1):.2f}x less)")
    return [first, noop, noop_mitogen, upstream_goal]


def full_run_seconds(inv: pathlib.Path) -> float:
    """The re-run with every state probe bypassed (sdfleet_full_run): what the no-op cost before the probes."""
    took, changed, _ = play(inv, "site.yml", "-e", "sdfleet_full_run=true")
    if changed:
        print(f"    (the full run reported changed={changed})")
    return took


def task_floor(inv: pathlib.Path, count: int = 20) -> None:
    """Ansible's own cost per task on these hosts (a skipped task, a controller-only task, a remote stat; seconds per
    task, all hosts at once, the start of a playbook with no task taken off): what a no-op cannot go below."""
    book = inv / "floor.yml"
    book.write_text(yaml.safe_dump([{"hosts": "webui_hosts:sdfleet_mirror", "gather_facts": False, "tasks": []}]))
    start, _ = run_ansible([str(PLAYBOOK), "-i", str(inv), str(book)], inv, "floor (no task)")
    for kind, task in (("skipped", {"ansible.builtin.debug": {"msg": "x"}, "when": "false"}),
                       ("controller-only", {"ansible.builtin.debug": {"msg": "x"}}),
                       ("remote stat", {"ansible.builtin.stat": {"path": "/etc/hostname"}})):
        book.write_text(yaml.safe_dump([{"hosts": "webui_hosts:sdfleet_mirror", "gather_facts": False,
                                         "tasks": [dict(task, name=f"t{i}") for i in range(count)]}]))
        took, _ = run_ansible([str(PLAYBOOK), "-i", str(inv), str(book)], inv, f"floor ({kind})")
        print(f"    per-task floor, {kind + ':':16s} {(took - start) / count:.3f} s per task (all hosts at once)")


def noop_with_mitogen(inv: pathlib.Path, setup: float) -> Goal:
    """(2b) the same no-op re-run under scripts/with_mitogen.sh (the opt-in accelerator); its changed count."""
    if subprocess.run([str(ROOT / ".venv/bin/python"), "-c", "import ansible_mitogen"], capture_output=True,
                      check=False).returncode != 0:
        return Goal("noop_mitogen", None, "mitogen is not installed in .venv (make venv)")
    try:
        took, changed, _ = play(inv, "site.yml", wrapper=(str(ROOT / "scripts" / "with_mitogen.sh"),))
    except SystemExit as failed:  # an opt-in that fails here is a finding, not the end of the section
        print(f"(2b) the same re-run with mitogen:        {failed}")
        return Goal("noop_mitogen", None, f"the run under mitogen failed: {failed}")
    goal = Goal("noop_mitogen", ratio(took, setup), problem="" if changed == 0 else f"changed={changed}, not 0")
    print(f"(2b) the same re-run with mitogen:        {took:7.1f} s   changed={changed}")
    print(f"    {goal_line(goal)}")
    return goal


# --- Section: mirror --------------------------------------------------------------------------------------------

def mirror_file(size: int) -> str:
    """Write `size` random bytes into the mirror's tree (owned by the mirror user); its sha256."""
    path = f"{MIRROR_ROOT}/{BENCH_FILE}"
    script = (f"set -e; mkdir -p {shlex.quote(os.path.dirname(path))}; head -c {size} /dev/urandom > {path}; "
              f"chown {MIRROR_USER}: {path}; chmod 0644 {path}; sha256sum {path}")
    return sh("docker", "exec", MIRROR, "sh", "-c", script).stdout.split()[0]


def start_clients(count: int) -> list[str]:
    """Plain GPU-host containers on the bench network (curl, no systemd): their names."""
    names = [f"sdfleet-bench-client-{i}" for i in range(1, count + 1)]
    for name in names:
        sh("docker", "run", "-d", "--name", name, "--hostname", name, "--network", NET, IMAGE, "sleep", "infinity")
    return names


def client_script(url: str, at: float, out: str = "/dev/null", curl_args: str = "") -> str:
    """Wait for the epoch `at` (the containers share the machine's clock), download, print key=value timings."""
    return (f"python3 -c 'import sys,time; time.sleep(max(0.0, float(sys.argv[1]) - time.time()))' {at:.3f}; "
            f"s=$(date +%s.%N); curl -sS --max-time 900 {curl_args} -o {shlex.quote(out)} "
            f"-w 'code=%{{http_code}} size=%{{size_download}} ' {shlex.quote(url)}; rc=$?; "
            f"e=$(date +%s.%N); echo \"rc=$rc start=$s end=$e\"")


def download_together(clients: list[str], url: str) -> list[dict[str, str]]:
    """The clients download `url` at once (a shared start time); each one's key=value figures."""
    at = time.time() + 2.0
    procs = [subprocess.Popen(["docker", "exec", c, "sh", "-c", client_script(url, at)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for c in clients]
    runs = []
    for proc in procs:
        stdout, stderr = proc.communicate()
        runs.append(key_values(stdout) | ({"stderr": stderr.strip()} if stderr.strip() else {}))
    return runs


def failed_runs(runs: list[dict[str, str]], size: int) -> list[str]:
    """Why downloads went wrong (curl's rc, the HTTP code, a short file): [] when each got the whole file."""
    return [f"rc={r.get('rc')} code={r.get('code')} size={r.get('size')} {r.get('stderr', '')}".strip()
            for r in runs if r.get("rc") != "0" or r.get("code") != "200" or r.get("size") != str(size)]


def resume_cut(client: str, url: str, size: int, digest: str) -> Goal:
    """First half by a Range request (the cut), then `curl -C -`; bytes served / the file, and its sha256."""
    part = "/var/tmp/sdfleet-bench-resume.bin"
    half = size // 2
    sh("docker", "exec", client, "rm", "-f", part)
    first = key_values(sh("docker", "exec", client, "sh", "-c",
                          client_script(url, 0, part, f"-r 0-{half - 1}")).stdout)
    second = key_values(sh("docker", "exec", client, "sh", "-c", client_script(url, 0, part, "-C -")).stdout)
    got = sh("docker", "exec", client, "sh", "-c", f"sha256sum {part} 2>/dev/null || true").stdout.split()
    sh("docker", "exec", client, "rm", "-f", part)
    served = int(first.get("size", "0")) + int(second.get("size", "0"))
    print(f"(5) cut at {mib(half)} (Range 0-{half - 1}): HTTP {first.get('code')}, {mib(int(first.get('size', '0')))};"
          f" resumed (curl -C -): HTTP {second.get('code')}, rc={second.get('rc')}, {mib(int(second.get('size', '0')))}")
    problems = []
    if first.get("code") != "206":
        problems.append(f"the cut got HTTP {first.get('code')}, not 206: the mirror ignores Range")
    if second.get("rc") != "0" or second.get("code") != "206":
        problems.append(f"the resume failed (curl rc={second.get('rc')}, HTTP {second.get('code')})")
    if not got or got[0] != digest:
        problems.append("the resumed file's sha256 differs from the mirror's")
    else:
        print(f"    resumed file's sha256 = the mirror's ({digest[:16]}...)")
    return Goal("resume", served / size, problem="; ".join(problems))


def converge_mirror_only() -> None:
    """Fresh upstream fixture and mirror host, the mirror converged by site.yml (no webui hosts)."""
    bring_up([], mirror=True)
    inv = inventory([], mirror=True)
    took, _, _ = play(inv, "site.yml")
    print(f"(5) mirror converged by site.yml in {took:.1f} s")


def section_mirror(args: argparse.Namespace) -> list[Goal]:
    """(5): one host, then CLIENTS hosts at once, downloading one file from the mirror; a cut download resumed."""
    size = args.file_mib * MIB
    converge_mirror_only()
    digest = mirror_file(size)
    url = f"http://{MIRROR}:{MIRROR_PORT}/{BENCH_FILE}"
    clients = start_clients(CLIENTS)
    alone = download_together(clients[:1], url)
    together = download_together(clients, url)
    goals = []
    bad = failed_runs(alone + together, size)
    if bad:
        print(f"(5) downloads of {url} failed: {'; '.join(bad)}")
        goals.append(Goal("throughput", None, note=f"downloads failed: {bad[0]}"))
    else:
        one, all_ = throughput_mb_s(alone), throughput_mb_s(together)
        goals.append(Goal("throughput", ratio(all_, one)))
        print(f"(5) {mib(size)} from the mirror: 1 host {one:.0f} MB/s; {CLIENTS} hosts at once {all_:.0f} MB/s"
              f" in all ({all_ / CLIENTS:.0f} MB/s each)")
        print(f"    {goal_line(goals[-1])}")
    goals.append(resume_cut(clients[0], url, size, digest))
    print(f"    {goal_line(goals[-1])}")
    return goals


# --- Section: real ----------------------------------------------------------------------------------------------

def real_missing() -> str:
    """Why the real section cannot run ("" when it can)."""
    for need in (REAL_FIXTURE / "pins.json", REAL_LOCKS / f"{REAL_VERSION}.txt", REAL_SCENARIO / "group_vars"):
        if not need.exists():
            return f"{need.relative_to(ROOT)} missing (make real-fixture; it needs ../shared/upstream)"
    return ""


def real_inventory(installer: str = "launcher") -> pathlib.Path:
    """The real_webui scenario's fleet for one host at REAL_VERSION whose only source is the fleet mirror, installing
    with `installer` (sdfleet_webui_installer)."""
    inv = pathlib.Path(tempfile.mkdtemp(prefix="sdfleet-bench-inv-"))
    (inv / "group_vars" / "all").mkdir(parents=True)
    (inv / "host_vars").mkdir()
    fleet = yaml.safe_load((REAL_SCENARIO / "group_vars" / "all" / "fleet.yml").read_text())
    fleet |= {"__real_upstream": f"http://{UPSTREAM}:8080",
              "__real_pins": f"{{{{ lookup('ansible.builtin.file', {str(REAL_FIXTURE / 'pins.json')!r}) | from_json }}}}",
              "sdfleet_webui_version": REAL_VERSION}
    (inv / "group_vars" / "all" / "fleet.yml").write_text("---\n" + yaml.safe_dump(fleet, sort_keys=False))
    shutil.copy((REAL_SCENARIO / "group_vars" / "all" / "sources.yml").resolve(), inv / "group_vars" / "all")
    # Every upstream URL dead for the host (nothing listens on 8081): the mirror is its only source, as v1101's.
    (inv / "host_vars" / f"{REAL_HOST}.yml").write_text(f"---\n__real_upstream: http://{UPSTREAM}:8081\n"
                                                      f"sdfleet_webui_installer: {installer}\n")
    hosts_file(inv, [REAL_HOST], mirror=True)
    return inv


def in_host(script: str, stdin: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    """A shell script on the real host, as the webui's service user (stdin: fed to it)."""
    attach = ["-i"] if stdin is not None else []
    return sh("docker", "exec", *attach, "-u", WEBUI_USER, REAL_HOST, "bash", "-c", script, check=check, stdin=stdin)


def bare_install(lines: list[str]) -> tuple[float, str]:
    """`pip install` of these pins into an empty venv of the webui venv's python, from the install's
    indexes (its install.env, without the webui's constraints), no cache; (seconds, output's end)."""
    python = in_host(f"{WEBUI_VENV}/bin/python -c 'import sys; print(sys._base_executable)'").stdout.strip()
    in_host(f"cat > {BARE_REQS}", stdin="\n".join(lines) + "\n")
    in_host(f"rm -rf {BARE_VENV} && {shlex.quote(python)} -m venv {BARE_VENV}")
    pip = (f"set -a; . {INSTALL_ENV}; set +a; unset PIP_CONSTRAINT; "
           f"{BARE_VENV}/bin/python -m pip install --no-cache-dir --no-deps --progress-bar off"
           f" ${{TORCH_INDEX_URL:+--extra-index-url \"$TORCH_INDEX_URL\"}} -r {BARE_REQS}")
    start = time.monotonic()
    out = in_host(pip, check=False)
    took = time.monotonic() - start
    if out.returncode != 0:
        raise SystemExit(f"the bare pip install failed (rc={out.returncode}): {(out.stdout + out.stderr)[-2000:]}")
    return took, out.stdout.strip().splitlines()[-1] if out.stdout.strip() else ""


def venv_packages() -> dict[str, str]:
    """{name: version} of what the real host's webui venv holds (pip list)."""
    listed = in_host(f"{WEBUI_VENV}/bin/python -m pip list --format=json --disable-pip-version-check").stdout
    return {p["name"]: p["version"] for p in json.loads(listed)}


def real_converge(installer: str) -> tuple[float, float | None]:
    """A fresh real host converged with `installer`: (the converge's seconds, its install run's seconds or None)."""
    bring_up([REAL_HOST.removeprefix("sdfleet-bench-")], mirror=True, fixture=REAL_FIXTURE)
    took, _, output = play(real_inventory(installer), "site.yml", env=PROFILE_ENV)
    return took, task_seconds(profile_durations(output), INSTALL_TASKS)


def section_real(_: argparse.Namespace) -> list[Goal]:
    """(6): the real webui's provision-time install, with the launcher and with uv, against a bare pip install of the
    same locked files (measured on the launcher's host, from the packages its venv holds)."""
    why = real_missing()
    if why:
        print(f"(6) real webui: skipped: {why}")
        return [Goal("real", None, note=why), Goal("real_uv", None, note=why)]
    took, install = real_converge("launcher")
    if install is None:
        print(f"(6) real webui: converged in {took:.1f} s, yet profile_tasks shows no install task")
        return [Goal("real", None, note="no install task in the TASKS RECAP"), Goal("real_uv", None, note="no bare install to compare with")]
    installed = venv_packages()
    lines, not_installed, not_locked, moved = bare_requirements((REAL_LOCKS / f"{REAL_VERSION}.txt").read_text(),
                                                                installed)
    bare, last = bare_install(lines)
    print(f"(6) real webui {REAL_VERSION} from the fleet mirror: converged in {took:.1f} s; its install run"
          f" (launch.py --exit: torch, sub-repositories, requirements, extensions) {install:.1f} s")
    print(f"(6) bare pip install of the same {len(lines)} packages into an empty venv, same host and index:"
          f" {bare:.1f} s ({last[:100]})")
    print(f"    installed but not in the lock (built from archives, or the venv's own): {', '.join(not_locked) or '-'};"
          f" locked but not installed: {', '.join(not_installed) or '-'}; the index served another version than"
          f" the lock's: {', '.join(moved) or '-'}")
    goals = [Goal("real", ratio(install, bare))]
    print(f"    {goal_line(goals[0])}")
    took_uv, install_uv = real_converge("uv")
    if install_uv is None:
        return goals + [Goal("real_uv", None, note="no install task in the TASKS RECAP")]
    with_uv = venv_packages()
    differ = [f"{n} {installed.get(n, '-')} / {with_uv.get(n, '-')}"
              for n in sorted(set(installed) | set(with_uv)) if installed.get(n) != with_uv.get(n)]
    print(f"(6) the same host again with sdfleet_webui_installer: uv: converged in {took_uv:.1f} s; its install run"
          f" (uv: torch, then the requirements; then launch.py --exit) {install_uv:.1f} s; packages whose version"
          f" differs from the launcher's venv (launcher / uv): {', '.join(differ) or 'none'}")
    goals.append(Goal("real_uv", ratio(install_uv, bare)))
    print(f"    {goal_line(goals[1])}")
    return goals


# The pipelining section's play: small module calls as the converge makes them (as root and as another user).
PIPELINING_PLAY = """- hosts: all
  gather_facts: false
  tasks:
    - ansible.builtin.stat: {path: /etc/hostname}
      loop: "{{ range(20) | list }}"
    - ansible.builtin.command: "true"
      changed_when: false
      become: true
      become_user: nobody
      loop: "{{ range(10) | list }}"
"""


def section_pipelining(_: argparse.Namespace) -> list[Goal]:
    """(7): the same 30 small tasks on one container with ANSIBLE_PIPELINING off and on, alternated, best of 2."""
    teardown()
    host = "sdfleet-bench-pipelining"
    sh("docker", "run", "-d", "--name", host, IMAGE, "sleep", "infinity")
    inv = pathlib.Path(tempfile.mkdtemp(prefix="sdfleet-bench-inv-"))
    (inv / "hosts.yml").write_text(f"all:\n  hosts:\n    {host}:\n      ansible_connection: community.docker.docker\n")
    book = inv / "tasks.yml"
    book.write_text(PIPELINING_PLAY)
    took: dict[str, list[float]] = {"false": [], "true": []}
    for _ in range(2):
        for mode in took:
            took[mode].append(play(inv, str(book), env={"ANSIBLE_PIPELINING": mode})[0])
    off, on = min(took["false"]), min(took["true"])
    print(f"(7) 30 small tasks, pipelining off / on:  {off:7.1f} s / {on:.1f} s   (on / off = {on / off:.2f}x)")
    return [Goal("pipelining", ratio(on, off))]


RUNNERS: dict[str, Callable[[argparse.Namespace], list[Goal]]] = {
    "converge": section_converge, "mirror": section_mirror, "real": section_real,
    "pipelining": section_pipelining}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", action="append", choices=SECTIONS, help="run this section only (repeatable)")
    parser.add_argument("--skip", action="append", choices=SECTIONS, help="leave this section out (repeatable)")
    parser.add_argument("--file-mib", type=int, default=1024, help="the mirror section's file, MiB (default 1024)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    sections = selected_sections(args.only, args.skip)
    needs = [PLAYBOOK, ADHOC] + ([FIXTURE / "pins.json"] if {"converge", "mirror"} & set(sections) else [])
    for need in needs:
        if not need.exists():
            raise SystemExit(f"{need} missing: run make venv images fixture (make bench does)")
    print(machine())
    print(f"sections: {', '.join(sections) or 'none'}")
    goals: list[Goal] = []
    failed = False
    for section in sections:
        started = time.monotonic()
        print(f"--- {section} ---")
        try:
            goals += RUNNERS[section](args)
        except (SystemExit, subprocess.CalledProcessError) as err:
            failed = True
            why = err.stderr.strip()[-300:] if isinstance(err, subprocess.CalledProcessError) else str(err)
            print(f"{section}: stopped: {why}")
            goals += [Goal(k, None, note=f"the {section} section stopped")
                      for k in SECTION_GOALS[section] if k not in {g.key for g in goals}]
        finally:
            teardown()
            print(f"--- {section}: {time.monotonic() - started:.0f} s; load average now "
                  f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print("\n".join(summary_lines(goals)))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
