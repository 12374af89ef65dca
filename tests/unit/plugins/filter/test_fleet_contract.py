"""Unit tests for the fleet contract's rules (plugins/filter/fleet_contract.py): the fleet mirrors' order, the
endpoints each host fetches from, the mirror-first sources, and the inventory names the contract refuses.

The expected values are those the inventories' old Jinja map (``10_sdfleet_map.yml``) gave for the same input.
"""
from __future__ import annotations

import pathlib
import re

import pytest
import yaml
from ansible.errors import AnsibleFilterError

from ansible_collections.sdfleet.toolkit.plugins.filter import fleet_contract as mod

ROOT = pathlib.Path(__file__).resolve().parents[4]
ROLE = ROOT / "roles" / "sdfleet"
DEFAULTS = yaml.safe_load((ROLE / "defaults" / "main.yml").read_text(encoding="utf-8"))
MAP = yaml.safe_load((ROLE / "vars" / "main.yml").read_text(encoding="utf-8"))
SPEC = sorted(yaml.safe_load((ROLE / "meta" / "argument_specs.yml").read_text(encoding="utf-8"))
              ["argument_specs"]["check"]["options"])

MIRROR = "http://mirror.lan:8080"
WEBUI = ["https://github.com/AUTOMATIC1111/stable-diffusion-webui.git"]
SUBREPOS = DEFAULTS["sdfleet_webui_subrepo_sources"]
COMMITS = DEFAULTS["sdfleet_webui_subrepo_commits"]
PACKAGES = DEFAULTS["sdfleet_webui_package_sources"]
CUDA = "https://download.pytorch.org/whl/{build}"
CPU = "https://download.pytorch.org/whl/cpu"


def endpoints(mirror_urls, up=True, **kwargs) -> dict:
    args = {"pip_index_url": "https://pypi.lan/simple/", "pip_trusted_hosts": ["pypi.lan"],
            "torch_index_url_cuda": CUDA, "torch_index_url_cpu": CPU, "models_cache_mode": "controller",
            "no_proxy": ""}
    args.update(kwargs)
    return mod.fleet_endpoints(mirror_urls, up, **args)


# --- fleet_mirrors -------------------------------------------------------------------------------------

def urls(groups, hostvars=None, port=8080, use_mirror=True, host="") -> list[str]:
    return [m["url"] for m in mod.fleet_mirrors(groups, hostvars or {}, port, use_mirror, host)]


@pytest.mark.parametrize("groups", [{}, {"sdfleet_mirror": []}, {"sdfleet_mirror": None}, None])
def test_no_mirror_host_no_mirrors(groups):
    assert mod.fleet_mirrors(groups, {"mirror.lan": {}}, 8080, True, "gpu") == []


def test_mirrors_by_their_inventory_names_or_addresses_in_inventory_order():
    hostvars = {"mirror.lan": {}, "other.lan": {"sdfleet_mirror_address": "10.0.0.9"}}
    assert mod.fleet_mirrors({"sdfleet_mirror": ["mirror.lan", "other.lan"]}, hostvars, 8080, True) == [
        {"name": "mirror.lan", "url": MIRROR}, {"name": "other.lan", "url": "http://10.0.0.9:8080"}]


@pytest.mark.parametrize("port", [8081, "8081"])
def test_mirror_url_carries_the_port(port):
    assert urls({"sdfleet_mirror": ["mirror.lan"]}, port=port) == ["http://mirror.lan:8081"]


def test_a_mirrors_own_port_wins_over_the_fleets():
    hostvars = {"a": {"sdfleet_mirror_port": 9000}, "b": {}}
    assert urls({"sdfleet_mirror": ["a", "b"]}, hostvars) == ["http://a:9000", "http://b:8080"]


def test_a_port_that_is_not_a_number_is_refused_naming_the_mirror():
    with pytest.raises(AnsibleFilterError, match="sdfleet_mirror_port of b is 'http'"):
        mod.fleet_mirrors({"sdfleet_mirror": ["b"]}, {"b": {"sdfleet_mirror_port": "http"}}, 8080)


