"""model_paths filters: webui_models_list validation (every refusal through the catalogue) and the placement plan."""
from __future__ import annotations

import pytest
from refusal_catalog import refused

from ansible_collections.sdfleet.toolkit.plugins.filter.model_paths import (FilterModule, model_facts, model_fill_sha256,
                                                                        model_plan, model_problems, model_urls)

SHA = "a" * 64
URL = "https://example.invalid/models/v1-5.safetensors"
M, E, P = "/opt/sd-webui/models", "/opt/sd-webui/embeddings", "/opt/sd-webui/models/.sdfleet-partial"


def var(index, key: str = "") -> str:
    """The name a refusal gives an entry: the inventory's first, then the role's."""
    suffix = (f"[{index}]" if index is not None else "") + (f".{key}" if key else "")
    return f"sdfleet_model_list{suffix} (webui_models_list{suffix})"


def ok(**extra) -> dict:
    return dict({"name": "x", "kind": "checkpoint", "url": URL, "sha256": SHA}, **extra)


def problems(models, **kwargs) -> list[str]:
    kwargs.setdefault("partial_dir", P)
    return model_problems(models, kwargs.pop("allow_unverified", False), M, E, **kwargs)


def test_valid_list_has_no_problems():
    models = [
        {"name": "sd15", "kind": "checkpoint", "url": URL, "sha256": SHA, "size": 4265146304},
        {"name": "vae", "kind": "vae", "src": "files/vae.pt"},
        {"name": "nfs", "kind": "lora", "shared_path": "/mnt/m/x.safetensors", "link": True},
        {"name": "in-tree", "path": f"{M}/Lora/styles", "url": URL, "sha256": "SHA256:" + "B" * 64},
        {"name": "emb-sub", "path": "../embeddings/styles", "url": URL, "sha256": SHA},  # '..' that stays inside
        {"name": "old", "kind": "checkpoint", "filename": "old.ckpt", "state": "absent"},
    ]
    assert problems(models) == []


def test_url_without_sha256_refused_unless_allowed():
    models = [{"name": "sd15", "kind": "checkpoint", "url": URL}]
    refused("webui_models", var(0, "sha256"), models[0], problems(models),
            expect=["sd15", "sha256 is required", "webui_models_allow_unverified"])
    assert problems(models, allow_unverified=True) == []


# -- 1. destinations stay inside the models tree -------------------------------------------------------------
@pytest.mark.parametrize("path", [
    "/etc", "/", "/root/.ssh", "/opt/sd-webui", "/opt/sd-webui/models-evil/x", "/opt/sd-webui/embeddingsX",
    "../../etc", "Lora/../../..", "../extensions/cn/models", "/opt/sd-webui/models/../webui", "./../../../etc/cron.d",
    "//etc", "/opt/sd-webui/models/Lora/../../../etc",
])
def test_path_leaving_the_models_tree_refused(path):
    item = ok(kind=None, path=path)
    del item["kind"]
    refused("webui_models", var(0, "path"), item, problems([item]), expect=[repr(path), "models tree"])


@pytest.mark.parametrize("path,words", [
    ("", "empty"), ("a\0b", "NUL"), (".sdfleet-partial/x", "partial"), (f"{P}", "partial"),
])
def test_path_empty_nul_or_private_refused(path, words):
    item = {"name": "x", "path": path, "url": URL, "sha256": SHA}
    refused("webui_models", var(0, "path"), item, problems([item]), expect=[words])


def test_path_refusal_comes_before_any_change_and_names_both_variables():
    (msg,) = problems([{"name": "etc", "path": "/etc", "url": URL, "sha256": SHA}])
    assert msg.startswith("sdfleet_model_list[0].path (webui_models_list[0].path) = '/etc'") and "'/etc'" in msg


@pytest.mark.parametrize("var_name,value", [("webui_models_dir", "models"), ("webui_models_dir", "/"),
                                            ("webui_models_embeddings_dir", "")])
def test_relative_or_root_trees_refused(var_name, value):
    dirs = {"webui_models_dir": M, "webui_models_embeddings_dir": E, var_name: value}
    got = model_problems([ok()], False, dirs["webui_models_dir"], dirs["webui_models_embeddings_dir"])
    refused("webui_models", var_name, value, got, expect=["absolute"])


