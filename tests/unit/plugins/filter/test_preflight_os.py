"""preflight_os: the operating-system check of the preflight role (plugins/filter/preflight_os.py).

It replaced Jinja in roles/preflight/vars/main.yml; OLD_VARS below is that Jinja, copied verbatim, and
test_same_as_the_jinja_it_replaced renders it with Ansible's own templar over a matrix of hosts, support
matrices and allow_unsupported values, and asserts the filter's status, label, problems and warnings equal it.
"""
from __future__ import annotations

import itertools
import json
import os
import pathlib
import subprocess
import sys
from typing import Any

import pytest
import yaml
from ansible.errors import AnsibleFilterError
from ansible.parsing.dataloader import DataLoader
from ansible.template import Templar, trust_as_template

from ansible_collections.sdfleet.toolkit.plugins.filter import preflight_os as mod

ROOT = pathlib.Path(__file__).resolve().parents[4]
ROLE = ROOT / "roles" / "preflight"

# The "Operating system" section of roles/preflight/vars/main.yml before the filter replaced it, verbatim.
OLD_VARS: dict[str, str] = yaml.safe_load(r"""
__preflight_os_label: "{{ ansible_facts.distribution }} {{ ansible_facts.distribution_version }}"
__preflight_os_candidates: >-
  {{ (preflight_supported_os | selectattr('name', 'equalto', ansible_facts.distribution) | list)
     or (preflight_supported_os | selectattr('name', 'equalto', ansible_facts.os_family) | list) }}
# tested | untested | unsupported
__preflight_os_status: >-
  {%- set ns = namespace(status='unsupported') -%}
  {%- for entry in __preflight_os_candidates -%}
  {%- set versions = entry.versions | default([]) | map('string') | list -%}
  {%- if ns.status == 'unsupported' and (versions | length == 0
        or (ansible_facts.distribution_major_version | string) in versions
        or (ansible_facts.distribution_version | string) in versions) -%}
  {%- set ns.status = 'tested' if entry.tested | default(false) | bool else 'untested' -%}
  {%- endif -%}
  {%- endfor -%}
  {{ ns.status }}
__preflight_os_supported_text: >-
  {%- set ns = namespace(out=[]) -%}
  {%- for entry in preflight_supported_os -%}
  {%- set versions = entry.versions | default([]) | map('string') | list -%}
  {%- set ns.out = ns.out + [entry.name ~ ' ' ~ (versions | join('/') if versions else '(any version)')
                              ~ ('' if entry.tested | default(false) | bool else ' [untested]')] -%}
  {%- endfor -%}
  {{ ns.out | join(', ') }}
__preflight_os_problems: >-
  {{ [] if __preflight_os_status != 'unsupported' or preflight_allow_unsupported_os | bool else
     ['ansible_distribution = ' ~ __preflight_os_label ~ ': not a supported system. Fix: use one of '
      ~ __preflight_os_supported_text ~ '; or list it in preflight_supported_os, or set'
      ~ ' preflight_allow_unsupported_os: true to try anyway.'] }}
__preflight_os_warnings: >-
  {{ (['ansible_distribution = ' ~ __preflight_os_label ~ ': supported by design but untested by sdfleet.']
      if __preflight_os_status == 'untested' else [])
     + (['ansible_distribution = ' ~ __preflight_os_label ~ ': not supported; continuing because'
         ~ ' preflight_allow_unsupported_os is true.']
        if __preflight_os_status == 'unsupported' and preflight_allow_unsupported_os | bool else []) }}
""")

DEFAULT_OS: list[dict[str, Any]] = yaml.safe_load(
    (ROLE / "defaults" / "main.yml").read_text(encoding="utf-8"))["preflight_supported_os"]


def facts(distribution: str, os_family: str, version: str, major: str) -> dict[str, str]:
    return {"distribution": distribution, "os_family": os_family, "distribution_version": version,
            "distribution_major_version": major}


