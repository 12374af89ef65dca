# -*- coding: utf-8 -*-
"""The front door (nginx with TLS in front of the webui instances): when a host gets one, and what to refuse.

Pure functions, unit-tested without Ansible:

* :func:`front_door_enabled`: the one rule deciding whether a host gets a front door.
* :func:`front_door_problems`: every problem with the front-door settings (TLS certificate and key, the
  plain-HTTP opt-out, the client allow-list, port collisions), each naming the variable and the fix.

The preflight role (before any change) and the front_door and webui_service roles read these; nothing
else decides them.
"""
from __future__ import annotations

import datetime
import ipaddress
from typing import Any, Mapping, Optional

from ansible.errors import AnsibleFilterError

from ansible_collections.sdfleet.toolkit.plugins.filter.exposure import _as_bool, _as_int, _Names, _show, exposure_triggers


def _is_auto(value: Any) -> bool:
    return isinstance(value, str) and value.strip().lower() == "auto"


def _network_exposed(settings: Mapping[str, Any]) -> bool:
    """The UI is reachable over the network: ``listen`` or a non-loopback ``listen_address`` (exposure's rule)."""
    return bool({"listen", "listen_address"} & set(exposure_triggers(settings)))


def front_door_enabled(settings: Mapping[str, Any]) -> bool:
    """Whether the host's instances sit behind the front door.

    ``front_door``: ``true``/``false`` as set, or ``auto`` (the default): on when the UI is reachable over the
    network (``listen``, or a non-loopback ``listen_address``) or when API logins are set (the front door is
    what enforces them: the webui's own ``--api-auth`` is readable through ``/sdapi/v1/cmd-flags`` and
    ``/internal/sysinfo``).
    """
    if not isinstance(settings, Mapping):
        raise AnsibleFilterError(f"front_door_enabled: the settings are a {type(settings).__name__}, not a dict. "
                                 "Fix: pass {front_door, listen, listen_address, api_auth_users}.")
    if _is_auto(settings.get("front_door", "auto")):
        return _network_exposed(settings) or bool(settings.get("api_auth_users") or [])
    return _as_bool(settings, "front_door", _Names("", ""), [])


