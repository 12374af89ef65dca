"""The REAL webui (v1.10.1 and dev) converged by site.yml on CPU boxes (see molecule.yml).

What a user checks after a converge: it answers, the login lets the right password in and no other, the API
wants its own login, the first start installs nothing and asks no network for anything, the service runs as its
own user inside a hardened unit that can write only where the real webui writes. The v1.10.1 host converges from
the fleet mirror alone (its own upstream URLs are dead), so the mirror holds everything a real install takes.
"""
from __future__ import annotations

import json
import os
import pathlib
import re
import shlex
import time

import pytest
import testinfra

PINS = json.loads((pathlib.Path(os.environ.get("MOLECULE_PROJECT_DIRECTORY", ".")) / "build/real-fixture/pins.json")
                  .read_text(encoding="utf-8"))
UI = ("tester", "real-ui-password-1")
API = ("robot", "real-api-password-1")
BASE = "http://127.0.0.1:7860"
LOG = "/var/log/sd-webui/instance-0.log"
CHECKOUT = "/opt/sd-webui"
# host -> (the version's banner line, torch it must run)
VERSIONS = {
    "real-webui-v1101": ("Version: v1.10.1", "2.1.2"),
    "real-webui-dev": ("Version: v1.10.1-1-g" + PINS["webui"]["commits"]["dev"][:7], "2.7.0"),
}


def name(host) -> str:
    return host.backend.get_hostname()


def curl(host, path: str, *args: str) -> tuple[int, str]:
    """HTTP status and body of a request made on the host with curl."""
    out = host.run(f"curl -s -o /tmp/body -w '%{{http_code}}' {' '.join(shlex.quote(a) for a in args)} "
                   f"{shlex.quote(BASE + path)}; echo; cat /tmp/body")
    status, _, body = out.stdout.partition("\n")
    return int(status or 0), body


def upstream():
    return testinfra.get_host("docker://real-webui-upstream")


def test_ping_answers(host):
    assert curl(host, "/internal/ping")[0] == 200


def test_the_real_version_and_torch_run(host):
    banner, torch = VERSIONS[name(host)]
    log = host.file(LOG).content_string
    assert banner in log.splitlines(), f"{banner!r} not in the instance log"
    out = host.check_output(f"sudo -u sdwebui {CHECKOUT}/venv/bin/python -c 'import torch; print(torch.__version__)'")
    assert out.startswith(torch + "+"), out


def test_ui_login_lets_the_right_password_in_and_no_other(host):
    assert curl(host, "/config")[0] == 401
    status, body = curl(host, "/login", "-c", "/tmp/jar", "--data-urlencode", f"username={UI[0]}",
                        "--data-urlencode", "password=wrong-password-9")
    assert status == 400 and "Incorrect credentials" in body
    status, body = curl(host, "/login", "-c", "/tmp/jar", "--data-urlencode", f"username={UI[0]}",
                        "--data-urlencode", f"password={UI[1]}")
    assert status == 200 and json.loads(body) == {"success": True}
    status, body = curl(host, "/config", "-b", "/tmp/jar")
    assert status == 200 and '"components"' in body


def test_api_wants_its_own_login(host):
    assert curl(host, "/sdapi/v1/sd-models")[0] == 401
    assert curl(host, "/sdapi/v1/sd-models", "-u", f"{API[0]}:wrong-password-9")[0] == 401
    status, body = curl(host, "/sdapi/v1/sd-models", "-u", f"{API[0]}:{API[1]}")
    assert status == 200 and isinstance(json.loads(body), list)