HOSTS: dict[str, dict[str, str]] = {
    "debian12": facts("Debian", "Debian", "12.5", "12"),
    "debian11": facts("Debian", "Debian", "11.9", "11"),
    "debian13": facts("Debian", "Debian", "13.1", "13"),
    "ubuntu2204": facts("Ubuntu", "Debian", "22.04", "22"),
    "ubuntu2404": facts("Ubuntu", "Debian", "24.04", "24"),
    "ubuntu2004": facts("Ubuntu", "Debian", "20.04", "20"),
    "rocky9": facts("Rocky", "RedHat", "9.3", "9"),
    "arch": facts("Archlinux", "Archlinux", "rolling", "rolling"),
    "mint21": facts("Linux Mint", "Debian", "21.3", "21"),
    "gentoo": facts("Gentoo", "Gentoo", "2.15", "2"),
}

MATRICES: dict[str, list[dict[str, Any]]] = {
    "role default": DEFAULT_OS,
    # tested and untested entries; a distribution named twice (the first that matches decides); numbers as
    # versions; tested as strings and ints, or left out; versions left out; an entry naming Rocky, so that Rocky
    # is not read through its RedHat family
    "custom": [
        {"name": "Debian", "versions": ["12"], "tested": True},
        {"name": "Debian", "versions": [], "tested": "no"},
        {"name": "Ubuntu", "versions": [22.04, "24.04"], "tested": "yes"},
        {"name": "Ubuntu", "versions": [20]},
        {"name": "Rocky", "versions": ["8"], "tested": True},
        {"name": "RedHat", "tested": 1},
        {"name": "Archlinux", "versions": [], "tested": "True"},
    ],
    # by family only, full versions
    "families": [
        {"name": "Debian", "versions": [11, "12.5", "21.3"], "tested": "on"},
        {"name": "RedHat", "versions": ["9.3"], "tested": False},
        {"name": "Gentoo", "versions": ["2"], "tested": "off"},
    ],
    "empty": [],
}
ALLOW: tuple[Any, ...] = (False, True, "no", "yes")


def old(host: dict[str, str], supported: list[dict[str, Any]], allow: Any) -> dict[str, Any]:
    """What the replaced Jinja gives, rendered by Ansible's templar."""
    variables: dict[str, Any] = {key: trust_as_template(value) for key, value in OLD_VARS.items()}
    variables.update(ansible_facts=host, preflight_supported_os=supported, preflight_allow_unsupported_os=allow)
    templar = Templar(loader=DataLoader(), variables=variables)

    def render(name: str) -> Any:
        return templar.template(trust_as_template("{{ %s }}" % name))
    return {"status": render("__preflight_os_status"), "label": render("__preflight_os_label"),
            "problems": list(render("__preflight_os_problems")), "warnings": list(render("__preflight_os_warnings"))}


CASES = list(itertools.product(HOSTS, MATRICES, range(len(ALLOW))))


def test_the_matrix_covers_every_status_and_outcome():
    seen = {(r["status"], bool(r["problems"]), bool(r["warnings"]))
            for r in (mod.preflight_os(HOSTS[h], MATRICES[m], ALLOW[a]) for h, m, a in CASES)}
    assert seen == {("tested", False, False), ("untested", False, True), ("unsupported", True, False),
                    ("unsupported", False, True)}
    assert len(CASES) == 160


@pytest.mark.parametrize("host,matrix,allow", CASES, ids=[f"{h}-{m}-{ALLOW[a]!r}" for h, m, a in CASES])
def test_same_as_the_jinja_it_replaced(host, matrix, allow):
    expected = old(HOSTS[host], MATRICES[matrix], ALLOW[allow])
    assert expected["status"] in mod.STATUSES
    assert mod.preflight_os(HOSTS[host], MATRICES[matrix], ALLOW[allow]) == expected


# --- the rules ------------------------------------------------------------------------------------------

def status(host: str, supported: list[dict[str, Any]]) -> str:
    return mod.preflight_os(HOSTS[host], supported)["status"]


@pytest.mark.parametrize("host,expected", [
    ("debian12", "tested"), ("debian13", "tested"), ("debian11", "unsupported"),
    ("ubuntu2204", "untested"), ("ubuntu2404", "untested"), ("ubuntu2004", "unsupported"),
    ("rocky9", "untested"), ("arch", "untested"), ("mint21", "unsupported"), ("gentoo", "unsupported"),
])
def test_role_default(host, expected):
    assert status(host, DEFAULT_OS) == expected


