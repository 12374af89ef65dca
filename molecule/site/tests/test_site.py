"""The whole site on three GPU boxes and the fleet mirror (see molecule.yml).

Asserts state: units, sockets, the running webui's argv (tier flags per GPU), HTTP answers with and
without logins, where the checkout came from, and what the fleet mirror serves.
"""
from __future__ import annotations

import base64
import functools
import hashlib
import json
import os
import pathlib
import re
import shlex
import shutil
import subprocess
import sys
import time

import pytest
import testinfra

PINS = json.loads((pathlib.Path(os.environ.get("MOLECULE_PROJECT_DIRECTORY", ".")) / "build/fixture/pins.json")
                  .read_text(encoding="utf-8"))
MIRROR = "http://site-mirror:8080"
UI = "demo:demo-password-1"
API = "robot:site-api-password-1"
# host -> [(instance, the port it binds, tier flag, flags that must not be there)]; mid and dual are exposed, so
# behind the front door (nginx, https on 7860+N), their instances on 127.0.0.1:27860+N.
INSTANCES = {
    "site-small": [(0, 7860, "--lowvram", ["--medvram", "--listen"])],
    "site-mid": [(0, 27860, "--medvram", ["--lowvram", "--medvram-sdxl", "--listen"])],
    "site-dual": [(0, 27860, None, ["--lowvram", "--medvram", "--medvram-sdxl", "--listen"]),
                  (1, 27861, None, ["--lowvram", "--medvram", "--medvram-sdxl", "--listen"])],
}
CERT = "/etc/nginx/sd-webui/front-door.crt"
# Where a user asks each host for /internal/ping.
PING = {"site-small": "http://127.0.0.1:7860/internal/ping", "site-mid": "https://127.0.0.1:7860/internal/ping",
        "site-dual": "https://127.0.0.1:7860/internal/ping"}


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
    """Status and body of a GET made on the host (0 when it cannot connect); https verified against the front
    door's self-signed certificate."""
    script = (
        "import base64,ssl,urllib.request,urllib.error\n"
        f"req=urllib.request.Request({url!r})\n"
        f"a={auth!r}\n"
        f"ctx=ssl.create_default_context(cafile={CERT!r}) if {url!r}.startswith('https') else None\n"
        "if a: req.add_header('Authorization','Basic '+base64.b64encode(a.encode()).decode())\n"
        "try:\n r=urllib.request.urlopen(req, timeout=10, context=ctx); print(r.status); print(r.read().decode()[:4000])\n"
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
        "import http.cookiejar,ssl,urllib.parse,urllib.request,urllib.error\n"
        f"ctx=ssl.create_default_context(cafile={CERT!r})\n"
        "o=urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()),\n"
        "                              urllib.request.HTTPSHandler(context=ctx))\n"
        "def st(*a):\n"
        " try: return o.open(*a, timeout=10).status\n"
        " except urllib.error.HTTPError as e: return e.code\n"
        f"d=urllib.parse.urlencode({{'username': 'demo', 'password': {password!r}}}).encode()\n"
        f"print(st({base + '/login'!r}, d), st({base + '/config'!r}))\n")
    a, b = host.run(f"python3 -c {shlex.quote(script)}").stdout.split()
    return int(a), int(b)


@only("site-mid", "site-dual")
def test_exposed_hosts_enforce_the_ui_login_at_the_front_door(host):
    assert host.socket("tcp://0.0.0.0:7860").is_listening
    assert "nginx" in host.run("ss -Hltnp 'sport = :7860'").stdout
    assert not host.socket("tcp://0.0.0.0:27860").is_listening
    ip = host.interface("eth0").addresses[0]
    assert http(host, f"https://{ip}:7860/config")[0] == 401
    assert http(host, f"https://{ip}:7860/internal/sysinfo")[0] == 404
    assert login_then_config(host, f"https://{ip}:7860", "wrong-password") == (400, 401)
    assert login_then_config(host, f"https://{ip}:7860", UI.split(":", 1)[1]) == (200, 200)


