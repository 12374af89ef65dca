"""The REAL webui (v1.10.1 and dev) converged by site.yml on CPU boxes (see molecule.yml).

What a user checks after a converge: it answers through the front door (nginx, TLS), the login lets the right
password in and no other, the API wants its own login, the routes that bypass the login or leak are refused, no
password is readable anywhere (sysinfo, cmd-flags, ps, units, journal, files), the first start installs nothing
and asks no network for anything, the service runs as its own user inside a hardened unit that can write only
where the real webui writes. The v1.10.1 host converges from the fleet mirror alone (its own upstream URLs are
dead), so the mirror holds everything a real install takes.
"""
from __future__ import annotations

import hashlib
import json
import os
import pathlib
import re
import shlex
import ssl
import time

import pytest
import testinfra

PINS = json.loads((pathlib.Path(os.environ.get("MOLECULE_PROJECT_DIRECTORY", ".")) / "build/real-fixture/pins.json")
                  .read_text(encoding="utf-8"))
UI = ("tester", "real-ui-password-1")
API = ("robot", "real-api-password-1")
# Users arrive at the front door; the instance itself listens on 127.0.0.1:27860.
BASE = "https://127.0.0.1:7860"
BACKEND = "http://127.0.0.1:27860"
CERT = "/etc/nginx/sd-webui/front-door.crt"
CHECKOUT = "/opt/sd-webui"
SECRETS = (UI[1], API[1])
# host -> (the version's banner line, torch it must run)
VERSIONS = {
    "real-webui-v1101": ("Version: v1.10.1", "2.1.2"),
    "real-webui-dev": ("Version: v1.10.1-1-g" + PINS["webui"]["commits"]["dev"][:7], "2.7.0"),
}


def name(host) -> str:
    return host.backend.get_hostname()


def curl(host, path: str, *args: str, base: str = BASE) -> tuple[int, str]:
    """HTTP status and body of a request made on the host with curl (TLS verified against the served cert)."""
    out = host.run(f"curl -s --cacert {CERT} -o /tmp/body -w '%{{http_code}}' "
                   f"{' '.join(shlex.quote(a) for a in args)} {shlex.quote(base + path)}; echo; cat /tmp/body")
    status, _, body = out.stdout.partition("\n")
    return int(status or 0), body


def instance_log(host) -> str:
    """What the instance printed (the journal: its command line holds no secret)."""
    return host.run("journalctl --no-pager -o cat -u sd-webui@0").stdout


def upstream():
    return testinfra.get_host("docker://real-webui-upstream")


def test_ping_answers(host):
    assert curl(host, "/internal/ping")[0] == 200


def test_the_real_version_and_torch_run(host):
    banner, torch = VERSIONS[name(host)]
    log = instance_log(host)
    assert banner in log.splitlines(), f"{banner!r} not in the instance log"
    out = host.check_output(f"sudo -u sdwebui {CHECKOUT}/venv/bin/python -c 'import torch; print(torch.__version__)'")
    assert out.startswith(torch + "+"), out


def test_the_login_page_loads_with_everything_it_references(host):
    """A real page load through the front door, before the login: the page and every script, style and asset
    it references answer 200 (what nginx leaves open is what the login page needs)."""
    status, page = curl(host, "/")
    assert status == 200 and "<html" in page.lower()
    refs = sorted(set(re.findall(r'(?:src|href)="(\./assets/[^"]+|/assets/[^"]+|\./theme\.css[^"]*|/theme\.css[^"]*)"',
                                 page)))
    assert refs, page[:2000]
    for ref in refs:
        assert curl(host, "/" + ref.lstrip("./"))[0] == 200, ref


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
    # the logged-in page is the UI, and the UI's own calls under /internal/ pass with the session only
    status, page = curl(host, "/", "-b", "/tmp/jar")
    assert status == 200 and "txt2img" in page
    assert curl(host, "/internal/quicksettings-hint", "-b", "/tmp/jar")[0] == 200
    assert curl(host, "/internal/quicksettings-hint")[0] == 401


