"""Unit tests for sdfleet.toolkit.exposure_problems: one test (or more) per refusal rule, plus clean configs."""
from __future__ import annotations

import pytest
from refusal_catalog import refused

from ansible_collections.sdfleet.toolkit.plugins.filter.exposure import (
    FilterModule,
    exposure_problems,
    is_exposed,
    is_loopback,
)

GOOD_PW = "correct-horse-battery"
UI_USERS = [{"username": "admin", "password": GOOD_PW}]
API_USERS = [{"username": "robot", "password": "api-secret-42"}]


def _one(problems: list[str], needle: str) -> str:
    """The single problem mentioning ``needle`` (fails when there are none or several)."""
    hits = [p for p in problems if needle in p]
    assert len(hits) == 1, f"expected one problem with {needle!r}, got {problems}"
    return hits[0]


# --- clean configurations -------------------------------------------------------------------------------

@pytest.mark.parametrize("settings", [
    {},
    {"listen": False, "port": 7860},
    {"listen_address": "127.0.0.1"},
    {"listen_address": "::1"},
    {"listen_address": "localhost", "api": True},
    {"listen": True, "auth_users": UI_USERS},
    {"listen": True, "auth_users": UI_USERS, "api": True, "api_auth_users": API_USERS},
    {"share": True, "auth_users": UI_USERS},
    {"listen_address": "10.0.0.5", "auth_users": UI_USERS, "insecure_extension_access": True,
     "insecure_extension_access_acknowledged": True},
    {"insecure_extension_access": True},  # loopback: the webui itself allows extensions then
    {"port": 7860, "instances": 8},
    {"ports": [7860, 7870, 80]},
    {"port": 65535, "instances": 1},
    {"port": "7860", "instances": "2", "listen": "false"},  # extra-vars arrive as strings
], ids=lambda s: repr(s)[:60])
def test_clean_settings_have_no_problems(settings):
    assert exposure_problems(settings) == []


def test_loopback_api_without_api_auth_is_allowed():
    assert exposure_problems({"api": True}) == []


# --- exposed without UI credentials ----------------------------------------------------------------------

def test_listen_without_auth_is_refused():
    problem = _one(exposure_problems({"listen": True}), "sdfleet_auth_users is empty")
    assert "sdfleet_listen = true" in problem
    assert "Fix:" in problem


@pytest.mark.parametrize("address", ["0.0.0.0", "::", "192.168.1.20", "gpu01.example.net"])
def test_non_loopback_address_without_auth_is_refused(address):
    problem = _one(exposure_problems({"listen_address": address}), "sdfleet_auth_users is empty")
    assert f"sdfleet_listen_address = {address!r}" in problem


@pytest.mark.parametrize("address", ["127.0.0.1", "127.1.2.3", "::1", "[::1]", "localhost", "LOCALHOST", ""])
def test_loopback_addresses_are_not_exposed(address):
    assert not is_exposed({"listen_address": address})
    assert exposure_problems({"listen_address": address}) == []


def test_listen_true_counts_as_exposed_even_with_loopback_address():
    assert is_exposed({"listen": True, "listen_address": "127.0.0.1"})
    assert exposure_problems({"listen": True, "listen_address": "127.0.0.1"})


def test_empty_auth_list_counts_as_no_auth():
    assert exposure_problems({"listen": True, "auth_users": []})


# --- share ------------------------------------------------------------------------------------------------

def test_share_without_auth_carries_the_rce_warning():
    problems = exposure_problems({"share": True})
    problem = _one(problems, "sdfleet_share = true")
    assert "run code" in problem and "gradio.live" in problem
    assert "Fix: set sdfleet_auth_users" in problem


def test_share_counts_as_exposed_for_api_rule():
    problems = exposure_problems({"share": True, "auth_users": UI_USERS, "api": True})
    _one(problems, "sdfleet_api_auth_users")