# -- 4. one destination per model, however spelled ------------------------------------------------------------
@pytest.mark.parametrize("first,second", [
    ({"kind": "lora"}, {"path": "Lora"}),
    ({"kind": "lora"}, {"path": "Lora/"}),
    ({"kind": "lora"}, {"path": "./Lora"}),
    ({"kind": "lora"}, {"path": "Lora//."}),
    ({"kind": "lora"}, {"path": f"{M}/Lora"}),
    ({"kind": "lora"}, {"path": "VAE/../Lora"}),
    ({"kind": "embedding"}, {"path": E}),
    ({"kind": "embedding"}, {"path": "../embeddings/"}),
    ({"path": "Lora/styles"}, {"path": f"{M}/Lora/./styles/"}),
    ({"kind": "checkpoint"}, {"kind": "checkpoint"}),
])
def test_duplicate_destination_refused(first, second):
    models = [dict({"name": "a", "url": URL, "sha256": SHA}, **first),
              dict({"name": "b", "src": "files/v1-5.safetensors"}, **second)]
    refused("webui_models", var(1), models, problems(models), expect=["same destination", var(0)])


def test_case_is_significant_and_distinct_names_are_fine():
    models = [{"name": "a", "kind": "lora", "url": URL, "sha256": SHA},
              {"name": "b", "path": "lora", "url": URL, "sha256": SHA},
              {"name": "c", "kind": "lora", "url": URL, "sha256": SHA, "filename": "V1-5.safetensors"}]
    assert problems(models) == []


# -- 8. size --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("size", [0, -1, "10", "1G", 1.5, True, None, [1]])
def test_bad_size_refused(size):
    item = ok(size=size)
    refused("webui_models", var(0, "size"), item, problems([item]), expect=["size", "bytes"])


def test_size_in_the_plan():
    (rec,) = model_plan([ok(size=123)], M, E)
    assert rec["size"] == 123


# -- 9. wrong types and values: each names the key and the fix -----------------------------------------------
@pytest.mark.parametrize("key,value,words", [
    ("kind", ["x"], ["is a list", "not a string"]),
    ("kind", 5, ["an integer"]),
    ("kind", {"a": 1}, ["a mapping"]),
    ("sha256", 123, ["an integer", "quote"]),
    ("sha256", True, ["a boolean"]),
    ("sha256", ["a" * 64], ["a list"]),
    ("url", ["http://a/b.pt"], ["a list"]),
    ("url", 42, ["an integer"]),
    ("name", 5, ["an integer"]),
    ("name", ["a"], ["a list"]),
    ("filename", 7, ["an integer"]),
    ("state", True, ["a boolean"]),
    ("state", 1, ["an integer"]),
    ("src", 5, ["an integer"]),
    ("shared_path", ["/a"], ["a list"]),
    ("path", 5, ["an integer"]),
    ("path", ["Lora"], ["a list"]),
    ("link", "yes", ["not a boolean"]),
    ("link", 1, ["not a boolean"]),
    ("kind", "checkpint", ["'checkpint'", "checkpoint"]),
    ("state", "maybe", ["'maybe'", "present"]),
    ("state", "gone", ["'gone'"]),
    ("sha256", "abc", ["64 hex"]),
    ("sha256", "g" * 64, ["64 hex"]),
    ("url", "ftp://h/x.ckpt", ["not http(s)"]),
    ("url", "file:///etc/passwd", ["not http(s)"]),
    ("filename", "a/b", ["plain file name"]),
    ("filename", ".hidden.pt", ["plain file name"]),
    ("filename", "x.pt.sdfleet-replaced-abc", ["plain file name"]),
    ("sources", "http://h/x.pt", ["not a model key", "url"]),
    ("sha", SHA, ["not a model key", "sha256"]),
])
def test_bad_key_refused(key, value, words):
    item = ok(**{key: value})
    if key in ("path",):
        del item["kind"]
    refused("webui_models", var(0, key), item, problems([item]), expect=words)