def test_the_allow_list_keeps_other_hosts_out():
    """site-mid lets only 192.0.2.0/24 in: site-dual, on the same network, gets nginx's 403; site-dual itself,
    without an allow-list, lets site-mid in."""
    mid, dual = testinfra.get_host("docker://site-mid"), testinfra.get_host("docker://site-dual")
    mid_ip, dual_ip = mid.interface("eth0").addresses[0], dual.interface("eth0").addresses[0]
    def probe(ip: str) -> str:
        return f"curl -sk -o /dev/null -w '%{{http_code}}' https://{ip}:7860/internal/ping"
    assert dual.check_output(probe(mid_ip)) == "403"
    assert mid.check_output(probe(mid_ip)) == "200"
    assert mid.check_output(probe(dual_ip)) == "200"


@only("site-dual")
def test_dual_instances_compute_on_their_own_gpus(host):
    """The health gate's GPU check passed (CUDA memory = the GPU's, a 1-step txt2img with the placed checkpoint);
    the same answers, read again on each instance's backend port."""
    for backend in (27860, 27861):
        status, body = http(host, f"http://127.0.0.1:{backend}/sdapi/v1/memory")
        assert status == 200 and json.loads(body)["cuda"]["system"]["total"] == 16380 * 1024 * 1024, body


@only("site-dual")
def test_dual_api_needs_its_own_login_at_the_front_door(host):
    for port in (7860, 7861):
        assert http(host, f"https://127.0.0.1:{port}/sdapi/v1/sd-models")[0] == 401
        status, body = http(host, f"https://127.0.0.1:{port}/sdapi/v1/sd-models", auth=API)
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
    # only the builds its hosts chose: all three GPU boxes run v1.10.1's cu121, none the cpu build
    assert host.run("ls /srv/sdfleet-mirror/torch").stdout.split() == ["cu121"]
    # models are stored and served by sha256 (no basename collisions), verified on the way in
    sha = PINS["files"]["tiny-v1.safetensors"]["sha256"]
    assert host.file(f"/srv/sdfleet-mirror/files/sha256/{sha}").sha256sum == sha
    assert not host.file("/srv/sdfleet-mirror/files/tiny-v1.safetensors").exists


@only("site-mirror")
def test_mirror_git_is_cloneable_over_smart_http(host):
    out = host.run("rm -rf /tmp/c && GIT_TERMINAL_PROMPT=0 git clone -q "
                   "http://127.0.0.1:8080/git/BLIP.git /tmp/c && git -C /tmp/c cat-file -t "
                   f"{PINS['repos']['BLIP']['pin']}")
    assert out.rc == 0 and out.stdout.strip() == "commit", out.stderr
    # git http-backend answered (smart HTTP), and the repository's own files are not served
    advert = host.run("curl -s -o /dev/null -w '%{http_code} %{content_type}' "
                      "'http://127.0.0.1:8080/git/BLIP.git/info/refs?service=git-upload-pack'").stdout
    assert advert == "200 application/x-git-upload-pack-advertisement", advert
    for private in ("/git/BLIP.git/config", "/git/BLIP.git/hooks/", "/git/", "/.download/url-packages.sha256"):
        code = host.run(f"curl -s -o /dev/null -w '%{{http_code}}' http://127.0.0.1:8080{private}").stdout
        assert code == "404", (private, code)


@only("site-mirror")
def test_mirror_serves_model_files_with_range_and_nginx_config_checks(host):
    """nginx serves the models by sha256 with Range (a cut download resumes), from its own checked config."""
    sha = PINS["files"]["tiny-v1.safetensors"]["sha256"]
    out = host.run(f"curl -s -r 10-19 -o /dev/null -w '%{{http_code}} %{{size_download}}' "
                   f"http://127.0.0.1:8080/files/sha256/{sha}").stdout
    assert out == "206 10", out
    assert host.run("nginx -e stderr -t -q -c /etc/sdfleet-mirror/nginx.conf").rc == 0
    assert "sendfile on;" in host.file("/etc/sdfleet-mirror/site.conf").content_string
    assert not host.file("/usr/local/lib/sdfleet/sdfleet_mirror_server.py").exists


@only("site-mirror")
def test_mirror_simple_holds_the_build_requirements_and_xformers(host):
    """What the hosts' isolated builds of CLIP/open_clip need (setuptools < 81, wheel) and the launcher's
    XFORMERS_PACKAGE pin are in simple/ (downloaded without dependencies), at the fixture's versions."""
    for req in PINS["wheels"]["build"] + PINS["wheels"]["stubs"]:
        project, version = req.split("==")
        status, body = http(host, f"http://127.0.0.1:8080/simple/{project}/")
        assert status == 200 and f"{project}-{version}-" in body, (req, body[:500])


