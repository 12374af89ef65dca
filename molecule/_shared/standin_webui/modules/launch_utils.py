"""Install-only logic of the stand-in, following the real v1.10.1 `modules/launch_utils.prepare_environment()`.

Steps, in the real order: banner (Python, Version, Commit hash) -> torch via TORCH_COMMAND if missing -> GPU test ->
CLIP from CLIP_PACKAGE and open_clip from OPENCLIP_PACKAGE if not importable -> xformers from XFORMERS_PACKAGE with
--xformers if missing (or --reinstall-xformers) -> ngrok with --ngrok if missing -> clone/check out the five sub-repos
into repositories/ -> pip install REQS_FILE if a pin is unmet -> each extension's install.py.
The pip steps (`run_pip`) are all skipped by --skip-install, the torch step is not (as in the real one).
Failures raise LaunchError; launch.py prints it and exits 1. A failing extension installer is reported and the
launcher goes on, as the real one does.

GPU test (stand-in rule, documented in README.md): the real one runs `torch.cuda.is_available()` in a subprocess.
The stub torch wheels of the mirror always answer False, so the stand-in passes the test when the environment
variable SDFLEET_STANDIN_FAKE_CUDA=1 is set or /dev/nvidiactl exists (an NVIDIA driver is loaded), and fails
with the real message otherwise.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import json
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
# v1.10.1's defaults for the packages pip installs from a URL or a pin (the launcher reads these variables).
DEFAULT_CLIP_PACKAGE = "https://github.com/openai/CLIP/archive/d50d76daa670286dd6cacf3bcd80b5e4823fc8e1.zip"
DEFAULT_OPENCLIP_PACKAGE = ("https://github.com/mlfoundations/open_clip/archive/"
                            "bb6e834e9c70d9c27d0dc3ecedeebeaeb1ffad6b.zip")
DEFAULT_XFORMERS_PACKAGE = "xformers==0.0.23.post1"
# As the real launcher module does at import (so /internal/sysinfo's Environment always shows it).
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
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
    """The real fallback for `Version:`: the first non-empty line of CHANGELOG.md without its `## ` (so
    `1.10.1`, no `v`), or `<none>`."""
    try:
        for line in (root / "CHANGELOG.md").read_text(encoding="utf-8").splitlines():
            if line.strip():
                return line.strip().replace("## ", "")
    except OSError:
        pass
    return "<none>"


def git_tag(root: Path = SCRIPT_PATH) -> str:
    """`git describe --tags` of the checkout, else the CHANGELOG fallback (the real `git_tag`)."""
    return git_output(["-C", str(root), "describe", "--tags"], root) or changelog_version(root)


def commit_hash(root: Path = SCRIPT_PATH) -> str:
    """`git rev-parse HEAD` of the checkout, else `<none>` (the real `commit_hash`; like it, a tree without .git
    inside another repository reports that repository's HEAD)."""
    return git_output(["-C", str(root), "rev-parse", "HEAD"], root) or "<none>"


def version_banner(root: Path = SCRIPT_PATH) -> list[str]:
    """The Python / Version / Commit hash lines the real launcher prints."""
    return [f"Python {sys.version}", f"Version: {git_tag(root)}", f"Commit hash: {commit_hash(root)}"]


def is_installed(package: str) -> bool:
    """Whether `package` is installed: a distribution of that name, else an importable module of that name (the
    real check; open_clip's distribution is `open_clip_torch`, so it is found as a module)."""
    try:
        importlib.metadata.distribution(package)
    except importlib.metadata.PackageNotFoundError:
        try:
            return importlib.util.find_spec(package) is not None
        except (ModuleNotFoundError, ValueError):
            return False
    return True


def run_pip(args: argparse.Namespace, command: list[str], desc: str) -> str | None:
    """`python -m pip <command> --prefer-binary [--index-url $INDEX_URL]` as the real `run_pip`, printing
    `Installing <desc>`; nothing at all under --skip-install."""
    if args.skip_install:
        return None
    index_url = os.environ.get("INDEX_URL", "")
    index = ["--index-url", index_url] if index_url else []
    return run([sys.executable, "-m", "pip", *command, "--prefer-binary", *index], f"Installing {desc}",
               f"Couldn't install {desc}")


def install_url_packages(args: argparse.Namespace) -> None:
    """CLIP, open_clip (each when not importable), xformers (with --xformers, when missing or
    --reinstall-xformers) and ngrok (with --ngrok, when missing), from the real variables and defaults."""
    if not is_installed("clip"):
        run_pip(args, ["install", *shlex.split(os.environ.get("CLIP_PACKAGE", DEFAULT_CLIP_PACKAGE))], "clip")
    if not is_installed("open_clip"):
        run_pip(args, ["install", *shlex.split(os.environ.get("OPENCLIP_PACKAGE", DEFAULT_OPENCLIP_PACKAGE))],
                "open_clip")
    if (not is_installed("xformers") or args.reinstall_xformers) and args.xformers:
        xformers = os.environ.get("XFORMERS_PACKAGE", DEFAULT_XFORMERS_PACKAGE)
        run_pip(args, ["install", "-U", "-I", "--no-deps", *shlex.split(xformers)], "xformers")
    if not is_installed("ngrok") and args.ngrok:
        run_pip(args, ["install", "ngrok"], "ngrok")


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
    requirements_file = Path(os.environ.get("REQS_FILE", "requirements_versions.txt"))
    if not requirements_file.is_absolute():
        requirements_file = root / requirements_file
    if requirements_met(requirements_file):
        return
    run_pip(args, ["install", "-r", str(requirements_file)], "requirements")


# -- extensions ------------------------------------------------------------------------------------------------
exception_records: list[dict[str, object]] = []


def report(message: str) -> None:
    """The real `errors.report`: each line on stderr behind `*** `, and kept for /internal/sysinfo's Exceptions."""
    exception_records.append({"exception": message, "traceback": []})
    del exception_records[:-5]
    for line in message.splitlines():
        print("***", line, file=sys.stderr, flush=True)


def list_extensions(args: argparse.Namespace, settings_file: str) -> list[str]:
    """Names of the extension dirs whose installer runs, as the real `list_extensions`: none with
    --disable-all-extensions, --disable-extra-extensions or the `disable_all_extensions` setting; the
    `disabled_extensions` setting removes names. A settings file that is not JSON is reported and moved to
    <checkout>/tmp/config.json (which fails, as in the real one, when tmp/ does not exist)."""
    settings: dict[str, object] = {}
    try:
        with open(settings_file, encoding="utf8") as handle:
            settings = json.load(handle)
    except FileNotFoundError:
        pass
    except Exception:  # noqa: BLE001 (the real one catches everything here)
        report(f'\nCould not load settings\nThe config file "{settings_file}" is likely corrupted\n'
               'It has been moved to the "tmp/config.json"\nReverting config to default\n\n')
        os.replace(settings_file, os.path.join(SCRIPT_PATH, "tmp", "config.json"))
    extensions_dir = os.path.join(args.data_dir, "extensions")
    disabled = set(settings.get("disabled_extensions", []))
    if (settings.get("disable_all_extensions", "none") != "none" or args.disable_extra_extensions
            or args.disable_all_extensions or not os.path.isdir(extensions_dir)):
        return []
    return [name for name in os.listdir(extensions_dir) if name not in disabled]


def run_extension_installer(extension_dir: str) -> None:
    """Run <extension>/install.py with this interpreter, PYTHONPATH=<checkout>; print what it printed; a
    failure is reported, not raised."""
    installer = os.path.join(extension_dir, "install.py")
    if not os.path.isfile(installer):
        return
    env = {**os.environ, "PYTHONPATH": f"{SCRIPT_PATH}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    try:
        stdout = run([sys.executable, installer], None, f"Error running install.py for extension {extension_dir}",
                     env=env).strip()
    except LaunchError as exc:
        report(str(exc))
        return
    if stdout:
        print(stdout, flush=True)


def run_extensions_installers(args: argparse.Namespace) -> None:
    """Each listed extension's installer, as the real `run_extensions_installers` (settings from
    --ui-settings-file)."""
    extensions_dir = os.path.join(args.data_dir, "extensions")
    if not os.path.isdir(extensions_dir):
        return
    for name in list_extensions(args, args.ui_settings_file):
        path = os.path.join(extensions_dir, name)
        if os.path.isdir(path):
            run_extension_installer(path)


def check_python_version() -> None:
    """The real launcher's warning (not an error) for a Python it is not tested with: on Linux 3.7 to 3.11 pass,
    so Debian trixie's 3.13 gets it."""
    if sys.version_info.major == 3 and sys.version_info.minor in (7, 8, 9, 10, 11):
        return
    version = f"{sys.version_info.major}.{sys.version_info.minor}.{sys.version_info.micro}"
    print("INCOMPATIBLE PYTHON VERSION\n\n"
          f"This program is tested with 3.10.6 Python, but you have {version}.\n"
          "(sdfleet stand-in: the real launcher prints a longer explanation here.)\n\n"
          "Use --skip-python-version-check to suppress this warning.", file=sys.stderr, flush=True)


def prepare_environment(args: argparse.Namespace, root: Path = SCRIPT_PATH) -> None:
    """The install steps, in the real order (the banner is printed even with --skip-prepare-environment)."""
    restart = root / "tmp" / "restart"
    if restart.exists():
        restart.unlink()
    if not args.skip_python_version_check:
        check_python_version()
    for line in version_banner(root):
        print(line, flush=True)
    if args.skip_prepare_environment:
        return
    install_torch(args)
    check_gpu(args)
    install_url_packages(args)
    clone_repositories(root)
    install_requirements(args, root)
    if not args.skip_install:
        run_extensions_installers(args)
