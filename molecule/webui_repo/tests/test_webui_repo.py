"""webui_repo happy paths: fallback source, pinned tag, pin change, bundle adoption, provision-time deps."""
from __future__ import annotations

import json
import os
import shlex

import pytest

testinfra_hosts = ["webui_repo-gpu", "webui_repo-cpu", "webui_repo-bundle"]

PINS = json.load(open(os.environ["MOLECULE_PROJECT_DIRECTORY"] + "/build/fixture/pins.json", encoding="utf-8"))
MIRROR = "http://webui_repo-mirror:8080"
DIR = "/opt/sd-webui"


def name(host) -> str:
    return host.backend.get_hostname().rsplit("-", 1)[1]


def git(host, *args: str, cwd: str = DIR) -> str:
    cmd = host.run("runuser -u sdwebui -- git -C %s " + " ".join(["%s"] * len(args)), cwd, *args)
    assert cmd.rc == 0, cmd.stderr
    return cmd.stdout.strip()


def test_checkout_is_at_the_pinned_tag(host):
    assert host.file(DIR + "/.git").is_directory
    # cpu: prepare cloned v1.10.0, converge moved the pin to v1.10.1
    assert git(host, "rev-parse", "HEAD") == PINS["webui"]["tags"]["v1.10.1"]
    assert git(host, "describe", "--tags") == "v1.10.1"
    assert git(host, "status", "--porcelain", "--untracked-files=no") == ""


def test_checkout_came_from_the_first_answering_source(host):
    # gpu's primary is the dead port: the mirror (second) served the clone
    assert git(host, "config", "--get", "remote.origin.url") == MIRROR + "/git/stable-diffusion-webui.git"


def test_checkout_belongs_to_the_service_user(host):
    user = host.user("sdwebui")
    assert user.exists and user.group == "sdwebui" and user.home == "/var/lib/sd-webui"
    assert user.shell == "/usr/sbin/nologin"
    for path in (DIR, DIR + "/launch.py", DIR + "/.git/HEAD"):
        assert host.file(path).user == "sdwebui", path


def test_bundle_was_adopted_and_nothing_lost(host):
    if name(host) != "bundle":
        pytest.skip("only the bundle host had a portable bundle")
    assert host.file(DIR + "/models/Stable-diffusion/mine.safetensors").content_string == "my model\n"
    assert host.file(DIR + "/outputs/txt2img-images/00001.png").content_string == "an image\n"
    assert "mine.safetensors" in host.file(DIR + "/config.json").content_string
    for path in ("/models/Stable-diffusion/mine.safetensors", "/outputs/txt2img-images/00001.png", "/config.json"):
        assert host.file(DIR + path).user == "sdwebui", path
    backup = host.file(DIR + ".pre-sdfleet")
    assert backup.is_directory
    # what the checkout has its own version of stays in the backup
    assert host.file(DIR + ".pre-sdfleet/README.md").content_string == "the bundle's README\n"
    assert host.file(DIR + ".pre-sdfleet/webui.py").content_string == "# the bundle's old code\n"
    assert host.file(DIR + "/README.md").content_string != "the bundle's README\n"
    assert not host.file(DIR + ".pre-sdfleet/config.json").exists


def deps_host(host) -> None:
    if name(host) == "bundle":
        pytest.skip("the bundle host runs without deps (webui_repo_install_deps: false)")


def test_venv_has_the_requirements_and_the_right_torch(host):
    deps_host(host)
    py = host.run(DIR + "/venv/bin/python -c 'import six, torch, packaging; print(six.__version__, "
                  "torch.__version__, packaging.__version__)'")
    assert py.rc == 0, py.stderr
    build = "cpu" if name(host) == "cpu" else "cu121"
    assert py.stdout.split() == ["1.16.0", "2.1.2+" + build, "24.1"]


