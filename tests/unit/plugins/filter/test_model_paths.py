"""model_paths filters: webui_models_list validation and the placement plan."""
from __future__ import annotations

import pytest

from ansible_collections.sdfleet.toolkit.plugins.filter.model_paths import (FilterModule, model_facts, model_fill_sha256, model_plan,
                                                                        model_problems)

SHA = "a" * 64
URL = "https://example.invalid/models/v1-5.safetensors"


def _one(problems: list[str], *words: str) -> None:
    assert len(problems) == 1, problems
    for word in words:
        assert word in problems[0], problems[0]


def test_valid_list_has_no_problems():
    models = [
        {"name": "sd15", "kind": "checkpoint", "url": URL, "sha256": SHA},
        {"name": "vae", "kind": "vae", "src": "files/vae.pt"},
        {"name": "nfs", "kind": "lora", "shared_path": "/mnt/m/x.safetensors", "link": True},
        {"name": "cn", "path": "../extensions/cn/models", "url": URL, "sha256": "SHA256:" + "B" * 64},
        {"name": "old", "kind": "checkpoint", "filename": "old.ckpt", "state": "absent"},
    ]
    assert model_problems(models[:3]) == []
    _one(model_problems(models[3:4]), "path", "..")
    assert model_problems([models[4]]) == []


def test_url_without_sha256_refused_unless_allowed():
    models = [{"name": "sd15", "kind": "checkpoint", "url": URL}]
    _one(model_problems(models), "webui_models_list[0]", "sd15", "sha256 is required", "webui_models_allow_unverified")
    assert model_problems(models, allow_unverified=True) == []


@pytest.mark.parametrize("item,words", [
    ({"name": "x", "kind": "checkpint", "url": URL, "sha256": SHA}, ["kind 'checkpint'", "checkpoint"]),
    ({"name": "x", "kind": "checkpoint", "filename": "x.ckpt"}, ["exactly one source"]),
    ({"name": "x", "kind": "checkpoint", "url": URL, "src": "a", "sha256": SHA}, ["exactly one source"]),
    ({"name": "x", "kind": "checkpoint", "url": "ftp://h/x.ckpt", "sha256": SHA}, ["not http(s)"]),
    ({"name": "x", "kind": "checkpoint", "url": URL, "sha256": "abc"}, ["64 hex"]),
    ({"name": "x", "kind": "checkpoint", "url": URL, "sha256": SHA, "state": "gone"}, ["state 'gone'"]),
    ({"name": "x", "kind": "checkpoint", "src": "a", "link": True}, ["link: true only"]),
    ({"name": "x", "kind": "checkpoint", "shared_path": "rel/x"}, ["absolute"]),
    ({"name": "x", "kind": "checkpoint", "url": URL, "sha256": SHA, "filename": "a/b"}, ["plain name"]),
    ({"name": "x", "kind": "checkpoint", "url": "https://h/", "sha256": SHA}, ["no file name"]),
    ({"name": "x", "kind": "checkpoint", "path": "X", "url": URL, "sha256": SHA}, ["not both"]),
    ({"name": "x", "kind": "checkpoint", "url": URL, "sha256": SHA, "sha": SHA}, ["unknown keys", "sha"]),
    ({"kind": "checkpoint", "url": URL, "sha256": SHA}, ["'name' is missing"]),
])
def test_bad_items(item, words):
    _one(model_problems([item]), *words)


def test_not_a_list_and_not_a_mapping():
    _one(model_problems({"a": 1}), "must be a list")
    _one(model_problems(["x"]), "mapping")
    assert model_problems(None) == []


def test_duplicate_destination():
    models = [{"name": "a", "kind": "lora", "url": URL, "sha256": SHA},
              {"name": "b", "kind": "lora", "src": "files/v1-5.safetensors"}]
    _one(model_problems(models), "webui_models_list[1]", "same destination", "webui_models_list[0]")


@pytest.mark.parametrize("kind,directory", [
    ("checkpoint", "/m/Stable-diffusion"), ("vae", "/m/VAE"), ("lora", "/m/Lora"),
    ("hypernetwork", "/m/hypernetworks"), ("embedding", "/e"), ("gfpgan", "/m/GFPGAN"),
    ("codeformer", "/m/Codeformer"), ("esrgan", "/m/ESRGAN"), ("controlnet", "/m/ControlNet")])
