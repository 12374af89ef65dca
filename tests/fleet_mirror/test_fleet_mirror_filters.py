"""The fleet_mirror role's filters (collections/ansible_collections/sdfleet/toolkit/plugins/filter/fleet_mirror.py): what the mirror downloads
(checked against the real webui trees of ../shared/upstream when they are there, and by a real offline pip run for
a source-only package), where it serves URL archives, and what a controller seed copies."""
from __future__ import annotations

import importlib.util
import io
import os
import pathlib
import re
import shutil
import subprocess
import sys
import tarfile

import pytest
from refusal_catalog import refused

ROOT = pathlib.Path(__file__).resolve().parents[2]
UPSTREAM = pathlib.Path(os.environ.get("SDFLEET_UPSTREAM", ROOT.parent / "shared" / "upstream"))
STANDIN = ROOT / "molecule" / "_shared" / "standin_webui"
WHEEL_CACHE = ROOT / "build" / "wheel-cache"

_spec = importlib.util.spec_from_file_location("fleet_mirror_filters",
                                               ROOT / "collections/ansible_collections/sdfleet/toolkit/plugins/filter/fleet_mirror.py")
fm = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(fm)

CLIP = "https://github.com/openai/CLIP/archive/d50d76daa670286dd6cacf3bcd80b5e4823fc8e1.zip"
OPENCLIP = "https://github.com/mlfoundations/open_clip/archive/bb6e834e9c70d9c27d0dc3ecedeebeaeb1ffad6b.zip"


def upstream_member(version: str, name: str) -> str:
    """A file of the real webui tree `version` (skips when ../shared/upstream is not there)."""
    archive = UPSTREAM / f"stable-diffusion-webui-{version}.tar.gz"
    if not archive.is_file():
        pytest.skip(f"{archive} not here (the real trees live in ../shared/upstream)")
    with tarfile.open(archive) as tar:
        for info in tar.getmembers():
            if info.name.removeprefix("./") == name:
                return tar.extractfile(info).read().decode()
    raise AssertionError(f"{archive}: no {name}")


def plan(requirements: str = "six==1.16.0\n", launch_utils: str = "", **kwargs):
    kwargs.setdefault("root", "/srv/m")
    return fm.fleet_mirror_pip_plan(requirements, launch_utils, **kwargs)


# -- the launcher's pins -------------------------------------------------------------------------------------
@pytest.mark.parametrize("version,torch,xformers", [
    ("v1.10.1", ["torch==2.1.2", "torchvision==0.16.2"], "xformers==0.0.23.post1"),
    ("dev", ["torch==2.7.0", "torchvision==0.22.0"], "xformers==0.0.30"),
])
def test_launcher_pins_read_from_the_real_launch_utils(version, torch, xformers):
    pins = fm.fleet_mirror_launcher_pins(upstream_member(version, "modules/launch_utils.py"))
    assert pins == {"torch": torch, "xformers": xformers}


def test_launcher_pins_read_from_the_standin():
    text = (STANDIN / "modules" / "launch_utils.py").read_text(encoding="utf-8")
    assert fm.fleet_mirror_launcher_pins(text)["torch"] == ["torch==2.1.2", "torchvision==0.16.2"]


def test_real_requirements_unpinned_torch_is_held_to_the_version_pins():
    """v1.10.1's requirements_versions.txt has a bare `torch` line: the download is constrained to the launcher's
    torch pins, so pip cannot take the newest torch."""
    reqs = upstream_member("v1.10.1", "requirements_versions.txt")
    p = plan(reqs, upstream_member("v1.10.1", "modules/launch_utils.py"), build_requirements=["setuptools==69.5.1", "wheel"])
    assert "torch" in p["requirements"] and "jsonmerge==1.8.0" in p["requirements"]
    assert "setuptools==69.5.1" in p["requirements"]  # the comment after it is dropped
    assert p["constraints"][:2] == ["torch==2.1.2", "torchvision==0.16.2"]
    assert p["env"] == {"PIP_CONSTRAINT": "/srv/m/.download/simple-constraints.txt"}
    assert "torch==2.1.2\ntorchvision==0.16.2\n" in p["constraints_file"]