def test_share_with_api_logins_is_refused_saying_it_bypasses_the_front_door():
    problems = exposure_problems({"share": True, "auth_users": UI_USERS, "api": True, "api_auth_users": API_USERS})
    problem = _one(problems, "sdfleet_share = true with sdfleet_api_auth_users set")
    assert "around the front door" in problem and "Fix: set sdfleet_share: false" in problem
    # UI logins only: today's rule (share with a login is allowed)
    assert exposure_problems({"share": True, "auth_users": UI_USERS}) == []


# --- API --------------------------------------------------------------------------------------------------

def test_exposed_api_without_api_auth_is_refused_and_names_the_leak():
    problems = exposure_problems({"listen": True, "auth_users": UI_USERS, "api": True})
    problem = _one(problems, "sdfleet_api = true")
    assert "/sdapi/v1/cmd-flags" in problem
    assert "sdfleet_api_auth_users" in problem


def test_exposed_api_with_api_auth_is_accepted():
    assert exposure_problems({"listen": True, "auth_users": UI_USERS, "api": True,
                              "api_auth_users": API_USERS}) == []


# --- insecure extension access ----------------------------------------------------------------------------

def test_insecure_extensions_while_exposed_need_acknowledgement():
    problems = exposure_problems({"listen": True, "auth_users": UI_USERS, "insecure_extension_access": True})
    problem = _one(problems, "sdfleet_insecure_extension_access = true")
    assert "sdfleet_insecure_extension_access_acknowledged: true" in problem


def test_insecure_extensions_acknowledged_is_accepted():
    assert exposure_problems({"listen": True, "auth_users": UI_USERS, "insecure_extension_access": True,
                              "insecure_extension_access_acknowledged": True}) == []


# --- usernames and passwords ------------------------------------------------------------------------------

@pytest.mark.parametrize("username", ["ad:min", "ad,min", "a\nb"])
def test_ui_username_with_separator_is_refused(username):
    problems = exposure_problems({"auth_users": [{"username": username, "password": GOOD_PW}]})
    problem = _one(problems, "sdfleet_auth_users[0].username")
    assert "Fix:" in problem


@pytest.mark.parametrize("username", ["ro:bot", "ro,bot"])
def test_api_username_with_separator_is_refused(username):
    problems = exposure_problems({"api_auth_users": [{"username": username, "password": GOOD_PW}]})
    _one(problems, "sdfleet_api_auth_users[0].username")


def test_ui_password_with_comma_is_refused_without_showing_it():
    secret = "has,comma-in-it"
    problems = exposure_problems({"auth_users": [{"username": "admin", "password": secret}]})
    problem = _one(problems, "sdfleet_auth_users[0].password (user 'admin')")
    assert "','" in problem and "--gradio-auth" in problem
    assert secret not in " ".join(problems)


def test_ui_password_with_colon_is_accepted():
    # --gradio-auth splits each entry on the first ':' only, so the password may contain ':'.
    assert exposure_problems({"auth_users": [{"username": "admin", "password": "pass:word:ok"}]}) == []


def test_api_password_with_colon_is_refused_without_showing_it():
    secret = "api:secret:long"
    problems = exposure_problems({"api_auth_users": [{"username": "robot", "password": secret}]})
    problem = _one(problems, "sdfleet_api_auth_users[0].password (user 'robot')")
    assert "':'" in problem and "--api-auth" in problem
    assert secret not in " ".join(problems)


@pytest.mark.parametrize("password", [None, ""])
def test_empty_password_is_refused(password):
    problems = exposure_problems({"auth_users": [{"username": "admin", "password": password}]})
    assert "is empty" in _one(problems, "sdfleet_auth_users[0].password")


def test_short_password_is_refused_and_not_shown():
    problems = exposure_problems({"auth_users": [{"username": "admin", "password": "abc1234"}]})
    problem = _one(problems, "shorter than 8")
    assert "abc1234" not in problem