def test_role_default_is_the_documented_one():
    specs = yaml.safe_load((ROLE / "meta" / "argument_specs.yml").read_text(encoding="utf-8"))
    assert specs["argument_specs"]["main"]["options"]["preflight_supported_os"]["default"] == DEFAULT_OS


def test_os_family_is_read_when_no_entry_names_the_distribution():
    assert status("rocky9", [{"name": "RedHat", "versions": ["9"], "tested": True}]) == "tested"
    assert status("mint21", [{"name": "Debian", "versions": ["21"]}]) == "untested"


def test_an_entry_naming_the_distribution_hides_its_family():
    supported = [{"name": "Rocky", "versions": ["8"], "tested": True}, {"name": "RedHat", "versions": []}]
    assert status("rocky9", supported) == "unsupported"
    supported = [{"name": "Ubuntu", "versions": ["22.04"]}, {"name": "Debian", "versions": ["20"], "tested": True}]
    assert status("ubuntu2004", supported) == "unsupported"


def test_names_match_exactly():
    assert status("debian12", [{"name": "debian", "tested": True}]) == "unsupported"
    assert status("debian12", [{"name": "Debian ", "tested": True}]) == "unsupported"


@pytest.mark.parametrize("versions,expected", [
    (["12"], "tested"),          # the major version
    (["12.5"], "tested"),        # the full version
    ([12], "tested"),            # a number, compared as its text
    (["11", "13"], "unsupported"),
    (["12.4"], "unsupported"),
    (["1"], "unsupported"),      # no prefix match
    ([], "tested"),              # any version
])
def test_versions(versions, expected):
    assert status("debian12", [{"name": "Debian", "versions": versions, "tested": True}]) == expected


def test_an_entry_without_versions_matches_any_version():
    assert status("arch", [{"name": "Archlinux", "tested": True}]) == "tested"
    assert status("gentoo", [{"name": "Gentoo"}]) == "untested"


def test_numbers_are_compared_as_the_jinja_string_filter_writes_them():
    # YAML reads 24.10 as the float 24.1: as before, it does not match "24.10" (quote versions).
    ubuntu2410 = facts("Ubuntu", "Debian", "24.10", "24")
    assert mod.preflight_os(ubuntu2410, [{"name": "Ubuntu", "versions": [24.10]}])["status"] == "unsupported"
    assert mod.preflight_os(ubuntu2410, [{"name": "Ubuntu", "versions": ["24.10"]}])["status"] == "untested"


def test_the_first_matching_entry_decides():
    supported = [{"name": "Debian", "versions": ["11"], "tested": False}, {"name": "Debian", "versions": ["12"],
                 "tested": True}, {"name": "Debian", "versions": [], "tested": False}]
    assert status("debian12", supported) == "tested"
    assert status("debian11", supported) == "untested"
    assert status("debian13", supported) == "untested"


@pytest.mark.parametrize("tested", [True, "true", "True", "yes", "YES", "on", "1", 1])
def test_tested_spellings(tested):
    assert status("debian12", [{"name": "Debian", "tested": tested}]) == "tested"


@pytest.mark.parametrize("tested", [False, "false", "no", "Off", "0", 0, None, "absent"])
def test_untested_spellings_and_default(tested):
    entry: dict[str, Any] = {"name": "Debian"} if tested == "absent" else {"name": "Debian", "tested": tested}
    assert status("debian12", [entry]) == "untested"


def test_untested_warns():
    assert mod.preflight_os(HOSTS["rocky9"], DEFAULT_OS, False) == {
        "status": "untested", "label": "Rocky 9.3", "problems": [],
        "warnings": ["ansible_distribution = Rocky 9.3: supported by design but untested by sdfleet."]}


def test_tested_is_silent():
    assert mod.preflight_os(HOSTS["debian12"], DEFAULT_OS, True) == {
        "status": "tested", "label": "Debian 12.5", "problems": [], "warnings": []}


