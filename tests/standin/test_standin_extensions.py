"""Extension installers, as the real v1.10.1 `run_extensions_installers()`: each <data>/extensions/<name>/install.py
runs with the launcher's python and PYTHONPATH=<checkout> at every start (--exit or not) after the requirements,
unless --skip-install or --skip-prepare-environment; disabled ones (settings, flags) do not; a failing one is
reported and the launcher goes on."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from standin_helpers import free_port, pip_calls, pip_env, run_launch

INSTALLER = '''import os, sys
from launch import args, is_installed, run_pip  # what real extensions import
marker = os.path.join(os.path.dirname(os.path.abspath(__file__)), "installed.txt")
with open(marker, "a") as handle:
    handle.write(f"cwd={os.getcwd()} skip_install={args.skip_install} clip={is_installed('clip')}\\n")
run_pip("install ext-requirement==1.0", "{name} requirements")
print("hello from {name}")
'''


def extension(root: Path, name: str, installer: str | None = None) -> Path:
    """An extension dir with an install.py (the default one records each run in installed.txt)."""
    path = root / "extensions" / name
    path.mkdir(parents=True, exist_ok=True)
    (path / "install.py").write_text(installer if installer is not None else INSTALLER.replace("{name}", name))
    return path


def runs(path: Path) -> list[str]:
    """installed.txt lines of an extension (one per installer run)."""
    marker = path / "installed.txt"
    return marker.read_text().splitlines() if marker.exists() else []


def test_installers_run_at_exit_with_the_launch_helpers(webui: Path, sub_repos, fake_pip: Path,
                                                        tmp_path: Path) -> None:
    ext = extension(webui, "sd-ext-one")
    result = run_launch(webui, "--exit", "--skip-torch-cuda-test", env=pip_env(sub_repos, fake_pip, tmp_path))
    assert result.returncode == 0, result.stderr
    assert runs(ext) == [f"cwd={webui} skip_install=False clip=True"]
    assert "hello from sd-ext-one" in result.stdout
    assert result.stdout.index("hello from sd-ext-one") < result.stdout.index("Exiting because of --exit")
    assert ["install", "ext-requirement==1.0", "--prefer-binary"] in pip_calls(fake_pip)


def test_installers_run_at_every_normal_start(webui: Path, sub_repos, fake_pip: Path, tmp_path: Path) -> None:
    ext = extension(webui, "sd-ext-one")
    env = pip_env(sub_repos, fake_pip, tmp_path)
    for attempt in (1, 2):
        log = tmp_path / f"start-{attempt}.log"
        with log.open("w") as handle:
            proc = subprocess.Popen([sys.executable, "launch.py", "--skip-torch-cuda-test", "--port", str(free_port())],
                                    cwd=webui, env=env, stdout=handle, stderr=subprocess.STDOUT, text=True)
        try:
            deadline = time.monotonic() + 30
            while "Running on local URL" not in log.read_text():
                assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
                time.sleep(0.05)
        finally:
            proc.kill()
            proc.wait(timeout=10)
        assert len(runs(ext)) == attempt  # not once per install: once per start
        out = log.read_text()
        assert out.index("hello from sd-ext-one") < out.index("Launching Web UI")


def test_skip_flags_and_disabled_extensions_do_not_run(webui: Path, sub_repos, fake_pip: Path,
                                                       tmp_path: Path) -> None:
    ext = extension(webui, "sd-ext-one")
    env = pip_env(sub_repos, fake_pip, tmp_path)
    for flags in (["--skip-install"], ["--disable-all-extensions"], ["--disable-extra-extensions"]):
        result = run_launch(webui, "--exit", "--skip-torch-cuda-test", *flags, env=env)
        assert result.returncode == 0, result.stderr
        assert runs(ext) == [], flags
    (webui / "config.json").write_text(json.dumps({"disabled_extensions": ["sd-ext-one"]}))
    assert run_launch(webui, "--exit", "--skip-torch-cuda-test", env=env).returncode == 0
    assert runs(ext) == []
    (webui / "config.json").write_text(json.dumps({"disable_all_extensions": "extra"}))
    assert run_launch(webui, "--exit", "--skip-torch-cuda-test", env=env).returncode == 0
    assert runs(ext) == []
    (webui / "config.json").write_text(json.dumps({"disabled_extensions": ["another"]}))
    assert run_launch(webui, "--exit", "--skip-torch-cuda-test", env=env).returncode == 0
    assert len(runs(ext)) == 1


def test_extensions_live_in_the_data_dir(webui: Path, sub_repos, fake_pip: Path, tmp_path: Path) -> None:
    data = tmp_path / "instance-0"
    in_data = extension(data, "in-data")
    in_checkout = extension(webui, "in-checkout")
    result = run_launch(webui, "--exit", "--skip-torch-cuda-test", "--data-dir", str(data),
                        env=pip_env(sub_repos, fake_pip, tmp_path))
    assert result.returncode == 0, result.stderr
    assert len(runs(in_data)) == 1 and runs(in_checkout) == []


def test_a_failing_installer_is_reported_and_the_launcher_goes_on(webui: Path, sub_repos, fake_pip: Path,
                                                                  tmp_path: Path) -> None:
    broken = extension(webui, "broken", "import sys\nprint('about to fail')\nsys.exit(3)\n")
    good = extension(webui, "good")
    result = run_launch(webui, "--exit", "--skip-torch-cuda-test", env=pip_env(sub_repos, fake_pip, tmp_path))
    assert result.returncode == 0, result.stderr
    assert f"*** Error running install.py for extension {broken}." in result.stderr
    assert "*** Error code: 3" in result.stderr and "*** stdout: about to fail" in result.stderr
    assert len(runs(good)) == 1
    assert "Exiting because of --exit argument" in result.stdout


def test_a_corrupt_settings_file_is_moved_to_the_checkouts_tmp(webui: Path, sub_repos, fake_pip: Path,
                                                               tmp_path: Path) -> None:
    extension(webui, "sd-ext-one")
    env = pip_env(sub_repos, fake_pip, tmp_path)
    (webui / "config.json").write_text("{not json")
    result = run_launch(webui, "--exit", "--skip-torch-cuda-test", env=env)
    assert result.returncode != 0, "the real one moves it into <checkout>/tmp/ and crashes when that is missing"
    assert "FileNotFoundError" in result.stderr and "Could not load settings" in result.stderr
    (webui / "tmp").mkdir()
    result = run_launch(webui, "--exit", "--skip-torch-cuda-test", env=env)
    assert result.returncode == 0, result.stderr
    assert (webui / "tmp" / "config.json").read_text() == "{not json" and not (webui / "config.json").exists()
