"""Unit tests for the pinned webui extensions' rules (plugins/filter/extensions.py)."""
from __future__ import annotations

import pytest
from refusal_catalog import refused

from ansible_collections.sdfleet.toolkit.plugins.filter import extensions as mod

DP = {"name": "sd-dynamic-prompts", "sources": ["https://github.com/adieyal/sd-dynamic-prompts.git"],
      "version": "v2.9.1"}
ZH = {"name": "stable-diffusion-webui-localization-zh_CN",
      "sources": ["https://github.com/dtlnor/stable-diffusion-webui-localization-zh_CN.git"],
      "version": "6b6934002bdbb28d6d512f51b91e9fc424b51b2a"}
PF = "sdfleet_webui_extensions (preflight_webui_extensions)"


@pytest.mark.parametrize("extensions", [
    [],
    None,
    [DP, ZH],
    [dict(DP, state="disabled"), dict(ZH, state="absent")],
    [dict(DP, sources=["git@github.com:adieyal/sd-dynamic-prompts.git", "ssh://git@mirror.lan/sd.git",
                       "file:///srv/git/sd-dynamic-prompts.git", "http://mirror.lan:8080/git/x.git"])],
    [dict(DP, name="a1111-sd-webui-tagcomplete"), dict(DP, name="sd_webui.controlnet-v2")],
])
def test_accepted_entries(extensions):
    assert mod.webui_extensions_problems(extensions) == []


@pytest.mark.parametrize("name,why", [
    ("../../etc", "not a plain directory name"),
    ("sd/dynamic", "not a plain directory name"),
    ("..", "not a plain directory name"),
    ("a..b", "not a plain directory name"),
    (".hidden", "not a plain directory name"),
    ("-rf", "not a plain directory name"),
    ("two words", "not a plain directory name"),
    ("x" * 101, "not a plain directory name"),
    ("", "give the directory name"),
    (None, "give the directory name"),
    (7, "give the directory name"),
])
def test_bad_names_are_refused(name, why):
    problems = mod.webui_extensions_problems([dict(DP, name=name)], variable=PF)
    refused("preflight", "sdfleet_webui_extensions[0].name", {"name": name}, problems, expect=why)


@pytest.mark.parametrize("second", ["sd-dynamic-prompts", "SD-Dynamic-Prompts"])
def test_two_entries_with_one_name_are_refused(second):
    problems = mod.webui_extensions_problems([DP, ZH, dict(DP, name=second, version="v2.9.0")], variable=PF)
    msg = refused("preflight", "sdfleet_webui_extensions[2].name", [DP["name"], second], problems,
                  expect=["sdfleet_webui_extensions[0]", "one entry per extension"])
    assert len(problems) == 1, problems
    assert "(preflight_webui_extensions)" in msg


@pytest.mark.parametrize("url", [
    "https://ci:s3cr3t-token@git.example.org/sd/sd-dynamic-prompts.git",
    "https://oauth2:s3cr3t-token@github.com/adieyal/sd-dynamic-prompts.git",
    "ssh://deploy:s3cr3t-token@git.example.org/sd.git",
])
def test_a_source_with_credentials_is_refused_and_redacted(url):
    problems = mod.webui_extensions_problems([dict(DP, sources=[DP["sources"][0], url])], variable=PF)
    msg = refused("preflight", "sdfleet_webui_extensions[0].sources[1]", url, problems,
                  expect=["holds credentials", "***@"])
    assert "s3cr3t-token" not in " ".join(problems)
    assert "Extensions tab" in msg


@pytest.mark.parametrize("sources,why", [
    ([], "not a non-empty list"),
    ("https://github.com/adieyal/sd-dynamic-prompts.git", "not a non-empty list"),
    ("https://u:s3cr3t-token@github.com/x.git", "not a non-empty list"),
    (None, "not a non-empty list"),
    (["github.com/adieyal/sd-dynamic-prompts"], "not a git URL"),
    (["ftp://mirror.lan/sd.git"], "not a git URL"),
    ([""], "not a git URL"),
    ([42], "not a git URL"),
])
def test_bad_sources_are_refused(sources, why):
    problems = mod.webui_extensions_problems([dict(DP, sources=sources)], variable=PF)
    variable = "sdfleet_webui_extensions[0].sources" + ("[0]" if why == "not a git URL" else "")
    refused("preflight", variable, {"sources": sources}, problems, expect=why)
    assert "s3cr3t-token" not in " ".join(problems)


@pytest.mark.parametrize("version,why", [
    (2.9, "quote it"),
    (291, "quote it"),
    ("", "not a tag or commit"),
    (None, "not a tag or commit"),
    (True, "not a tag or commit"),
    ("v2..9", "not a git tag, branch or commit name"),
    ("--upload-pack=touch /tmp/x", "not a git tag, branch or commit name"),
    ("v2.9.1 ", "not a git tag, branch or commit name"),
    ("main.lock", "not a git tag, branch or commit name"),
])
def test_bad_versions_are_refused(version, why):
    problems = mod.webui_extensions_problems([dict(DP, version=version)], variable=PF)
    refused("preflight", "sdfleet_webui_extensions[0].version", {"version": version}, problems, expect=why)


@pytest.mark.parametrize("state", ["enabled", "removed", True, ""])
def test_bad_states_are_refused(state):
    problems = mod.webui_extensions_problems([dict(DP, state=state)], variable=PF)
    refused("preflight", "sdfleet_webui_extensions[0].state", {"state": state}, problems,
            expect="present, disabled")