def test_an_older_torch_in_the_venv_was_replaced_by_the_pinned_one(host):
    """The cpu host's venv held torch 2.0.1 (prepare): the install run got --reinstall-torch, and the old
    distributions are gone."""
    if name(host) != "cpu":
        pytest.skip("only the cpu host's venv held an older torch")
    log = host.file("/var/log/sd-webui/install.log").content_string
    assert "launch.py --exit --skip-torch-cuda-test --reinstall-torch" in log
    assert "Installing torch and torchvision" in log
    site = host.check_output(DIR + "/venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()[\"purelib\"])'")
    assert not host.file(f"{site}/torch-2.0.1.dist-info").exists
    assert not host.file(f"{site}/torchvision-0.15.2.dist-info").exists


def test_venv_has_clip_from_the_mirror_and_xformers_where_a_gpu_wants_it(host):
    deps_host(host)
    py = host.run(DIR + "/venv/bin/python -c 'import importlib.metadata as m, importlib.util as u; "
                  "print(m.version(\"clip\"), m.version(\"open_clip_torch\"), u.find_spec(\"xformers\") is not None)'")
    assert py.rc == 0, py.stderr
    # gpu: its GPU's flags hold --xformers, so the install run got --xformers; cpu: no GPU, no xformers
    assert py.stdout.split() == ["1.0", "2.7.0", str(name(host) == "gpu")]
    # pip took the archives from the mirror (the dead first CLIP source was passed over by the role)
    log = host.file("/var/log/sd-webui/install.log").content_string
    assert "Installing clip" in log and "Installing open_clip" in log


def test_sub_repos_are_at_their_pins_from_the_resolved_source(host):
    deps_host(host)
    for repo in PINS["repos"].values():
        path = DIR + "/repositories/" + repo["clone_dir"]
        assert git(host, "rev-parse", "HEAD", cwd=path) == repo["pin"], path
        assert git(host, "config", "--get", "remote.origin.url", cwd=path) == MIRROR + repo["path"]


def test_install_ran_once_and_logged(host):
    deps_host(host)
    log = host.file("/var/log/sd-webui/install.log")
    assert log.mode == 0o640 and log.user == "sdwebui"
    text = log.content_string
    # converge ran it; the idempotence re-converge and --check did not
    assert text.count("=== sdfleet webui_repo install run") == 1, text
    assert "Exiting because of --exit argument" in text
    assert text.count("Installing clip\n") == 1, text  # the first install only (the start below needs none)
    assert host.file(DIR + "/venv/.sdfleet-install.sha256").exists


def test_constraints_pin_setuptools(host):
    deps_host(host)
    constraints = host.file(DIR + "/venv/sdfleet-constraints.txt")
    assert constraints.content_string.splitlines()[0].startswith("#")
    assert "setuptools<81" in constraints.content_string.splitlines()


def test_first_start_needs_no_network(host):
    deps_host(host)
    # The stand-in re-checks torch, the sub-repos and the requirements as the real launcher does. With every
    # source pointed at the mirror's dead port (and the pins the role handed over) it must still finish.
    dead = "http://webui_repo-mirror:8081"
    env = {"INDEX_URL": dead + "/simple/", "PIP_INDEX_URL": dead + "/simple/",
           "TORCH_COMMAND": "pip install torch==2.1.2 --index-url " + dead + "/torch/"}
    for variable, archive in PINS["archives"].items():  # CLIP and open_clip are importable: no pip run
        env[variable] = dead + archive["path"]
    for repo in PINS["repos"].values():
        env[repo["repo_env"]] = dead + repo["path"]
        env[repo["commit_env"]] = repo["pin"]
    assignments = " ".join(shlex.quote(f"{k}={v}") for k, v in sorted(env.items()))
    xformers = " --xformers" if name(host) == "gpu" else ""  # installed by the role's run: not again
    cmd = host.run(f"cd {DIR} && runuser -u sdwebui -- env {assignments} {DIR}/venv/bin/python launch.py --exit "
                   f"--skip-torch-cuda-test{xformers}")
    assert cmd.rc == 0, cmd.stdout + cmd.stderr
    assert "Installing" not in cmd.stdout and "Cloning" not in cmd.stdout and "Fetching" not in cmd.stdout