@pytest.mark.parametrize("hostvars", [{"mirror.lan": {"sdfleet_mirror_address": ""}}, {}])
def test_mirror_url_without_an_address_uses_the_inventory_name(hostvars):
    assert urls({"sdfleet_mirror": ["mirror.lan"]}, hostvars) == [MIRROR]


@pytest.mark.parametrize("use_mirror", [False, "false", "False", "no", "0", 0, ""])
def test_use_mirror_false_gives_no_mirror(use_mirror):
    assert urls({"sdfleet_mirror": ["mirror.lan"]}, use_mirror=use_mirror) == []


@pytest.mark.parametrize("use_mirror", [True, "true", "yes", "1", 1])
def test_use_mirror_true_gives_the_mirror(use_mirror):
    assert urls({"sdfleet_mirror": ["mirror.lan"]}, use_mirror=use_mirror) == [MIRROR]


RACKS = {"all": ["m-a", "m-b", "m-c", "gpu-a1", "gpu-b1", "gpu-x"], "ungrouped": [],
         "sdfleet_mirror": ["m-a", "m-b", "m-c"], "webui_hosts": ["gpu-a1", "gpu-b1", "gpu-x"],
         "rack_a": ["gpu-a1", "m-a"], "rack_b": ["m-b", "gpu-b1"], "site_west": ["gpu-b1", "m-c", "m-b"]}


@pytest.mark.parametrize("host,order", [
    ("gpu-a1", ["m-a", "m-b", "m-c"]),  # its rack's mirror first, then the others in inventory order
    ("gpu-b1", ["m-b", "m-c", "m-a"]),  # rack_b and site_west: both of its groups' mirrors, in inventory order
    ("gpu-x", ["m-a", "m-b", "m-c"]),   # no group of its own: inventory order
    ("", ["m-a", "m-b", "m-c"]),
])
def test_each_host_tries_its_own_groups_mirrors_first(host, order):
    """webui_hosts, sdfleet_mirror, all and ungrouped say nothing about where a host stands: every GPU host and
    every mirror is in them, so they would put every mirror first."""
    assert [m["name"] for m in mod.fleet_mirrors(RACKS, {}, 8080, True, host)] == order


# --- fleet_endpoints ------------------------------------------------------------------------------------

OTHER = "http://other.lan:8080"


def test_endpoints_of_a_serving_mirror():
    assert endpoints([MIRROR], True) == {
        "mirrors": [MIRROR],
        "mirror_git": [f"{MIRROR}/git/"],
        "pip_index_url": f"{MIRROR}/simple/",
        "pip_trusted_hosts": ["pypi.lan", "mirror.lan"],
        "torch_index_url_cuda": f"{MIRROR}/torch/{{build}}/",
        "torch_index_url_cpu": f"{MIRROR}/torch/cpu/",
        "models_cache_mode": "mirror",
        "models_mirror_urls": [f"{MIRROR}/files"],
        "no_proxy": "mirror.lan",
    }


def test_one_mirror_as_a_string_is_a_list_of_it():
    assert endpoints(MIRROR, True) == endpoints([MIRROR], True)


def test_cuda_index_keeps_the_build_placeholder():
    assert endpoints([MIRROR])["torch_index_url_cuda"] == "http://mirror.lan:8080/torch/{build}/"


@pytest.mark.parametrize("up", [False, "false", 0, None, []])
def test_endpoints_of_a_mirror_that_does_not_serve(up):
    """The indexes fall back to the inventory's own and git to upstream; the models come from upstream, each host
    downloading (never pushed from the controller to a fleet with a mirror); no_proxy still holds the mirror."""
    assert endpoints([MIRROR], up) == {
        "mirrors": [],
        "mirror_git": [],
        "pip_index_url": "https://pypi.lan/simple/",
        "pip_trusted_hosts": ["pypi.lan"],
        "torch_index_url_cuda": CUDA,
        "torch_index_url_cpu": CPU,
        "models_cache_mode": "mirror",
        "models_mirror_urls": [],
        "no_proxy": "mirror.lan",
    }


