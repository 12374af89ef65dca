"""The stand-in's install-only work (webui.md section 4) and webui.sh (section 2)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from standin_helpers import SUB_REPOS, SubRepoFixture, clean_env, free_port, git, repo_env, run_launch

GPU_MESSAGE = ("Torch is not able to use GPU; add --skip-torch-cuda-test to COMMANDLINE_ARGS variable "
               "to disable this check")
# `python -m pip --version`: a harmless TORCH_COMMAND for hosts without torch (the real step runs `python -m <cmd>`).
HARMLESS_TORCH = "pip --version"


@pytest.fixture
def no_reqs(tmp_path: Path) -> Path:
    """A requirements file with no pins (so the requirements step has nothing to install)."""
    path = tmp_path / "no-requirements.txt"
    path.write_text("# nothing pinned\n")
    return path


def install_env(repos: dict[str, SubRepoFixture], no_reqs: Path, **extra: str) -> dict[str, str]:
    """Environment for an install-only run against the local repos."""
    return repo_env(repos, **{"TORCH_COMMAND": HARMLESS_TORCH, "REQS_FILE": str(no_reqs), **extra})


def head(path: Path) -> str:
    """HEAD commit of a checkout."""
    return git("rev-parse", "HEAD", cwd=path)


def test_exit_clones_every_sub_repo_at_its_pin_and_binds_nothing(webui: Path, sub_repos, no_reqs: Path) -> None:
    port = free_port()
    result = run_launch(webui, "--exit", "--skip-torch-cuda-test", "--port", str(port),
                        env=install_env(sub_repos, no_reqs))
    assert result.returncode == 0, result.stderr
    assert "Exiting because of --exit argument" in result.stdout
    assert "Running on" not in result.stdout and "Launching Web UI" not in result.stdout
    for prefix, name in SUB_REPOS.items():
        assert head(webui / "repositories" / name) == sub_repos[prefix].pin, name
    assert "Cloning Stable Diffusion into" in result.stdout


def test_version_banner_outside_git_falls_back_to_changelog(webui: Path, sub_repos, no_reqs: Path) -> None:
    result = run_launch(webui, "--exit", "--skip-torch-cuda-test", env=install_env(sub_repos, no_reqs))
    # The real git_tag(): CHANGELOG.md's first line without "## ", so no "v" (unlike `git describe`).
    assert "Version: 1.10.1\n" in result.stdout
    assert "Commit hash: <none>" in result.stdout


def test_version_banner_in_a_git_checkout_uses_describe(webui: Path, sub_repos, no_reqs: Path) -> None:
    git("init", "-q", cwd=webui)
    git("add", "-A", cwd=webui)
    git("commit", "-q", "-m", "stand-in", cwd=webui)
    git("tag", "-a", "v1.10.1", "-m", "v1.10.1", cwd=webui)
    result = run_launch(webui, "--exit", "--skip-torch-cuda-test", env=install_env(sub_repos, no_reqs))
    assert "Version: v1.10.1\n" in result.stdout
    assert f"Commit hash: {head(webui)}" in result.stdout


def test_pinned_checkouts_are_left_alone_without_network(webui: Path, sub_repos, no_reqs: Path) -> None:
    env = install_env(sub_repos, no_reqs)
    assert run_launch(webui, "--exit", "--skip-torch-cuda-test", env=env).returncode == 0
    for prefix in SUB_REPOS:
        env[f"{prefix}_REPO"] = "file:///nonexistent/dead.git"  # any git traffic would now fail
    result = run_launch(webui, "--exit", "--skip-torch-cuda-test", env=env)
    assert result.returncode == 0, result.stderr
    assert "Fetching" not in result.stdout and "Cloning" not in result.stdout


def test_checkout_at_another_commit_is_moved_to_the_pin(webui: Path, sub_repos, no_reqs: Path) -> None:
    env = install_env(sub_repos, no_reqs)
    assert run_launch(webui, "--exit", "--skip-torch-cuda-test", env=env).returncode == 0
    k_diffusion = webui / "repositories" / "k-diffusion"
    git("checkout", "-q", sub_repos["K_DIFFUSION"].head, cwd=k_diffusion)
    git("remote", "set-url", "origin", "file:///nonexistent/old.git", cwd=k_diffusion)
    result = run_launch(webui, "--exit", "--skip-torch-cuda-test", env=env)
    assert result.returncode == 0, result.stderr
    assert head(k_diffusion) == sub_repos["K_DIFFUSION"].pin
    assert git("config", "--get", "remote.origin.url", cwd=k_diffusion) == sub_repos["K_DIFFUSION"].url
    assert "Checking out commit for K-diffusion" in result.stdout


def test_bad_repo_url_fails_and_leaves_no_half_dir(webui: Path, sub_repos, no_reqs: Path, tmp_path: Path) -> None:
    env = install_env(sub_repos, no_reqs, STABLE_DIFFUSION_REPO=(tmp_path / "gone.git").as_uri())
    result = run_launch(webui, "--exit", "--skip-torch-cuda-test", env=env)
    assert result.returncode == 1
    assert "Couldn't clone Stable Diffusion" in result.stderr
    assert "fatal:" in result.stderr and "stderr: <empty>" not in result.stderr  # git's own stderr
    assert not (webui / "repositories" / "stable-diffusion-stability-ai").exists()
    assert "Exiting because of --exit" not in result.stdout


def test_bad_pin_fails_naming_the_hash(webui: Path, sub_repos, no_reqs: Path) -> None:
    env = install_env(sub_repos, no_reqs, BLIP_COMMIT_HASH="0" * 40)
    result = run_launch(webui, "--exit", "--skip-torch-cuda-test", env=env)
    assert result.returncode == 1
    assert f"Couldn't checkout BLIP's hash: {'0' * 40}" in result.stderr


@pytest.mark.skipif(os.path.exists("/dev/nvidiactl"), reason="this host has an NVIDIA driver: the GPU test passes")
def test_gpu_test_fails_without_a_gpu_and_passes_when_faked(webui: Path, sub_repos, no_reqs: Path) -> None:
    result = run_launch(webui, "--exit", env=install_env(sub_repos, no_reqs))
    assert result.returncode == 1
    assert GPU_MESSAGE in result.stderr
    assert not (webui / "repositories").exists()  # the GPU test comes before the clones
    result = run_launch(webui, "--exit", "--use-cpu", "all", env=install_env(sub_repos, no_reqs))
    assert result.returncode == 1, "--use-cpu all alone does not skip the real GPU test"
    result = run_launch(webui, "--exit", env=install_env(sub_repos, no_reqs, SDFLEET_STANDIN_FAKE_CUDA="1"))
    assert result.returncode == 0, result.stderr


def test_torch_command_runs_when_torch_is_missing_and_its_failure_stops(webui: Path, sub_repos,
                                                                        no_reqs: Path) -> None:
    check = subprocess.run([sys.executable, "-c", "import importlib.util as u; print(u.find_spec('torch'))"],
                           capture_output=True, text=True, check=True)
    if check.stdout.strip() != "None":
        pytest.skip("torch is installed in the test interpreter, so the torch step would not run")
    env = install_env(sub_repos, no_reqs, TORCH_COMMAND="pip install --no-index --find-links /nonexistent nothere")
    result = run_launch(webui, "--exit", "--skip-torch-cuda-test", env=env)
    assert result.returncode == 1
    assert "Couldn't install torch" in result.stderr
    assert "-m pip install --no-index --find-links /nonexistent nothere" in result.stderr


def test_skip_prepare_environment_ignores_exit_like_the_real_one(start_server) -> None:
    server = start_server("--exit")
    assert "Exiting because of --exit" not in server.output()
    assert "Running on local URL" in server.output()


# -- requirements (installing through INDEX_URL is shown end to end in test_standin_mirror_e2e.py) ----------------
def test_requirements_failure_and_skip_install(webui: Path, sub_repos, tmp_path: Path) -> None:
    reqs = tmp_path / "reqs.txt"
    reqs.write_text("sdfleet-not-a-package==9.9.9\n")
    env = repo_env(sub_repos, TORCH_COMMAND=HARMLESS_TORCH, REQS_FILE=str(reqs),
                   INDEX_URL=(tmp_path / "empty-index").as_uri() + "/")
    (tmp_path / "empty-index").mkdir()
    result = run_launch(webui, "--exit", "--skip-torch-cuda-test", env=env)
    assert result.returncode == 1
    assert "Couldn't install requirements" in result.stderr
    assert "--prefer-binary --index-url file://" in result.stderr
    result = run_launch(webui, "--exit", "--skip-torch-cuda-test", "--skip-install", env=env)
    assert result.returncode == 0, result.stderr


# -- webui.sh ---------------------------------------------------------------------------------------------------
def run_webui_sh(webui: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """Run webui.sh without a venv (venv_dir=-) and with the test interpreter."""
    full_env = clean_env(venv_dir="-", python_cmd=sys.executable, **env)
    return subprocess.run(["bash", str(webui / "webui.sh"), *args], cwd=webui.parent, env=full_env,
                          capture_output=True, text=True, timeout=60, check=False)


@pytest.mark.skipif(os.geteuid() != 0, reason="the root refusal can only be shown as root")
def test_webui_sh_refuses_root_without_f(webui: Path) -> None:
    git("init", "-q", cwd=webui)
    result = run_webui_sh(webui, "--skip-prepare-environment")
    assert result.returncode == 1
    assert "This script must not be launched as root" in result.stdout
    assert "sdfleet-standin: parsed" not in result.stdout


def test_webui_sh_passes_f_and_args_to_launch_and_exits_0_even_on_failure(webui: Path) -> None:
    git("init", "-q", cwd=webui)
    result = run_webui_sh(webui, "-f", "--skip-prepare-environment", "--no-such-flag",
                          COMMANDLINE_ARGS="--medvram")
    assert "unrecognized arguments: --no-such-flag" in result.stderr  # -f itself was accepted
    assert result.returncode == 0, "the tmp/restart loop hides python's exit status, as in the real script"


def test_webui_sh_sources_webui_user_sh_and_creates_the_venv(webui: Path) -> None:
    git("init", "-q", cwd=webui)
    (webui / "webui-user.sh").write_text('export COMMANDLINE_ARGS="--lowvram --exit"\nvenv_dir="myvenv"\n')
    env = clean_env(python_cmd=sys.executable)
    result = subprocess.run(["bash", str(webui / "webui.sh"), "-f", "--skip-prepare-environment", "--share"],
                            cwd=webui.parent, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert (webui / "myvenv" / "bin" / "python").exists(), result.stdout + result.stderr
    assert '"lowvram": true' in result.stdout
    assert "--share needs internet" in result.stderr  # got as far as launch.py's serve step, inside the venv


def test_dump_sysinfo_writes_the_file_into_the_cwd_and_exits_before_installing(webui: Path, tmp_path: Path) -> None:
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    env = clean_env(COMMANDLINE_ARGS="--api-auth u:secret", TORCH_COMMAND="pip install --no-index nothere")
    result = subprocess.run([sys.executable, str(webui / "launch.py"), "--dump-sysinfo"], cwd=cwd, env=env,
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    dumped = list(cwd.glob("sysinfo-*.json"))
    assert len(dumped) == 1 and f"Sysinfo saved as {dumped[0].name}. Exiting..." in result.stdout
    assert "Installing" not in result.stdout
    info = json.loads(dumped[0].read_text())
    assert info["Environment"]["COMMANDLINE_ARGS"] == "--api-auth u:secret"  # verbatim, as in the real one


@pytest.mark.parametrize("python", ["python3.11", "python3.13"])
def test_python_version_warning_like_the_real_one(webui: Path, sub_repos, no_reqs: Path, python: str) -> None:
    """Tested Pythons on Linux are 3.7 to 3.11: trixie's 3.13 gets a warning on stderr and goes on."""
    candidates = [shutil.which(python), *sorted(Path.home().glob(f".pyenv/versions/{python[6:]}*/bin/{python}"))]
    working = [str(c) for c in candidates
               if c and subprocess.run([c, "-c", ""], capture_output=True, check=False).returncode == 0]
    if not working:
        pytest.skip(f"no working {python} on PATH or under ~/.pyenv here")
    found = working[0]
    # `python -m json.tool --help`: a torch step that needs no pip in that interpreter
    env = install_env(sub_repos, no_reqs, TORCH_COMMAND="json.tool --help")
    result = run_launch(webui, "--exit", "--skip-torch-cuda-test", "--skip-install", env=env, python=found)
    assert result.returncode == 0, result.stderr
    assert ("INCOMPATIBLE PYTHON VERSION" in result.stderr) == (python == "python3.13")
    result = run_launch(webui, "--exit", "--skip-torch-cuda-test", "--skip-install", "--skip-python-version-check",
                        env=env, python=found)
    assert "INCOMPATIBLE PYTHON VERSION" not in result.stderr