@pytest.mark.parametrize("item,key,words", [
    ({"kind": "checkpoint", "url": URL, "sha256": SHA}, "name", ["missing"]),
    ({"name": "x", "kind": "checkpoint", "shared_path": "rel/x"}, "shared_path", ["not absolute"]),
    ({"name": "x", "kind": "checkpoint", "src": "a", "link": True}, "link", ["only applies"]),
    ({"name": "x", "kind": "checkpoint", "path": "X", "url": URL, "sha256": SHA}, "kind", ["both"]),
    ({"name": "x", "kind": "checkpoint", "url": "https://h/", "sha256": SHA}, "filename", ["no file name"]),
])
def test_bad_item_refused(item, key, words):
    refused("webui_models", var(0, key), item, problems([item]), expect=words)


@pytest.mark.parametrize("item,words", [
    ({"name": "x", "kind": "checkpoint", "filename": "x.ckpt"}, ["exactly one source", "none"]),
    ({"name": "x", "kind": "checkpoint", "url": URL, "src": "a", "sha256": SHA}, ["exactly one source"]),
    ({"name": "x", "kind": "checkpoint", "src": "a", "shared_path": "/b", "state": "absent"}, ["more than one"]),
])
def test_source_count_refused(item, words):
    refused("webui_models", var(0), item, problems([item]), expect=words)


@pytest.mark.parametrize("models", [{"a": 1}, "http://h/x.pt", 5])
def test_list_not_a_list_refused(models):
    refused("webui_models", "sdfleet_model_list (webui_models_list)", models, problems(models),
            expect=["not a list", "YAML list"])


@pytest.mark.parametrize("entry", ["x", 5, ["name", "x"], None])
def test_entry_not_a_mapping_refused(entry):
    refused("webui_models", var(0), [entry], problems([entry]), expect=["not a mapping"])


def test_wrong_types_never_raise_and_all_problems_are_listed():
    item = {"name": "a", "kind": ["x"], "url": "https://h/a.pt", "sha256": 123, "sources": "http://x", "state": "maybe"}
    got = problems([item])
    assert [m.split(" ")[0] for m in got] == ["sdfleet_model_list[0].kind", "sdfleet_model_list[0].sha256",
                                                "sdfleet_model_list[0].sources", "sdfleet_model_list[0].state"], got
    assert problems(None) == []


# -- 7. credentials never reach a message or a record ---------------------------------------------------------
@pytest.mark.parametrize("url,key", [("ftp://user:s3cret-token@h/x.pt", "url"), ("https://s3cret-token@h/x.pt", "sha256")])
def test_credentials_masked_in_refusals(url, key):
    item = ok(url=url)
    if key == "sha256":
        del item["sha256"]
    msg = refused("webui_models", var(0, key), item, problems([item]), expect=["***@h"])
    assert "s3cret-token" not in msg


def test_credentials_never_in_the_plan_and_model_urls_gives_them_back():
    secret = "https://user:s3cret@hub.invalid/m/v1-5.safetensors"
    models = [ok(url=secret)]
    (rec,) = model_plan(models, M, E, "mirror", "http://mirror:8080/files", host="h1")
    assert "s3cret" not in repr(rec)
    assert rec["url"] == "https://***@hub.invalid/m/v1-5.safetensors"
    assert model_urls(rec, models) == [f"http://mirror:8080/files/sha256/{SHA}", secret]
    # planned on another host (controller cache): found by its masked URL in any list
    assert model_urls(dict(rec, index=5), [], [ok(url="https://other/x.pt"), ok(url=secret)])[-1] == secret
    with pytest.raises(ValueError, match="no entry"):
        model_urls(rec, [ok()])


@pytest.mark.parametrize("kind,directory", [
    ("checkpoint", "/m/Stable-diffusion"), ("vae", "/m/VAE"), ("lora", "/m/Lora"),
    ("hypernetwork", "/m/hypernetworks"), ("embedding", "/e"), ("gfpgan", "/m/GFPGAN"),
    ("codeformer", "/m/Codeformer"), ("esrgan", "/m/ESRGAN"), ("controlnet", "/m/ControlNet")])