def test_the_first_mirror_up_gives_the_indexes_and_every_mirror_up_serves_git_and_models():
    got = endpoints([MIRROR, OTHER, "http://third.lan:8080"], [OTHER, "http://third.lan:8080"])
    assert got["mirrors"] == [OTHER, "http://third.lan:8080"]
    assert got["pip_index_url"] == f"{OTHER}/simple/" and got["torch_index_url_cpu"] == f"{OTHER}/torch/cpu/"
    assert got["pip_trusted_hosts"] == ["pypi.lan", "other.lan"]
    assert got["mirror_git"] == [f"{OTHER}/git/", "http://third.lan:8080/git/"]
    assert got["models_mirror_urls"] == [f"{OTHER}/files", "http://third.lan:8080/files"]
    assert got["no_proxy"] == "mirror.lan,other.lan,third.lan"


def test_the_hosts_order_wins_over_the_order_the_answers_came_in():
    assert endpoints([MIRROR, OTHER], [OTHER + "/", MIRROR])["mirrors"] == [MIRROR, OTHER]


def test_an_answer_from_a_url_the_host_does_not_use_is_ignored():
    assert endpoints([MIRROR], ["http://stranger:1"])["mirrors"] == []


@pytest.mark.parametrize("up", [True, False, []])
def test_endpoints_without_a_mirror(up):
    assert endpoints([], up, models_cache_mode="none") == {
        "mirrors": [],
        "mirror_git": [],
        "pip_index_url": "https://pypi.lan/simple/",
        "pip_trusted_hosts": ["pypi.lan"],
        "torch_index_url_cuda": CUDA,
        "torch_index_url_cpu": CPU,
        "models_cache_mode": "none",
        "models_mirror_urls": [],
        "no_proxy": "",
    }


def test_endpoints_without_a_mirror_keep_pips_default():
    got = mod.fleet_endpoints([], True, "", [], CUDA, CPU, "controller", "")
    assert got["pip_index_url"] == "" and got["models_cache_mode"] == "controller"
    assert got["pip_trusted_hosts"] == []


def test_the_trusted_host_is_the_index_urls_hostname():
    got = endpoints(["http://10.0.0.5:8080"])
    assert got["pip_trusted_hosts"] == ["pypi.lan", "10.0.0.5"]
    assert got["mirror_git"] == ["http://10.0.0.5:8080/git/"]


@pytest.mark.parametrize("mirror_urls,no_proxy,expected", [
    ([MIRROR], "", "mirror.lan"),
    ([MIRROR], "localhost,.corp", "localhost,.corp,mirror.lan"),
    ([], "localhost,.corp", "localhost,.corp"),
    ([], "", ""),
])
def test_no_proxy_joins_the_inventorys_with_the_mirror_host(mirror_urls, no_proxy, expected):
    assert endpoints(mirror_urls, True, no_proxy=no_proxy)["no_proxy"] == expected
    assert endpoints(mirror_urls, False, no_proxy=no_proxy)["no_proxy"] == expected


def test_trusted_hosts_are_not_changed_in_place():
    trusted = ["pypi.lan"]
    endpoints([MIRROR], pip_trusted_hosts=trusted)
    assert trusted == ["pypi.lan"]


# --- fleet_mirror_first ---------------------------------------------------------------------------------

@pytest.mark.parametrize("mirror_git", [f"{MIRROR}/git/", [f"{MIRROR}/git/"]])
def test_mirror_first_puts_the_mirrors_copy_first(mirror_git):
    assert mod.fleet_mirror_first(WEBUI + ["https://gitlab.lan/sd/webui.git"], mirror_git) == [
        f"{MIRROR}/git/stable-diffusion-webui.git", WEBUI[0], "https://gitlab.lan/sd/webui.git"]


@pytest.mark.parametrize("mirror_git", ["", [], (), None, [""]])
def test_mirror_first_without_a_mirror_is_the_sources(mirror_git):
    assert mod.fleet_mirror_first(WEBUI, mirror_git) == WEBUI


def test_mirror_first_names_the_copy_after_the_first_source():
    sources = ["https://github.com/w-e-w/stablediffusion.git", "https://gitlab.lan/sd/other-name.git"]
    assert mod.fleet_mirror_first(sources, [f"{MIRROR}/git/"])[0] == f"{MIRROR}/git/stablediffusion.git"


