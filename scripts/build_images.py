#!/usr/bin/env python3
"""Build the local base images the test bed and the demo fleet run on.

No image registry is reachable, so every image is made here: a minimal Debian
root file system from ``debootstrap`` is imported with ``docker import``; the
derived images are ordinary ``docker build`` runs on top of it.

Each image carries a ``sdfleet.recipe`` label holding a hash of its recipe;
a second run finds the label unchanged and does nothing, so the script is
cheap to call before every test run.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field

MIRROR = os.environ.get("SDFLEET_DEBIAN_MIRROR", "http://deb.debian.org/debian")

#: Packages of every base image: systemd as PID 1, python3 for Ansible,
#: python3-apt for the apt module, iproute2/procps for testinfra probes.
BASE_PACKAGES = [
    "python3", "python3-apt", "systemd", "systemd-sysv", "dbus",
    "iproute2", "procps", "ca-certificates", "sudo",
]

#: Extra layer for hosts that run the webui (repo, models, service scenarios)
#: and for the local mirror fixture: what the python and git roles install,
#: so those scenarios do not spend minutes in apt.
HOST_PACKAGES = [
    "git", "python3-venv", "python3-pip", "curl", "bc", "libgl1",
    "libglib2.0-0", "google-perftools", "lsof",
]


@dataclass(frozen=True)
class BaseImage:
    """A Debian suite imported from a debootstrap tree."""

    suite: str
    packages: list[str] = field(default_factory=lambda: list(BASE_PACKAGES))

    @property
    def tag(self) -> str:
        return f"sdfleet/debian:{self.suite}"

    def recipe(self) -> str:
        return json.dumps({"kind": "base", "suite": self.suite, "mirror": MIRROR,
                           "packages": self.packages, "v": 2}, sort_keys=True)


@dataclass(frozen=True)
class DerivedImage:
    """An image built with ``docker build`` from a base image."""

    name: str
    base: BaseImage
    packages: list[str]

    @property
    def tag(self) -> str:
        return f"sdfleet/{self.name}:{self.base.suite}"

    def dockerfile(self) -> str:
        pkgs = " ".join(self.packages)
        return (
            f"FROM {self.base.tag}\n"
            "RUN apt-get update && DEBIAN_FRONTEND=noninteractive "
            f"apt-get install -y --no-install-recommends {pkgs} "
            "&& rm -rf /var/lib/apt/lists/*\n"
        )

    def recipe(self) -> str:
        return json.dumps({"kind": "derived", "base": self.base.recipe(),
                           "dockerfile": self.dockerfile(), "v": 1}, sort_keys=True)


def recipe_hash(recipe: str) -> str:
    return hashlib.sha256(recipe.encode()).hexdigest()[:16]


def current_label(tag: str) -> str | None:
    """Return the recipe label of a local image, or None if it is absent."""
    out = subprocess.run(
        ["docker", "image", "inspect", "--format",
         '{{ index .Config.Labels "sdfleet.recipe" }}', tag],
        capture_output=True, text=True, check=False)
    return out.stdout.strip() if out.returncode == 0 else None


def build_base(image: BaseImage, digest: str) -> None:
    root = tempfile.mkdtemp(prefix=f"sdfleet-{image.suite}-", dir="/var/tmp")
    try:
        subprocess.run(
            ["debootstrap", "--variant=minbase",
             f"--include={','.join(image.packages)}", image.suite, root, MIRROR],
            check=True, stdout=subprocess.DEVNULL)
        # Slim the tree: apt lists and caches are fetched again by roles.
        for sub in ("var/cache/apt/archives", "var/lib/apt/lists"):
            shutil.rmtree(os.path.join(root, sub), ignore_errors=True)
            os.makedirs(os.path.join(root, sub), exist_ok=True)
        with open(os.path.join(root, "etc/apt/sources.list"), "w", encoding="utf-8") as fh:
            fh.write(f"deb {MIRROR} {image.suite} main\n")
        tar = subprocess.Popen(["tar", "-C", root, "-c", "."], stdout=subprocess.PIPE)
        subprocess.run(
            ["docker", "import",
             "--change", f"LABEL sdfleet.recipe={digest}",
             "--change", 'CMD ["/lib/systemd/systemd"]',
             "--change", "ENV container=docker",
             "-", image.tag],
            stdin=tar.stdout, check=True, stdout=subprocess.DEVNULL)
        if tar.wait() != 0:
            raise RuntimeError(f"tar of {root} failed")
    finally:
        shutil.rmtree(root, ignore_errors=True)


def build_derived(image: DerivedImage, digest: str) -> None:
    dockerfile = image.dockerfile() + f'LABEL sdfleet.recipe="{digest}"\n'
    with tempfile.TemporaryDirectory() as ctx:
        with open(os.path.join(ctx, "Dockerfile"), "w", encoding="utf-8") as fh:
            fh.write(dockerfile)
        subprocess.run(["docker", "build", "-q", "-t", image.tag, ctx],
                       check=True, stdout=subprocess.DEVNULL)


def ensure(image: BaseImage | DerivedImage) -> bool:
    """Build ``image`` unless its recipe label matches; return True if built."""
    digest = recipe_hash(image.recipe())
    if current_label(image.tag) == digest:
        print(f"{image.tag}: up to date ({digest})")
        return False
    print(f"{image.tag}: building ({digest}) ...", flush=True)
    if isinstance(image, BaseImage):
        build_base(image, digest)
    else:
        build_derived(image, digest)
    print(f"{image.tag}: built")
    return True


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suites", default="bookworm,trixie")
    args = parser.parse_args(argv)
    bases = [BaseImage(s) for s in args.suites.split(",") if s]
    for base in bases:
        ensure(base)
    for base in bases:
        if base.suite == "bookworm":
            ensure(DerivedImage("webui-host", base, HOST_PACKAGES))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