def test_api_wants_its_own_login(host):
    assert curl(host, "/sdapi/v1/sd-models")[0] == 401
    assert curl(host, "/sdapi/v1/sd-models", "-u", f"{API[0]}:wrong-password-9")[0] == 401
    status, body = curl(host, "/sdapi/v1/sd-models", "-u", f"{API[0]}:{API[1]}")
    assert status == 200 and isinstance(json.loads(body), list)
    # a route an extension adds (the built-in Lora's), which upstream's --api-auth never covered
    assert curl(host, "/sdapi/v1/loras")[0] == 401
    assert curl(host, "/sdapi/v1/loras", "-u", f"{API[0]}:{API[1]}")[0] == 200


REFUSED = ["/internal/sysinfo", "/internal/sysinfo-download", "/internal/profile-startup", "/internal/pending-tasks",
           "/sdapi/v1/cmd-flags", "/sdapi/v1/cmd-flags/", "/docs", "/redoc", "/openapi.json",
           "/internal/../internal/sysinfo", "//internal/sysinfo", "/internal/%73ysinfo"]


@pytest.mark.parametrize("path", REFUSED)
def test_the_routes_that_bypass_the_login_or_leak_are_refused_by_nginx(host, path):
    """Refused for every client, with the API login too; the body is nginx's, nothing from the webui."""
    status, body = curl(host, path, "--path-as-is", "-u", f"{API[0]}:{API[1]}")
    assert status == 404 and "nginx" in body and "{" not in body, (path, status, body[:300])
    # the instance itself does serve them (what the front door protects from)
    if path in ("/internal/sysinfo", "/sdapi/v1/cmd-flags", "/docs"):
        assert curl(host, path, base=BACKEND)[0] == 200


def test_ping_is_open_and_everything_else_wants_the_ui_login(host):
    assert curl(host, "/internal/ping")[0] == 200
    for path in ("/sd_extra_networks/metadata?page=checkpoints&item=x", "/file=README.md", "/info", "/reset",
                 "/internal/progress", "/startup-events", "/no-such-route"):
        assert curl(host, path)[0] == 401, path


def test_plain_http_is_redirected_to_https(host):
    out = host.check_output("curl -s -o /dev/null -w '%{http_code} %{redirect_url}' http://127.0.0.1:7860/internal/ping")
    assert out == "301 https://127.0.0.1:7860/internal/ping"