@only("site-mirror")
def test_mirror_serves_the_url_archives_at_their_url_path(host):
    """CLIP_PACKAGE / OPENCLIP_PACKAGE archives: downloaded once, their sha256 recorded, served at their URL's
    path (where the GPU hosts look first), and the GPU hosts' installs fetched them there."""
    sums = host.file("/srv/sdfleet-mirror/.download/url-packages.sha256").content_string
    journal = host.run("journalctl --no-pager -u sdfleet-mirror").stdout
    for env, archive in PINS["archives"].items():
        path = archive["path"]
        assert host.file(f"/srv/sdfleet-mirror{path}").sha256sum == archive["sha256"], env
        assert f"{archive['sha256']}  {path.lstrip('/')}" in sums, sums
        out = host.run(f"python3 -c \"import hashlib,urllib.request;"
                       f"print(hashlib.sha256(urllib.request.urlopen('http://127.0.0.1:8080{path}').read()).hexdigest())\"")
        assert out.stdout.strip() == archive["sha256"], (env, out.stderr)
        assert re.search(rf'"GET {re.escape(path)} HTTP/1\.1" 200', journal), f"no host fetched {path} from the mirror"


def _run_site(*args: str, playbook: str = "site.yml") -> tuple[str, dict[str, str]]:
    """Run a playbook (site.yml) against this scenario's fleet; return its output and {host: recap line}."""
    project = pathlib.Path(os.environ["MOLECULE_PROJECT_DIRECTORY"])
    cmd = [str(pathlib.Path(sys.executable).with_name("ansible-playbook")), "-i",
           os.environ["MOLECULE_INVENTORY_FILE"], str(project / playbook), *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ, ANSIBLE_NOCOLOR="1"),
                          timeout=900, check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    return out, dict(re.findall(r"^(site-\w+)\s+: (ok=.*)$", out, re.MULTILINE))


def _count(line: str, what: str) -> int:
    return int(re.search(rf"\b{what}=(\d+)", line).group(1))


def test_controller_seed_of_an_unchanged_tree_copies_nothing(tmp_path):
    """fleet_mirror_seed: controller (the role's controller.yml, into a second tree on the mirror host): the first
    seed copies the tree; an unchanged tree then reads no file (two metadata listings: a fraction of the first
    seed's time, where the old whole-tree copy checksummed every byte on both sides again), changed=0 and in
    --check too; a file changed on the controller, one added there and one deleted on the mirror are copied."""
    fixture = pathlib.Path(os.environ["MOLECULE_PROJECT_DIRECTORY"]) / "build" / "fixture"
    # A small tree laid out as the mirror (each file costs a copy on a first seed): a real bare repository as the
    # webui's, a model, an index page and the URL archives.
    src = tmp_path / "seed"
    shutil.copytree(fixture / "git" / "BLIP.git", src / "git" / "stable-diffusion-webui.git")
    for rel in ["files/tiny-v2.safetensors", "files/tiny-vae.safetensors", "simple/six/index.html",
                *(a["path"].lstrip("/") for a in PINS["archives"].values())]:
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(fixture / rel, src / rel)
    root = "/srv/sdfleet-seed-test"
    mirror = testinfra.get_host("docker://site-mirror")
    extra = ["-e", json.dumps({"fleet_mirror_root": root, "fleet_mirror_controller_dir": str(src),
                               "fleet_mirror_seed": "controller"})]
    playbook = "molecule/site/tests/controller_seed.yml"

    def seed(*args: str) -> tuple[str, float]:
        started = time.monotonic()
        out, recap = _run_site(*extra, *args, playbook=playbook)
        return recap["site-mirror"], time.monotonic() - started

    try:
        first, first_s = seed()
        assert _count(first, "changed") > 0, first
        for rel in ("files/tiny-v2.safetensors", PINS["archives"]["CLIP_PACKAGE"]["path"].lstrip("/")):
            assert mirror.file(f"{root}/{rel}").sha256sum == hashlib.sha256((src / rel).read_bytes()).hexdigest()
        repo = f"{root}/git/stable-diffusion-webui.git"
        read = mirror.run(f"runuser -u sdmirror -- git --git-dir={repo} cat-file -t {PINS['repos']['BLIP']['pin']}")
        assert read.stdout.strip() == "commit", read.stderr
        assert mirror.file(f"{repo}/info/refs").is_file  # the handler refreshed the dumb-HTTP ref list
        again, again_s = seed()
        assert _count(again, "changed") == 0, again
        check, _ = seed("--check")
        assert _count(check, "changed") == 0, check
        print(f"controller seed: first {first_s:.1f} s, unchanged {again_s:.1f} s")
        assert again_s < first_s / 2, (first_s, again_s)

        with open(src / "files" / "tiny-v2.safetensors", "ab") as f:
            f.write(b"changed on the controller")
        (src / "simple" / "newproj").mkdir()
        (src / "simple" / "newproj" / "newproj-1.0.tar.gz").write_bytes(b"new on the controller")
        assert mirror.run(f"rm {root}/files/tiny-vae.safetensors").rc == 0
        changed, _ = seed()
        assert _count(changed, "changed") > 0, changed
        for rel in ("files/tiny-v2.safetensors", "simple/newproj/newproj-1.0.tar.gz", "files/tiny-vae.safetensors"):
            assert mirror.file(f"{root}/{rel}").sha256sum == hashlib.sha256((src / rel).read_bytes()).hexdigest(), rel
        assert mirror.file(f"{root}/simple/newproj").user == "sdmirror"
        settled, _ = seed()
        assert _count(settled, "changed") == 0, settled
    finally:
        mirror.run(f"rm -rf {root}")


