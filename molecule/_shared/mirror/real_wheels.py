#!/usr/bin/env python3
"""The real webui's wheel set: locked, downloaded once from PyPI into a cache outside the clone.

    python3 molecule/_shared/mirror/real_wheels.py lock    # resolve again on PyPI, rewrite the lock files
    python3 molecule/_shared/mirror/real_wheels.py fetch   # download what the locks name (cached), check sha256

One lock per webui version (and `tools.txt`: uv, the product's pin), `real-locks/<version>.txt` beside this file, in pip's hash-checking format
(`name==version --hash=sha256:...`, the format `pip-compile --generate-hashes` writes). What a real install of
that version takes on CPython 3.11 x86_64, resolved together:

- the torch and torchvision pins of the version's own TORCH_COMMAND default (its `modules/launch_utils.py`),
- its `requirements_versions.txt` (whose unpinned `torch` line the pins above constrain),
- what building and installing CLIP and open_clip takes (their archives' requirements; setuptools and wheel),
- the requirements of the extensions in ../shared/upstream (sd-dynamic-prompts' `requirements.txt`),
- its XFORMERS_PACKAGE default, without dependencies (the launcher installs it with `--no-deps`).

The webui trees come from `../shared/upstream/` (never copied into the repo). `fetch` runs
`pip download --no-deps --require-hashes` into the cache (`$SDFLEET_CACHE`, default `~/.cache/sdfleet`), so a
second run downloads nothing and a file whose bytes differ from the lock is refused.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

import yaml  # the toolchain's (Ansible's) dependency

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parents[2]
sys.path.insert(0, str(REPO_ROOT / "collections"))

# The product's own readers of launch_utils.py's pins and of requirements files (what the fleet mirror uses).
from ansible_collections.sdfleet.toolkit.plugins.filter.fleet_mirror import (  # noqa: E402
    fleet_mirror_launcher_pins, requirement_lines)

LOCK_DIR = HERE / "real-locks"
UPSTREAM = Path(os.environ.get("SDFLEET_UPSTREAM", REPO_ROOT.parent / "shared" / "upstream"))
CACHE = Path(os.environ.get("SDFLEET_CACHE", Path.home() / ".cache" / "sdfleet"))
PYPI = "https://pypi.org/simple"
VERSIONS = ("v1.9.4", "v1.10.1", "dev")
# The installers' own lock (real-locks/tools.txt): uv at the product's pin (sdfleet_uv_package, the fleet default),
# without dependencies; the fixture's index serves it beside the versions' sets.
TOOLS = "tools"
LOCKS = VERSIONS + (TOOLS,)
PRODUCT_DEFAULTS = REPO_ROOT / "roles" / "sdfleet" / "defaults" / "main.yml"
EXTENSIONS = ("sd-dynamic-prompts-v2.9.1.tar.gz",)
BUILD_PINS = ("setuptools==69.5.1", "wheel")  # CLIP's setup.py imports pkg_resources (gone in setuptools 81)


def wheels_dir() -> Path:
    """Where downloaded files are kept (outside the clone, shared by reruns and CI on one machine)."""
    return CACHE / "wheelhouse" / "files"


def pip_env() -> dict[str, str]:
    """An environment in which pip reads no machine config: PyPI only, no find-links, no constraints."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    env.update(PIP_CONFIG_FILE=os.devnull, PIP_DISABLE_PIP_VERSION_CHECK="1")
    return env


def member(tar_path: Path, name: str) -> str:
    """The text of the member `name` of a tarball (the trees have no top folder; `./` prefixes allowed)."""
    with tarfile.open(tar_path) as tar:
        for info in tar.getmembers():
            if info.name.removeprefix("./") == name and info.isfile():
                handle = tar.extractfile(info)
                assert handle is not None
                return handle.read().decode()
    raise SystemExit(f"{tar_path}: no member {name}")


def zip_member(zip_path: Path, suffix: str) -> str:
    """The text of the one member of a zip whose name ends with `suffix`."""
    with zipfile.ZipFile(zip_path) as archive:
        for name in archive.namelist():
            if name.endswith(suffix) and name.count("/") == 1:
                return archive.read(name).decode()
    raise SystemExit(f"{zip_path}: no member ending in {suffix}")


def version_inputs(version: str) -> tuple[list[str], str]:
    """(the requirements a real install of `version` resolves together, its xformers pin)."""
    tar_path = UPSTREAM / f"stable-diffusion-webui-{version}.tar.gz"
    pins = fleet_mirror_launcher_pins(member(tar_path, "modules/launch_utils.py"))
    if not pins["torch"] or not pins["xformers"]:
        raise SystemExit(f"{tar_path}: cannot read the TORCH_COMMAND / XFORMERS_PACKAGE defaults")
    reqs = pins["torch"] + requirement_lines(member(tar_path, "requirements_versions.txt"))
    reqs += list(BUILD_PINS)
    for archive in sorted(UPSTREAM.glob("CLIP-*.zip")) + sorted(UPSTREAM.glob("open_clip-*.zip")):
        reqs += requirement_lines(zip_member(archive, "/requirements.txt"))
    for extension in EXTENSIONS:
        reqs += requirement_lines(member(UPSTREAM / extension, "requirements.txt"))
    return reqs, pins["xformers"]