def test_unsupported_is_refused_listing_the_matrix():
    assert mod.preflight_os(HOSTS["ubuntu2004"], DEFAULT_OS) == {
        "status": "unsupported", "label": "Ubuntu 20.04", "warnings": [],
        "problems": ["ansible_distribution = Ubuntu 20.04: not a supported system. Fix: use one of Debian 12/13, "
                     "Ubuntu 22.04/24.04 [untested], RedHat (any version) [untested], Archlinux (any version) "
                     "[untested]; or list it in preflight_supported_os, or set preflight_allow_unsupported_os: "
                     "true to try anyway."]}


@pytest.mark.parametrize("allow", [True, "true", "yes", "On", 1, "1"])
def test_unsupported_but_allowed_warns(allow):
    assert mod.preflight_os(HOSTS["gentoo"], DEFAULT_OS, allow) == {
        "status": "unsupported", "label": "Gentoo 2.15", "problems": [],
        "warnings": ["ansible_distribution = Gentoo 2.15: not supported; continuing because "
                     "preflight_allow_unsupported_os is true."]}


@pytest.mark.parametrize("allow", [False, "false", "no", "OFF", 0, "0", None])
def test_unsupported_and_not_allowed_is_a_problem(allow):
    result = mod.preflight_os(HOSTS["gentoo"], DEFAULT_OS, allow)
    assert result["warnings"] == [] and len(result["problems"]) == 1
    assert result["problems"][0].startswith("ansible_distribution = Gentoo 2.15: not a supported system.")


def test_allow_does_not_touch_a_supported_system():
    for allow in (False, True):
        assert mod.preflight_os(HOSTS["ubuntu2204"], DEFAULT_OS, allow)["warnings"] == [
            "ansible_distribution = Ubuntu 22.04: supported by design but untested by sdfleet."]


def test_an_empty_matrix_refuses_every_system():
    assert mod.preflight_os(HOSTS["debian12"], [])["problems"] == [
        "ansible_distribution = Debian 12.5: not a supported system. Fix: use one of ; or list it in "
        "preflight_supported_os, or set preflight_allow_unsupported_os: true to try anyway."]


def test_the_matrix_text_writes_numbers_and_any_version():
    supported = [{"name": "Debian", "versions": [11, "12"], "tested": True}, {"name": "Gentoo"}]
    assert "Fix: use one of Debian 11/12, Gentoo (any version) [untested]; or" in mod.preflight_os(
        HOSTS["ubuntu2004"], supported)["problems"][0]


def test_the_label_shows_a_null_version_empty():
    assert mod.preflight_os(facts("Debian", "Debian", None, "12"), [])["label"] == "Debian "  # type: ignore[arg-type]


def test_the_input_is_not_changed():
    supported = [{"name": "Ubuntu", "versions": [22.04]}]
    mod.preflight_os(HOSTS["ubuntu2204"], supported)
    assert supported == [{"name": "Ubuntu", "versions": [22.04]}]


# --- malformed input ------------------------------------------------------------------------------------

def refusal(supported: Any, allow: Any = False, host: Any = None) -> str:
    with pytest.raises(AnsibleFilterError) as error:
        mod.preflight_os(HOSTS["debian12"] if host is None else host, supported, allow)
    message = str(error.value)
    assert "Fix:" in message, message
    return message


@pytest.mark.parametrize("supported", [None, "Debian", {"name": "Debian"}, 12])
def test_a_matrix_that_is_not_a_list_is_refused(supported):
    message = refusal(supported)
    assert message.startswith("preflight_supported_os is ") and "not a list" in message, message


@pytest.mark.parametrize("entry", ["Debian", None, ["Debian", "12"], 12])
def test_an_entry_that_is_not_a_mapping_is_refused(entry):
    message = refusal([{"name": "Debian"}, entry])
    assert message.startswith("preflight_supported_os[1] is ") and "not a mapping" in message, message
    assert "Fix: write it as {name: Debian" in message


def test_unknown_keys_are_refused():
    # "version" instead of "versions" would have matched any version
    message = refusal([{"name": "Debian", "version": ["12"], "tested": True}])
    assert message == ("preflight_supported_os[0] has unknown keys version (a misspelling is not ignored). "
                       "Fix: use only name, versions, tested.")


