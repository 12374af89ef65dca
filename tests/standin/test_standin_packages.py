"""The packages the real v1.10.1 `prepare_environment()` pip-installs besides the requirements: CLIP and open_clip
(from CLIP_PACKAGE / OPENCLIP_PACKAGE, GitHub archive URLs by default) when they are not importable, xformers
(`install -U -I --no-deps $XFORMERS_PACKAGE`) with --xformers when it is missing, at --exit and at a normal start.

These tests put a recording `pip` first on PYTHONPATH (the `fake_pip` fixture), so `python -m pip ...` of the
launcher runs it: it notes its arguments and "installs" by creating the module an argument names. Real pip against
the mirror fixture is in test_standin_mirror_e2e.py.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from standin_helpers import free_port, pip_calls, pip_env, run_launch

GITHUB_CLIP = "https://github.com/openai/CLIP/archive/d50d76daa670286dd6cacf3bcd80b5e4823fc8e1.zip"
GITHUB_OPENCLIP = "https://github.com/mlfoundations/open_clip/archive/bb6e834e9c70d9c27d0dc3ecedeebeaeb1ffad6b.zip"
def installing(stdout: str) -> list[str]:
    """The `Installing ...` lines, in order."""
    return [line for line in stdout.splitlines() if line.startswith("Installing ")]


def test_clip_and_open_clip_come_from_their_variables_once(webui: Path, sub_repos, fake_pip: Path,
                                                           tmp_path: Path) -> None:
    env = pip_env(sub_repos, fake_pip, tmp_path, CLIP_PACKAGE="http://mirror.test/clip.zip",
                  OPENCLIP_PACKAGE="http://mirror.test/openclip.zip", INDEX_URL="http://mirror.test/simple/")
    result = run_launch(webui, "--exit", "--skip-torch-cuda-test", env=env)
    assert result.returncode == 0, result.stderr
    assert installing(result.stdout) == ["Installing torch and torchvision", "Installing clip",
                                         "Installing open_clip"]
    assert result.stdout.index("Installing open_clip") < result.stdout.index("Cloning")  # before the sub-repos
    assert pip_calls(fake_pip) == [
        ["install", "http://mirror.test/clip.zip", "--prefer-binary", "--index-url", "http://mirror.test/simple/"],
        ["install", "http://mirror.test/openclip.zip", "--prefer-binary", "--index-url", "http://mirror.test/simple/"]]

    again = run_launch(webui, "--exit", "--skip-torch-cuda-test", env=env)
    assert again.returncode == 0, again.stderr
    assert "Installing clip" not in again.stdout and "Installing open_clip" not in again.stdout
    assert len(pip_calls(fake_pip)) == 2


def test_url_packages_default_to_the_github_archives(webui: Path, sub_repos, fake_pip: Path,
                                                     tmp_path: Path) -> None:
    result = run_launch(webui, "--exit", "--skip-torch-cuda-test", env=pip_env(sub_repos, fake_pip, tmp_path))
    assert result.returncode == 0, result.stderr
    assert pip_calls(fake_pip) == [["install", GITHUB_CLIP, "--prefer-binary"],
                                   ["install", GITHUB_OPENCLIP, "--prefer-binary"]]


def test_a_failed_clip_install_stops_before_the_sub_repos(webui: Path, sub_repos, fake_pip: Path,
                                                          tmp_path: Path) -> None:
    env = pip_env(sub_repos, fake_pip, tmp_path, CLIP_PACKAGE="http://mirror.test/FAIL.zip")
    result = run_launch(webui, "--exit", "--skip-torch-cuda-test", env=env)
    assert result.returncode == 1
    assert "RuntimeError: Couldn't install clip." in result.stderr
    assert "-m pip install http://mirror.test/FAIL.zip --prefer-binary" in result.stderr
    assert not (webui / "repositories" / "BLIP").exists()


def test_skip_install_skips_every_pip_step(webui: Path, sub_repos, fake_pip: Path, tmp_path: Path) -> None:
    result = run_launch(webui, "--exit", "--skip-torch-cuda-test", "--skip-install", "--xformers",
                        env=pip_env(sub_repos, fake_pip, tmp_path))
    assert result.returncode == 0, result.stderr
    assert installing(result.stdout) == ["Installing torch and torchvision"]  # the torch step is not a pip step
    assert pip_calls(fake_pip) == []


def test_xformers_only_with_the_flag_and_only_when_missing(webui: Path, sub_repos, fake_pip: Path,
                                                           tmp_path: Path) -> None:
    env = pip_env(sub_repos, fake_pip, tmp_path)
    assert "Installing xformers" not in run_launch(webui, "--exit", "--skip-torch-cuda-test", env=env).stdout
    result = run_launch(webui, "--exit", "--skip-torch-cuda-test", "--xformers", env=env)
    assert result.returncode == 0, result.stderr
    assert installing(result.stdout) == ["Installing torch and torchvision", "Installing xformers"]
    assert pip_calls(fake_pip)[-1] == ["install", "-U", "-I", "--no-deps", "xformers==0.0.23.post1",
                                       "--prefer-binary"]
    calls = len(pip_calls(fake_pip))
    assert "Installing xformers" not in run_launch(webui, "--exit", "--skip-torch-cuda-test", "--xformers",
                                                   env=env).stdout
    env["XFORMERS_PACKAGE"] = "xformers==0.0.30"
    result = run_launch(webui, "--exit", "--skip-torch-cuda-test", "--xformers", "--reinstall-xformers", env=env)
    assert "Installing xformers" in result.stdout
    assert pip_calls(fake_pip)[calls:] == [["install", "-U", "-I", "--no-deps", "xformers==0.0.30", "--prefer-binary"]]


def test_xformers_is_installed_at_a_normal_start_too(webui: Path, sub_repos, fake_pip: Path,
                                                     tmp_path: Path) -> None:
    """Without --exit every start runs the install steps: a unit with --xformers installs it on its first start."""
    port = free_port()
    log = tmp_path / "start.log"
    env = pip_env(sub_repos, fake_pip, tmp_path, COMMANDLINE_ARGS="--xformers")
    with log.open("w") as handle:
        proc = subprocess.Popen([sys.executable, "launch.py", "--skip-torch-cuda-test", "--port", str(port)],
                                cwd=webui, env=env, stdout=handle, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 30
        while "Running on local URL" not in log.read_text():
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
    finally:
        proc.kill()
        proc.wait(timeout=10)
    out = log.read_text()
    assert out.index("Installing xformers") < out.index("Launching Web UI")
    assert ["install", "-U", "-I", "--no-deps", "xformers==0.0.23.post1", "--prefer-binary"] in pip_calls(fake_pip)


def test_ngrok_is_installed_only_with_its_flag(webui: Path, sub_repos, fake_pip: Path, tmp_path: Path) -> None:
    env = pip_env(sub_repos, fake_pip, tmp_path)
    assert "Installing ngrok" not in run_launch(webui, "--exit", "--skip-torch-cuda-test", env=env).stdout
    result = run_launch(webui, "--exit", "--skip-torch-cuda-test", "--ngrok", "token", env=env)
    assert "Installing ngrok" in result.stdout
    assert pip_calls(fake_pip)[-1] == ["install", "ngrok", "--prefer-binary"]