def _pem_problems(settings: Mapping[str, Any], name: _Names, now: datetime.datetime) -> list[str]:
    """The inventory certificate and key: both or neither, parseable, unencrypted, matching, in date."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    cert_text = settings.get("tls_certificate") or ""
    key_text = settings.get("tls_private_key") or ""
    if not cert_text and not key_text:
        return []
    if cert_text and not key_text:
        return [f"{name('tls_certificate')} is set but {name('tls_private_key')} is empty: nginx needs the key "
                "of the certificate. Fix: set the key (from ansible-vault), or unset both for a self-signed one."]
    if key_text and not cert_text:
        return [f"{name('tls_private_key')} is set but {name('tls_certificate')} is empty. Fix: set the "
                "certificate (PEM) that goes with the key, or unset both for a self-signed one."]
    problems: list[str] = []
    cert = key = None
    try:
        cert = x509.load_pem_x509_certificate(str(cert_text).encode())
    except (ValueError, TypeError) as err:
        problems.append(f"{name('tls_certificate')} is not a PEM certificate ({err}). Fix: paste the whole "
                        "'-----BEGIN CERTIFICATE-----' block (the server certificate first, then its chain).")
    try:
        key = serialization.load_pem_private_key(str(key_text).encode(), password=None)
    except TypeError:
        problems.append(f"{name('tls_private_key')} is encrypted with a passphrase, which nginx cannot read at "
                        "start. Fix: store it unencrypted in ansible-vault (openssl pkey -in key.pem -out plain.pem).")
    except (ValueError, Exception) as err:  # cryptography raises several types for bad input
        problems.append(f"{name('tls_private_key')} is not a PEM private key ({type(err).__name__}). Fix: paste "
                        "the whole '-----BEGIN PRIVATE KEY-----' block.")
    if cert is None:
        return problems
    spki = serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    if key is not None and key.public_key().public_bytes(*spki) != cert.public_key().public_bytes(*spki):
        problems.append(f"{name('tls_private_key')} does not match {name('tls_certificate')} (their public keys "
                        "differ). Fix: set the key the certificate was issued for.")
    not_after = cert.not_valid_after_utc
    if not_after <= now:
        problems.append(f"{name('tls_certificate')} expired on {not_after:%Y-%m-%d %H:%M} UTC (subject "
                        f"{cert.subject.rfc4514_string()}). Fix: renew it, or unset {name('tls_certificate')} and "
                        f"{name('tls_private_key')} for a self-signed one.")
    if cert.not_valid_before_utc > now:
        problems.append(f"{name('tls_certificate')} is not valid before {cert.not_valid_before_utc:%Y-%m-%d %H:%M} "
                        "UTC. Fix: check the controller's and the CA's clocks, or use a certificate valid now.")
    return problems


def _allow_problems(allow: Any, name: _Names) -> list[str]:
    if allow is None or allow == []:
        return []
    if not isinstance(allow, list):
        return [f"{name('front_door_allow')} = {_show(allow)}: not a list. Fix: list CIDRs, e.g. ['10.0.0.0/8']."]
    problems: list[str] = []
    for index, entry in enumerate(allow):
        try:
            ipaddress.ip_network(str(entry).strip(), strict=False)
            if not isinstance(entry, str):
                raise ValueError
        except ValueError:
            problems.append(f"{name('front_door_allow', f'[{index}]')} = {_show(entry)}: not a CIDR (or address). "
                            "Fix: write it as an address or network, e.g. '192.168.1.0/24' or '10.1.2.3'.")
    return problems


def _port_problems(settings: Mapping[str, Any], name: _Names) -> list[str]:
    base = _as_int(settings.get("port", 7860))
    count = _as_int(settings.get("instances", 1))
    backend = _as_int(settings.get("backend_port", 27860))
    if base is None or count is None or count < 1:
        return []  # exposure_problems reports these
    if backend is None or not 1 <= backend <= 65535 - count + 1:
        return [f"{name('backend_port')} = {_show(settings.get('backend_port'))}: not a port number with room for "
                f"{count} instance(s) (backend port + N <= 65535). Fix: set a free port, e.g. 27860."]
    public = {base + n: n for n in range(count)}
    problems: list[str] = []
    for n in range(count):
        if backend + n in public:
            problems.append(f"{name('backend_port')} = {backend}: instance {n}'s loopback port {backend + n} is also "
                            f"the front door's public port of instance {public[backend + n]} ({name('port')} = {base}"
                            f" + N). Fix: move {name('backend_port')} away from {base}..{base + count - 1}.")
    mirror = _as_int(settings.get("mirror_port", 0)) or 0
    if mirror:
        for label, first in (("the front door's public port", base), ("the loopback port", backend)):
            if first <= mirror <= first + count - 1:
                var = name("port") if first == base else name("backend_port")
                problems.append(f"{var}: {label} of instance {mirror - first} is {mirror}, the fleet mirror's port "
                                f"({name('mirror_port')}) on this host. Fix: give the mirror or {var} another port.")
    return problems


def front_door_problems(settings: Mapping[str, Any], prefix: str = "sdfleet_", role_prefix: str = "",
                        now: Optional[datetime.datetime] = None) -> list[str]:
    """Every problem with the front-door ``settings`` (see the module's DOCUMENTATION); empty when sound.

    Only checked where the host gets a front door (:func:`front_door_enabled`), except that turning it off
    while the host needs it is itself reported. ``now`` (UTC) is for tests.
    """
    if not isinstance(settings, Mapping):
        return [f"the front-door settings are a {type(settings).__name__}, not a dict. Fix: pass a dict."]
    name = _Names(prefix, role_prefix)
    problems: list[str] = []
    if not _is_auto(settings.get("front_door", "auto")):
        _as_bool(settings, "front_door", name, problems)
    if problems:
        return [p.replace("Fix: set it to true or false.", "Fix: set it to auto, true or false.") for p in problems]
    if not front_door_enabled(settings):
        if _network_exposed(settings):
            problems.append(f"{name('front_door')} = false on a host whose UI is exposed ({name('listen')} / "
                            f"{name('listen_address')}): the webui's own login does not cover /internal/* (its "
                            "sysinfo route returns the process environment) nor /sdapi/v1/cmd-flags. Fix: leave "
                            f"{name('front_door')} at auto, or keep the UI on loopback.")
        if settings.get("api_auth_users"):
            problems.append(f"{name('front_door')} = false with {name('api_auth_users')} set: the API logins are "
                            "enforced by the front door (given to the webui as --api-auth they are readable through "
                            f"/sdapi/v1/cmd-flags and /internal/sysinfo). Fix: leave {name('front_door')} at auto, or "
                            f"empty {name('api_auth_users')}.")
        return problems
    tls = _as_bool(settings, "tls", name, problems) if "tls" in settings else True
    acknowledged = _as_bool(settings, "tls_off_acknowledged", name, problems)
    if not tls and not acknowledged:
        problems.append(f"{name('tls')} = false: logins and API passwords would cross the network in clear. Fix: "
                        f"leave {name('tls')}: true (a self-signed certificate is made per host when "
                        f"{name('tls_certificate')} is empty), or confirm plain HTTP with "
                        f"{name('tls_off_acknowledged')}: true.")
    if tls:
        problems += _pem_problems(settings, name, now or datetime.datetime.now(datetime.timezone.utc))
    problems += _allow_problems(settings.get("front_door_allow"), name)
    problems += _port_problems(settings, name)
    return problems


class FilterModule:
    """sdfleet front-door filters."""

    def filters(self) -> dict[str, Any]:
        return {
            "front_door_problems": front_door_problems,
            "front_door_enabled": front_door_enabled,
        }
