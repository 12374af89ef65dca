"""Unit tests for sdfleet.toolkit.fleet_report_data: the report's one structure (the templates only render it)."""
from __future__ import annotations

from ansible_collections.sdfleet.toolkit.plugins.filter.fleet_report import fleet_report_data

TOKEN = "rep-T0ken-9"
OK = {"sdfleet_gpu": {"state": "ok", "driver_version": "550.54", "tier": "full",
                      "gpus": [{"name": "RTX 4090", "memory_total_mib": 24564, "tier": "full", "compute_cap": "8.9"}],
                      "torch": {"build": "cu121", "torch": "2.1.2"}},
      "sdfleet_instances": [{"index": 0, "port": 7860, "url": "https://ok:7860/", "tier": "full", "flags": []},
                            {"index": 1, "port": 7861, "url": "https://ok:7861/", "flags": ["--xformers"]}],
      "sdfleet_public_urls": ["https://lb.example.org/"],
      "sdfleet_health": {0: "healthy", "1": "HTTP 502"},
      "sdfleet_front_door": {"enabled": "yes", "certificate": "self-signed", "fingerprint_sha256": "ab",
                             "not_after": "20290305120000Z"},
      "sdfleet_webui": {"version": "v1.10.1", "commit": "82a973c04367123ae98bd9abdf80d9eda9b910e2",
                        "source": f"https://ci:{TOKEN}@git.example.org/w.git",
                        "extensions": [{"name": "sd-dynamic-prompts", "version": "v2.9.1", "state": "disabled",
                                        "commit": "fed8bd6d771bf7bad55817ddd0e06215338e9ddf"},
                                       {"name": "old", "version": "v1", "state": "absent", "commit": ""}, "junk"]},
      "__sdfleet_mirrors_up": [], "__sdfleet_mirrors_missed": ["mirror"]}
FAILED = {"sdfleet_failure": {"stage": "gpu", "message": " no driver \n", "remediation": " install it "},
          "sdfleet_instances": []}


def data(hostvars, mirror=None):
    hostvars = dict(hostvars, mirror=mirror or {})
    return fleet_report_data(hostvars, {"webui_hosts": [h for h in hostvars if h != "mirror"],
                                        "sdfleet_mirror": ["mirror"]})


def test_statuses_and_the_not_reached_remediation():
    hosts = {h["name"]: h for h in data({"b-ok": OK, "a-failed": FAILED, "c-gone": {}})["hosts"]}
    assert list(hosts) == ["a-failed", "b-ok", "c-gone"]  # sorted
    assert hosts["b-ok"]["status"] == "ok" and hosts["b-ok"]["failure"] is None
    assert hosts["a-failed"]["status"] == "failed"  # a failure wins over instances
    assert hosts["a-failed"]["failure"] == {"stage": "gpu", "message": "no driver", "remediation": "install it"}
    assert hosts["c-gone"]["status"] == "not reached" and "--limit c-gone" in hosts["c-gone"]["failure"]["remediation"]
    assert hosts["c-gone"]["gpu_state"] == "unknown" and hosts["c-gone"]["torch"] == "-"


def test_a_serving_hosts_rows():
    host = data({"ok": OK})["hosts"][0]
    assert host["instances"] == [
        {"index": 0, "port": 7860, "url": "https://lb.example.org/", "tier": "full", "flags": "(none)",
         "health": "healthy"},
        {"index": 1, "port": 7861, "url": "https://ok:7861/", "tier": "?", "flags": "--xformers",
         "health": "HTTP 502"}]
    assert host["gpus"] == [{"index": 0, "name": "RTX 4090", "vram_mib": 24564, "tier": "full", "sm": "sm_89"}]
    assert (host["torch"], host["xformers"], host["webui_commit"]) == ("2.1.2+cu121", "-", "82a973c04367")
    assert host["front_door"] == {"certificate": "self-signed", "fingerprint": "ab", "not_after": "2029-03-05 12:00 UTC"}
    assert host["extensions"] == [{"name": "sd-dynamic-prompts", "version": "v2.9.1", "commit": "fed8bd6d771b",
                                   "state": "disabled"},
                                  {"name": "old", "version": "v1", "commit": "-", "state": "absent"}]


def test_credentials_are_redacted_everywhere():
    out = data({"ok": OK, "bad": {"sdfleet_failure": {"stage": "webui", "message": f"https://u:{TOKEN}@h/x failed",
                                                      "remediation": "r"}}},
               {"sdfleet_failure": {"stage": "mirror", "message": f"clone of https://ci:{TOKEN}@g/x.git failed",
                                    "remediation": "fix"}})
    assert TOKEN not in repr(out) and "https://***@git.example.org/w.git" in repr(out)


def test_mirror_notes_name_the_hosts_that_used_their_other_sources():
    serving = {"sdfleet_mirror": {"git": ["w.git", "k.git"], "models": []}}
    mirror = data({"ok": OK, "other": dict(OK, __sdfleet_mirrors_up=["http://mirror:8080"], __sdfleet_mirrors_missed=[])},
                  serving)["mirrors"][0]
    assert mirror["status"] == "ok" and mirror["git"] == "w.git, k.git" and mirror["models"] == "-"
    assert mirror["note"].startswith("The GPU hosts ok could not reach the fleet mirror mirror")
    failed = data({"ok": OK}, {"sdfleet_failure": {"stage": "mirror", "message": "word " * 200 + "\nend",
                                                   "remediation": "free\nspace"}})["mirrors"][0]
    assert failed["status"] == "failed" and failed["git"] == "-"
    cut = failed["note"].split("stage (", 1)[1].split(")", 1)[0]
    assert len(cut) <= 400 and cut.endswith("...")
    assert failed["note"].endswith("each model's own URL. free space")
    assert data({}, {})["mirrors"][0]["note"].startswith("The fleet mirror mirror was not reached: the GPU hosts used")


def test_each_mirrors_note_names_the_hosts_that_missed_that_mirror():
    """With several mirrors, a host that missed its rack's mirror and used another is named under that one only."""
    hostvars = {"a1": dict(OK, __sdfleet_mirrors_up=["http://m-b:8080"], __sdfleet_mirrors_missed=["m-a"]),
                "b1": dict(OK, __sdfleet_mirrors_up=["http://m-b:8080"], __sdfleet_mirrors_missed=[]),
                "m-a": {"sdfleet_mirror": {"git": ["w.git"], "models": []}},
                "m-b": {"sdfleet_mirror": {"git": ["w.git"], "models": []}}}
    got = {m["name"]: m for m in fleet_report_data(hostvars, {"webui_hosts": ["a1", "b1"],
                                                              "sdfleet_mirror": ["m-a", "m-b"]})["mirrors"]}
    assert got["m-a"]["note"].startswith("The GPU hosts a1 could not reach the fleet mirror m-a and used their "
                                         "other sources: another fleet mirror where one served them")
    assert got["m-b"]["note"] == "" and got["m-b"]["status"] == "ok"
