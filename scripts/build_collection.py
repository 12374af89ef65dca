#!/usr/bin/env python3
"""Build the sdfleet.toolkit collection tarball with everything in it: the plugins (the collection's own tree under
collections/ansible_collections/sdfleet/toolkit), and the design's top-level roles/, playbooks/ and templates/,
which the build gathers into a staging copy (the checkout keeps its layout; ansible-galaxy skips symlinks that leave
the collection, hence the copy).

    scripts/build_collection.py [--out build/collection] [--venv DIR [--with NS.NAME ...]]

Prints the tarball's path. --venv makes what an Ansible user starts from: a clean venv with only ansible-core (the
version of this interpreter's) and the collection's declared Python packages (requirements.txt), its collections
path (DIR/collections) holding the declared dependencies (copied from this venv's ansible package: Galaxy is not
reachable here) plus any --with collection (the demo's docker connection: community.docker), and the tarball
installed there offline (its galaxy.yml dependencies resolved against that path). Prints the venv's
ansible-playbook and the collections path too.
"""
from __future__ import annotations

import argparse
import importlib.metadata
import pathlib
import shutil
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
SOURCE = ROOT / "collections" / "ansible_collections" / "sdfleet" / "toolkit"
GATHERED = ("roles", "playbooks", "templates")
IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc", ".pytest_cache")


def galaxy() -> str:
    """ansible-galaxy beside this interpreter (the project's venv), else on PATH."""
    near = pathlib.Path(sys.executable).with_name("ansible-galaxy")
    return str(near) if near.exists() else "ansible-galaxy"


def stage(out: pathlib.Path) -> pathlib.Path:
    """A fresh copy of the collection with the gathered directories in it."""
    tree = out / "stage" / "ansible_collections" / "sdfleet" / "toolkit"
    shutil.rmtree(out / "stage", ignore_errors=True)
    shutil.copytree(SOURCE, tree, ignore=IGNORE)
    for name in GATHERED:
        if (tree / name).exists():
            raise SystemExit(f"{SOURCE / name} exists: the collection tree must not hold {name}/ (it is gathered "
                             f"from {ROOT / name}). Fix: remove it.")
        shutil.copytree(ROOT / name, tree / name, ignore=IGNORE)
    return tree


def build(out: pathlib.Path) -> pathlib.Path:
    tree = stage(out)
    for old in out.glob("sdfleet-toolkit-*.tar.gz"):
        old.unlink()
    subprocess.run([galaxy(), "collection", "build", str(tree), "--output-path", str(out), "--force"],
                   check=True, stdout=subprocess.DEVNULL)
    (tarball,) = out.glob("sdfleet-toolkit-*.tar.gz")
    return tarball


def dependencies() -> list[str]:
    """The collections galaxy.yml declares (``namespace.name``)."""
    import yaml  # pylint: disable=import-outside-toplevel

    return sorted((yaml.safe_load((SOURCE / "galaxy.yml").read_text(encoding="utf-8")).get("dependencies") or {}))


def clean_venv(venv: pathlib.Path, tarball: pathlib.Path, extra: list[str]) -> pathlib.Path:
    """A venv with only ansible-core, and a collections path with the dependencies, ``extra`` and the tarball.
    Reused when its ansible-core is the wanted one; the collections path is made again every time."""
    core = importlib.metadata.version("ansible-core")
    python = venv / "bin" / "python"
    stamp = venv / ".ansible-core"
    wanted = core + "\n" + (SOURCE / "requirements.txt").read_text(encoding="utf-8")
    if not (python.exists() and stamp.is_file() and stamp.read_text(encoding="utf-8") == wanted):
        shutil.rmtree(venv, ignore_errors=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check",
                        f"ansible-core=={core}", "-r", str(SOURCE / "requirements.txt")], check=True)
        stamp.write_text(wanted, encoding="utf-8")
    import ansible_collections  # pylint: disable=import-outside-toplevel  # the ansible package's collections

    packaged = pathlib.Path(list(ansible_collections.__path__)[0])
    path = venv / "collections"
    shutil.rmtree(path, ignore_errors=True)
    for fqcn in dependencies() + extra:
        namespace, name = fqcn.split(".")
        shutil.copytree(packaged / namespace / name, path / "ansible_collections" / namespace / name, ignore=IGNORE)
    subprocess.run([str(venv / "bin" / "ansible-galaxy"), "collection", "install", "--offline", "-p", str(path),
                    str(tarball)], check=True, stdout=subprocess.DEVNULL, cwd=venv,
                   env={"PATH": f"{venv / 'bin'}:/usr/bin:/bin", "HOME": str(venv), "LANG": "C.UTF-8",
                        "ANSIBLE_COLLECTIONS_PATH": str(path)})
    return path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=pathlib.Path, default=ROOT / "build" / "collection")
    parser.add_argument("--venv", type=pathlib.Path, help="make a clean venv with the tarball installed (see above)")
    parser.add_argument("--with", dest="extra", action="append", default=[], metavar="NS.NAME",
                        help="another collection for the clean venv (from this venv's ansible package)")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    tarball = build(args.out.resolve())
    print(tarball)
    if args.venv:
        path = clean_venv(args.venv.resolve(), tarball, args.extra)
        print(args.venv.resolve() / "bin" / "ansible-playbook")
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
