"""Install-only logic of the stand-in, following the real v1.10.1 `modules/launch_utils.prepare_environment()`.

Steps, in the real order: banner (Python, Version, Commit hash) -> torch via TORCH_COMMAND if missing -> GPU test ->
clone/check out the five sub-repos into repositories/ -> pip install REQS_FILE if a pin is unmet.
Failures raise LaunchError; launch.py prints it and exits 1.

GPU test (stand-in rule, documented in README.md): the real one runs `torch.cuda.is_available()` in a subprocess.
The stub torch wheels of the mirror always answer False, so the stand-in passes the test when the environment
variable SDFLEET_STANDIN_FAKE_CUDA=1 is set or /dev/nvidiactl exists (an NVIDIA driver is loaded), and fails
with the real message otherwise.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

SCRIPT_PATH = Path(__file__).resolve().parents[1]
DEFAULT_TORCH_INDEX_URL = "https://download.pytorch.org/whl/cu121"
GPU_MESSAGE = ("Torch is not able to use GPU; add --skip-torch-cuda-test to COMMANDLINE_ARGS variable "
               "to disable this check")


class LaunchError(RuntimeError):
    """A failed install step (message formatted like the real launcher's RuntimeError)."""


@dataclass(frozen=True)
class SubRepo:
    """One repository cloned into repositories/ (v1.10.1 names, env vars, URLs and pins)."""

    name: str
    dir_name: str
    env: str
    url: str
    commit: str


SUB_REPOS = (
    SubRepo("assets", "stable-diffusion-webui-assets", "ASSETS",
            "https://github.com/AUTOMATIC1111/stable-diffusion-webui-assets.git",
            "6f7db241d2f8ba7457bac5ca9753331f0c266917"),
    SubRepo("Stable Diffusion", "stable-diffusion-stability-ai", "STABLE_DIFFUSION",
            "https://github.com/Stability-AI/stablediffusion.git", "cf1d67a6fd5ea1aa600c4df58e5b47da45f6bdbf"),
    SubRepo("Stable Diffusion XL", "generative-models", "STABLE_DIFFUSION_XL",
            "https://github.com/Stability-AI/generative-models.git", "45c443b316737a4ab6e40413d7794a7f5657c19f"),
    SubRepo("K-diffusion", "k-diffusion", "K_DIFFUSION",
            "https://github.com/crowsonkb/k-diffusion.git", "ab527a9a6d347f364e3d185ba6d714e22d80cb3c"),
    SubRepo("BLIP", "BLIP", "BLIP", "https://github.com/salesforce/BLIP.git",
            "48211a1594f1321b00f14c9f7a5b4813144b2fb9"),
)


def git_env() -> dict[str, str]:
    """Environment for git: never prompt for credentials (a dead mirror must fail, not hang)."""
    return {**os.environ, "GIT_TERMINAL_PROMPT": "0"}


def git_cmd() -> str:
    """The git binary (GIT, default `git`)."""
    return os.environ.get("GIT", "git")


def run(command: list[str], desc: str | None, errdesc: str, cwd: Path | None = None,
        env: dict[str, str] | None = None) -> str:
    """Run a command; return stdout; raise LaunchError with the real launcher's message layout on failure."""
    if desc:
        print(desc, flush=True)
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise LaunchError(
            f"{errdesc}.\nCommand: {shlex.join(command)}\nError code: {result.returncode}\n"
            f"stdout: {result.stdout.strip() or '<empty>'}\nstderr: {result.stderr.strip() or '<empty>'}")
    return result.stdout


def git_output(args: list[str], cwd: Path) -> str | None:
    """stdout of a read-only git command, or None when it fails (not a checkout, no git)."""
    try:
        result = subprocess.run([git_cmd(), *args], cwd=cwd, env=git_env(), capture_output=True, text=True,
                                check=False)
    except OSError:
        return None
    return result.stdout.strip() if result.returncode == 0 else None


def changelog_version(root: Path) -> str:
    """The first `## x.y.z` heading of CHANGELOG.md as `vx.y.z`, or `<none>`."""
    try:
        for line in (root / "CHANGELOG.md").read_text(encoding="utf-8").splitlines():
            if line.startswith("## "):
                return "v" + line[3:].strip()
    except OSError:
        pass
    return "<none>"


def version_banner(root: Path = SCRIPT_PATH) -> list[str]:
    """The Python / Version / Commit hash lines the real launcher prints."""
    tag = git_output(["describe", "--tags"], root) if (root / ".git").exists() else None
    commit = git_output(["rev-parse", "HEAD"], root) if (root / ".git").exists() else None
    return [f"Python {sys.version}", f"Version: {tag or changelog_version(root)}", f"Commit hash: {commit or '<none>'}"]


def is_installed(package: str) -> bool:
    """Whether `package` is installed in the running interpreter."""
    try:
        importlib.metadata.distribution(package)
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


def torch_command() -> str:
    """TORCH_COMMAND, or the v1.10.1 default built from TORCH_INDEX_URL."""
    index_url = os.environ.get("TORCH_INDEX_URL", DEFAULT_TORCH_INDEX_URL)
    return os.environ.get(
        "TORCH_COMMAND", f"pip install torch==2.1.2 torchvision==0.16.2 --extra-index-url {index_url}")


def install_torch(args: argparse.Namespace) -> None:
    """Run `python -m <TORCH_COMMAND>` when torch or torchvision is missing (--skip-install does not skip this)."""
    if args.reinstall_torch or not is_installed("torch") or not is_installed("torchvision"):
        run([sys.executable, "-m", *shlex.split(torch_command())], "Installing torch and torchvision",
            "Couldn't install torch")


def gpu_available() -> bool:
    """The stand-in's GPU test (see the module docstring)."""
    return os.environ.get("SDFLEET_STANDIN_FAKE_CUDA") == "1" or os.path.exists("/dev/nvidiactl")


def check_gpu(args: argparse.Namespace) -> None:
    """Fail like the real launcher when no GPU is usable, unless --skip-torch-cuda-test or --use-ipex."""
    if not (args.skip_torch_cuda_test or args.use_ipex) and not gpu_available():
        raise LaunchError(GPU_MESSAGE)


def git_clone(url: str, target: Path, name: str, commithash: str | None) -> None:
    """Clone or check out one sub-repo as the real `git_clone()` does; a failed clone leaves no directory."""
    git = git_cmd()
    env = git_env()
    if target.exists():
        if commithash is None:
            return
        current = run([git, "-C", str(target), "rev-parse", "HEAD"], None,
                      f"Couldn't determine {name}'s hash: {commithash}", env=env).strip()
        if current == commithash:
            return
        origin = git_output(["-C", str(target), "config", "--get", "remote.origin.url"], target)
        if origin is None:
            run([git, "-C", str(target), "remote", "add", "origin", url], None,
                f"Failed to set {name}'s origin URL", env=env)
        elif origin != url:
            run([git, "-C", str(target), "remote", "set-url", "origin", url], None,
                f"Failed to set {name}'s origin URL", env=env)
        run([git, "-C", str(target), "fetch", "origin"], f"Fetching updates for {name}...",
            f"Couldn't fetch {name}", env=env)
        run([git, "-C", str(target), "checkout", commithash],
            f"Checking out commit for {name} with hash: {commithash}...",
            f"Couldn't checkout commit {commithash} for {name}", env=env)
        return
    try:
        run([git, "clone", "--config", "core.filemode=false", url, str(target)], f"Cloning {name} into {target}...",
            f"Couldn't clone {name}", env=env)
    except LaunchError:
        shutil.rmtree(target, ignore_errors=True)
        raise
    if commithash is not None:
        run([git, "-C", str(target), "checkout", commithash], None, f"Couldn't checkout {name}'s hash: {commithash}",
            env=env)


def clone_repositories(root: Path = SCRIPT_PATH) -> None:
    """Clone the five sub-repos into <root>/repositories (URLs and pins from `<X>_REPO` / `<X>_COMMIT_HASH`)."""
    repositories = root / "repositories"
    repositories.mkdir(exist_ok=True)
    for sub in SUB_REPOS:
        url = os.environ.get(f"{sub.env}_REPO", sub.url)
        commit = os.environ.get(f"{sub.env}_COMMIT_HASH", sub.commit)
        git_clone(url, repositories / sub.dir_name, sub.name, commit)


def normalize(name: str) -> str:
    """PEP 503 name normalization."""
    return re.sub(r"[-_.]+", "-", name).lower()


def requirements_met(requirements_file: Path) -> bool:
    """True when every `pkg==ver` line is installed at exactly that version (other lines are not checked)."""
    for raw in requirements_file.read_text(encoding="utf-8").splitlines():
        line = raw.split("#", 1)[0].strip()
        if "==" not in line:
            continue
        package, version_required = (part.strip() for part in line.split("==", 1))
        try:
            version_installed = importlib.metadata.version(normalize(package))
        except importlib.metadata.PackageNotFoundError:
            return False
        if version_installed != version_required:
            return False
    return True


def install_requirements(args: argparse.Namespace, root: Path = SCRIPT_PATH) -> None:
    """pip install -r REQS_FILE --prefer-binary [--index-url $INDEX_URL] when a pin is unmet; --skip-install skips."""
    if args.skip_install:
        return
    requirements_file = Path(os.environ.get("REQS_FILE", "requirements_versions.txt"))
    if not requirements_file.is_absolute():
        requirements_file = root / requirements_file
    if requirements_met(requirements_file):
        return
    command = [sys.executable, "-m", "pip", "install", "-r", str(requirements_file), "--prefer-binary"]
    index_url = os.environ.get("INDEX_URL", "")
    if index_url:
        command += ["--index-url", index_url]
    run(command, "Installing requirements", "Couldn't install requirements")


def prepare_environment(args: argparse.Namespace, root: Path = SCRIPT_PATH) -> None:
    """The install steps, in the real order (the banner is printed even with --skip-prepare-environment)."""
    restart = root / "tmp" / "restart"
    if restart.exists():
        restart.unlink()
    for line in version_banner(root):
        print(line, flush=True)
    if args.skip_prepare_environment:
        return
    install_torch(args)
    check_gpu(args)
    clone_repositories(root)
    install_requirements(args, root)
