"""Tests of the bundle_adopt module: moves user data into a checkout and never loses a file."""
from __future__ import annotations

import pathlib

import pytest
from module_run import run_module
from refusal_catalog import refused

from ansible_collections.sdfleet.toolkit.plugins.modules import bundle_adopt as ba

def run(tmp_path: pathlib.Path, check: bool = False, **args) -> dict:
    return run_module("bundle_adopt", tmp_path, args, check, timeout=60)


@pytest.fixture
def tree(tmp_path):
    """A bundle and a fresh checkout that share models/ with a placeholder file."""
    src, dest = tmp_path / "bundle", tmp_path / "checkout"
    (src / "models/Stable-diffusion").mkdir(parents=True)
    (src / "models/Stable-diffusion/mine.safetensors").write_bytes(b"weights")
    (src / "models/Stable-diffusion/placeholder.txt").write_text("same\n")
    (src / "models/VAE").mkdir()
    (src / "models/VAE/v.pt").write_bytes(b"vae")
    (src / "outputs/txt2img-images").mkdir(parents=True)
    (src / "outputs/txt2img-images/1.png").write_bytes(b"png")
    (src / "config.json").write_text("{}\n")
    (src / "webui.py").write_text("old code\n")
    (src / "README.md").write_text("bundle readme\n")
    (dest / "models/Stable-diffusion").mkdir(parents=True)
    (dest / "models/Stable-diffusion/placeholder.txt").write_text("same\n")
    (dest / "README.md").write_text("checkout readme\n")
    return src, dest


def test_adopt_moves_user_data_and_keeps_conflicts(tmp_path, tree):
    src, dest = tree
    res = run(tmp_path, src=str(src), dest=str(dest), items=["models", "outputs", "config.json", "README.md",
                                                               "styles.csv"])
    assert res["changed"] is True, res
    assert sorted(res["moved"]) == ["config.json", "models/Stable-diffusion/mine.safetensors", "models/VAE",
                                    "outputs"]
    assert res["kept"] == [{"path": "models/Stable-diffusion/placeholder.txt", "identical": True},
                           {"path": "README.md", "identical": False}]
    assert (dest / "models/Stable-diffusion/mine.safetensors").read_bytes() == b"weights"
    assert (dest / "models/VAE/v.pt").read_bytes() == b"vae"
    assert (dest / "outputs/txt2img-images/1.png").read_bytes() == b"png"
    assert (dest / "config.json").read_text() == "{}\n"
    # the checkout's own file wins; the bundle's differing copy stays in the backup
    assert (dest / "README.md").read_text() == "checkout readme\n"
    assert (src / "README.md").read_text() == "bundle readme\n"
    assert (src / "webui.py").exists() and not (dest / "webui.py").exists()
    again = run(tmp_path, src=str(src), dest=str(dest), items=["models", "outputs", "config.json"])
    assert again["changed"] is False and again["moved"] == []


def test_check_mode_moves_nothing(tmp_path, tree):
    src, dest = tree
    res = run(tmp_path, check=True, src=str(src), dest=str(dest))
    assert res["changed"] is True and "config.json" in res["moved"]
    assert (src / "config.json").exists() and not (dest / "config.json").exists()


def test_no_file_is_lost(tmp_path, tree):
    src, dest = tree
    before = {p.relative_to(src): p.read_bytes() for p in src.rglob("*") if p.is_file()}
    run(tmp_path, src=str(src), dest=str(dest))
    for rel, data in before.items():
        assert (src / rel).exists() or (dest / rel).read_bytes() == data, rel


def test_nested_item_names_are_refused(tmp_path, tree):
    src, dest = tree
    with pytest.raises(ValueError) as err:
        ba.plan(str(src), str(dest), ["../etc"])
    refused("webui_repo", "webui_repo_adopt_items", ["../etc"], str(err.value), expect=["plain name"])
    res = run(tmp_path, src=str(src), dest=str(dest), items=["models/VAE"])
    assert res["failed"]
    refused("webui_repo", "webui_repo_adopt_items", ["models/VAE"], res["msg"], expect=["plain name"])


@pytest.mark.parametrize("items", [[".."], ["."], [""], ["a/b"]])
def test_items_that_are_not_plain_names_are_refused(tmp_path, tree, items):
    src, dest = tree
    res = run(tmp_path, src=str(src), dest=str(dest), items=items)
    assert res["failed"] and not res["moved"]
    refused("webui_repo", "webui_repo_adopt_items", items, res["msg"], expect=["plain name"])


@pytest.mark.parametrize("args,variable", [({"owner": "no-such-user-sdfleet"}, "webui_repo_user"),
                                           ({"group": "no-such-group-sdfleet"}, "webui_repo_group")])
def test_unknown_owner_or_group_is_refused(tmp_path, tree, args, variable):
    src, dest = tree
    res = run(tmp_path, src=str(src), dest=str(dest), **args)
    assert res["failed"] and (src / "config.json").exists()
    refused("webui_repo", variable, args, res["msg"])


def test_missing_src_fails(tmp_path):
    res = run(tmp_path, src=str(tmp_path / "nope"), dest=str(tmp_path))
    assert res["failed"] and "is not a directory" in res["msg"]