@pytest.mark.parametrize("sources", [[], "https://github.com/x/y.git", None, {"a": "b"}])
def test_mirror_first_refuses_sources_that_are_not_a_list(sources):
    with pytest.raises(AnsibleFilterError, match="not a non-empty list of URLs"):
        mod.fleet_mirror_first(sources, [f"{MIRROR}/git/"])


# --- fleet_subrepos -------------------------------------------------------------------------------------

def test_subrepos_follow_the_sources_order_pinned_and_mirror_first():
    got = mod.fleet_subrepos(SUBREPOS, COMMITS, [f"{MIRROR}/git/"])
    assert [s["env"] for s in got] == ["ASSETS", "STABLE_DIFFUSION", "STABLE_DIFFUSION_XL", "K_DIFFUSION", "BLIP"]
    assert got[0] == {"env": "ASSETS", "commit": "6f7db241d2f8ba7457bac5ca9753331f0c266917",
                      "sources": [f"{MIRROR}/git/stable-diffusion-webui-assets.git",
                                  "https://github.com/AUTOMATIC1111/stable-diffusion-webui-assets.git"]}
    for sub in got:
        assert sub["commit"] == COMMITS[sub["env"]]
        assert sub["sources"] == [f"{MIRROR}/git/" + SUBREPOS[sub["env"]][0].rsplit("/", 1)[-1]] + SUBREPOS[sub["env"]]


def test_subrepos_order_is_the_sources_not_the_commits():
    sources = {"BLIP": SUBREPOS["BLIP"], "ASSETS": SUBREPOS["ASSETS"]}
    commits = {"ASSETS": COMMITS["ASSETS"], "BLIP": COMMITS["BLIP"]}
    got = mod.fleet_subrepos(sources, commits, [])
    assert [(s["env"], s["commit"]) for s in got] == [("BLIP", COMMITS["BLIP"]), ("ASSETS", COMMITS["ASSETS"])]


def test_subrepos_without_a_mirror_are_upstream_only():
    got = mod.fleet_subrepos(SUBREPOS, COMMITS, [])
    assert [s["sources"] for s in got] == list(SUBREPOS.values())


def test_subrepo_commit_is_a_string():
    got = mod.fleet_subrepos({"ASSETS": SUBREPOS["ASSETS"]}, {"ASSETS": 1234567}, "")
    assert got[0]["commit"] == "1234567"


@pytest.mark.parametrize("sources,commits,named", [
    ({k: v for k, v in SUBREPOS.items() if k != "BLIP"}, COMMITS, ["BLIP"]),
    (SUBREPOS, {k: v for k, v in COMMITS.items() if k != "K_DIFFUSION"}, ["K_DIFFUSION"]),
    (dict(SUBREPOS, EXTRA=["https://x/e.git"]), dict(COMMITS, OTHER="abc"), ["EXTRA", "OTHER"]),
])
def test_subrepos_with_mismatched_names_are_refused(sources, commits, named):
    with pytest.raises(AnsibleFilterError) as err:
        mod.fleet_subrepos(sources, commits, [])
    msg = str(err.value)
    assert "name different sub-repositories" in msg and "Fix:" in msg
    assert f"({', '.join(named)})" in msg
    for env in set(SUBREPOS) - set(named):
        assert env not in msg.split("(", 1)[1]


@pytest.mark.parametrize("urls", [[], None, "https://github.com/salesforce/BLIP.git"])
def test_subrepo_without_sources_is_refused(urls):
    with pytest.raises(AnsibleFilterError, match=r"sdfleet_webui_subrepo_sources\.BLIP is .*not a non-empty list"):
        mod.fleet_subrepos(dict(SUBREPOS, BLIP=urls), COMMITS, [])


@pytest.mark.parametrize("sources,commits", [(["x"], COMMITS), (SUBREPOS, ["x"]), (None, COMMITS)])
def test_subrepos_that_are_not_mappings_are_refused(sources, commits):
    with pytest.raises(AnsibleFilterError, match="must be mappings"):
        mod.fleet_subrepos(sources, commits, [])