def test_kind_directories(kind, directory):
    (rec,) = model_plan([{"name": "x", "kind": kind, "url": URL, "sha256": SHA}], "/m/", "/e/")
    assert rec["dir"] == directory and rec["dest"] == directory + "/v1-5.safetensors"
    assert rec["tree"] == ("/e" if kind == "embedding" else "/m")


def test_explicit_paths_and_filenames():
    plan = model_plan([{"name": "a", "path": "Lora/styles/", "src": "files/x.pt", "filename": "y.pt"},
                       {"name": "b", "path": "/m/ext/./models", "shared_path": "/mnt/z.pth"},
                       {"name": "c", "path": "../e/sub", "shared_path": "/mnt/c.pt"}], "/m", "/e")
    assert [r["dest"] for r in plan] == ["/m/Lora/styles/y.pt", "/m/ext/models/z.pth", "/e/sub/c.pt"]
    assert [r["tree"] for r in plan] == ["/m", "/m", "/e"]
    assert [r["source"] for r in plan] == ["src", "shared_path", "shared_path"]


def test_plan_keys_and_cache_modes():
    item = {"name": "sd15", "kind": "checkpoint", "url": URL, "sha256": "SHA256:" + "C" * 64, "filename": "x.pt"}
    (ctl,) = model_plan([item], "/m", "/e", "controller")
    assert ctl["sha256"] == ctl["key"] == "c" * 64 and ctl["via_controller"] and ctl["urls"] == [URL]
    # 5. the mirror stores files by sha256: a filename override still uses it, two names never collide
    (mirror,) = model_plan([item], "/m", "/e", "mirror", "http://mirror.lan/files/")
    assert mirror["urls"] == [f"http://mirror.lan/files/sha256/{'c' * 64}", URL] and not mirror["via_controller"]
    (fallback,) = model_plan([item], "/m", "/e", "mirror", "")
    assert fallback["urls"] == [URL]
    # several mirrors: each one's copy in turn, then upstream; none up (an empty list) is upstream alone
    (two,) = model_plan([item], "/m", "/e", "mirror", ["http://m-a/files", "http://m-b/files/"])
    assert two["urls"] == [f"http://m-a/files/sha256/{'c' * 64}", f"http://m-b/files/sha256/{'c' * 64}", URL]
    assert model_urls(two, [item]) == two["urls"]
    assert model_plan([item], "/m", "/e", "mirror", [])[0]["urls"] == [URL]
    (unverified,) = model_plan([{"name": "u", "kind": "vae", "url": URL}], "/m", "/e", "mirror", "http://m/files")
    assert unverified["sha256"] is None and unverified["key"].startswith("unverified-")
    assert unverified["urls"] == [URL]  # the mirror cannot hold a file it could not verify
    assert model_plan([{"name": "u", "kind": "vae", "url": URL}], "/m", "/e")[0]["key"] == unverified["key"]
    (src,) = model_plan([{"name": "s", "kind": "vae", "src": "f.pt"}], "/m", "/e", "none")
    assert src["via_controller"] and src["urls"] == []


def test_model_facts_from_results():
    (rec,) = model_plan([{"name": "sd15", "kind": "checkpoint", "url": URL, "sha256": SHA}], "/m", "/e")
    aside = "/m/Stable-diffusion/v1-5.safetensors.sdfleet-replaced-0123456789ab"
    done = {"__x": rec, "ansible_loop_var": "__x", "sha256": SHA, "legacy_hash": "1234abcd", "set_aside": [aside]}
    pending = {"item": dict(rec, name="later"), "sha256": None, "legacy_hash": None}  # check mode, not there yet
    assert model_facts([done, pending]) == [
        {"name": "sd15", "kind": "checkpoint", "path": "/m/Stable-diffusion/v1-5.safetensors", "sha256": SHA,
         "short_hash": SHA[:10], "legacy_hash": "1234abcd", "set_aside": [aside]},
        {"name": "later", "kind": "checkpoint", "path": "/m/Stable-diffusion/v1-5.safetensors", "sha256": SHA,
         "short_hash": SHA[:10], "legacy_hash": None, "set_aside": []}]


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
    assert set(FilterModule().filters()) == {"model_problems", "model_plan", "model_facts", "model_fill_sha256",
                                             "model_urls"}