def resolve(requirements: list[str], no_deps: bool = False) -> list[tuple[str, str, str]]:
    """Resolve on PyPI with pip's dry run; [(name, version, sha256)] of the files pip would install."""
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        constraint = Path(tmp) / "build-constraints.txt"
        constraint.write_text("setuptools<70\n")  # also inside the isolated builds of source packages
        env = dict(pip_env(), PIP_CONSTRAINT=str(constraint))
        argv = [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet",
                "--index-url", PYPI, "--report", str(report), *(["--no-deps"] if no_deps else []), *requirements]
        subprocess.run(argv, env=env, check=True)
        data = json.loads(report.read_text())
    pins = []
    for item in data["install"]:
        meta, info = item["metadata"], item["download_info"]
        sha = info.get("archive_info", {}).get("hashes", {}).get("sha256") or \
            info.get("archive_info", {}).get("hash", "=").split("=", 1)[1]
        pins.append((meta["name"], meta["version"], sha))
    return sorted(pins, key=lambda p: p[0].lower())


def write_lock(version: str) -> Path:
    """Resolve `version`'s set on PyPI and write its lock file."""
    reqs, xformers = version_inputs(version)
    return write_lock_file(version, f"The real webui {version}'s wheel set on CPython 3.11 x86_64 (PyPI)",
                           f"{' '.join(reqs)}; {xformers} (--no-deps)",
                           resolve(reqs) + resolve([xformers], no_deps=True))


def write_lock_file(name: str, what: str, inputs: str, pins: list[tuple[str, str, str]]) -> Path:
    """real-locks/<name>.txt: a three-line header (what it is, who writes it, its inputs), then one pin per line."""
    header = (f"# {what}, in pip's hash-checking format.\n"
              "# Written by molecule/_shared/mirror/real_wheels.py lock (make wheels-lock); do not edit.\n"
              f"# Inputs: {inputs}\n")
    body = "".join(f"{pin}=={ver} --hash=sha256:{sha}\n" for pin, ver, sha in pins)
    LOCK_DIR.mkdir(exist_ok=True)
    path = LOCK_DIR / f"{name}.txt"
    path.write_text(header + body)
    return path


def uv_requirement() -> str:
    """The product's uv pin (sdfleet_uv_package in the sdfleet role's defaults: its one owner)."""
    return str(yaml.safe_load(PRODUCT_DEFAULTS.read_text())["sdfleet_uv_package"])


def write_tools_lock() -> Path:
    """Resolve the installers' pins on PyPI (no dependencies: uv is one static binary) and write their lock."""
    pin = uv_requirement()
    return write_lock_file(TOOLS, "The installers' wheels on x86_64 Linux (PyPI)",
                           f"{pin} (--no-deps; roles/sdfleet/defaults/main.yml sdfleet_uv_package)",
                           resolve([pin], no_deps=True))


def locked(version: str) -> list[tuple[str, str, str]]:
    """[(name, version, sha256)] of a lock file."""
    pins = []
    for line in (LOCK_DIR / f"{version}.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            req, digest = line.split(" --hash=sha256:")
            name, ver = req.split("==")
            pins.append((name, ver, digest.strip()))
    return pins


def fetch(versions: tuple[str, ...] = LOCKS) -> None:
    """Download every locked file into the cache (files already there are reused, hashes always checked)."""
    dest = wheels_dir()
    dest.mkdir(parents=True, exist_ok=True)
    for version in versions:
        argv = [sys.executable, "-m", "pip", "download", "--no-deps", "--require-hashes", "--quiet",
                "--index-url", PYPI, "--dest", str(dest), "-r", str(LOCK_DIR / f"{version}.txt")]
        subprocess.run(argv, env=pip_env(), check=True)


def main(argv: list[str] | None = None) -> int:
    """Parse arguments and run the command."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["lock", "fetch"])
    args = parser.parse_args(argv)
    if not UPSTREAM.is_dir() and args.command == "lock":
        parser.error(f"{UPSTREAM} is missing: the lock is read from the real webui trees there")
    if args.command == "lock":
        for version in VERSIONS:
            print(f"locked {write_lock(version)}")
        print(f"locked {write_tools_lock()}")
    else:
        fetch()
        print(f"fetched into {wheels_dir()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