def test_the_installed_collection_converges_the_fleet_unchanged(tmp_path):
    """The collection as an Ansible user installs it (issue 16): scripts/build_collection.py builds the tarball and
    installs it, offline, into a clean venv that has only ansible-core, the collections galaxy.yml declares and
    community.docker (this fleet's docker connection). From a directory outside the checkout, with no ansible.cfg,
    `ansible-playbook sdfleet.toolkit.site` converges the fleet the checkout's site.yml converged: every stage of
    every host runs, nothing fails and nothing changes, the report included (the same roles and playbooks)."""
    project = pathlib.Path(os.environ["MOLECULE_PROJECT_DIRECTORY"])
    work = project / "build" / "collection" / "site"
    built = subprocess.run([sys.executable, str(project / "scripts" / "build_collection.py"), "--out", str(work),
                            "--venv", str(work / "venv"), "--with", "community.docker"],
                           capture_output=True, text=True, timeout=600, check=False)
    assert built.returncode == 0, built.stdout[-2000:] + built.stderr[-3000:]
    _, playbook, collections = built.stdout.split()[-3:]
    env = {k: v for k, v in os.environ.items() if k.startswith("MOLECULE_")}
    env.update(PATH=f"{pathlib.Path(playbook).parent}:/usr/bin:/bin", HOME=str(tmp_path), LANG="C.UTF-8",
               ANSIBLE_COLLECTIONS_PATH=collections, ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="false",
               # the report the checkout's converge wrote: rewritten unchanged, its kept state included
               SDFLEET_REPORT_DIR=str(pathlib.Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"]) / "reports"))
    proc = subprocess.run([playbook, "-vv", "-i", os.environ["MOLECULE_INVENTORY_FILE"], "sdfleet.toolkit.site"],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=900, check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    recap = dict(re.findall(r"^(site-\w+)\s+: (ok=.*)$", out, re.MULTILINE))
    assert set(recap) == {"site-small", "site-mid", "site-dual", "site-mirror"}, out[-4000:]
    for host, line in recap.items():
        assert all(f" {c}=0 " in f" {line} " for c in ("changed", "failed", "rescued", "unreachable")), f"{host}: {line}"
    # every task came from the installed tarball (-vv prints each task's path), none from the checkout
    installed = f"task path: {collections}/ansible_collections/sdfleet/toolkit/"
    assert f"{installed}roles/webui_service/tasks/" in out and f"{installed}playbooks/" in out, out[-3000:]
    for checkout in ("roles", "playbooks"):  # (the venv itself lives under the checkout's build/)
        assert f"task path: {project}/{checkout}/" not in out, out[-3000:]
    assert "0 of 3" not in out and "3 of 3 hosts serving" in out, out[-3000:]


def test_one_stage_runs_alone_with_tags():
    """`site.yml --tags service` on the converged fleet: the service stage alone finds what earlier stages
    publish (sdfleet_webui from the source probes and the checkout), fails nowhere and changes nothing."""
    out, recap = _run_site("--tags", "service")
    assert set(recap) >= {"site-small", "site-mid", "site-dual"}, out[-4000:]
    for host, line in recap.items():
        assert all(f" {c}=0 " in f" {line} " for c in ("changed", "failed", "rescued")), f"{host}: {line}"


def test_a_rerun_skips_what_is_current_and_repairs_drift():
    """A re-run on the converged fleet finds webui_repo, webui_service and front_door current (one probe each, no
    task that touches the host, changed=0). Drift makes the role run again and repair it: a hand edit of the
    launcher environment (small), nginx stopped and the checkout's mode changed (mid), an instance stopped (dual).
    The run after that is current again."""
    gpus = {h: testinfra.get_host(f"docker://{h}") for h in INSTANCES}
    stages = ("--tags", "webui,service", "-v")
    _run_site(*stages)  # whatever ran before (the installed collection's run among them) records
    out, recap = _run_site(*stages)
    assert "runs every task" not in out, out[-4000:]
    for task in ("webui_repo : Check out the pinned version", "webui_service : Install the template unit",
                 "front_door : Write the nginx site"):
        assert not re.search(rf"TASK \[{re.escape(task)}[^\n]*\n(ok|changed): ", out), (task, out[-4000:])
    assert all(_count(recap[h], "changed") == 0 for h in INSTANCES), recap
    env = "/etc/sd-webui/sd-webui.env"
    before = gpus["site-small"].file(env).content_string
    gpus["site-small"].run(f"echo 'PLANTED=1' >> {env}")
    gpus["site-mid"].run("systemctl stop nginx && chmod 0700 /opt/sd-webui")
    gpus["site-dual"].run("systemctl stop sd-webui@0")
    out, recap = _run_site(*stages)
    assert f"webui_service runs every task: {env}: content changed" in out, out[-4000:]
    assert "front_door runs every task: nginx.service is inactive" in out, out[-4000:]
    assert "webui_repo runs every task: /opt/sd-webui: mode changed" in out, out[-4000:]
    assert "webui_service runs every task: sd-webui@0.service is inactive" in out, out[-4000:]
    assert gpus["site-small"].file(env).content_string == before
    assert gpus["site-mid"].service("nginx").is_running and gpus["site-mid"].file("/opt/sd-webui").mode == 0o755
    assert gpus["site-dual"].service("sd-webui@0").is_running
    assert all(_count(recap[h], "changed") > 0 for h in INSTANCES), recap
    for host, gpu in gpus.items():
        assert http(gpu, PING[host])[0] == 200, host
    out, recap = _run_site(*stages)
    assert "runs every task" not in out and all(_count(recap[h], "changed") == 0 for h in INSTANCES), out[-4000:]


def test_base_and_models_reruns_skip_what_is_current_and_repair_drift():
    """The base and models stages on the converged fleet find python and webui_models current (one probe each, no
    install, check or placing task ran, changed=0; each publishes the sdfleet_python and sdfleet_models it recorded,
    the same as the run before). A model removed by hand (small) and a system library
    removed with dpkg (mid) are each named as the reason, put back (the same sha256; the package installed), and
    the run after that is current again."""
    gpus = {h: testinfra.get_host(f"docker://{h}") for h in INSTANCES}
    stages = ("--tags", "base,models", "-v")
    _run_site(*stages)  # whatever ran before records
    out, recap = _run_site(*stages)
    said = " ".join(out.split())  # the callback's YAML folds long lines
    assert "python runs every task" not in said and "webui_models runs every task" not in said, out[-4000:]
    for task in ("python : Install the packages (apt)", "python : Check that the interpreter runs",
                 "webui_models : Check the models already in place", "webui_models : Describe the models in place"):
        assert not re.search(rf"TASK \[{re.escape(task)}[^\n]*\n(ok|changed): ", out), (task, out[-4000:])
    assert all(_count(recap[h], "changed") == 0 for h in INSTANCES), recap
    for task in ("python : Publish sdfleet_python as the last run checked it",
                 "webui_models : Publish sdfleet_models as the last run described them"):
        published = re.findall(rf"TASK \[{re.escape(task)}[^\n]*\n((?:ok: \[site-\w+\][^\n]*\n(?: [^\n]*\n)*)+)", out)
        assert published and all(f"ok: [{h}]" in published[0] for h in INSTANCES), (task, out[-4000:])
    vae = "/opt/sd-webui/models/VAE/tiny-vae.safetensors"
    sha = PINS["files"]["tiny-vae.safetensors"]["sha256"]
    assert gpus["site-small"].run(f"rm {vae}").rc == 0
    assert gpus["site-mid"].run("dpkg --remove bc").rc == 0
    out, recap = _run_site(*stages)
    said = " ".join(out.split())  # the callback's YAML folds long lines
    assert f"webui_models runs every task: {vae}: missing" in said, out[-4000:]
    assert re.search(r"python runs every task: \$ dpkg-query .*?: (output|exit status) changed", said), out[-4000:]
    assert gpus["site-small"].run(f"sha256sum {vae}").stdout.split()[0] == sha
    assert gpus["site-mid"].package("bc").is_installed
    assert _count(recap["site-small"], "changed") > 0 and _count(recap["site-mid"], "changed") > 0, recap
    out, recap = _run_site(*stages)
    assert "runs every task" not in " ".join(out.split()), out[-4000:]
    assert all(_count(recap[h], "changed") == 0 for h in INSTANCES), recap


def test_a_run_limited_to_another_stage_records_no_role_it_left_out():
    """git's and python's inputs moved (-e) in a run limited with --tags to the report: their probes see it and their
    includes run, but the tags leave out their install and configure tasks, so neither may record the host as
    current (the next run of their stage would skip the work). That run then names the inputs as the reason and
    applies them (git removes the prompt setting); the run back to the inventory's values puts it back."""
    gpus = {h: testinfra.get_host(f"docker://{h}") for h in INSTANCES}
    profile = "/etc/profile.d/sdfleet-git.sh"
    moved = json.dumps({"git_disable_terminal_prompt": False, "python_extra_packages": ["bc"]})
    _run_site("--tags", "report", "-e", moved)
    assert all(g.file(profile).exists for g in gpus.values())
    out, _ = _run_site("--tags", "base", "-e", moved, "-v")
    said = " ".join(out.split())  # the callback's YAML folds long lines
    assert "git runs every task: the inputs changed" in said, out[-4000:]
    assert "python runs every task: the inputs changed" in said, out[-4000:]
    assert not any(g.file(profile).exists for g in gpus.values())
    out, recap = _run_site("--tags", "base", "-v")
    assert "git runs every task: the inputs changed" in " ".join(out.split()), out[-4000:]
    assert all(g.file(profile).exists for g in gpus.values())
    assert all(_count(recap[h], "changed") > 0 for h in INSTANCES), recap


def test_a_mirror_rerun_only_updates_git_and_repairs_a_lost_model():
    """The mirror stage on a current mirror updates the git mirrors (upstream may have moved) and skips the rest;
    a model file gone from the served tree makes it run every task, which downloads it again (same sha256)."""
    mirror = testinfra.get_host("docker://site-mirror")
    out, recap = _run_site("--tags", "mirror", "-v")
    assert "fleet_mirror runs every task" not in out and _count(recap["site-mirror"], "changed") == 0, out[-4000:]
    assert re.search(r"TASK \[fleet_mirror : Mirror the git repositories[^\n]*\n(ok|changed): ", out), out[-4000:]
    assert not re.search(r"TASK \[fleet_mirror : Write the mirror's nginx site[^\n]*\n(ok|changed): ", out)
    sha = PINS["files"]["tiny-v1.safetensors"]["sha256"]
    model = f"/srv/sdfleet-mirror/files/sha256/{sha}"
    assert mirror.run(f"rm {model}").rc == 0
    out, recap = _run_site("--tags", "mirror", "-v")
    assert "fleet_mirror runs every task: $ find /srv/sdfleet-mirror" in out, out[-4000:]
    assert _count(recap["site-mirror"], "changed") > 0, recap
    assert mirror.run(f"sha256sum {model}").stdout.split()[0] == sha


def test_a_model_change_restarts_the_instances_batch_by_batch():
    """It changes the fleet: removing a model in the models stage restarts the instances in the service stage, a
    later play (handlers do not cross plays; sdfleet_models_changed carries it). With sdfleet_restart_batch=1 the
    three hosts restart one at a time: each batch's restart, then its health gate, before the next batch restarts."""
    gpus = {h: testinfra.get_host(f"docker://{h}") for h in INSTANCES}
    vae = "/opt/sd-webui/models/VAE/tiny-vae.safetensors"
    assert all(g.file(vae).is_file for g in gpus.values())
    main_pid = {h: g.run("systemctl show --value -p MainPID sd-webui@0").stdout.strip() for h, g in gpus.items()}
    absent = json.dumps({"sdfleet_restart_batch": 1, "sdfleet_model_list": [
        {"name": "tiny-vae", "kind": "vae", "filename": "tiny-vae.safetensors", "state": "absent"}]})
    out, recap = _run_site("--tags", "models,service", "-e", absent)
    for host, gpu in gpus.items():
        assert " failed=0 " in recap[host] and " rescued=0 " in recap[host], out[-4000:]
        assert not gpu.file(vae).exists
        pid_after = gpu.run("systemctl show --value -p MainPID sd-webui@0").stdout.strip()
        assert pid_after not in ("", "0", main_pid[host]), (host, main_pid[host], pid_after)
        assert http(gpu, PING[host])[0] == 200
    # one batch per host, in order: its restart (changed) and its health gate (ok), nobody else's
    batches = re.split(r"TASK \[Restart batch (\d) of 3\]", out)[1:]
    assert [int(n) for n in batches[0::2]] == [1, 2, 3], out[-6000:]
    seen: list[str] = []
    for chunk in batches[1::2]:
        restart = chunk.split("TASK [webui_service : Restart the webui instances under systemd]", 1)[1]
        restart, _, gate = restart.partition("TASK [webui_service : Wait for /internal/ping on every instance]")
        restarted = set(re.findall(r"changed: \[(site-[a-z]+)\]", restart))
        gated = set(re.findall(r"ok: \[(site-[a-z]+)\]", gate.split("TASK [", 1)[0]))
        assert len(restarted) == 1 and restarted == gated, (restarted, gated, chunk[:3000])
        seen += restarted
    assert sorted(seen) == sorted(INSTANCES)


def test_a_failed_mirror_does_not_stop_the_fleet():
    """Last test (it changes the fleet): a converge with the upstream unreachable from the mirror host only. The
    mirror stage fails (its git update), is recorded and reported with the failing item's error, and the run goes
    on: every GPU host runs the later stages (failed=0) with the inventory's own pip index (the mirror's stays
    unused: a half-updated index could lack what the install needs) and keeps serving."""
    mirror = testinfra.get_host("docker://site-mirror")
    # The mirror's name for the upstream now points at a port nothing listens on (IPv6 loopback; the mirror's
    # own server binds IPv4 only): git, pip and downloads there fail at once; the GPU hosts still reach it.
    assert mirror.run("cp /etc/hosts /tmp/hosts.site && echo '::1 site-upstream' >> /etc/hosts").rc == 0
    try:
        # The stages that use the mirror's sources, then the report (the others do not touch them).
        out, recap = _run_site("--tags", "mirror,webui,service,report")
    finally:
        mirror.run("cat /tmp/hosts.site > /etc/hosts")
    assert _count(recap["site-mirror"], "rescued") == 1 and _count(recap["site-mirror"], "failed") == 0, out[-4000:]
    for name in INSTANCES:
        assert _count(recap[name], "failed") == 0 and _count(recap[name], "rescued") == 0, f"{name}: {recap[name]}"
        gpu = testinfra.get_host(f"docker://{name}")
        pid = gpu.run("systemctl show --value -p MainPID sd-webui@0").stdout.strip()
        index = gpu.run(f"tr '\\0' '\\n' < /proc/{pid}/environ | grep '^INDEX_URL='").stdout.strip()
        assert index == "INDEX_URL=http://site-upstream:8080/simple/", (name, index)
        assert http(gpu, PING[name])[0] == 200
    report = (pathlib.Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"]) / "reports" / "fleet-report.md").read_text()
    assert "| site-mirror | failed |" in report, report
    assert re.search(r"The fleet mirror site-mirror failed in the mirror stage \(One or more items failed: [^)]*"
                     r"site-upstream", report), report
    assert "the GPU hosts site-dual, site-mid, site-small used their other sources" in report, report
