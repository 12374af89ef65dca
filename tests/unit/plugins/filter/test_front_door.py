"""front_door filters: when a host gets a front door, and every refusal of its settings."""
from __future__ import annotations

import datetime

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from refusal_catalog import refused

from ansible_collections.sdfleet.toolkit.plugins.filter import front_door as mod

NOW = datetime.datetime(2026, 12, 1, tzinfo=datetime.timezone.utc)
EXPOSED = {"listen": True, "port": 7860, "instances": 2, "backend_port": 27860}


def _pair(days_from: int = -1, days_to: int = 30, encrypt: bool = False) -> tuple[str, str, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "gpu1.example")])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(NOW + datetime.timedelta(days=days_from))
            .not_valid_after(NOW + datetime.timedelta(days=days_to))
            .sign(key, hashes.SHA256()))
    algo = serialization.BestAvailableEncryption(b"passphrase") if encrypt else serialization.NoEncryption()
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, algo).decode()
    return cert.public_bytes(serialization.Encoding.PEM).decode(), key_pem, key


def problems(**settings):
    return mod.front_door_problems(EXPOSED | settings, now=NOW)


@pytest.mark.parametrize("settings,expected", [
    ({}, False),
    ({"listen": True}, True),
    ({"listen_address": "10.1.2.3"}, True),
    ({"listen_address": "127.0.0.1"}, False),
    ({"api_auth_users": [{"username": "robot", "password": "x" * 12}]}, True),
    ({"front_door": True}, True),
    ({"front_door": "false", "listen": True}, False),
])
def test_enabled_rule(settings, expected):
    assert mod.front_door_enabled(settings) is expected


def test_sound_settings_have_no_problem():
    cert, key, _ = _pair()
    assert problems() == []
    assert problems(tls_certificate=cert, tls_private_key=key, front_door_allow=["10.0.0.0/8", "192.168.1.7"]) == []


def test_certificate_without_its_key_is_refused():
    cert, _, _ = _pair()
    [msg] = problems(tls_certificate=cert)
    assert "sdfleet_tls_certificate is set but sdfleet_tls_private_key is empty" in msg
    [msg] = problems(tls_private_key=_pair()[1])
    assert "sdfleet_tls_private_key is set but sdfleet_tls_certificate is empty" in msg


def test_key_that_does_not_match_is_refused():
    cert, _, _ = _pair()
    _, other_key, _ = _pair()
    [msg] = problems(tls_certificate=cert, tls_private_key=other_key)
    assert "does not match sdfleet_tls_certificate" in msg and "PRIVATE" not in msg


def test_expired_and_future_certificates_are_refused():
    cert, key, _ = _pair(days_from=-60, days_to=-1)
    [msg] = problems(tls_certificate=cert, tls_private_key=key)
    assert "sdfleet_tls_certificate expired on 2026-11-30" in msg
    cert, key, _ = _pair(days_from=2, days_to=30)
    [msg] = problems(tls_certificate=cert, tls_private_key=key)
    assert "is not valid before 2026-12-03" in msg


def test_unreadable_pem_and_encrypted_key_are_refused():
    cert, key, _ = _pair(encrypt=True)
    [msg] = problems(tls_certificate=cert, tls_private_key=key)
    assert "encrypted with a passphrase" in msg
    msgs = problems(tls_certificate="not a certificate", tls_private_key="not a key")
    assert len(msgs) == 2 and "is not a PEM certificate" in msgs[0] and "is not a PEM private key" in msgs[1]


def test_tls_off_needs_the_opt_out():
    [msg] = problems(tls=False)
    assert "sdfleet_tls = false" in msg and "sdfleet_tls_off_acknowledged: true" in msg
    assert problems(tls=False, tls_off_acknowledged=True) == []


@pytest.mark.parametrize("entry", ["10.0.0.0/33", "example.com", "", 10])
def test_allow_list_entries_must_be_cidrs(entry):
    [msg] = problems(front_door_allow=["10.0.0.0/8", entry])
    assert msg.startswith("sdfleet_front_door_allow[1] = ") and "not a CIDR" in msg