@pytest.mark.parametrize("name", [None, "", 12, ["Debian"], "absent"])
def test_a_name_that_is_not_a_string_is_refused(name):
    entry: dict[str, Any] = {"versions": ["12"]} if name == "absent" else {"name": name, "versions": ["12"]}
    message = refusal([{"name": "Ubuntu"}, entry])
    assert message.startswith("preflight_supported_os[1].name is ") and "e.g. name: Debian" in message, message


@pytest.mark.parametrize("versions", ["12", "12,13", {"12": True}, None, 12])
def test_versions_that_are_not_a_list_are_refused(versions):
    message = refusal([{"name": "Debian", "versions": versions}])
    assert message.startswith("preflight_supported_os[0].versions is ") and "not a list of versions" in message
    assert "versions: [] for any version" in message


@pytest.mark.parametrize("version", [None, True, ["12"], {"major": 12}])
def test_a_version_that_is_not_a_string_or_number_is_refused(version):
    message = refusal([{"name": "Debian", "versions": ["11", version]}])
    assert message.startswith("preflight_supported_os[0].versions[1] is ") and "not a version" in message, message


@pytest.mark.parametrize("tested", ["maybe", "y", " true", 2, 1.0, [], {}])
def test_a_tested_that_is_not_a_boolean_is_refused(tested):
    message = refusal([{"name": "Debian", "tested": tested}])
    assert message.startswith("preflight_supported_os[0].tested is ") and "not a boolean" in message, message
    assert "Fix: set tested: true" in message


def test_every_malformed_entry_is_named_at_once():
    message = refusal([{"name": "Debian"}, {"name": "", "tested": "maybe"}, "Arch"])
    parts = message.split(" | ")
    assert [p.split(" ")[0] for p in parts] == ["preflight_supported_os[1].name", "preflight_supported_os[1].tested",
                                                "preflight_supported_os[2]"], message


def test_a_malformed_entry_is_refused_even_where_the_host_does_not_match_it():
    refusal([{"name": "Debian", "versions": ["12"], "tested": True}, {"name": "Gentoo", "versions": "2"}])


@pytest.mark.parametrize("allow", ["maybe", "y", 2, 1.0, [True]])
def test_an_allow_that_is_not_a_boolean_is_refused(allow):
    message = refusal(DEFAULT_OS, allow)
    assert message.startswith("preflight_allow_unsupported_os is ") and "not a boolean" in message, message


@pytest.mark.parametrize("host", [None, "Debian", ["Debian"]])
def test_facts_that_are_not_a_dict_are_refused(host):
    with pytest.raises(AnsibleFilterError, match=r"^ansible_facts is \w+, not a dict\. Fix: pass ansible_facts"):
        mod.preflight_os(host, DEFAULT_OS)


@pytest.mark.parametrize("missing", mod.FACTS)
def test_facts_without_the_system_are_refused(missing):
    host = {k: v for k, v in HOSTS["debian12"].items() if k != missing}
    with pytest.raises(AnsibleFilterError, match=rf"^ansible_facts has no {missing}: .* Fix: gather the facts"):
        mod.preflight_os(host, DEFAULT_OS)


# --- the role wires the filter ----------------------------------------------------------------------------

def test_role_vars_read_the_filter():
    variables = yaml.safe_load((ROLE / "vars" / "main.yml").read_text(encoding="utf-8"))
    assert variables["__preflight_os"] == ("{{ ansible_facts | sdfleet.toolkit.preflight_os(preflight_supported_os, "
                                           "preflight_allow_unsupported_os) }}")
    assert variables["__preflight_os_problems"] == "{{ __preflight_os.problems }}"
    assert variables["__preflight_os_warnings"] == "{{ __preflight_os.warnings }}"
    assert not {"__preflight_os_label", "__preflight_os_candidates", "__preflight_os_status",
                "__preflight_os_supported_text"} & set(variables)
    tasks = (ROLE / "tasks" / "main.yml").read_text(encoding="utf-8")
    assert "__preflight_os_problems +" in tasks and "__preflight_os_warnings +" in tasks