def test_every_rendered_flag_is_accepted_by_the_real_parser(host):
    """The real parser exits on an unknown flag: the running process holds every flag of the drop-in."""
    dropin = host.file("/etc/systemd/system/sd-webui@0.service.d/10-instance.conf").content_string
    exec_line = [line for line in dropin.splitlines() if line.startswith("ExecStart=") and len(line) > 10][0]
    rendered = [t for t in shlex.split(exec_line.split("launch.py", 1)[1]) if t.startswith("--")]
    assert {"--use-cpu", "--no-half", "--port", "--data-dir", "--api", "--gradio-auth-path"} <= set(rendered)
    pid = host.check_output("systemctl show -p MainPID --value sd-webui@0")
    argv = host.file(f"/proc/{pid}/cmdline").content_string.split("\0")
    assert set(rendered) <= set(argv)
    assert "unrecognized arguments" not in host.file(LOG).content_string


def test_a_start_installs_nothing_and_asks_no_network(host):
    """Restart the instance with the upstream's counters reset: it comes back without one request to upstream
    and without a line of pip or git in its log."""
    up = upstream()
    up.check_output("curl -s -XPOST http://127.0.0.1:8080/_reset")
    before = len(host.file(LOG).content_string)
    host.check_output("systemctl restart sd-webui@0")
    for _ in range(180):
        if curl(host, "/internal/ping")[0] == 200:
            break
        time.sleep(1)
    else:
        pytest.fail("the restarted instance did not answer within 180 s")
    started = host.file(LOG).content_string[before:]
    assert "Launching Web UI with arguments" in started
    for word in ("Installing", "pip install", "Cloning", "git fetch", "Couldn't"):
        assert word not in started, f"{word!r} in the start's log:\n{started[-3000:]}"
    assert json.loads(up.check_output("curl -s http://127.0.0.1:8080/_stats")) == {}


# host -> where everything came from: v1101's upstream URLs are all dead, so only the fleet mirror can have
# served it; dev does not use the mirror.
SOURCE = {"real-webui-v1101": "http://real-webui-mirror:8080", "real-webui-dev": "http://real-webui-upstream:8080"}


def test_everything_came_from_the_hosts_only_working_source(host):
    base = SOURCE[name(host)]
    env = host.file("/etc/sd-webui/sd-webui.env").content_string
    assert f'CLIP_PACKAGE="{base}{PINS["archives"]["CLIP"]["path"]}"' in env
    assert f'OPENCLIP_PACKAGE="{base}{PINS["archives"]["open_clip"]["path"]}"' in env
    assert f'INDEX_URL="{base}/simple/"' in env
    origin = host.check_output(f"git -C {CHECKOUT} config --get remote.origin.url")
    assert origin.startswith(base + "/"), origin
    install = host.file("/var/log/sd-webui/install.log").content_string
    assert "Installing clip" in install and "Installing open_clip" in install
    assert "github.com" not in install


def test_runs_as_its_own_user(host):
    pid = host.check_output("systemctl show -p MainPID --value sd-webui@0")
    assert host.check_output(f"ps -o user= -p {pid}") == "sdwebui"


def test_hardening_holds_with_exactly_the_writable_paths_the_real_webui_needs(host):
    out = host.check_output("systemd-analyze security --no-pager sd-webui@0.service | tail -n 1")
    score = float(re.search(r"exposure level .*?: ([0-9.]+)", out).group(1))
    assert score <= 2.5, out
    writable = set(host.check_output("systemctl show -p ReadWritePaths --value sd-webui@0").split())
    inside = {p for p in writable if p.startswith(CHECKOUT + "/") and not p.startswith(CHECKOUT + "/models")
              and not p.startswith(CHECKOUT + "/embeddings")}
    assert inside == {f"{CHECKOUT}/tmp", f"{CHECKOUT}/repositories", f"{CHECKOUT}/config_states"}
    assert host.file(f"{CHECKOUT}/config_states").user == "sdwebui"
    assert host.run(f"sudo -u sdwebui test -w {CHECKOUT}/modules").rc == 0  # the user owns it; the unit forbids it
    log = host.file(LOG).content_string
    assert "Read-only file system" not in log
    assert "mkdir -p failed" not in log  # matplotlib's cache: MPLCONFIGDIR points into the writable data root