def test_min_password_length_is_a_parameter():
    users = {"auth_users": [{"username": "admin", "password": "abc1234"}]}
    assert exposure_problems(users, min_password_length=6) == []
    assert "shorter than 22" in " ".join(exposure_problems({"auth_users": UI_USERS}, min_password_length=22))


def test_password_with_surrounding_whitespace_is_refused():
    problems = exposure_problems({"auth_users": [{"username": "admin", "password": " padded-password "}]})
    _one(problems, "whitespace")


def test_missing_username_and_non_mapping_entries_are_refused():
    problems = exposure_problems({"auth_users": [{"password": GOOD_PW}, "admin:pw"]})
    _one(problems, "sdfleet_auth_users[0].username")
    _one(problems, "sdfleet_auth_users[1] is not a mapping")


def test_auth_users_not_a_list_is_refused():
    problems = exposure_problems({"auth_users": "admin:password"})
    assert any("not a list" in p for p in problems)


def test_secrets_never_appear_anywhere():
    secrets = ["p,1Zq", "api:pw", "Xq7"]
    problems = exposure_problems({
        "listen": True, "api": True,
        "auth_users": [{"username": "a", "password": secrets[0]}, {"username": "b", "password": secrets[2]}],
        "api_auth_users": [{"username": "c", "password": secrets[1]}],
    })
    assert problems
    text = "\n".join(problems)
    for secret in secrets:
        assert secret not in text


# --- ports ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("port", [0, -1, 65536, "http", None, True])
def test_port_out_of_range_is_refused(port):
    problem = _one(exposure_problems({"port": port}), "sdfleet_port")
    assert "1..65535" in problem


def test_instances_past_the_last_port_are_refused():
    problem = _one(exposure_problems({"port": 65534, "instances": 3}), "sdfleet_port = 65534")
    assert "65536" in problem


def test_instances_must_be_positive():
    _one(exposure_problems({"instances": 0}), "sdfleet_instances")


def test_colliding_explicit_ports_are_refused():
    problem = _one(exposure_problems({"ports": [7860, 7861, 7860]}), "sdfleet_ports[2] = 7860")
    assert "instance 0" in problem


def test_explicit_port_out_of_range_is_refused():
    _one(exposure_problems({"ports": [7860, 70000]}), "sdfleet_ports[1]")


# --- types, naming, filter plumbing ----------------------------------------------------------------------

def test_non_boolean_is_reported_and_treated_as_exposed():
    problems = exposure_problems({"listen": "maybe"})
    _one(problems, "not a boolean")
    _one(problems, "sdfleet_auth_users is empty")


def test_role_prefix_names_both_variables():
    problem = exposure_problems({"listen": True}, prefix="sdfleet_", role_prefix="preflight_")[0]
    assert "sdfleet_auth_users (preflight_auth_users) is empty" in problem
    assert "sdfleet_listen (preflight_listen) = true" in problem


def test_settings_not_a_dict():
    assert "not a dict" in exposure_problems(["listen"])[0]  # type: ignore[arg-type]


def test_several_problems_are_all_reported():
    problems = exposure_problems({"listen": True, "share": True, "api": True, "insecure_extension_access": True,
                                  "port": 0})
    for needle in ("sdfleet_auth_users is empty", "sdfleet_share = true", "sdfleet_api = true",
                   "sdfleet_insecure_extension_access = true", "sdfleet_port = 0"):
        _one(problems, needle)


def test_is_loopback():
    assert is_loopback("127.0.0.1") and is_loopback("::1") and not is_loopback("0.0.0.0")


def test_filter_module_exports():
    filters = FilterModule().filters()
    assert filters["exposure_problems"] is exposure_problems
    assert filters["exposure_is_exposed"] is is_exposed


def test_role_prefix_names_list_entries():
    problems = exposure_problems({"auth_users": [{"username": "a:b", "password": GOOD_PW}]}, role_prefix="preflight_")
    assert problems[0].startswith("sdfleet_auth_users[0].username (preflight_auth_users[0].username) = 'a:b'")