def test_inventory_torch_pins_win_over_the_launcher():
    launch = 'os.environ.get("TORCH_COMMAND", f"pip install torch==2.1.2 torchvision==0.16.2 --extra-index-url x")'
    p = plan(launch_utils=launch, torch_packages=["torch==2.3.1", "torchvision==0.18.1"],
             torch_index_urls={"cu121": "https://t/cu121"})
    assert p["torch"] == ["torch==2.3.1", "torchvision==0.18.1"]
    assert p["torch_argv"]["cu121"][-2:] == ["torch==2.3.1", "torchvision==0.18.1"]


def test_unreadable_torch_pins_fail_with_the_variable_to_set():
    with pytest.raises(fm.FleetMirrorError, match="fleet_mirror_torch_packages"):
        plan(launch_utils="# no TORCH_COMMAND here\n")


# -- the pip argv ----------------------------------------------------------------------------------------------
def test_simple_download_takes_source_packages_and_the_archives_deps():
    """The simple/ download allows source distributions (no --only-binary: jsonmerge and antlr4-python3-runtime
    exist only as sdists); the mirrored archives are resolved in a run of their own (open_clip's archive is
    open-clip-torch 2.7.0 while requirements_versions.txt pins 2.20.0: together they are a resolution conflict, as
    seen on the real v1.10.1), the build requirements and the xformers pin are downloaded without dependencies."""
    archive = "/srv/m/openai/CLIP/archive/d50d76daa670286dd6cacf3bcd80b5e4823fc8e1.zip"
    p = plan("jsonmerge==1.8.0\n", "XFORMERS_PACKAGE', 'xformers==0.0.23.post1')",
             build_requirements=["setuptools==69.5.1", "wheel"], archives=[archive],
             index_url="http://up:8080/simple/", trusted_hosts=["up"], torch_packages=["torch==2.1.2"],
             torch_index_urls={"cu121": "http://up:8080/torch/cu121/", "cpu": "http://up:8080/torch/cpu/"})
    full, archives, no_deps = p["simple"]
    for argv in p["simple"]:
        assert not any(a.startswith("--only-binary") for a in argv), argv
        assert "--index-url=http://up:8080/simple/" in argv and "--trusted-host=up" in argv
        assert argv[argv.index("--dest") + 1] == "/srv/m/.download/simple"
    assert full[full.index("-r") + 1] == "/srv/m/.download/simple-requirements.txt"
    assert p["requirements"] == ["jsonmerge==1.8.0"]
    assert archives[-1] == archive and "-r" not in archives and "--no-deps" not in archives
    assert "--no-deps" in no_deps and no_deps[-3:] == ["setuptools==69.5.1", "wheel", "xformers==0.0.23.post1"]
    assert p["skip"] == ["d50d76daa670286dd6cacf3bcd80b5e4823fc8e1.zip"]
    for variant in ("cu121", "cpu"):
        argv = p["torch_argv"][variant]
        assert "--only-binary=:all:" in argv and "--no-deps" in argv
        assert f"--index-url=http://up:8080/torch/{variant}/" in argv
        assert argv[argv.index("--dest") + 1] == f"/srv/m/.download/torch-{variant}"


