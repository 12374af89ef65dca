#!/usr/bin/env python3
"""Benchmark the fleet layer on demo-like containers (make bench). Not a test: prints figures.

Fresh containers for every first converge (network sdfleet-bench, names sdfleet-bench-*), the demo's
inventory settings (inventories/demo) with the upstream fixture server as "upstream":

1. first converge time, 1 GPU host vs 3 GPU hosts (with the fleet mirror);
2. idempotent re-run time / first converge time, and its changed count (3 hosts);
3. --check changed count on the converged fleet (3 hosts);
4. bytes served by upstream, 1 vs 3 hosts, with the fleet mirror and without it (the fixture's /_stats).

The last line is a one-line summary. Every ratio comes from runs of this one invocation.
"""
from __future__ import annotations

import json
import pathlib
import re
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
DEMO = ROOT / "inventories" / "demo"
PLAYBOOK = ROOT / ".venv" / "bin" / "ansible-playbook"
IMAGE = "sdfleet/webui-host:bookworm"
NET = "sdfleet-bench"
UPSTREAM = "sdfleet-bench-upstream"
MIRROR = "sdfleet-bench-mirror"
GPU_HOSTS = ["small", "mid", "dual"]
SYSTEMD = ["--cap-add", "SYS_ADMIN", "--security-opt", "seccomp=unconfined", "--security-opt",
           "apparmor=unconfined", "-v", "/sys/fs/cgroup:/sys/fs/cgroup:rw", "--tmpfs", "/run",
           "--tmpfs", "/run/lock", "--tmpfs", "/tmp", "--cgroupns", "host"]


def sh(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), check=check, capture_output=True, text=True)


def teardown() -> None:
    names = sh("docker", "ps", "-aq", "--filter", "name=^sdfleet-bench-", check=False).stdout.split()
    if names:
        sh("docker", "rm", "-f", *names, check=False)
    sh("docker", "network", "rm", NET, check=False)


def bring_up(hosts: list[str], mirror: bool) -> None:
    """Fresh containers: the upstream fixture server, the GPU hosts and (optionally) the mirror host."""
    teardown()
    sh("docker", "network", "create", NET)
    sh("docker", "run", "-d", "--name", UPSTREAM, "--hostname", UPSTREAM, "--network", NET,
       "-v", f"{ROOT}/build/fixture:/srv/fixture:ro", IMAGE,
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


def inventory(hosts: list[str], mirror: bool) -> pathlib.Path:
    """A copy of the demo inventory for these container names, with or without the mirror host."""
    inv = pathlib.Path(tempfile.mkdtemp(prefix="sdfleet-bench-inv-"))
    shutil.copytree(DEMO / "group_vars", inv / "group_vars")
    fleet = inv / "group_vars" / "all" / "fleet.yml"
    fleet.write_text(fleet.read_text().replace("sdfleet-demo-upstream", UPSTREAM)
                     .replace("inventory_dir ~ '/../../build/fixture/pins.json'", repr(str(ROOT / "build/fixture/pins.json"))))
    (inv / "host_vars").mkdir()
    for h in hosts:
        shutil.copy(DEMO / "host_vars" / f"sdfleet-demo-{h}.yml", inv / "host_vars" / f"sdfleet-bench-{h}.yml")
    lines = ["all:", "  vars:", "    ansible_connection: community.docker.docker", "  children:",
             "    webui_hosts:", "      hosts:"] + [f"        sdfleet-bench-{h}:" for h in hosts]
    if mirror:
        lines += ["    sdfleet_mirror:", "      hosts:", f"        {MIRROR}:"]
    (inv / "hosts.yml").write_text("\n".join(lines) + "\n")
    return inv


def play(inv: pathlib.Path, playbook: str, *extra: str) -> tuple[float, int, str]:
    """Run a playbook; (seconds, changed count from the recap, output)."""
    env = {"ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"), "PATH": f"{ROOT / '.venv/bin'}:/usr/bin:/bin",
           "HOME": str(pathlib.Path.home()), "SDFLEET_REPORT_DIR": str(inv / "reports"), "LANG": "C.UTF-8"}
    start = time.monotonic()
    out = subprocess.run([str(PLAYBOOK), "-i", str(inv), str(ROOT / playbook), *extra], cwd=ROOT,
                         capture_output=True, text=True, env=env)
    took = time.monotonic() - start
    if out.returncode != 0:
        print(out.stdout[-4000:], out.stderr[-2000:], sep="\n", file=sys.stderr)
        raise SystemExit(f"{playbook} failed (rc={out.returncode})")
    changed = sum(int(n) for n in re.findall(r"changed=(\d+)", out.stdout.split("PLAY RECAP")[-1]))
    return took, changed, out.stdout


def converge(hosts: list[str], mirror: bool) -> tuple[pathlib.Path, float, int]:
    """Fresh fleet, first converge; (inventory, seconds, upstream bytes)."""
    bring_up(hosts, mirror)
    inv = inventory(hosts, mirror)
    play(inv, "playbooks/demo_prepare.yml")
    upstream("/_reset", method="POST")
    took, _, _ = play(inv, "site.yml")
    return inv, took, upstream_bytes()


def mib(n: int) -> str:
    return f"{n / 1048576:.2f} MiB"


def main() -> int:
    for need in (PLAYBOOK, ROOT / "build/fixture/pins.json"):
        if not need.exists():
            raise SystemExit(f"{need} missing: run make venv images fixture (make bench does)")
    try:
        _, t1, b1_mirror = converge(GPU_HOSTS[:1], mirror=True)
        print(f"(1) first converge, 1 GPU host + mirror:  {t1:7.1f} s   upstream {mib(b1_mirror)}")
        inv3, t3, b3_mirror = converge(GPU_HOSTS, mirror=True)
        print(f"(1) first converge, 3 GPU hosts + mirror: {t3:7.1f} s   upstream {mib(b3_mirror)}"
              f"   (3 hosts / 1 host = {t3 / t1:.2f}x)")
        t_re, changed_re, _ = play(inv3, "site.yml")
        print(f"(2) idempotent re-run, 3 hosts:           {t_re:7.1f} s   = {t_re / t3:.2f} of the first converge;"
              f" changed={changed_re}")
        _, changed_check, _ = play(inv3, "site.yml", "--check")
        print(f"(3) --check on the converged fleet:        changed={changed_check}")
        _, _, b1_direct = converge(GPU_HOSTS[:1], mirror=False)
        _, _, b3_direct = converge(GPU_HOSTS, mirror=False)
        print(f"(4) upstream bytes without the mirror:     1 host {mib(b1_direct)}, 3 hosts {mib(b3_direct)}"
              f" ({b3_direct / max(b1_direct, 1):.2f}x)")
        print(f"(4) upstream bytes with the mirror:        1 host {mib(b1_mirror)}, 3 hosts {mib(b3_mirror)}"
              f" ({b3_mirror / max(b1_mirror, 1):.2f}x)")
        print(f"summary: converge 1 host {t1:.0f}s, 3 hosts {t3:.0f}s ({t3 / t1:.2f}x); re-run {t_re / t3:.2f} of first,"
              f" changed={changed_re}; --check changed={changed_check}; upstream 3 hosts: {mib(b3_direct)} direct vs"
              f" {mib(b3_mirror)} via the mirror ({b3_direct / max(b3_mirror, 1):.2f}x less)")
    finally:
        teardown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
