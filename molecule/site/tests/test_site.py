"""The whole site on three GPU boxes and the fleet mirror (see molecule.yml).

Asserts state: units, sockets, the running webui's argv (tier flags per GPU), HTTP answers with and
without logins, where the checkout came from, and what the fleet mirror serves.
"""
from __future__ import annotations

import base64
import functools
import json
import os
import pathlib
import re
import shlex
import subprocess
import sys

import pytest
import testinfra

PINS = json.loads((pathlib.Path(os.environ.get("MOLECULE_PROJECT_DIRECTORY", ".")) / "build/fixture/pins.json")
                  .read_text(encoding="utf-8"))
MIRROR = "http://site-mirror:8080"
UI = "demo:demo-password-1"
API = "robot:site-api-password-1"
# host -> [(instance, port, tier flag, flags that must not be there)]
INSTANCES = {
    "site-small": [(0, 7860, "--lowvram", ["--medvram", "--listen"])],
    "site-mid": [(0, 7860, "--medvram", ["--lowvram", "--medvram-sdxl"])],
    "site-dual": [(0, 7860, None, ["--lowvram", "--medvram", "--medvram-sdxl"]),
                  (1, 7861, None, ["--lowvram", "--medvram", "--medvram-sdxl"])],
}


def name(host) -> str:
    return host.backend.get_hostname()


def only(*hosts: str):
    def wrap(func):
        @functools.wraps(func)
        def inner(host, *args, **kwargs):
            if name(host) not in hosts:
                pytest.skip(f"{func.__name__} covers {', '.join(hosts)} only")
            return func(host, *args, **kwargs)
        return inner
    return wrap


def http(host, url: str, auth: str | None = None) -> tuple[int, str]:
    """Status and body of a GET made on the host (0 when it cannot connect)."""
    script = (
        "import base64,urllib.request,urllib.error\n"
        f"req=urllib.request.Request({url!r})\n"
        f"a={auth!r}\n"
        "if a: req.add_header('Authorization','Basic '+base64.b64encode(a.encode()).decode())\n"
        "try:\n r=urllib.request.urlopen(req, timeout=10); print(r.status); print(r.read().decode()[:4000])\n"
        "except urllib.error.HTTPError as e: print(e.code); print(e.read().decode()[:2000])\n"
        "except Exception as e: print(0); print(e)\n")
    out = host.run(f"python3 -c {shlex.quote(script)}")
    status, _, body = out.stdout.partition("\n")
    return int(status or 0), body


def argv_of(host, index: int) -> list[str]:
    pid = host.run(f"systemctl show --value -p MainPID sd-webui@{index}").stdout.strip()
    raw = host.run(f"cat /proc/{pid}/cmdline | base64 -w0").stdout
    return [a for a in base64.b64decode(raw).decode().split("\0") if a]


def cases():
    return [(h, *c) for h, cs in INSTANCES.items() for c in cs]


@pytest.mark.parametrize("hostname,index,port,tier_flag,absent", cases())
def test_instance_healthy_with_its_tier_flags(host, hostname, index, port, tier_flag, absent):
    if name(host) != hostname:
        pytest.skip(f"instance of {hostname}")
    unit = f"sd-webui@{index}"
    journal = host.run(f"journalctl --no-pager -n 60 -u {unit}").stdout
    assert host.service(unit).is_running, journal
    assert http(host, f"http://127.0.0.1:{port}/internal/ping")[0] == 200, journal
    argv = argv_of(host, index)
    assert argv[argv.index("--port") + 1] == str(port)
    if tier_flag:
        assert tier_flag in argv
    for flag in absent:
        assert flag not in argv, argv


@only("site-small")
def test_small_listens_on_loopback_only(host):
    assert host.socket("tcp://127.0.0.1:7860").is_listening
    assert not host.socket("tcp://0.0.0.0:7860").is_listening
    assert http(host, "http://127.0.0.1:7860/config")[0] == 200


@only("site-small")
def test_small_gets_upcast_sampling_for_its_gtx(host):
    assert "--upcast-sampling" in argv_of(host, 0)


def login_then_config(host, base: str, password: str) -> tuple[int, int]:
    """POST the gradio login form, then GET /config with the session cookie: (login status, config status)."""
    script = (
        "import http.cookiejar,urllib.parse,urllib.request,urllib.error\n"
        "o=urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))\n"
        "def st(*a):\n"
        " try: return o.open(*a, timeout=10).status\n"
        " except urllib.error.HTTPError as e: return e.code\n"
        f"d=urllib.parse.urlencode({{'username': 'demo', 'password': {password!r}}}).encode()\n"
        f"print(st({base + '/login'!r}, d), st({base + '/config'!r}))\n")
    a, b = host.run(f"python3 -c {shlex.quote(script)}").stdout.split()
    return int(a), int(b)