def _sdist(dest: pathlib.Path, name: str, version: str) -> None:
    """A source-only package (setup.py, as jsonmerge 1.8.0's): `<name>-<version>.tar.gz`."""
    files = {"setup.py": f"from setuptools import setup\nsetup(name={name!r}, version={version!r}, py_modules=[{name!r}])\n",
             f"{name}.py": "VALUE = 1\n",
             "PKG-INFO": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"}
    with tarfile.open(dest / f"{name}-{version}.tar.gz", "w:gz") as tar:
        for path, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(f"{name}-{version}/{path}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def test_simple_download_fetches_an_sdist_only_requirement(tmp_path):
    """The plan's own argv, run by pip against a local index that has the package as a source distribution only
    (and the build requirements): the sdist is downloaded. With --only-binary=:all: (the old command) pip finds
    nothing."""
    wheels = {n: sorted(WHEEL_CACHE.glob(f"{n}-*.whl")) for n in ("setuptools", "wheel")}
    if not all(wheels.values()):
        pytest.skip(f"no setuptools/wheel wheels in {WHEEL_CACHE} (make fixture downloads them)")
    index = tmp_path / "index"
    for name, files in wheels.items():
        (index / name).mkdir(parents=True)
        shutil.copy(files[-1], index / name)
    (index / "sdonly").mkdir()
    _sdist(index / "sdonly", "sdonly", "1.8.0")
    for project in index.iterdir():  # pip reads a file:// index's project pages from index.html
        links = "".join(f'<a href="{f.name}">{f.name}</a>\n' for f in sorted(project.iterdir()))
        (project / "index.html").write_text(f"<!DOCTYPE html><html><body>\n{links}</body></html>\n")
    root = tmp_path / "mirror"
    (root / ".download").mkdir(parents=True)
    setuptools_pin = "setuptools==" + wheels["setuptools"][-1].name.split("-")[1]
    p = plan("sdonly==1.8.0  # source only\n", root=str(root), index_url=index.as_uri() + "/",
             build_requirements=[setuptools_pin, "wheel"], torch_packages=["torch==2.1.2"])
    (root / ".download" / "simple-requirements.txt").write_text(p["requirements_file"])
    (root / ".download" / "simple-constraints.txt").write_text(p["constraints_file"])
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    env.update(PIP_CONFIG_FILE=os.devnull, PIP_NO_CACHE_DIR="1", **p["env"])
    for argv in p["simple"]:
        out = subprocess.run([sys.executable, *argv[1:]], env=env, capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, out.stderr[-3000:]
    got = sorted(f.name for f in (root / ".download" / "simple").iterdir())
    assert "sdonly-1.8.0.tar.gz" in got, got
    assert any(n.startswith("setuptools-") for n in got) and any(n.startswith("wheel-") for n in got), got
    old = [sys.executable, *p["simple"][0][1:], "--only-binary=:all:", "--dest", str(tmp_path / "old")]
    assert subprocess.run(old, env=env, capture_output=True, text=True, timeout=300).returncode != 0


# -- URL archives ----------------------------------------------------------------------------------------------
def test_url_archives_are_served_at_their_url_path():
    assert fm.fleet_mirror_url_path(CLIP) == "openai/CLIP/archive/d50d76daa670286dd6cacf3bcd80b5e4823fc8e1.zip"
    assert fm.fleet_mirror_url_path(OPENCLIP).startswith("mlfoundations/open_clip/archive/")


@pytest.mark.parametrize("url", ["https://example.com/", "https://example.com/a/../b.zip",
                                 "https://example.com/simple/x.zip", "https://example.com/files/m.zip"])
def test_url_archives_that_cannot_be_served_are_refused(url):
    with pytest.raises(fm.FleetMirrorError, match="fleet_mirror_url_packages"):
        fm.fleet_mirror_url_path(url)


def test_sums_read_a_sha256sum_file():
    text = f"{'a' * 64}  openai/CLIP/archive/x.zip\nnot a line\n{'b' * 64}  *y.zip\n"
    assert fm.fleet_mirror_sums(text) == {"openai/CLIP/archive/x.zip": "a" * 64, "y.zip": "b" * 64}


# -- controller seed -------------------------------------------------------------------------------------------
CONTROLLER = "git/w.git/HEAD\t23\t100.0\nsimple/six/six.whl\t11\t200.0\nfiles/m.bin\t5\t300.0\n"


def test_seed_plan_unchanged_tree_copies_nothing():
    mirror = "git/w.git/HEAD\t23\nsimple/six/six.whl\t11\nfiles/m.bin\t5\nfiles/extra\t1\n"
    assert fm.fleet_mirror_seed_plan(CONTROLLER, mirror, CONTROLLER) == {"files": []}


def test_seed_plan_copies_new_changed_missing_and_unrecorded_files():
    controller = CONTROLLER.replace("300.0", "301.0") + "torch/cpu/t.whl\t9\t400.0\n"
    mirror = "git/w.git/HEAD\t23\nsimple/six/six.whl\t12\n"
    assert fm.fleet_mirror_seed_plan(controller, mirror, CONTROLLER)["files"] == \
        ["files/m.bin", "simple/six/six.whl", "torch/cpu/t.whl"]
    # no record (first controller seed over an existing tree): everything goes through the copy's own checksums
    assert len(fm.fleet_mirror_seed_plan(CONTROLLER, mirror, "")["files"]) == 3


# -- models: stored by sha256, entries refused by name ----------------------------------------------------------
SHA_A, SHA_B = "a" * 64, "b" * 64


def mvar(index, key: str = "") -> str:
    suffix = (f"[{index}]" if index is not None else "") + (f".{key}" if key else "")
    return f"sdfleet_model_list{suffix} (fleet_mirror_models{suffix})"


def test_models_are_stored_by_sha256_without_name_collisions():
    models = [{"name": "a", "url": "https://one.invalid/x/model.safetensors", "sha256": SHA_A},
              {"name": "b", "url": "https://two.invalid/y/model.safetensors", "sha256": "SHA256:" + SHA_B.upper(),
               "filename": "renamed.safetensors"},
              {"name": "a-again", "url": "https://three.invalid/model.safetensors", "sha256": SHA_A},
              {"name": "unverified", "url": "https://h/u.pt"},
              {"name": "gone", "url": "https://h/g.pt", "sha256": SHA_B, "state": "absent"},
              {"name": "local", "src": "files/l.pt"}]
    recs = fm.fleet_mirror_models(models)
    assert [(r["name"], r["path"], r["index"]) for r in recs] == [
        ("a", f"files/sha256/{SHA_A}", 0), ("b", f"files/sha256/{SHA_B}", 1)]


def test_model_records_never_carry_credentials():
    (rec,) = fm.fleet_mirror_models([{"name": "gated", "url": "https://user:hf_s3cret@hub.invalid/m.pt",
                                      "sha256": SHA_A}])
    assert "hf_s3cret" not in repr(rec) and rec["url"] == "https://***@hub.invalid/m.pt"
    assert rec["path"] == f"files/sha256/{SHA_A}"


@pytest.mark.parametrize("key,value,words", [
    ("url", ["https://h/a.pt"], ["not a string"]),
    ("url", 5, ["not a string"]),
    ("url", "ftp://h/a.pt", ["not http(s)"]),
    ("url", "ftp://user:s3cret@h/a.pt", ["not http(s)", "***@h"]),
    ("sha256", 123, ["not a string"]),
    ("sha256", "abc", ["64 hex"]),
    ("sha256", "z" * 64, ["64 hex"]),
    ("name", ["n"], ["not a string"]),
    ("state", "maybe", ["present or absent"]),
    ("state", True, ["not a string"]),
])
def test_bad_model_entries_refused(key, value, words):
    item = dict({"name": "m", "url": "https://h/m.pt", "sha256": SHA_A}, **{key: value})
    msg = refused("fleet_mirror", mvar(0, key), item, fm.fleet_mirror_model_problems([item]), expect=words)
    assert "s3cret" not in msg
    with pytest.raises(fm.FleetMirrorError, match=re.escape(mvar(0, key))):
        fm.fleet_mirror_models([item])


@pytest.mark.parametrize("models", [{"a": 1}, "https://h/m.pt"])
def test_model_list_not_a_list_refused(models):
    refused("fleet_mirror", "sdfleet_model_list (fleet_mirror_models)", models, fm.fleet_mirror_model_problems(models),
            expect=["not a list"])


@pytest.mark.parametrize("entry", ["https://h/m.pt", 7])
def test_model_entry_not_a_mapping_refused(entry):
    refused("fleet_mirror", mvar(0), [entry], fm.fleet_mirror_model_problems([entry]), expect=["not a mapping"])


def test_git_entries_name_the_webuis_repositories_by_basename_and_extensions_by_their_path():
    repos = [["http://u/AUTOMATIC1111/stable-diffusion-webui.git", "https://github.com/a/stable-diffusion-webui.git"],
             ["http://u/crowsonkb/k-diffusion.git/"]]
    extensions = [{"path": "extensions/sd-dynamic-prompts.git", "version": "v2.9.1",
                   "sources": ["https://github.com/adieyal/sd-dynamic-prompts.git"]}]
    assert fm.fleet_mirror_git_entries(repos, extensions) == [
        {"path": "stable-diffusion-webui.git", "sources": repos[0]},
        {"path": "k-diffusion.git", "sources": repos[1]},
        {"path": "extensions/sd-dynamic-prompts.git", "sources": extensions[0]["sources"]}]
    assert fm.fleet_mirror_git_entries([], None) == []
