"""Role-level rendering checks run on the controller (no host): the hand-run launcher webui-user.sh (webui_service)
rendered by the role's own preflight and template, then run with bash; and the git role's refusals of URLs with
credentials that would land in /etc/gitconfig (the role's input checks, in check mode: nothing is installed)."""
from __future__ import annotations

import json
import os
import pathlib
import shlex
import subprocess

import pytest
import yaml
from refusal_catalog import refused

ROOT = pathlib.Path(__file__).resolve().parents[2]
PLAYBOOK = ROOT / ".venv" / "bin" / "ansible-playbook"
PYTHON = ROOT / ".venv" / "bin" / "python"
UI_PASSWORD = "Wonderland-UI-7731"
API_PASSWORD = "Api-Secret-9902"
INDEX_TOKEN = "idx-Tok3n-5150"
PROXY_PASSWORD = "Pr0xy-Pass-6060"


def _ansible(playbook: pathlib.Path, base: pathlib.Path, *args: str) -> subprocess.CompletedProcess:
    if not PLAYBOOK.exists():
        pytest.skip(f"{PLAYBOOK} missing: run make venv")
    return subprocess.run(
        [str(PLAYBOOK), "-i", "localhost,", "-c", "local", "-e", f"ansible_python_interpreter={PYTHON}",
         str(playbook), *args],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
        env={"ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"), "PATH": f"{ROOT / '.venv' / 'bin'}:/usr/bin:/bin",
             "HOME": str(base), "LANG": "C.UTF-8"},
    )


# --- webui-user.sh ---------------------------------------------------------------------------------------------

HOSTS = {
    # listen + API + API logins: behind the front door, the instance binds 127.0.0.1 on its backend port.
    "front_door": {"webui_service_listen": True, "webui_service_api": True,
                   "webui_service_auth_users": [{"username": "alice", "password": UI_PASSWORD}],
                   "webui_service_api_auth_users": [{"username": "robot", "password": API_PASSWORD}]},
    # loopback only, no API.
    "local": {},
}


@pytest.fixture(scope="module")
def launchers(tmp_path_factory) -> dict[str, pathlib.Path]:
    """Render webui-user.sh and sd-webui.env for each host of HOSTS with webui_service's own preflight."""
    out: dict[str, pathlib.Path] = {}
    for name, role_vars in HOSTS.items():
        base = tmp_path_factory.mktemp(f"launcher-{name}")
        install = base / "opt"
        (install / "venv" / "bin").mkdir(parents=True)
        (install / "launch.py").write_text("")
        (install / "venv" / "bin" / "python").write_text("")
        conf = base / "etc"
        conf.mkdir()
        play = [{
            "hosts": "localhost", "gather_facts": False,
            "vars": {
                "sdfleet_gpu": {"state": "ok", "tier": "full", "gpus": [{"index": 0, "tier": "full", "flags": []}]},
                "sdfleet_webui": {"version": "v1.10.1", "venv": str(install / "venv"),
                                  "env": {"INDEX_URL": f"https://ci:{INDEX_TOKEN}@pypi.example.org/simple/",
                                          "https_proxy": f"http://ci:{PROXY_PASSWORD}@proxy.lan:3128"}},
                "webui_service_manager": "script", "webui_service_user": "nobody", "webui_service_group": "nogroup",
                "webui_service_install_dir": str(install), "webui_service_config_dir": str(conf),
                **role_vars,
            },
            "tasks": [
                {"name": "Plan the instances as the role does", "ansible.builtin.include_role": {
                    "name": "webui_service", "tasks_from": "preflight", "public": True}},
            ] + [
                {"name": "Render the launcher and the environment file", "ansible.builtin.copy": {
                    "content": "{{ lookup('ansible.builtin.template', '%s/roles/webui_service/templates/%s') }}"
                               % (ROOT, item[0]),
                    "dest": str(item[1]), "mode": "0600"}, "no_log": True}
                for item in (("opt/sd-webui/webui-user.sh.j2", install / "webui-user.sh"),
                             ("etc/sd-webui/sd-webui.env.j2", conf / "sd-webui.env"))
            ] + [{"name": "Save the plan", "ansible.builtin.copy": {
                "content": "{{ __webui_service_instances | to_json }}", "dest": str(base / "plan.json"),
                "mode": "0600"}}],
        }]
        playbook = base / "render.yml"
        playbook.write_text(yaml.safe_dump(play, sort_keys=False))
        proc = _ansible(playbook, base)
        assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
        out[name] = install
    return out