@pytest.mark.parametrize("entry", [
    "sd-dynamic-prompts",
    ["https://github.com/adieyal/sd-dynamic-prompts.git"],
    dict(DP, branch="main"),
    dict(DP, souces=DP["sources"]),
])
def test_entries_that_are_not_mappings_or_misspelt_are_refused(entry):
    problems = mod.webui_extensions_problems([entry], variable=PF)
    refused("preflight", "sdfleet_webui_extensions[0]", entry, problems,
            expect="not a mapping" if not isinstance(entry, dict) else "unknown keys")


@pytest.mark.parametrize("extensions", ["sd-dynamic-prompts", {"name": "x"}, 3])
def test_a_list_that_is_not_a_list_is_refused(extensions):
    problems = mod.webui_extensions_problems(extensions, variable=PF)
    refused("preflight", PF, extensions, problems, expect="not a list")


@pytest.mark.parametrize("localization", ["../zh_CN", "zh_CN.json/..", "zh CN", 5])
def test_bad_localizations_are_refused(localization):
    problems = mod.webui_extensions_problems([], localization=localization,
                                             localization_variable="sdfleet_localization (preflight_localization)")
    refused("preflight", "sdfleet_localization (preflight_localization)", {"localization": localization}, problems,
            expect="localizations/<name>.json")


@pytest.mark.parametrize("localization", ["", None, "None", "zh_CN", "zh_TW", "ja_JP", "pt-BR"])
def test_accepted_localizations(localization):
    assert mod.webui_extensions_problems([], localization=localization) == []


def test_messages_name_the_role_variable_in_a_role():
    problems = mod.webui_extensions_problems([dict(DP, name="a/b")],
                                             variable="sdfleet_webui_extensions (webui_repo_extensions)")
    refused("webui_repo", "sdfleet_webui_extensions[0].name", {"name": "a/b"}, problems,
            expect="(webui_repo_extensions[0].name)")


# --- what the roles do with accepted entries ------------------------------------------------------------------

def test_the_mirror_copy_comes_first_and_defaults_are_filled_in():
    out = mod.webui_extensions_mirror_first([DP, dict(ZH, state="disabled")], ["http://mirror.lan:8080/git/"])
    assert out == [
        {"name": DP["name"], "version": "v2.9.1", "state": "present",
         "sources": ["http://mirror.lan:8080/git/extensions/sd-dynamic-prompts.git", DP["sources"][0]]},
        {"name": ZH["name"], "version": ZH["version"], "state": "disabled",
         "sources": [f"http://mirror.lan:8080/git/extensions/{ZH['name']}.git", ZH["sources"][0]]},
    ]
    # Without a mirror the sources stay as given; the output is valid input again (the role re-checks it).
    assert mod.webui_extensions_mirror_first([DP], [])[0]["sources"] == DP["sources"]
    assert mod.webui_extensions_problems(out) == []
    # Several mirrors serving the host: each one's copy in turn, then the entry's own sources.
    two = mod.webui_extensions_mirror_first([DP], ["http://m-a:8080/git/", "http://m-b:8080/git"])[0]["sources"]
    assert two == ["http://m-a:8080/git/extensions/sd-dynamic-prompts.git",
                   "http://m-b:8080/git/extensions/sd-dynamic-prompts.git", DP["sources"][0]]


def test_the_plan_gives_each_entry_its_index_and_checkout_dir():
    plan = mod.webui_extensions_plan([DP, dict(ZH, state="absent")], "/opt/sd-webui/extensions/")
    assert [(p["index"], p["dest"], p["state"]) for p in plan] == [
        (0, "/opt/sd-webui/extensions/sd-dynamic-prompts", "present"),
        (1, f"/opt/sd-webui/extensions/{ZH['name']}", "absent")]


def test_the_plan_refuses_what_the_preflight_refuses():
    with pytest.raises(Exception, match=r"sdfleet_webui_extensions\[1\]\.name"):
        mod.webui_extensions_plan([DP, dict(DP)], "/opt/sd-webui/extensions")


def test_the_mirror_clones_only_what_a_host_keeps():
    repos = mod.webui_extensions_mirror_repos([DP, dict(ZH, state="absent"), dict(ZH, name="zh2", state="disabled")])
    assert repos == [
        {"path": "extensions/sd-dynamic-prompts.git", "sources": DP["sources"], "version": "v2.9.1"},
        {"path": "extensions/zh2.git", "sources": ZH["sources"], "version": ZH["version"]}]


def test_disabled_extensions_keep_a_users_own_choices_and_follow_the_states():
    published = [{"name": "sd-dynamic-prompts", "state": "disabled", "version": "v2.9.1", "commit": "c" * 40},
                 {"name": "zh", "state": "present", "version": "x", "commit": "d" * 40},
                 {"name": "old", "state": "absent", "version": "x", "commit": ""}]
    current = ["zh", "my-own-extension", "old"]
    assert mod.webui_extensions_disabled(current, published) == ["my-own-extension", "sd-dynamic-prompts"]
    assert mod.webui_extensions_disabled(None, published) == ["sd-dynamic-prompts"]
    assert mod.webui_extensions_disabled("garbage", []) == []


def test_the_published_state_pairs_kept_entries_with_their_commits():
    plan = mod.webui_extensions_plan([DP, dict(ZH, name="gone", state="absent"), dict(ZH, state="disabled")],
                                     "/opt/sd-webui/extensions")
    state = mod.webui_extensions_state(plan, ["a" * 40, " " + "b" * 40 + "\n"])
    assert state == [
        {"name": DP["name"], "version": "v2.9.1", "state": "present", "commit": "a" * 40},
        {"name": "gone", "version": ZH["version"], "state": "absent", "commit": ""},
        {"name": ZH["name"], "version": ZH["version"], "state": "disabled", "commit": "b" * 40}]
    # Check mode on a fresh host: nothing cloned yet.
    assert [e["commit"] for e in mod.webui_extensions_state(plan, [])] == ["", "", ""]
