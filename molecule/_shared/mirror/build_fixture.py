#!/usr/bin/env python3
"""Build the local mirror's content (a test fixture) for sdfleet's test bed.

    python3 molecule/_shared/mirror/build_fixture.py --out build/fixture

Writes, deterministically (same inputs -> same bytes, same commit hashes):

    git/stable-diffusion-webui.git   bare repo of molecule/_shared/standin_webui: v1.10.0, v1.10.1 (annotated tags),
                                     master = v1.10.1, dev = one commit past master
    git/<sub-repo>.git               stablediffusion, generative-models, k-diffusion, BLIP,
                                     stable-diffusion-webui-assets: two commits each, pin = the first
    simple/                          PEP 503 index: the wheels the stand-in's requirements name and setuptools + wheel
                                     (from PyPI, on the host), plus a STUB xformers wheel built here
    openai/CLIP/archive/<c>.zip,     STUB source archives of CLIP and open_clip at GitHub's archive paths (what
    mlfoundations/open_clip/...      CLIP_PACKAGE / OPENCLIP_PACKAGE point at); pip builds them from simple/ alone
    torch/cu121/, torch/cpu/         PEP 503 indexes of STUB torch/torchvision wheels built here
    files/                           pseudo-random model files (safetensors-shaped checkpoints and VAE, .pt, .pth)
    pins.json                        tags, commits, hashes, sizes, wheel names (README.md lists the fields)
    bin/mirror_server.py             the server (a copy of mirror_server.py)

A second run with unchanged inputs (this script, the server, the stand-in tree, the wheel list) does nothing.
Wheels are downloaded once into --wheel-cache (default build/wheel-cache).
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parents[2]
DEFAULT_SRC = REPO_ROOT / "molecule" / "_shared" / "standin_webui"
DEFAULT_WHEEL_CACHE = REPO_ROOT / "build" / "wheel-cache"
SERVER = HERE / "mirror_server.py"
# The torch compatibility table: the stub torch of each variant reports that build's arch list.
TORCH_TABLE = REPO_ROOT / "collections/ansible_collections/sdfleet/toolkit/plugins/module_utils/torch_builds.py"
STAMP = ".fixture-stamp"
RECIPE = "sdfleet-fixture/1"  # bump when the layout changes in a way the sources don't show

IGNORED_NAMES = {"__pycache__", ".pytest_cache", ".git", ".mypy_cache", ".ruff_cache"}
IGNORED_SUFFIXES = (".pyc", ".pyo")
MIB = 1024 * 1024
LEGACY_OFFSET, LEGACY_LENGTH = 0x100000, 0x10000

# Identity and dates of every fixture commit/tag: fixed, so hashes only move when content does.
AUTHOR = ("sdfleet fixture", "fixture@sdfleet.invalid")
WEBUI_COMMITS = (  # (tag or None, branch that ends here, unix time, message)
    ("v1.10.0", None, 1721995200, "stand-in webui v1.10.0"),
    ("v1.10.1", "master", 1722081600, "stand-in webui v1.10.1: CHANGELOG section"),
    (None, "dev", 1722513600, "dev: work past v1.10.1"),
)
# Wheels every fixture holds (the stand-in's requirements_versions.txt may add `name==version` lines).
BASE_WHEELS = (("six", "1.16.0"), ("packaging", "24.1"))
# What pip needs to build a setup.py project (the URL packages below) in an isolated build env, from this index
# alone: setuptools < 70.1 asks for `wheel`. 69.5.1 is the pin the real webui's requirements and dev's launcher use.
BUILD_WHEELS = (("setuptools", "69.5.1"), ("wheel", "0.43.0"))
# Stub wheels built here for /simple/ (name, version, Requires-Dist): what `--xformers` installs (v1.10.1's
# XFORMERS_PACKAGE default; the launcher installs it with --no-deps, as the real wheel pins torch).
STUB_WHEELS = (("xformers", "0.0.23.post1", ["torch==2.1.2"]),)
TORCH_VERSIONS = (("torch", "2.1.2"), ("torchvision", "0.16.2"))
TORCH_VARIANTS = ("cu121", "cpu")
NOT_FROM_PYPI = {"torch", "torchvision"}


@dataclass(frozen=True)
class SubRepo:
    """A sub-repository launch.py clones into repositories/ (names and env vars as in the real v1.10)."""

    name: str
    branch: str
    clone_dir: str
    repo_env: str
    commit_env: str
    stub_file: str


SUB_REPOS = (
    SubRepo("stablediffusion", "main", "stable-diffusion-stability-ai", "STABLE_DIFFUSION_REPO",
            "STABLE_DIFFUSION_COMMIT_HASH", "ldm/__init__.py"),
    SubRepo("generative-models", "main", "generative-models", "STABLE_DIFFUSION_XL_REPO",
            "STABLE_DIFFUSION_XL_COMMIT_HASH", "sgm/__init__.py"),
    SubRepo("k-diffusion", "master", "k-diffusion", "K_DIFFUSION_REPO", "K_DIFFUSION_COMMIT_HASH",
            "k_diffusion/__init__.py"),
    SubRepo("BLIP", "main", "BLIP", "BLIP_REPO", "BLIP_COMMIT_HASH", "models/blip.py"),
    SubRepo("stable-diffusion-webui-assets", "master", "stable-diffusion-webui-assets", "ASSETS_REPO",
            "ASSETS_COMMIT_HASH", "assets/README.txt"),
)


@dataclass(frozen=True)
class UrlPackage:
    """A package the launcher pip-installs from a GitHub archive URL (v1.10.1's CLIP_PACKAGE, OPENCLIP_PACKAGE)."""

    env: str
    owner: str
    repo: str
    commit: str
    dist: str         # the distribution name its setup.py declares
    version: str
    module: str       # what `import` finds (the real launcher checks `is_installed("<module>")`)
    src_layout: bool  # package under src/ (open_clip) or at the top (CLIP)

    @property
    def path(self) -> str:
        """GitHub's archive path for the commit."""
        return f"/{self.owner}/{self.repo}/archive/{self.commit}.zip"

    @property
    def upstream(self) -> str:
        """The URL the real launcher installs from by default."""
        return "https://github.com" + self.path


URL_PACKAGES = (
    UrlPackage("CLIP_PACKAGE", "openai", "CLIP", "d50d76daa670286dd6cacf3bcd80b5e4823fc8e1", "clip", "1.0",
               "clip", False),
    UrlPackage("OPENCLIP_PACKAGE", "mlfoundations", "open_clip", "bb6e834e9c70d9c27d0dc3ecedeebeaeb1ffad6b",
               "open_clip_torch", "2.7.0", "open_clip", True),
)


@dataclass(frozen=True)
class ModelFile:
    """A generated model file: name, exact size, kind (the webui folder it belongs in), format."""

    name: str
    size: int
    kind: str
    safetensors: bool


MODEL_FILES = (
    ModelFile("tiny-v1.safetensors", 3 * MIB, "checkpoint", True),
    ModelFile("tiny-v2.safetensors", 2 * MIB, "checkpoint", True),
    ModelFile("tiny-vae.safetensors", 1 * MIB, "vae", True),
    ModelFile("tiny-embedding.pt", 64 * 1024, "embedding", False),
    ModelFile("GFPGANv1.4.pth", 512 * 1024, "gfpgan", False),
)


# -- helpers ---------------------------------------------------------------------------------------------
def sha256_hex(data: bytes) -> str:
    """Hex SHA-256 of `data`."""
    return hashlib.sha256(data).hexdigest()


def normalize(name: str) -> str:
    """PEP 503 project name normalization."""
    return re.sub(r"[-_.]+", "-", name).lower()


def source_files(src: Path) -> list[Path]:
    """Files of the stand-in tree, sorted, without caches and bytecode. Inside a git work tree the tree's
    own .gitignore is honoured (a stand-in run by hand leaves venv/, repositories/, config.json behind)."""
    proc = subprocess.run(["git", "-C", str(src), "ls-files", "-z", "--cached", "--others", "--exclude-standard",
                           "--", "."], capture_output=True, check=False)
    if proc.returncode == 0 and proc.stdout:
        listed = (src / name for name in proc.stdout.decode().split("\0") if name)
        return sorted(path for path in listed
                      if path.is_file() and not path.name.endswith(IGNORED_SUFFIXES)
                      and not IGNORED_NAMES.intersection(path.relative_to(src).parts))
    found = []
    for dirpath, dirnames, filenames in os.walk(src):
        dirnames[:] = sorted(d for d in dirnames if d not in IGNORED_NAMES)
        for filename in sorted(filenames):
            if not filename.endswith(IGNORED_SUFFIXES):
                found.append(Path(dirpath, filename))
    return found


def requirement_pins(src: Path) -> list[tuple[str, str]]:
    """BASE_WHEELS plus the `name==version` lines of the stand-in's requirements_versions.txt (torch excluded)."""
    pins = dict(BASE_WHEELS)
    reqs = src / "requirements_versions.txt"
    if reqs.is_file():
        for line in reqs.read_text().splitlines():
            match = re.match(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*==\s*([^\s;#]+)", line)
            if match and normalize(match.group(1)) not in NOT_FROM_PYPI:
                pins[match.group(1)] = match.group(2)
    return sorted(pins.items(), key=lambda kv: normalize(kv[0]))


def fingerprint(src: Path) -> str:
    """Hash of every input: recipe, this script, the server, the stand-in tree (paths, exec bits, bytes)."""
    digest = hashlib.sha256(RECIPE.encode())
    for path in (Path(__file__).resolve(), SERVER, TORCH_TABLE):
        digest.update(path.read_bytes())
    for path in source_files(src):
        rel = path.relative_to(src).as_posix()
        digest.update(f"\0{rel}\0{os.access(path, os.X_OK)}\0".encode())
        digest.update(path.read_bytes())
    digest.update(json.dumps(requirement_pins(src)).encode())
    return digest.hexdigest()


# -- git ---------------------------------------------------------------------------------------------------
def git_env(when: int | None = None, **extra: str) -> dict[str, str]:
    """An environment that makes git ignore the user's config and stamps fixed identities and dates."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", "/"),
        "LC_ALL": "C",
        "TZ": "UTC",
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": os.devnull,
        "GIT_AUTHOR_NAME": AUTHOR[0],
        "GIT_AUTHOR_EMAIL": AUTHOR[1],
        "GIT_COMMITTER_NAME": AUTHOR[0],
        "GIT_COMMITTER_EMAIL": AUTHOR[1],
    }
    if when is not None:
        env["GIT_AUTHOR_DATE"] = env["GIT_COMMITTER_DATE"] = f"{when} +0000"
    env.update(extra)
    return env


def git(*args: str, env: dict[str, str] | None = None, stdin: str | None = None) -> str:
    """Run git; return its stripped stdout; raise with git's stderr on failure."""
    proc = subprocess.run(["git", *args], env=env or git_env(), input=stdin, capture_output=True, text=True,
                          check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc.stdout.strip()


def init_bare(path: Path, branch: str) -> None:
    """A bare repo without template files (no hooks, no description), HEAD on `branch`."""
    git("init", "--quiet", "--bare", "--template=", f"--initial-branch={branch}", str(path))


def commit(repo: Path, tree: Path, message: str, when: int, parent: str | None, scratch: Path) -> str:
    """Commit the whole of `tree` (a plain directory) into the bare `repo`; return the commit hash."""
    index = scratch / "index"
    index.unlink(missing_ok=True)
    env = git_env(when, GIT_DIR=str(repo), GIT_WORK_TREE=str(tree), GIT_INDEX_FILE=str(index))
    git("add", "--all", "--force", ".", env=env)
    tree_sha = git("write-tree", env=env)
    parents = ["-p", parent] if parent else []
    return git("commit-tree", tree_sha, *parents, "-m", message, env=env)


def set_ref(repo: Path, ref: str, sha: str) -> None:
    """Point `ref` at `sha` (no reflog: bare repos don't keep one)."""
    git("update-ref", ref, sha, env=git_env(GIT_DIR=str(repo)))


def annotated_tag(repo: Path, name: str, target: str, when: int) -> str:
    """Write an annotated tag object with a fixed tagger and date; return the tag object's hash."""
    body = (f"object {target}\ntype commit\ntag {name}\n"
            f"tagger {AUTHOR[0]} <{AUTHOR[1]}> {when} +0000\n\n{name}\n")
    sha = git("mktag", env=git_env(GIT_DIR=str(repo)), stdin=body)
    set_ref(repo, f"refs/tags/{name}", sha)
    return sha


def changelog_at(source: str | None, version: str, older: list[str]) -> str:
    """CHANGELOG.md as of `version`: the stand-in's own file from its `## <version>` heading down (so the
    v1.10.1 commit adds that section, as upstream's did); a generated one when the file or heading is missing."""
    if source:
        match = re.search(rf"^## {re.escape(version)}[ \t]*$", source, re.MULTILINE)
        if match:
            return source[match.start():]
    return "".join(f"## {v}\n\n* Stand-in release for sdfleet's test bed.\n\n" for v in [version, *older])


def build_webui(src: Path, git_dir: Path, scratch: Path) -> dict[str, object]:
    """The stand-in webui repo; returns its pins."""
    repo = git_dir / "stable-diffusion-webui.git"
    init_bare(repo, "master")
    tree = scratch / "webui-tree"
    for path in source_files(src):
        dest = tree / path.relative_to(src)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, dest)
    tree.mkdir(exist_ok=True)
    tags: dict[str, str] = {}
    tag_objects: dict[str, str] = {}
    branches: dict[str, str] = {}
    source_changelog = (src / "CHANGELOG.md").read_text() if (src / "CHANGELOG.md").is_file() else None
    released: list[str] = []
    parent: str | None = None
    for tag, branch, when, message in WEBUI_COMMITS:
        if tag:
            (tree / "CHANGELOG.md").write_text(changelog_at(source_changelog, tag[1:], released))
            released.insert(0, tag[1:])
        else:
            (tree / ".dev-branch").write_text("This commit exists only on the stand-in's dev branch.\n")
        parent = commit(repo, tree, message, when, parent, scratch)
        if tag:
            tags[tag] = parent
            tag_objects[tag] = annotated_tag(repo, tag, parent, when)
        if branch:
            set_ref(repo, f"refs/heads/{branch}", parent)
            branches[branch] = parent
    return {
        "path": "/git/stable-diffusion-webui.git",
        "default_branch": "master",
        "tag_type": "annotated",
        "tags": tags,
        "tag_objects": tag_objects,
        "branches": branches,
        "version": "v1.10.1",
        "commit": tags["v1.10.1"],
        "short_commit": tags["v1.10.1"][:7],
        "dev_describe": f"v1.10.1-1-g{branches['dev'][:7]}",
    }


def build_sub_repo(sub: SubRepo, git_dir: Path, scratch: Path) -> dict[str, str]:
    """A two-commit stub of an upstream sub-repo; pin = the first commit, head = the second."""
    repo = git_dir / f"{sub.name}.git"
    init_bare(repo, sub.branch)
    tree = scratch / f"tree-{sub.name}"
    stub = tree / sub.stub_file
    stub.parent.mkdir(parents=True)
    stub.write_text(f'"""Stub of {sub.name} for sdfleet\'s test bed (not the real code)."""\n')
    readme = tree / "README.md"
    readme.write_text(f"# {sub.name} (stub)\n\nServed by sdfleet's local mirror.\n")
    pin = commit(repo, tree, f"{sub.name}: pinned commit", 1700000000, None, scratch)
    with readme.open("a") as handle:
        handle.write("\nA commit past the pin: the launcher must check out the pin, not HEAD.\n")
    head = commit(repo, tree, f"{sub.name}: newer than the pin", 1700086400, pin, scratch)
    set_ref(repo, f"refs/heads/{sub.branch}", head)
    return {"path": f"/git/{sub.name}.git", "branch": sub.branch, "pin": pin, "head": head,
            "clone_dir": sub.clone_dir, "repo_env": sub.repo_env, "commit_env": sub.commit_env}


# -- wheels ------------------------------------------------------------------------------------------------
def wheel_in_cache(cache: Path, name: str, version: str) -> Path | None:
    """The cached wheel for name==version, if any."""
    want = (re.sub(r"[-_.]+", "_", name).lower(), version)
    for path in sorted(cache.glob("*.whl")):
        parts = path.name.split("-")
        if (parts[0].lower(), parts[1]) == want:
            return path
    return None


def fetch_wheels(pins: list[tuple[str, str]], cache: Path) -> list[Path]:
    """Cached wheels for every pin, downloading the missing ones from PyPI (binary only, no dependencies)."""
    cache.mkdir(parents=True, exist_ok=True)
    missing = [f"{n}=={v}" for n, v in pins if wheel_in_cache(cache, n, v) is None]
    if missing:
        print(f"fixture: downloading {' '.join(missing)} into {cache}", file=sys.stderr)
        cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check", "--no-deps",
               "--only-binary=:all:", "--dest", str(cache), *missing]
        if subprocess.run(cmd, check=False).returncode != 0:
            raise RuntimeError(f"pip download {' '.join(missing)} failed; the host needs PyPI once "
                               f"(or put the wheels into {cache})")
    wheels = []
    for name, version in pins:
        found = wheel_in_cache(cache, name, version)
        if found is None:
            raise RuntimeError(f"{name}=={version}: no wheel in {cache} after pip download")
        wheels.append(found)
    return wheels


def record_hash(data: bytes) -> str:
    """RECORD's hash form: urlsafe base64 of the SHA-256, unpadded."""
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def build_wheel(dest: Path, name: str, version: str, files: dict[str, str], requires: list[str],
                summary: str) -> Path:
    """A deterministic pure-Python wheel (py3-none-any) with METADATA, WHEEL and a hashed RECORD."""
    dist_info = f"{name}-{version}.dist-info"
    metadata = (f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\nSummary: {summary}\n"
                + "".join(f"Requires-Dist: {req}\n" for req in requires))
    entries = dict(sorted(files.items()))
    entries[f"{dist_info}/METADATA"] = metadata
    entries[f"{dist_info}/WHEEL"] = ("Wheel-Version: 1.0\nGenerator: sdfleet-build-fixture\n"
                                     "Root-Is-Purelib: true\nTag: py3-none-any\n")
    entries[f"{dist_info}/top_level.txt"] = f"{name}\n"
    record = "".join(f"{path},{record_hash(text.encode())},{len(text.encode())}\n" for path, text in entries.items())
    entries[f"{dist_info}/RECORD"] = record + f"{dist_info}/RECORD,,\n"
    wheel = dest / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w", zipfile.ZIP_DEFLATED) as archive:
        for path, text in entries.items():
            info = zipfile.ZipInfo(path, date_time=(1980, 1, 1, 0, 0, 0))
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, text)
    return wheel


def torch_arch_flags(version: str, variant: str) -> list[str]:
    """The arch list the real ``torch==version`` of ``variant`` was built with (the collection's table)."""
    sys.path.insert(0, str(REPO_ROOT / "collections"))
    try:
        from ansible_collections.sdfleet.toolkit.plugins.module_utils import torch_builds
    finally:
        sys.path.pop(0)
    return list(torch_builds.BUILDS[(version.split("+")[0], variant)]["arch_flags"])


def torch_stub_files(name: str, version: str, variant: str) -> dict[str, str]:
    """Sources of the stub torch / torchvision packages. The stub torch's ``_C._cuda_getArchFlags()`` answers the
    real build's arch list, so the stand-in can fail like a real webui on a GPU its torch has no kernels for."""
    doc = (f'"""STUB {name} {version} for sdfleet\'s test bed: NOT the real package.\n\n'
           "It exists so installers can be tested offline; it has no tensors and no CUDA.\n"
           '"""\n')
    cuda = '"12.1"' if variant == "cu121" else "None"
    files = {f"{name}/version.py": f'{doc}\n__version__ = "{version}"\ncuda = {cuda}\ngit_version = "stub"\n'}
    if name == "torch":
        files["torch/__init__.py"] = (f"{doc}\nfrom torch import _C, cuda, version\n\n"
                                      "__version__ = version.__version__\n")
        arch = " ".join(torch_arch_flags(version, variant))
        files["torch/_C.py"] = (f'"""STUB torch._C: only what the real build reports about itself."""\n\n\n'
                                "def _cuda_getArchFlags() -> str:\n"
                                f'    """The arch list of the real torch {version}."""\n    return "{arch}"\n')
        files["torch/cuda/__init__.py"] = (
            '"""STUB torch.cuda: no GPU is ever available here."""\n\n\n'
            "def is_available() -> bool:\n    \"\"\"Always False: this torch is a stub.\"\"\"\n    return False\n\n\n"
            "def device_count() -> int:\n    \"\"\"Always 0: this torch is a stub.\"\"\"\n    return 0\n")
    else:
        files[f"{name}/__init__.py"] = f"{doc}\nfrom {name}.version import __version__\n"
    return files


def write_index(index_dir: Path, url: str, wheels: dict[str, list[Path]]) -> list[dict[str, str]]:
    """A PEP 503 simple index under `index_dir`, served at `url` (project dirs, `#sha256=` links); returns
    the wheel records."""
    records = []
    index_dir.mkdir(parents=True, exist_ok=True)
    projects = sorted(wheels, key=normalize)
    links = "".join(f'<a href="{normalize(p)}/">{normalize(p)}</a>\n' for p in projects)
    (index_dir / "index.html").write_text(f"<!DOCTYPE html>\n<html><body>\n{links}</body></html>\n")
    for project in projects:
        project_dir = index_dir / normalize(project)
        project_dir.mkdir(exist_ok=True)
        anchors = []
        for wheel in sorted(wheels[project]):
            target = project_dir / wheel.name
            if wheel.parent != project_dir:
                shutil.copyfile(wheel, target)
            digest = sha256_hex(target.read_bytes())
            anchors.append(f'<a href="{wheel.name}#sha256={digest}">{wheel.name}</a>\n')
            records.append({"project": normalize(project), "filename": wheel.name, "sha256": digest,
                            "path": f"{url}{normalize(project)}/{wheel.name}"})
        (project_dir / "index.html").write_text(
            f"<!DOCTYPE html>\n<html><body><h1>Links for {normalize(project)}</h1>\n{''.join(anchors)}</body></html>\n")
    return records


def stub_wheel_files(name: str, version: str) -> dict[str, str]:
    """Sources of a stub wheel for /simple/ (importable, says what it is, has `__version__`)."""
    doc = (f'"""STUB {name} {version} for sdfleet\'s test bed: NOT the real package.\n\n'
           "It exists so that `launch.py --xformers` can install it offline; it has no kernels.\n"
           '"""\n')
    return {f"{name}/__init__.py": f'{doc}\n__version__ = "{version}"\n'}


def build_indexes(out: Path, src: Path, cache: Path, scratch: Path) -> dict[str, object]:
    """simple/ from cached PyPI wheels (requirements, build tools) and stub wheels built here; torch/<variant>/
    from stub wheels built here."""
    pins = requirement_pins(src)
    from_pypi = sorted({**dict(pins), **dict(BUILD_WHEELS)}.items(), key=lambda kv: normalize(kv[0]))
    wheels = fetch_wheels(from_pypi, cache)
    simple_wheels = {name: [whl] for (name, _), whl in zip(from_pypi, wheels, strict=True)}
    stage = scratch / "wheels-simple"
    stage.mkdir()
    for name, version, requires in STUB_WHEELS:
        simple_wheels[name] = [build_wheel(stage, name, version, stub_wheel_files(name, version), requires,
                                           f"STUB {name} for sdfleet's test bed (not the real package)")]
    simple = write_index(out / "simple", "/simple/", simple_wheels)
    torch: dict[str, list[dict[str, str]]] = {}
    for variant in TORCH_VARIANTS:
        built: dict[str, list[Path]] = {}
        for name, base in TORCH_VERSIONS:
            version = f"{base}+{variant}"
            requires = [f"torch=={TORCH_VERSIONS[0][1]}"] if name == "torchvision" else []
            stage = scratch / f"wheels-{variant}"
            stage.mkdir(exist_ok=True)
            built[name] = [build_wheel(stage, name, version, torch_stub_files(name, version, variant), requires,
                                       f"STUB {name} for sdfleet's test bed (not the real package)")]
        torch[variant] = write_index(out / "torch" / variant, f"/torch/{variant}/", built)
    return {"simple": simple, "torch": torch,
            "requirements": [f"{name}=={version}" for name, version in pins],
            "build": [f"{name}=={version}" for name, version in BUILD_WHEELS],
            "stubs": [f"{name}=={version}" for name, version, _requires in STUB_WHEELS],
            "torch_versions": {name: version for name, version in TORCH_VERSIONS}}


# -- URL packages (GitHub archives) --------------------------------------------------------------------------
def url_package_files(pkg: UrlPackage) -> dict[str, str]:
    """The stub source tree of a URL package: a setuptools `setup.py` project (no pyproject.toml, as upstream's).

    Like CLIP's own setup.py it imports pkg_resources, so a build with setuptools >= 81 fails as the real one does.
    No install_requires: the real ones pull ftfy, regex, tqdm, ... from PyPI, which this fixture does not serve.
    """
    package_dir = f"src/{pkg.module}" if pkg.src_layout else pkg.module
    layout = ('    package_dir={"": "src"},\n    packages=find_packages(where="src"),\n' if pkg.src_layout
              else '    packages=find_packages(exclude=["tests*"]),\n')
    setup_py = (
        f'"""STUB of {pkg.owner}/{pkg.repo} at {pkg.commit[:12]} for sdfleet\'s test bed: NOT the real code."""\n\n'
        "import pkg_resources  # noqa: F401 (as upstream's setup.py: setuptools >= 81 has no pkg_resources)\n"
        "from setuptools import find_packages, setup\n\n"
        f'setup(\n    name="{pkg.dist}",\n    version="{pkg.version}",\n'
        f'    description="STUB {pkg.repo} for sdfleet\'s test bed (not the real package)",\n'
        f"{layout})\n")
    return {
        "README.md": (f"# {pkg.repo} (stub)\n\nServed by sdfleet's local mirror at `{pkg.path}`, where GitHub "
                      f"serves the real archive. `import {pkg.module}` works; nothing else does.\n"),
        "setup.py": setup_py,
        f"{package_dir}/__init__.py": (f'"""STUB {pkg.module} for sdfleet\'s test bed: NOT the real package."""\n\n'
                                       f'__version__ = "{pkg.version}"\nSTUB = True\n'),
    }


def build_url_package(out: Path, pkg: UrlPackage) -> dict[str, object]:
    """A zip laid out as GitHub's archive of a commit (one top folder `<repo>-<commit>/`, the commit as the
    zip comment), with fixed dates and modes so the bytes never change; returns its pins."""
    target = out / pkg.path.lstrip("/")
    target.parent.mkdir(parents=True)
    top = f"{pkg.repo}-{pkg.commit}/"
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.comment = pkg.commit.encode()
        folder = zipfile.ZipInfo(top, date_time=(1980, 1, 1, 0, 0, 0))
        folder.external_attr = (0o40755 << 16) | 0x10
        archive.writestr(folder, b"")
        for path, text in sorted(url_package_files(pkg).items()):
            info = zipfile.ZipInfo(top + path, date_time=(1980, 1, 1, 0, 0, 0))
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, text)
    data = target.read_bytes()
    return {"path": pkg.path, "upstream": pkg.upstream, "commit": pkg.commit, "top": top.rstrip("/"),
            "dist": pkg.dist, "version": pkg.version, "module": pkg.module, "size": len(data),
            "sha256": sha256_hex(data)}


# -- model files -------------------------------------------------------------------------------------------
def model_bytes(model: ModelFile) -> bytes:
    """Deterministic pseudo-random content; safetensors files get a valid 8-byte length + JSON header."""
    if not model.safetensors:
        return hashlib.shake_256(f"sdfleet-fixture:{model.name}".encode()).digest(model.size)
    header_len = 256
    data_len = model.size - 8 - header_len
    header = json.dumps({"__metadata__": {"format": "pt", "sdfleet": "stub model, not real weights"},
                         "weight": {"dtype": "U8", "shape": [data_len], "data_offsets": [0, data_len]}},
                        separators=(",", ":"), sort_keys=True).encode().ljust(header_len, b" ")
    payload = hashlib.shake_256(f"sdfleet-fixture:{model.name}".encode()).digest(data_len)
    return len(header).to_bytes(8, "little") + header + payload


def legacy_hash(data: bytes) -> str:
    """The webui's old "model hash": SHA-256 of what a read of 64 KiB at offset 1 MiB returns, 8 hex.

    Like the real `model_hash()` (seek + read), a file shorter than 1 MiB + 64 KiB hashes whatever the read
    returns: a partial window, or b"" (-> "e3b0c442") for files of at most 1 MiB.
    """
    return sha256_hex(data[LEGACY_OFFSET:LEGACY_OFFSET + LEGACY_LENGTH])[:8]


def build_files(out: Path) -> dict[str, dict[str, object]]:
    """files/ and their pins."""
    files_dir = out / "files"
    files_dir.mkdir()
    pins = {}
    for model in MODEL_FILES:
        data = model_bytes(model)
        (files_dir / model.name).write_bytes(data)
        digest = sha256_hex(data)
        pins[model.name] = {"path": f"/files/{model.name}", "size": len(data), "kind": model.kind,
                            "sha256": digest, "short_hash": digest[:10], "legacy_hash": legacy_hash(data)}
    return pins


# -- assembly ----------------------------------------------------------------------------------------------
def build(out: Path, src: Path, cache: Path) -> None:
    """Build everything into a scratch directory, then move it into `out` (kept as the same directory, so
    containers that bind-mount it see the new content); the stamp is written last."""
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{out.name}-", dir=out.parent) as tmp:
        stage, scratch = Path(tmp, "out"), Path(tmp, "scratch")
        (stage / "git").mkdir(parents=True)
        scratch.mkdir()
        pins: dict[str, object] = {"schema": 1, "port": 8080, "dead_port": 8081}
        pins["webui"] = build_webui(src, stage / "git", scratch)
        pins["repos"] = {sub.name: build_sub_repo(sub, stage / "git", scratch) for sub in SUB_REPOS}
        pins["wheels"] = build_indexes(stage, src, cache, scratch)
        pins["archives"] = {pkg.env: build_url_package(stage, pkg) for pkg in URL_PACKAGES}
        pins["files"] = build_files(stage)
        (stage / "pins.json").write_text(json.dumps(pins, indent=2, sort_keys=True) + "\n")
        (stage / "bin").mkdir()
        shutil.copyfile(SERVER, stage / "bin" / "mirror_server.py")
        (stage / "bin" / "mirror_server.py").chmod(0o755)
        out.mkdir(exist_ok=True)
        for old in out.iterdir():
            shutil.rmtree(old) if old.is_dir() and not old.is_symlink() else old.unlink()
        for new in sorted(stage.iterdir()):
            new.rename(out / new.name)


def main(argv: list[str] | None = None) -> int:
    """Build when an input changed; otherwise say so and touch nothing."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="fixture directory (e.g. build/fixture)")
    parser.add_argument("--webui-src", type=Path, default=DEFAULT_SRC, help=f"stand-in tree (default {DEFAULT_SRC})")
    parser.add_argument("--wheel-cache", type=Path, default=DEFAULT_WHEEL_CACHE,
                        help=f"where PyPI wheels are kept between builds (default {DEFAULT_WHEEL_CACHE})")
    parser.add_argument("--force", action="store_true", help="rebuild even when the inputs did not change")
    args = parser.parse_args(argv)
    if not args.webui_src.is_dir() or not any(args.webui_src.iterdir()):
        parser.error(f"--webui-src {args.webui_src}: missing or empty; the stand-in webui tree is needed")
    started = time.monotonic()
    stamp_file = args.out / STAMP
    wanted = fingerprint(args.webui_src)
    if (not args.force and stamp_file.is_file() and stamp_file.read_text().strip() == wanted
            and (args.out / "pins.json").is_file()):
        print(f"fixture: {args.out} is up to date ({wanted[:12]})")
        return 0
    try:
        build(args.out.resolve(), args.webui_src.resolve(), args.wheel_cache.resolve())
    except RuntimeError as exc:
        print(f"fixture: {exc}", file=sys.stderr)
        return 1
    stamp_file.write_text(wanted + "\n")
    print(f"fixture: built {args.out} in {time.monotonic() - started:.1f}s ({wanted[:12]})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