# --- the refusals, recorded in the catalogue (preflight names both variables) -----------------------------------

PF = {"prefix": "sdfleet_", "role_prefix": "preflight_"}


@pytest.mark.parametrize("variable,settings,fragment", [
    ("preflight_auth_users", {"listen": True}, "is empty while the UI is exposed"),
    ("preflight_auth_users", {"listen_address": "0.0.0.0"}, "is empty while the UI is exposed"),
    ("preflight_auth_users", {"listen_address": "gpu01.example.net"}, "is empty while the UI is exposed"),
    ("preflight_share", {"share": True}, "gradio.live"),
    ("preflight_share", {"share": True, "auth_users": UI_USERS, "api_auth_users": API_USERS}, "around the front door"),
    ("preflight_api", {"listen": True, "auth_users": UI_USERS, "api": True}, "/sdapi/v1/cmd-flags"),
    ("preflight_insecure_extension_access", {"listen": True, "auth_users": UI_USERS,
                                             "insecure_extension_access": True}, "_acknowledged"),
    ("preflight_listen", {"listen": "maybe", "auth_users": UI_USERS}, "not a boolean"),
    ("preflight_listen", {"listen": [True], "auth_users": UI_USERS}, "not a boolean"),
    ("preflight_share", {"share": {"on": 1}, "auth_users": UI_USERS}, "not a boolean"),
    ("preflight_api", {"api": 2}, "not a boolean"),
    ("preflight_listen_address", {"listen_address": ["0.0.0.0"]}, "not a string"),
    ("preflight_listen_address", {"listen_address": 10}, "not a string"),
    ("preflight_port", {"port": "http"}, "1..65535"),
    ("preflight_port", {"port": None}, "1..65535"),
    ("preflight_port", {"port": [7860]}, "1..65535"),
    ("preflight_port", {"port": 0}, "1..65535"),
    ("preflight_port", {"port": 65536}, "1..65535"),
    ("preflight_port", {"port": True}, "1..65535"),
    ("preflight_instances", {"instances": 0}, "not a count"),
    ("preflight_instances", {"instances": "two"}, "not a count"),
    ("preflight_instances", {"instances": [1]}, "not a count"),
    ("preflight_auth_users", {"auth_users": "admin:password"}, "not a list"),
    ("preflight_auth_users", {"auth_users": {"username": "a", "password": GOOD_PW}}, "not a list"),
    ("preflight_api_auth_users", {"api_auth_users": "robot:pw"}, "not a list"),
    ("preflight_auth_users[0]", {"auth_users": ["admin:pw"]}, "not a mapping"),
    ("preflight_auth_users[0].username", {"auth_users": [{"username": "ad:min", "password": GOOD_PW}]}, "':'"),
    ("preflight_auth_users[0].username", {"auth_users": [{"username": ["admin"], "password": GOOD_PW}]},
     "not a string"),
    ("preflight_auth_users[0].password", {"auth_users": [{"username": "admin", "password": 12345678}]},
     "not a string"),
    ("preflight_auth_users[0].password", {"auth_users": [{"username": "admin", "password": "abc1234"}]},
     "shorter than 8"),
    ("preflight_api_auth_users[0].password", {"api_auth_users": [{"username": "robot", "password": "api:secret:1"}]},
     "--api-auth"),
])
def test_refusals_name_the_inventory_and_role_variable(variable, settings, fragment):
    problems = exposure_problems(settings, **PF)
    message = refused("preflight", variable, settings, problems, expect=[fragment])
    for user in settings.get("auth_users") or []:
        if isinstance(user, dict) and isinstance(user.get("password"), str) and len(user["password"]) > 4:
            assert user["password"] not in message


@pytest.mark.parametrize("ports", ["7860,7861", {"0": 7860}, [7860, "http"], [7860, 7860]])
def test_explicit_ports_of_the_wrong_shape_are_refused(ports):
    refused("preflight", "preflight_ports", {"ports": ports}, exposure_problems({"ports": ports}, **PF))