def test_tls_serves_the_certificate_the_report_names(host):
    """The served certificate's SHA-256 fingerprint is the one in the fleet report; dev serves the inventory's."""
    served = host.check_output("python3 -c \"import hashlib, ssl; print(hashlib.sha256(ssl.PEM_cert_to_DER_cert("
                               "ssl.get_server_certificate(('127.0.0.1', 7860)))).hexdigest())\"")
    report = (pathlib.Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"]) / "reports/fleet-report.md").read_text()
    line = [x for x in report.split(f"## {name(host)} ")[1].splitlines() if x.startswith("- front door:")][0]
    fingerprint = re.search(r"fingerprint `([0-9A-Fa-f:]+)`", line).group(1).replace(":", "").lower()
    assert fingerprint == served, line
    if name(host) == "real-webui-dev":
        assert "inventory certificate" in line
        own = pathlib.Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"]) / "tls/real-webui-dev.crt"
        der = ssl.PEM_cert_to_DER_cert(own.read_text())
        assert hashlib.sha256(der).hexdigest() == served
    else:
        assert "self-signed certificate" in line
        assert f"<https://{name(host)}:7860/>" in report


QUEUE = r"""
import json, ssl, sys
from websockets.sync.client import connect
ctx = ssl.create_default_context(cafile=sys.argv[2])
try:
    with connect("wss://127.0.0.1:7860/queue/join", ssl_context=ctx, open_timeout=10,
                 additional_headers={"Cookie": sys.argv[1]} if sys.argv[1] else None) as ws:
        first = json.loads(ws.recv(timeout=10))
        ws.send(json.dumps({"fn_index": 0, "session_hash": "sdfleettest"}))
        second = json.loads(ws.recv(timeout=10))
        print(json.dumps([first["msg"], second["msg"]]))
except Exception as e:
    print(json.dumps(["refused", str(e)]))
"""


def test_the_queue_websocket_works_with_a_login_and_only_with_one(host):
    """gradio's /queue/join through the front door: a live session gets the queue; no cookie, or a made-up one
    (which gradio alone lets in), gets nginx's 401."""
    status, _ = curl(host, "/login", "-c", "/tmp/jar-ws", "--data-urlencode", f"username={UI[0]}",
                     "--data-urlencode", f"password={UI[1]}")
    assert status == 200
    token = host.check_output("awk '$6 == \"access-token\" {print $7}' /tmp/jar-ws")
    py = f"{CHECKOUT}/venv/bin/python"
    host.check_output(f"cat > /tmp/sdfleet_ws_probe.py <<'EOF'\n{QUEUE}\nEOF")
    ok = json.loads(host.check_output(f"{py} /tmp/sdfleet_ws_probe.py {shlex.quote('access-token=' + token)} {CERT}"))
    assert ok[0] == "send_hash" and ok[1] in ("estimation", "send_data", "process_starts"), ok
    for cookie in ("", "access-token=made-up-token"):
        refused = json.loads(host.check_output(f"{py} /tmp/sdfleet_ws_probe.py {shlex.quote(cookie)} {CERT}"))
        assert refused[0] == "refused" and "401" in refused[1], (cookie, refused)


def test_no_password_in_sysinfo_cmd_flags_or_anywhere_on_the_host(host):
    """From the host itself, straight to the instance: sysinfo and cmd-flags (the webui's own leaks) hold no
    password; nor do ps, the units, the journal, the process environment or any world-readable file."""
    places = {
        "sysinfo": curl(host, "/internal/sysinfo", base=BACKEND)[1],
        "cmd-flags": curl(host, "/sdapi/v1/cmd-flags", base=BACKEND)[1],
        "ps": host.check_output("ps auxwwe"),
        "units": host.check_output("systemctl show sd-webui@0 nginx; systemctl cat sd-webui@0 nginx"),
        "journal": host.check_output("journalctl --no-pager"),
        "environ": host.check_output(f"cat /proc/{host.check_output('systemctl show -p MainPID --value sd-webui@0')}"
                                     "/environ | tr '\\0' '\\n'"),
        "world-readable files": host.check_output(
            "find /etc /opt/sd-webui /var/lib/sd-webui /var/log /var/tmp /tmp -xdev -type f -perm -o+r "
            f"-not -path '{CHECKOUT}/venv/*' -not -path '{CHECKOUT}/repositories/*' -print0 "
            f"| xargs -0 grep -l -F -e {UI[1]} -e {API[1]} || true"),
    }
    assert "Commandline" in json.loads(places["sysinfo"])
    assert json.loads(places["cmd-flags"])["api_auth"] is None
    for where, text in places.items():
        for secret in SECRETS:
            assert secret not in text, f"{secret[:4]}... found in {where}"
    logins = host.file("/etc/nginx/sd-webui/api-logins")
    assert (logins.user, logins.group, logins.mode) == ("root", "www-data", 0o640)
    assert API[1] not in logins.content_string and logins.content_string.startswith(f"{API[0]}:$6$")


def test_every_rendered_flag_is_accepted_by_the_real_parser(host):
    """The real parser exits on an unknown flag: the running process holds every flag of the drop-in."""
    dropin = host.file("/etc/systemd/system/sd-webui@0.service.d/10-instance.conf").content_string
    exec_line = [line for line in dropin.splitlines() if line.startswith("ExecStart=") and len(line) > 10][0]
    rendered = [t for t in shlex.split(exec_line.split("launch.py", 1)[1]) if t.startswith("--")]
    assert {"--use-cpu", "--no-half", "--port", "--data-dir", "--api", "--gradio-auth-path"} <= set(rendered)
    pid = host.check_output("systemctl show -p MainPID --value sd-webui@0")
    argv = host.file(f"/proc/{pid}/cmdline").content_string.split("\0")
    assert set(rendered) <= set(argv)
    assert "unrecognized arguments" not in instance_log(host)


def test_the_instance_listens_on_loopback_only_behind_nginx(host):
    assert host.socket("tcp://127.0.0.1:27860").is_listening
    assert not host.socket("tcp://0.0.0.0:27860").is_listening
    expected = "0.0.0.0:7860" if name(host) == "real-webui-v1101" else "127.0.0.1:7860"
    listeners = host.check_output("ss -Hltnp 'sport = :7860'")
    assert expected in listeners and "nginx" in listeners, listeners
    if name(host) == "real-webui-dev":
        assert "0.0.0.0:7860" not in listeners
    assert host.check_output("systemctl show -p ProtectSystem --value nginx") == "strict"
    assert host.check_output("systemctl show -p NoNewPrivileges --value nginx") == "yes"


def test_a_start_installs_nothing_and_asks_no_network(host):
    """Restart the instance with the upstream's counters reset: it comes back without one request to upstream
    and without a line of pip or git in its log."""
    up = upstream()
    up.check_output("curl -s -XPOST http://127.0.0.1:8080/_reset")
    before = len(instance_log(host))
    host.check_output("systemctl restart sd-webui@0")
    for _ in range(180):
        if curl(host, "/internal/ping", base=BACKEND)[0] == 200:
            break
        time.sleep(1)
    else:
        pytest.fail("the restarted instance did not answer within 180 s")
    started = instance_log(host)[before:]
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
    assert "Installing clip" in install  # the launcher, from the CLIP archive at the source above
    if name(host) not in UV:  # with uv, the requirements file's open-clip-torch is there before the launcher looks
        assert "Installing open_clip" in install
    assert "github.com" not in install


# The hosts that install with sdfleet_webui_installer: uv (host_vars); the others with the launcher alone.
UV = {"real-webui-v1101"}


def test_the_installer_the_host_chose_installed_a_consistent_venv(host):
    """uv (v1101) installs torch and the requirements before launch.py, which then installs neither; the launcher
    alone (dev) installs both itself. Either way the venv holds the version's torch and pip finds nothing broken."""
    install = host.file("/var/log/sd-webui/install.log").content_string
    last_run = install[install.rindex("=== sdfleet webui_repo install run"):]
    with_uv = ("Installing torch and torchvision with uv", "Installing requirements with uv")
    if name(host) in UV:
        assert all(line in last_run for line in with_uv), last_run[:3000]
        assert "Installing torch and torchvision\n" not in last_run and "Installing requirements\n" not in last_run
        assert host.file(f"{CHECKOUT}/venv/bin/uv").is_file
    else:
        assert not any(line in install for line in with_uv)
        assert "Installing torch and torchvision\n" in install
    torch = host.check_output(f"{CHECKOUT}/venv/bin/python -c 'import importlib.metadata as m; print(m.version(\"torch\"))'")
    assert torch.split("+")[0] == VERSIONS[name(host)][1]
    assert host.run(f"{CHECKOUT}/venv/bin/python -m pip check").rc == 0
    # compiled at install (pip does; uv with --compile-bytecode): the unit keeps the venv read-only at start
    cached = host.run(f"ls {CHECKOUT}/venv/lib/python3*/site-packages/torch/__pycache__/").stdout
    assert "__init__.cpython-" in cached, cached[:500]


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
    assert inside == {f"{CHECKOUT}/tmp", f"{CHECKOUT}/repositories", f"{CHECKOUT}/config_states",
                      f"{CHECKOUT}/extensions"}
    assert host.file(f"{CHECKOUT}/config_states").user == "sdwebui"
    assert host.run(f"sudo -u sdwebui test -w {CHECKOUT}/modules").rc == 0  # the user owns it; the unit forbids it
    log = instance_log(host)
    assert "Read-only file system" not in log
    assert "mkdir -p failed" not in log  # matplotlib's cache: MPLCONFIGDIR points into the writable data root