@only("site-mid", "site-dual")
def test_exposed_hosts_enforce_the_ui_login(host):
    assert host.socket("tcp://0.0.0.0:7860").is_listening
    ip = host.interface("eth0").addresses[0]
    assert http(host, f"http://{ip}:7860/config")[0] == 401
    assert login_then_config(host, f"http://{ip}:7860", "wrong-password") == (400, 401)
    assert login_then_config(host, f"http://{ip}:7860", UI.split(":", 1)[1]) == (200, 200)


@only("site-dual")
def test_dual_api_needs_its_own_login(host):
    for port in (7860, 7861):
        assert http(host, f"http://127.0.0.1:{port}/sdapi/v1/sd-models")[0] == 401
        status, body = http(host, f"http://127.0.0.1:{port}/sdapi/v1/sd-models", auth=API)
        assert status == 200 and "tiny-v1" in body


@only("site-small", "site-mid", "site-dual")
def test_checkout_came_from_the_fleet_mirror_at_the_pin(host):
    origin = host.run("git -C /opt/sd-webui remote get-url origin").stdout.strip()
    assert origin == f"{MIRROR}/git/stable-diffusion-webui.git"
    head = host.run("git -C /opt/sd-webui rev-parse HEAD").stdout.strip()
    assert head == PINS["webui"]["tags"]["v1.10.1"]


@only("site-small", "site-mid", "site-dual")
def test_models_in_place_and_verified(host):
    f = host.file("/opt/sd-webui/models/Stable-diffusion/tiny-v1.safetensors")
    assert f.is_file and f.sha256sum == PINS["files"]["tiny-v1.safetensors"]["sha256"]


@only("site-mirror")
def test_mirror_serves_git_pip_torch_and_models(host):
    assert host.service("sdfleet-mirror").is_running
    assert http(host, "http://127.0.0.1:8080/git/stable-diffusion-webui.git/info/refs")[0] == 200
    for project in ("six", "packaging"):
        status, body = http(host, f"http://127.0.0.1:8080/simple/{project}/")
        assert status == 200 and ".whl" in body, project
    status, body = http(host, "http://127.0.0.1:8080/torch/cu121/torch/")
    assert status == 200 and "torch-2.1.2" in body
    assert host.file("/srv/sdfleet-mirror/files/tiny-v1.safetensors").sha256sum == \
        PINS["files"]["tiny-v1.safetensors"]["sha256"]


@only("site-mirror")
def test_mirror_git_is_cloneable_over_dumb_http(host):
    out = host.run("rm -rf /tmp/c && GIT_TERMINAL_PROMPT=0 git clone -q "
                   "http://127.0.0.1:8080/git/BLIP.git /tmp/c && git -C /tmp/c cat-file -t "
                   f"{PINS['repos']['BLIP']['pin']}")
    assert out.rc == 0 and out.stdout.strip() == "commit", out.stderr


def _run_site(*args: str) -> tuple[str, dict[str, str]]:
    """Run site.yml against this scenario's fleet; return its output and {host: recap line}."""
    project = pathlib.Path(os.environ["MOLECULE_PROJECT_DIRECTORY"])
    cmd = [str(pathlib.Path(sys.executable).with_name("ansible-playbook")), "-i",
           os.environ["MOLECULE_INVENTORY_FILE"], str(project / "site.yml"), *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ, ANSIBLE_NOCOLOR="1"),
                          timeout=900, check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    return out, dict(re.findall(r"^(site-\w+)\s+: (ok=.*)$", out, re.MULTILINE))


def test_one_stage_runs_alone_with_tags():
    """`site.yml --tags service` on the converged fleet: the service stage alone finds what earlier stages
    publish (sdfleet_webui from the source probes and the checkout), fails nowhere and changes nothing."""
    out, recap = _run_site("--tags", "service")
    assert set(recap) >= {"site-small", "site-mid", "site-dual"}, out[-4000:]
    for host, line in recap.items():
        assert all(f" {c}=0 " in f" {line} " for c in ("changed", "failed", "rescued")), f"{host}: {line}"


def test_a_model_change_restarts_the_instances():
    """Last test (it changes the fleet): removing a model in the models stage restarts site-small's instance
    in the service stage, a later play (handlers do not cross plays; sdfleet_models_changed carries it)."""
    small = testinfra.get_host("docker://site-small")
    vae = "/opt/sd-webui/models/VAE/tiny-vae.safetensors"
    assert small.file(vae).is_file
    pid_before = small.run("systemctl show --value -p MainPID sd-webui@0").stdout.strip()
    absent = json.dumps({"sdfleet_model_list": [
        {"name": "tiny-vae", "kind": "vae", "filename": "tiny-vae.safetensors", "state": "absent"}]})
    out, recap = _run_site("--tags", "models,service", "--limit", "site-small", "-e", absent)
    assert " failed=0 " in recap["site-small"] and " rescued=0 " in recap["site-small"], out[-4000:]
    assert not small.file(vae).exists
    pid_after = small.run("systemctl show --value -p MainPID sd-webui@0").stdout.strip()
    assert pid_after not in ("", "0", pid_before), (pid_before, pid_after)
    assert http(small, "http://127.0.0.1:7860/internal/ping")[0] == 200