# --- fleet_url_packages ---------------------------------------------------------------------------------

def test_url_packages_with_a_mirror_serve_the_first_urls_path():
    got = mod.fleet_url_packages(PACKAGES, MIRROR)
    assert got == [
        {"env": "CLIP_PACKAGE", "sources": [
            f"{MIRROR}/openai/CLIP/archive/d50d76daa670286dd6cacf3bcd80b5e4823fc8e1.zip"] + PACKAGES["CLIP_PACKAGE"]},
        {"env": "OPENCLIP_PACKAGE", "sources": [
            f"{MIRROR}/mlfoundations/open_clip/archive/bb6e834e9c70d9c27d0dc3ecedeebeaeb1ffad6b.zip"]
            + PACKAGES["OPENCLIP_PACKAGE"]},
    ]


def test_url_packages_use_only_the_first_urls_path_without_its_query():
    sources = {"CLIP_PACKAGE": ["https://a.example/one/c.zip?x=1", "https://b.example/two/c.zip"]}
    assert mod.fleet_url_packages(sources, MIRROR) == [
        {"env": "CLIP_PACKAGE", "sources": [f"{MIRROR}/one/c.zip"] + sources["CLIP_PACKAGE"]}]


def test_url_packages_try_each_mirror_up_in_turn():
    got = mod.fleet_url_packages({"CLIP_PACKAGE": PACKAGES["CLIP_PACKAGE"]}, [MIRROR, "http://other.lan:8080/"])
    path = "/openai/CLIP/archive/d50d76daa670286dd6cacf3bcd80b5e4823fc8e1.zip"
    assert got[0]["sources"] == [MIRROR + path, "http://other.lan:8080" + path] + PACKAGES["CLIP_PACKAGE"]


@pytest.mark.parametrize("mirror_urls", ["", None, []])
def test_url_packages_without_a_mirror_are_the_sources(mirror_urls):
    assert mod.fleet_url_packages(PACKAGES, mirror_urls) == [
        {"env": env, "sources": urls} for env, urls in PACKAGES.items()]


@pytest.mark.parametrize("urls", [[], None])
def test_url_package_without_sources_is_refused(urls):
    with pytest.raises(AnsibleFilterError, match=r"sdfleet_webui_package_sources\.CLIP_PACKAGE is"):
        mod.fleet_url_packages(dict(PACKAGES, CLIP_PACKAGE=urls), MIRROR)


def test_url_packages_that_are_not_a_mapping_are_refused():
    with pytest.raises(AnsibleFilterError, match="sdfleet_webui_package_sources must map"):
        mod.fleet_url_packages(list(PACKAGES.values()), MIRROR)


# --- fleet_contract_problems ----------------------------------------------------------------------------

PUBLISHED = MAP["__sdfleet_published_facts"]


def problems(host_vars: dict, effective: dict | None = None) -> list[str]:
    return mod.fleet_contract_problems(host_vars, SPEC, PUBLISHED, MAP, effective)


def test_known_names_are_not_refused():
    host_vars = {"sdfleet_port": 7861, "sdfleet_install_dir": "/srv/sd", "ansible_host": "10.0.0.2",
                 "sdfleet_mirror_address": "10.0.0.5", "webui_repo_torch_packages": []}
    assert problems(host_vars, {}) == []


def test_misspelt_name_is_refused_with_the_closest_name():
    got = problems({"sdfleet_isntall_dir": "/srv/sd", "sdfleet_port": 7860})
    assert len(got) == 1, got
    assert got[0].startswith("sdfleet_isntall_dir: not an sdfleet setting, so it is ignored")
    assert "did you mean sdfleet_install_dir?" in got[0]
    assert "ansible-doc -t role sdfleet.toolkit.sdfleet" in got[0] and "Fix:" in got[0]


def test_unknown_name_without_a_close_match_has_no_suggestion():
    got = problems({"sdfleet_zzz": 1})
    assert len(got) == 1, got
    assert got[0].startswith("sdfleet_zzz: not an sdfleet setting")
    assert "did you mean" not in got[0]