PLAYBOOK = pathlib.Path(sys.executable).with_name("ansible-playbook")
# host name -> (facts, extra host vars)
WIRED: dict[str, tuple[dict[str, str], dict[str, Any]]] = {
    "debian12": (HOSTS["debian12"], {}),
    "rocky9": (HOSTS["rocky9"], {}),
    "gentoo": (HOSTS["gentoo"], {}),
    "gentoo-allowed": (HOSTS["gentoo"], {"preflight_allow_unsupported_os": "yes"}),
    "ubuntu-custom": (HOSTS["ubuntu2204"], {"preflight_supported_os": MATRICES["custom"]}),
    "malformed": (HOSTS["debian12"], {"preflight_supported_os": [{"name": "Debian", "version": ["12"]}]}),
}


@pytest.mark.skipif(not PLAYBOOK.exists(), reason="ansible-playbook is not installed beside this python")
def test_role_vars_give_the_filter_result_in_a_play(tmp_path):
    """The role's defaults and vars, rendered by ansible-playbook for hosts with these facts, give the same
    problems and warnings as the Jinja they replaced; a malformed matrix fails naming the entry."""
    # The role's defaults as group vars (below the host vars that override them), its vars as play vars.
    defaults = yaml.safe_load((ROLE / "defaults" / "main.yml").read_text(encoding="utf-8"))
    inventory = {"all": {"vars": defaults,
                         "hosts": {name: {"ansible_connection": "local", "ansible_python_interpreter": sys.executable,
                                          "fake_facts": host, **extra}
                                   for name, (host, extra) in WIRED.items()}}}
    (tmp_path / "inventory.yml").write_text(yaml.safe_dump(inventory), encoding="utf-8")
    play = [{"hosts": "all", "gather_facts": False,
             "vars_files": [str(ROLE / "vars" / "main.yml")],
             "tasks": [
                 {"name": "Set the facts", "ansible.builtin.set_fact": {
                     **{key: "{{ fake_facts.%s }}" % key for key in mod.FACTS}, "cacheable": True}},
                 {"name": "Write the OS check", "ignore_errors": True, "register": "written",
                  "ansible.builtin.copy": {
                      "dest": str(tmp_path) + "/{{ inventory_hostname }}.json", "mode": "0644",
                      "content": "{{ {'problems': __preflight_os_problems, 'warnings': __preflight_os_warnings}"
                                 " | to_json }}"}},
                 {"name": "Write the failure", "when": "written is failed", "ansible.builtin.copy": {
                     "dest": str(tmp_path) + "/{{ inventory_hostname }}.failed", "mode": "0644",
                     "content": "{{ written.msg }}"}},
             ]}]
    (tmp_path / "play.yml").write_text(yaml.safe_dump(play, sort_keys=False), encoding="utf-8")
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"),
               ANSIBLE_COLLECTIONS_PATH=str(ROOT / "collections"), ANSIBLE_NOCOLOR="1")
    proc = subprocess.run([str(PLAYBOOK), "-i", str(tmp_path / "inventory.yml"), str(tmp_path / "play.yml")],
                          capture_output=True, text=True, env=env, timeout=120, check=False, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for name, (host, extra) in WIRED.items():
        if name == "malformed":
            continue
        written = json.loads((tmp_path / f"{name}.json").read_text(encoding="utf-8"))
        jinja = old(host, extra.get("preflight_supported_os", DEFAULT_OS),
                    extra.get("preflight_allow_unsupported_os", False))
        assert written == {"problems": jinja["problems"], "warnings": jinja["warnings"]}, name
    assert json.loads((tmp_path / "gentoo.json").read_text(encoding="utf-8"))["problems"]
    assert not (tmp_path / "malformed.json").exists()
    failure = (tmp_path / "malformed.failed").read_text(encoding="utf-8")
    assert "preflight_supported_os[0] has unknown keys version" in failure, failure


def test_filter_module_exports():
    assert mod.FilterModule().filters() == {"preflight_os": mod.preflight_os}
