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


def test_the_ownership_fix_never_leaves_the_checkout(host):
    """The checkout was root's with outputs -> /srv/user-data (root's, outside it): the converge gave the
    checkout to sdwebui and chowned the link itself, never the tree it points to."""
    if host.backend.get_hostname() != "webui_repo-cpu":
        pytest.skip("the cpu host's checkout was handed to root in prepare")
    link = host.file(DIR + "/outputs")
    assert link.is_symlink and link.linked_to == "/srv/user-data"
    for path in ("/srv/user-data", "/srv/user-data/root-file"):
        assert host.file(path).user == "root" and host.file(path).group == "root", path


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


# -- secrets (the gpu host's sources, pip index and proxies carry credentials: molecule.yml) -----------------------
SECRETS = ["Git-Secret-7001", "Pip-Secret-7002", "Proxy-Secret-7003", "Blip-Secret-7004"]


def _where(text: str, secret: str) -> str:
    """The lines of ``text`` holding ``secret``, with it redacted (a failure must not print it)."""
    hits = [line.replace(secret, "<SECRET>")[:300] for line in text.splitlines() if secret in line]
    return "\n".join(hits[:10])


def test_no_secret_in_a_vvv_converge(host):
    """A real converge of the gpu host at -vvv: no credential of a URL anywhere in its whole output. One more
    launcher variable changes the install stamp, so the install run (launch.py --exit) is in it too."""
    if name(host) != "gpu":
        pytest.skip("only the gpu host's inputs carry credentials")
    import pathlib
    import subprocess

    runs_before = host.file("/var/log/sd-webui/install.log").content_string.count("=== sdfleet webui_repo install run")
    inventory = str(pathlib.Path(os.environ["MOLECULE_INVENTORY_FILE"]).parent)
    playbook = os.environ["MOLECULE_SCENARIO_DIRECTORY"] + "/converge.yml"
    done = subprocess.run(["ansible-playbook", "-i", inventory, playbook, "-vvv", "--limit", "webui_repo-gpu",
                           "-e", '{"webui_repo_environment": {"SDFLEET_VVV_CHECK": "1"}}'],
                          capture_output=True, text=True, timeout=900, env=dict(os.environ), check=False)
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-3000:]
    assert "EXEC" in out, "not a -vvv run"
    runs_after = host.file("/var/log/sd-webui/install.log").content_string.count("=== sdfleet webui_repo install run")
    assert runs_after == runs_before + 1, "the install run was not part of the -vvv converge"
    leaks = {s: _where(out, s) for s in SECRETS if s in out}
    assert not leaks, "secrets in the -vvv output:\n" + "\n".join(f"{i}: {w}" for i, w in enumerate(leaks.values()))


def test_no_secret_in_git_configs_or_world_readable_files(host):
    if name(host) != "gpu":
        pytest.skip("only the gpu host's inputs carry credentials")
    pattern = " ".join(f"-e {s}" for s in SECRETS)
    cmd = host.run("find /opt/sd-webui /var/log/sd-webui /var/lib/sd-webui /etc /tmp -xdev -type f -perm -o=r "
                   f"-print0 2>/dev/null | xargs -0 grep -l -F {pattern} 2>/dev/null")
    assert cmd.stdout.strip() == "", "credentials in world-readable files: " + cmd.stdout
    configs = host.run("cat /opt/sd-webui/.git/config /opt/sd-webui/repositories/*/.git/config").stdout
    assert "webui_repo-mirror" in configs and not any(s in configs for s in SECRETS)


def test_secrets_live_only_in_the_service_users_private_files(host):
    if name(host) != "gpu":
        pytest.skip("only the gpu host's inputs carry credentials")
    # root's files, readable by the service group only (git's store helper cannot rewrite them)
    private = host.file("/var/lib/sd-webui/.sdfleet")
    assert private.is_directory and private.mode == 0o750 and (private.user, private.group) == ("root", "sdwebui")
    env = host.file("/var/lib/sd-webui/.sdfleet/install.env")
    assert env.mode == 0o640 and (env.user, env.group) == ("root", "sdwebui")
    assert "Pip-Secret-7002" in env.content_string
    names = [line.split("=", 1)[0] for line in env.content_string.splitlines()]
    assert "PIP_INDEX_URL" in names and "INDEX_URL" not in names, "INDEX_URL would go on pip's command line"
    store = host.file("/var/lib/sd-webui/.sdfleet/git-credentials")
    assert store.mode == 0o640 and store.user == "root" and "Blip-Secret-7004" in store.content_string