def test_unknown_names_are_refused_each_in_name_order():
    got = problems({"sdfleet_zzz": 1, "sdfleet_aaa": 2})
    assert [p.split(":", 1)[0] for p in got] == ["sdfleet_aaa", "sdfleet_zzz"]


@pytest.mark.parametrize("name", PUBLISHED)
def test_published_fact_names_are_not_refused(name):
    assert problems({name: {"anything": True}}) == []


def test_published_facts_are_in_the_map():
    assert "sdfleet_mirror_urls" in PUBLISHED and "sdfleet_failure" in PUBLISHED


def test_map_owned_role_variable_with_another_value_is_refused():
    got = problems({"webui_repo_dir": "/srv/other"}, {"webui_repo_dir": "/opt/sd-webui"})
    assert got == ["webui_repo_dir: set by the fleet contract from sdfleet_install_dir, so the inventory's value is "
                   "ignored. Fix: set sdfleet_install_dir instead."]


def test_refusal_names_every_sdfleet_name_of_the_template():
    got = problems({"webui_repo_subrepos": []}, {"webui_repo_subrepos": [{"env": "ASSETS"}]})
    assert len(got) == 1, got
    assert "from sdfleet_webui_subrepo_commits, sdfleet_webui_subrepo_sources," in got[0]
    assert "Fix: set sdfleet_webui_subrepo_commits / sdfleet_webui_subrepo_sources instead." in got[0]


def test_refusal_of_a_variable_set_from_private_names_only():
    got = problems({"webui_repo_pip_index_url": "https://pypi.lan/simple/"}, {"webui_repo_pip_index_url": ""})
    assert len(got) == 1, got
    # through the map's private step __sdfleet_endpoints, to the names a user sets
    assert got[0].startswith("webui_repo_pip_index_url: set by the fleet contract from "), got
    assert "sdfleet_pip_index_url" in got[0] and "sdfleet_mirror_port" in got[0], got
    assert "__sdfleet" not in got[0] and "an sdfleet_* name" not in got[0], got


def test_mapped_sdfleet_name_set_in_the_inventory_is_refused():
    got = problems({"sdfleet_mirror_urls": "http://elsewhere:1"}, {"sdfleet_mirror_urls": MIRROR})
    assert len(got) == 1, got
    assert got[0].startswith("sdfleet_mirror_urls: set by the fleet contract from ")
    assert "sdfleet_mirror_port" in got[0] and "sdfleet_use_mirror" in got[0]
    assert "from sdfleet_mirror_urls" not in got[0]


def test_refusal_does_not_name_the_refused_variable_itself():
    mapping = {"sdfleet_x": "{{ sdfleet_x_override | default(sdfleet_y) if sdfleet_x is undefined else sdfleet_x }}"}
    got = mod.fleet_contract_problems({"sdfleet_x": 1}, ["sdfleet_y"], [], mapping, {"sdfleet_x": 2})
    assert got == ["sdfleet_x: set by the fleet contract from sdfleet_x_override, sdfleet_y, so the inventory's value "
                   "is ignored. Fix: set sdfleet_x_override / sdfleet_y instead."]


@pytest.mark.parametrize("value", ["/opt/sd-webui", 7860, ["a"], {"k": "v"}])
def test_map_owned_variable_with_the_value_the_roles_see_is_not_refused(value):
    """An extra var wins over the map, so an ``-e`` of the role variable is what the roles see: not refused."""
    assert problems({"webui_repo_dir": value}, {"webui_repo_dir": value}) == []


@pytest.mark.parametrize("effective", [None, {}, {"preflight_port": 1}])
def test_names_not_in_effective_are_ignored(effective):
    assert problems({"webui_repo_dir": "/srv/other"}, effective) == []


def test_private_names_are_ignored():
    host_vars = {"__sdfleet_models_dir": "/srv/m", "__sdfleet_endpoints": {}, "__sdfleet_mirrors_up": []}
    effective = {"__sdfleet_models_dir": "/opt/sd-webui/models", "__sdfleet_endpoints": {"mirror_git": []},
                 "__sdfleet_mirrors_up": [MIRROR]}
    assert problems(host_vars, effective) == []


