"""Unit tests for webui_source_lookups (plugins/filter/webui_sources.py): one git_source call for every source."""
from __future__ import annotations

from ansible_collections.sdfleet.toolkit.plugins.filter.webui_sources import webui_source_lookups

NAMES = {"sources": "sdfleet_webui_sources (webui_repo_sources)", "ref": "sdfleet_webui_version (webui_repo_version)",
         "timeout": "webui_repo_source_timeout"}
SUBREPOS = [{"env": "ASSETS", "commit": "6f7db24", "sources": ["http://m/git/assets.git", "https://gh/assets.git"]},
            {"env": "BLIP", "commit": "48211a1", "sources": ["http://m/git/BLIP.git"]}]
PACKAGES = [{"env": "CLIP_PACKAGE", "sources": ["http://m/clip.zip", "https://gh/clip.zip"]}]
KEPT = [{"name": "tagcomplete", "version": "v1.2", "sources": ["http://m/git/tc.git"], "index": 2, "state": "present"}]


def test_lookups_are_the_webui_then_subrepos_packages_and_extensions_in_order():
    got = webui_source_lookups(["http://m/git/webui.git"], "v1.10.1", SUBREPOS, PACKAGES, KEPT, NAMES)
    assert [(g["name"], g.get("kind", "git"), g.get("ref", "")) for g in got] == [
        ("stable-diffusion-webui", "git", "v1.10.1"), ("ASSETS_REPO", "git", ""), ("BLIP_REPO", "git", ""),
        ("CLIP_PACKAGE", "http", ""), ("extension tagcomplete", "git", "v1.2")]
    assert [g["sources"] for g in got] == [["http://m/git/webui.git"], SUBREPOS[0]["sources"],
                                           SUBREPOS[1]["sources"], PACKAGES[0]["sources"], KEPT[0]["sources"]]
    # only the keys git_source takes (a sub-repository's commit is the launcher's business, not the probe's)
    assert all(set(g) <= {"name", "sources", "ref", "kind", "names"} for g in got)


def test_each_lookup_names_its_own_inputs_for_refusals():
    got = webui_source_lookups(["w"], "v1", SUBREPOS, PACKAGES, KEPT, NAMES)
    assert got[0]["names"] == NAMES
    assert got[2]["names"] == {**NAMES, "sources": "webui_repo_subrepos[1].sources"}
    assert got[3]["names"]["sources"] == "webui_repo_url_packages[0].sources"
    assert (got[4]["names"]["sources"], got[4]["names"]["ref"]) == (
        "sdfleet_webui_extensions[2].sources", "sdfleet_webui_extensions[2].version")
    assert got[4]["names"]["timeout"] == "webui_repo_source_timeout" and NAMES["sources"].startswith("sdfleet_webui")


def test_no_subrepos_packages_or_extensions_leave_the_webui_alone():
    assert [g["name"] for g in webui_source_lookups(["w"], "v1", [], None, [], NAMES)] == ["stable-diffusion-webui"]