def test_allow_list_must_be_a_list():
    [msg] = problems(front_door_allow="10.0.0.0/8")
    assert "not a list" in msg


def test_backend_port_on_a_public_port_is_refused():
    [msg] = problems(backend_port=7861)
    assert "instance 0's loopback port 7861 is also the front door's public port of instance 1" in msg


def test_mirror_port_collisions_are_refused():
    [msg] = problems(mirror_port=7861)
    assert "the front door's public port of instance 1 is 7861, the fleet mirror's port" in msg
    [msg] = problems(mirror_port=27860)
    assert msg.startswith("sdfleet_backend_port: the loopback port of instance 0 is 27860")
    assert problems(mirror_port=8080) == []


def test_front_door_off_where_it_is_needed_is_refused():
    [msg] = problems(front_door=False)
    assert "sdfleet_front_door = false on a host whose UI is exposed" in msg
    [msg] = mod.front_door_problems({"front_door": False, "api_auth_users": [{"username": "r", "password": "p" * 9}]})
    assert "sdfleet_api_auth_users set: the API logins are enforced by the front door" in msg
    assert mod.front_door_problems({"front_door": False}) == []


def test_role_prefix_names_both_variables():
    [msg] = mod.front_door_problems(EXPOSED | {"tls": False}, prefix="sdfleet_", role_prefix="preflight_", now=NOW)
    assert msg.startswith("sdfleet_tls (preflight_tls) = false")


def test_front_door_not_a_boolean_is_refused():
    [msg] = problems(front_door="maybe")
    assert "not a boolean" in msg and "auto, true or false" in msg


def test_filters_exported():
    assert set(mod.FilterModule().filters()) == {"front_door_problems", "front_door_enabled"}


# --- the refusals, recorded in the catalogue (as preflight names them) --------------------------------------------

PF = {"prefix": "sdfleet_", "role_prefix": "preflight_", "now": NOW}


@pytest.mark.parametrize("variable,settings,fragment", [
    ("preflight_front_door", {"front_door": "sometimes"}, "auto, true or false"),
    ("preflight_front_door", {"front_door": ["auto"]}, "auto, true or false"),
    ("preflight_front_door", {"front_door": False}, "on a host whose UI is exposed"),
    ("preflight_tls", {"tls": "maybe"}, "not a boolean"),
    ("preflight_tls", {"tls": False}, "in clear"),
    ("preflight_tls_off_acknowledged", {"tls": False, "tls_off_acknowledged": [True]}, "not a boolean"),
    ("preflight_front_door_allow", {"front_door_allow": "10.0.0.0/8"}, "not a list"),
    ("preflight_front_door_allow", {"front_door_allow": {"lan": "10.0.0.0/8"}}, "not a list"),
    ("preflight_front_door_allow[0]", {"front_door_allow": ["studio-lan"]}, "not a CIDR"),
    ("preflight_front_door_allow[0]", {"front_door_allow": [10]}, "not a CIDR"),
    ("preflight_front_door_allow[0]", {"front_door_allow": [None]}, "not a CIDR"),
    ("preflight_backend_port", {"backend_port": "high"}, "not a port number"),
    ("preflight_backend_port", {"backend_port": [27860]}, "not a port number"),
    ("preflight_backend_port", {"backend_port": 65535}, "not a port number"),
    ("preflight_backend_port", {"backend_port": 7861}, "also the front door's public port"),
    ("preflight_tls_certificate", {"tls_certificate": "not a certificate", "tls_private_key": "x"},
     "not a PEM certificate"),
    ("preflight_tls_certificate", {"tls_certificate": ["-----BEGIN CERTIFICATE-----"], "tls_private_key": "x"},
     "not a PEM certificate"),
])
def test_refusals_name_the_inventory_and_role_variable(variable, settings, fragment):
    refused("preflight", variable, settings, mod.front_door_problems(EXPOSED | settings, **PF), expect=[fragment])


@pytest.mark.parametrize("settings", [["listen"], "auto", None])
def test_front_door_enabled_refuses_settings_that_are_not_a_dict(settings):
    with pytest.raises(Exception, match="not a dict"):
        mod.front_door_enabled(settings)