def test_unmapped_role_variable_is_not_refused():
    assert problems({"webui_repo_torch_packages": ["torch==2.1"]}, {"webui_repo_torch_packages": []}) == []


def test_unknown_and_owned_names_are_refused_together():
    got = problems({"sdfleet_prot": 1, "preflight_port": 1, "sdfleet_port": 2}, {"preflight_port": 2})
    assert [p.split(":", 1)[0] for p in got] == ["preflight_port", "sdfleet_prot"]
    assert "did you mean sdfleet_port?" in got[1]
    assert "Fix: set sdfleet_port instead." in got[0]


# --- The map calls only filters that exist ----------------------------------------------------------------

def _strings(value):
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def test_the_map_calls_existing_fleet_filters():
    filters = mod.FilterModule().filters()
    called = {name for text in _strings(MAP) for name in re.findall(r"sdfleet\.toolkit\.(fleet_[a-z0-9_]+)", text)}
    assert called, "the map calls no sdfleet.toolkit.fleet_* filter"
    assert {"fleet_mirrors", "fleet_endpoints", "fleet_mirror_first", "fleet_subrepos",
            "fleet_url_packages"} <= called
    assert not called - set(filters), f"the map calls filters that fleet_contract.py does not define: {called - set(filters)}"
    check = (ROLE / "tasks" / "check.yml").read_text(encoding="utf-8")
    assert "sdfleet.toolkit.fleet_contract_problems(" in check


def test_the_map_reads_every_endpoint_the_filter_gives():
    """Every ``__sdfleet_endpoints.<key>`` the map reads is a key fleet_endpoints returns."""
    keys = set(endpoints(MIRROR))
    read = {key for text in _strings(MAP) for key in re.findall(r"__sdfleet_endpoints\.([a-z_]+)", text)}
    assert read and not read - keys, read - keys


def test_filter_module_lists_every_filter():
    assert mod.FilterModule().filters() == {
        "fleet_mirrors": mod.fleet_mirrors,
        "fleet_endpoints": mod.fleet_endpoints,
        "fleet_mirror_first": mod.fleet_mirror_first,
        "fleet_subrepos": mod.fleet_subrepos,
        "fleet_url_packages": mod.fleet_url_packages,
        "fleet_contract_problems": mod.fleet_contract_problems,
        "fleet_batches": mod.fleet_batches,
    }


# --- fleet_batches: the service stage's rolling restart (sdfleet_restart_batch) --------------------------------

@pytest.mark.parametrize(("batch", "expected"), [
    (1, [["a"], ["b"], ["c"], ["d"], ["e"]]),
    (2, [["a", "b"], ["c", "d"], ["e"]]),
    ("2", [["a", "b"], ["c", "d"], ["e"]]),
    (9, [["a", "b", "c", "d", "e"]]),
    ("40%", [["a", "b"], ["c", "d"], ["e"]]),  # 40% of 5 hosts = 2
    ("10%", [["a"], ["b"], ["c"], ["d"], ["e"]]),  # rounded down, but never below one host
    ("100%", [["a", "b", "c", "d", "e"]]),
    (" 50% ", [["a", "b"], ["c", "d"], ["e"]]),
])
def test_batches_cut_the_hosts_in_order_like_serial(batch, expected):
    assert mod.fleet_batches(list("abcde"), batch) == expected


def test_batches_of_no_hosts_are_none():
    assert mod.fleet_batches([], "25%") == []


@pytest.mark.parametrize("batch", [0, "0", -1, "0%", "101%", "a quarter", "25 %", 1.5, True, None, ""])
def test_batches_refuse_what_is_not_a_count_or_a_percentage(batch):
    with pytest.raises(AnsibleFilterError, match=r"sdfleet_restart_batch = .*not a count of hosts or a percentage\. "
                                                 r"Fix: a positive whole number"):
        mod.fleet_batches(["a"], batch)


def test_the_default_restart_batch_is_everyone_at_once():
    assert mod.fleet_batches(list("abc"), DEFAULTS["sdfleet_restart_batch"]) == [["a", "b", "c"]]