def test_kind_directories(kind, directory):
    (rec,) = model_plan([{"name": "x", "kind": kind, "url": URL, "sha256": SHA}], "/m/", "/e/")
    assert rec["dir"] == directory and rec["dest"] == directory + "/v1-5.safetensors"


def test_explicit_paths_and_filenames():
    plan = model_plan([{"name": "a", "path": "Lora/styles", "src": "files/x.pt", "filename": "y.pt"},
                       {"name": "b", "path": "/srv/ext/models", "shared_path": "/mnt/z.pth"}], "/m", "/e")
    assert [r["dest"] for r in plan] == ["/m/Lora/styles/y.pt", "/srv/ext/models/z.pth"]
    assert [r["source"] for r in plan] == ["src", "shared_path"]


def test_plan_keys_and_cache_modes():
    item = {"name": "sd15", "kind": "checkpoint", "url": URL, "sha256": "SHA256:" + "C" * 64}
    (ctl,) = model_plan([item], "/m", "/e", "controller")
    assert ctl["sha256"] == ctl["key"] == "c" * 64 and ctl["via_controller"] and ctl["urls"] == [URL]
    (mirror,) = model_plan([item], "/m", "/e", "mirror", "http://mirror.lan/models/")
    assert mirror["urls"] == ["http://mirror.lan/models/v1-5.safetensors", URL] and not mirror["via_controller"]
    (fallback,) = model_plan([item], "/m", "/e", "mirror", "")
    assert fallback["urls"] == [URL]
    (unverified,) = model_plan([{"name": "u", "kind": "vae", "url": URL}], "/m", "/e", "none")
    assert unverified["sha256"] is None and unverified["key"].startswith("unverified-")
    assert model_plan([{"name": "u", "kind": "vae", "url": URL}], "/m", "/e")[0]["key"] == unverified["key"]
    (src,) = model_plan([{"name": "s", "kind": "vae", "src": "f.pt"}], "/m", "/e", "none")
    assert src["via_controller"] and src["urls"] == []


def test_model_facts_from_results():
    (rec,) = model_plan([{"name": "sd15", "kind": "checkpoint", "url": URL, "sha256": SHA}], "/m", "/e")
    done = {"__x": rec, "ansible_loop_var": "__x", "sha256": SHA, "legacy_hash": "1234abcd"}
    pending = {"item": dict(rec, name="later"), "sha256": None, "legacy_hash": None}  # check mode, not there yet
    assert model_facts([done, pending]) == [
        {"name": "sd15", "kind": "checkpoint", "path": "/m/Stable-diffusion/v1-5.safetensors", "sha256": SHA,
         "short_hash": SHA[:10], "legacy_hash": "1234abcd"},
        {"name": "later", "kind": "checkpoint", "path": "/m/Stable-diffusion/v1-5.safetensors", "sha256": SHA,
         "short_hash": SHA[:10], "legacy_hash": None}]


def test_fill_sha256_of_controller_files():
    plan = model_plan([{"name": "a", "kind": "lora", "src": "files/a.pt"},
                       {"name": "b", "kind": "lora", "src": "files/b.pt", "sha256": SHA},
                       {"name": "c", "kind": "vae", "url": URL, "sha256": SHA},
                       {"name": "d", "kind": "vae", "filename": "d.pt", "state": "absent"}], "/m", "/e")
    results = [{"__i": plan[0], "ansible_loop_var": "__i", "sha256": "d" * 64},
               {"__i": plan[1], "ansible_loop_var": "__i", "sha256": SHA}]
    filled = model_fill_sha256(plan, results)
    assert [r["name"] for r in filled] == ["a", "b", "c"]
    assert filled[0]["sha256"] == filled[0]["key"] == "d" * 64
    assert filled[1] == plan[1] and filled[2] == plan[2]


def test_filter_module_exports():
    assert set(FilterModule().filters()) == {"model_problems", "model_plan", "model_facts", "model_fill_sha256"}