def _source(install: pathlib.Path, *webui_args: str) -> subprocess.CompletedProcess:
    """What ./webui.sh does with webui-user.sh: source it with webui.sh's own arguments, then read the result."""
    script = (f"set -- {' '.join(shlex.quote(a) for a in webui_args)}; source {shlex.quote(str(install))}/webui-user.sh;"
              ' printf "%s\\n" "$COMMANDLINE_ARGS"; printf "%s\\n" "${INDEX_URL:-}"')
    return subprocess.run(["bash", "-c", script], capture_output=True, text=True, check=False, timeout=30,
                          env={"PATH": "/usr/bin:/bin", "GRADIO_SERVER_NAME": "0.0.0.0"})


def test_front_door_launcher_binds_loopback_on_the_backend_port(launchers):
    """listen + api + API logins: the hand run gets instance 0's arguments, i.e. 127.0.0.1 on the backend port
    (the front door in front of it enforces UI and API logins), never --listen or --api-auth."""
    install = launchers["front_door"]
    plan = json.loads((install.parent / "plan.json").read_text())
    done = _source(install)
    assert done.returncode == 0, done.stderr
    args = shlex.split(done.stdout.splitlines()[0])
    assert args == plan[0]["args"]
    assert args[args.index("--server-name") + 1] == "127.0.0.1"
    assert args[args.index("--port") + 1] == str(plan[0]["port"]) == "27860"
    assert "--listen" not in args and "--api-auth" not in args and "--api" in args
    # the environment comes from the 0640 env file, and gradio's exposure variables of the caller are dropped
    assert done.stdout.splitlines()[1] == f"https://ci:{INDEX_TOKEN}@pypi.example.org/simple/"


@pytest.mark.parametrize("host", list(HOSTS))
def test_launcher_holds_no_secret(launchers, host):
    text = (launchers[host] / "webui-user.sh").read_text()
    for secret in (UI_PASSWORD, API_PASSWORD, INDEX_TOKEN, PROXY_PASSWORD):
        assert secret not in text
    assert subprocess.run(["bash", "-n", str(launchers[host] / "webui-user.sh")], check=False).returncode == 0


@pytest.mark.parametrize("flag", ["--listen", "--share", "--server-name=0.0.0.0", "--port", "--api",
                                  "--api-auth", "--gradio-auth", "--ngrok", "--cloudflared", "--nowebui",
                                  "--enable-insecure-extension-access", "--cors-allow-origins=*"])
@pytest.mark.parametrize("host", list(HOSTS))
def test_launcher_refuses_flags_that_change_the_exposure(launchers, host, flag):
    done = _source(launchers[host], "--xformers", flag, "7861")
    assert done.returncode == 1 and done.stdout == "", done.stdout
    refused("webui_service", "./webui.sh", f"{host}: ./webui.sh {flag}", done.stderr,
            expect=[f"refusing ./webui.sh {flag.split('=')[0]}", "rerun the playbook"])


def test_launcher_without_the_env_file_refuses_to_start(launchers, tmp_path):
    (tmp_path / "webui-user.sh").write_text((launchers["local"] / "webui-user.sh").read_text()
                                            .replace(str(launchers["local"].parent / "etc"), str(tmp_path / "none")))
    done = _source(tmp_path)
    assert done.returncode == 1
    refused("webui_service", "webui_service_user", "hand run by a user who cannot read sd-webui.env", done.stderr,
            expect=["cannot read", "sudo -u nobody ./webui.sh"])


# --- the git role: no credential into /etc/gitconfig -----------------------------------------------------------

GIT_CASES = [
    ("sdfleet_http_proxy (git_http_proxy)", {"git_http_proxy": f"http://ci:{PROXY_PASSWORD}@proxy.lan:3128"}),
    ("sdfleet_https_proxy (git_https_proxy)", {"git_https_proxy": f"http://ci:{PROXY_PASSWORD}@proxy.lan:3128"}),
    ("sdfleet_https_proxy (git_https_proxy)", {"git_https_proxy": f"https://{PROXY_PASSWORD}@proxy.lan:443"}),
    ("sdfleet_http_proxy (git_http_proxy)", {"git_http_proxy": f"socks5h://ci:{PROXY_PASSWORD}@proxy.lan:1080"}),
    ("git_url_rewrites[].url", {"git_url_rewrites": [{"url": f"https://ci:{PROXY_PASSWORD}@mirror.lan/github/",
                                                      "instead_of": "https://github.com/"}]}),
    ("git_url_rewrites[].url", {"git_url_rewrites": [{"url": f"http://{PROXY_PASSWORD}@mirror.lan:8080/git/",
                                                      "instead_of": "https://github.com/"}]}),
]


@pytest.fixture(scope="module")
def git_refusals(tmp_path_factory) -> list[str]:
    """Run the git role once per case (check mode, --tags never: only its always-tagged input checks) and keep
    each refusal message (or NOT REFUSED)."""
    base = tmp_path_factory.mktemp("gitrole")
    case_file = base / "case.yml"
    case_file.write_text(yaml.safe_dump([{
        "name": "One case", "tags": ["always"],
        "block": [{"name": "Run the git role", "ansible.builtin.include_role": {"name": "git"},
                   "vars": {"git_http_proxy": "{{ __case.git_http_proxy | default('') }}",
                            "git_https_proxy": "{{ __case.git_https_proxy | default('') }}",
                            "git_url_rewrites": "{{ __case.git_url_rewrites | default([]) }}"}},
                  {"name": "Not refused", "ansible.builtin.set_fact": {
                      "__msgs": "{{ __msgs | default([]) + ['NOT REFUSED'] }}"}}],
        "rescue": [{"name": "Keep the refusal", "ansible.builtin.set_fact": {
            "__msgs": "{{ __msgs | default([]) + [ansible_failed_result.msg] }}"}}],
    }]))
    playbook = base / "git.yml"
    playbook.write_text(yaml.safe_dump([{
        "hosts": "localhost", "gather_facts": False,
        "vars": {"__cases": [case for _, case in GIT_CASES],
                 "ansible_facts": {"os_family": "Debian"}},
        "tasks": [
            {"name": "Each case", "ansible.builtin.include_tasks": str(case_file), "tags": ["always"],
             "loop": "{{ __cases }}",
             "loop_control": {"loop_var": "__case", "label": "{{ __case.keys() | first }}"}},
            {"name": "Save the messages", "ansible.builtin.copy": {
                "content": "{{ __msgs | to_json }}", "dest": str(base / "msgs.json"), "mode": "0600"},
             "check_mode": False, "tags": ["always"]},
        ]}]))
    proc = _ansible(playbook, base, "--check", "--tags", "never", "-v")
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert PROXY_PASSWORD not in proc.stdout + proc.stderr, "a proxy password reached the output"
    return json.loads((base / "msgs.json").read_text())


@pytest.mark.parametrize("index", range(len(GIT_CASES)))
def test_git_role_refuses_credentials_for_etc_gitconfig(git_refusals, index):
    variable, case = GIT_CASES[index]
    msg = git_refusals[index]
    shown = json.dumps(case).replace(PROXY_PASSWORD, "***")
    refused("git", variable, shown, msg, expect=["/etc/gitconfig", "every", "***@"])
    assert PROXY_PASSWORD not in msg
