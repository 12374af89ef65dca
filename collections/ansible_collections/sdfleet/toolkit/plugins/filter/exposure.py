# -*- coding: utf-8 -*-
"""Exposure rules for the webui: which listen/auth/API/share settings to refuse.

Both the ``preflight`` role (before any change on a host) and the
``webui_service`` role call :func:`exposure_problems`; it is a pure function,
so the rules are unit-tested without Ansible.
"""
from __future__ import annotations

import ipaddress
from typing import Any, Iterable, Mapping, Sequence

DEFAULT_MIN_PASSWORD_LENGTH = 8
_TRUE = {"true", "yes", "on", "1", "y"}
_FALSE = {"false", "no", "off", "0", "n", ""}


class _Names:
    """Formats variable names for messages: ``sdfleet_listen`` or ``sdfleet_listen (preflight_listen)``."""

    def __init__(self, prefix: str, role_prefix: str) -> None:
        self.prefix = prefix
        self.role_prefix = role_prefix

    def __call__(self, key: str, suffix: str = "") -> str:
        name = f"{self.prefix}{key}{suffix}"
        if self.role_prefix:
            name += f" ({self.role_prefix}{key}{suffix})"
        return name


def _show(value: Any) -> str:
    """Render a (non-secret) value the way it would be written in YAML."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, str):
        return repr(value)
    return str(value)


def _unknown_keys(at: str, entry: Mapping[str, Any], keys: Sequence[str]) -> list[str]:
    """The refusal of the keys of a list entry (``at`` names it, ``preflight_supported_os[1]``) not among ``keys``:
    a misspelt key would otherwise be ignored. ``[]`` when every key is known."""
    unknown = sorted(str(key) for key in entry if key not in keys)
    if not unknown:
        return []
    return [f"{at} has unknown keys {', '.join(unknown)} (a misspelling is not ignored). "
            f"Fix: use only {', '.join(keys)}."]


def _as_bool(settings: Mapping[str, Any], key: str, name: _Names, problems: list[str]) -> bool:
    """Read a boolean; an unreadable value is reported and counts as true (the safe reading for exposure)."""
    value = settings.get(key, False)
    if value is None or isinstance(value, bool):
        return bool(value)
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    problems.append(f"{name(key)} = {_show(value)}: not a boolean. Fix: set it to true or false.")
    return True


def _as_int(value: Any) -> int | None:
    """An int from an int or a string of digits (extra-vars arrive as strings); None otherwise."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value.strip())
    return None


def is_loopback(address: str) -> bool:
    """True for 127.0.0.0/8, ::1 and ``localhost``."""
    text = address.strip().strip("[]")
    if text.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(text).is_loopback
    except ValueError:
        return False


def exposure_triggers(settings: Mapping[str, Any]) -> list[str]:
    """Keys that make the UI reachable from other machines: ``listen``, ``listen_address``, ``share``."""
    triggers = []
    if _as_bool(settings, "listen", _Names("", ""), []):
        triggers.append("listen")
    address = settings.get("listen_address") or ""
    if isinstance(address, str) and address.strip() and not is_loopback(address):
        triggers.append("listen_address")
    if _as_bool(settings, "share", _Names("", ""), []):
        triggers.append("share")
    return triggers


def is_exposed(settings: Mapping[str, Any]) -> bool:
    """True when the UI is reachable from other machines (listen, a non-loopback address, or share)."""
    return bool(exposure_triggers(settings))


def _bad_chars(text: str, chars: Iterable[str]) -> list[str]:
    found = [repr(c) for c in chars if c in text]
    if "\n" in text or "\r" in text:
        found.append("a line break")
    return found


def _user_problems(users: Any, key: str, name: _Names, min_length: int, password_bad: str, flag: str) -> list[str]:
    """Check a list of {username, password}; ``password_bad`` holds the characters ``flag`` cannot parse."""
    var = name(key)
    if users is None:
        return []
    if not isinstance(users, list):
        return [f"{var} is a {type(users).__name__}, not a list. Fix: write it as a list of "
                "{username: ..., password: ...} entries."]
    problems: list[str] = []
    for index, entry in enumerate(users):
        where = name(key, f"[{index}]")
        if not isinstance(entry, Mapping):
            problems.append(f"{where} is not a mapping. Fix: write it as {{username: ..., password: ...}}.")
            continue
        username = entry.get("username")
        user_var = name(key, f"[{index}].username")
        if not isinstance(username, str) or not username.strip():
            problems.append(f"{user_var} = {_show(username)}: empty or not a string. Fix: set a username.")
            username = None
        else:
            bad = _bad_chars(username, ":,")
            if bad:
                problems.append(f"{user_var} = {_show(username)}: contains {', '.join(bad)}, which the webui "
                                "uses to split 'user:password,user:password'. Fix: choose a username without them.")
            if username != username.strip():
                problems.append(f"{user_var} = {_show(username)}: starts or ends with whitespace, which the "
                                "webui strips, so the login would never match. Fix: remove the whitespace.")
        owner = name(key, f"[{index}].password")
        if username:
            owner += f" (user {_show(username)})"
        password = entry.get("password")
        if password is None or password == "":
            problems.append(f"{owner} is empty. Fix: set a password of at least {min_length} characters "
                            "(keep it in ansible-vault).")
            continue
        if not isinstance(password, str):
            problems.append(f"{owner} is not a string. Fix: quote it (keep it in ansible-vault).")
            continue
        if len(password) < min_length:
            problems.append(f"{owner} is shorter than {min_length} characters. Fix: use a longer password "
                            "(keep it in ansible-vault).")
        bad = _bad_chars(password, password_bad)
        if bad:
            problems.append(f"{owner} contains {', '.join(bad)}, which crashes or silently breaks the webui's "
                            f"parsing of {flag}. Fix: choose a password without {' or '.join(bad)}.")
        if password != password.strip():
            problems.append(f"{owner} starts or ends with whitespace, which the webui strips. Fix: remove it.")
    return problems


def _port_problems(settings: Mapping[str, Any], name: _Names) -> list[str]:
    problems: list[str] = []
    base = _as_int(settings.get("port", 7860))
    if base is None or not 1 <= base <= 65535:
        problems.append(f"{name('port')} = {_show(settings.get('port'))}: not a port number in 1..65535. "
                        "Fix: set it to a free port, e.g. 7860.")
        base = None
    count = _as_int(settings.get("instances", 1))
    if count is None or count < 1:
        problems.append(f"{name('instances')} = {_show(settings.get('instances'))}: not a count >= 1. "
                        "Fix: set it to the number of instances (one per GPU), or 1.")
        count = None
    explicit = settings.get("ports")
    if explicit:
        if not isinstance(explicit, list):
            return problems + [f"{name('ports')} = {_show(explicit)}: not a list. Fix: list one port per instance."]
        ports = [_as_int(p) for p in explicit]
        for index, (raw, port) in enumerate(zip(explicit, ports)):
            if port is None or not 1 <= port <= 65535:
                problems.append(f"{name('ports', f'[{index}]')} = {_show(raw)}: not a port number in 1..65535. "
                                "Fix: use a port in 1..65535.")
        seen: dict[int, int] = {}
        for index, port in enumerate(ports):
            if port is None:
                continue
            if port in seen:
                problems.append(f"{name('ports', f'[{index}]')} = {port}: the same port as instance {seen[port]}. "
                                "Fix: give every instance its own port.")
            else:
                seen[port] = index
        return problems
    if base is not None and count is not None and base + count - 1 > 65535:
        problems.append(f"{name('port')} = {base} with {count} instances: instance {count - 1} would need port "
                        f"{base + count - 1} (base port + N), beyond 65535. Fix: lower {name('port')}.")
    return problems


def exposure_problems(settings: Mapping[str, Any], min_password_length: int = DEFAULT_MIN_PASSWORD_LENGTH,
                      prefix: str = "sdfleet_", role_prefix: str = "") -> list[str]:
    """Return every problem with the webui exposure ``settings`` (an empty list when they are safe).

    ``settings`` keys (all optional): ``listen`` (bool), ``listen_address`` (str), ``port`` (int, base port),
    ``instances`` (int, instance N uses port + N), ``ports`` (list of int, overrides port + N),
    ``auth_users`` and ``api_auth_users`` (lists of ``{username, password}``), ``api``, ``share``,
    ``insecure_extension_access``, ``insecure_extension_access_acknowledged`` (bools).

    Each problem is one sentence naming the variable (``prefix`` + key, plus ``role_prefix`` + key when given),
    the bad value and the fix. Passwords are never included, only which user's password is wrong.
    """
    if not isinstance(settings, Mapping):
        return [f"the exposure settings are a {type(settings).__name__}, not a dict. Fix: pass a dict."]
    name = _Names(prefix, role_prefix)
    problems: list[str] = []
    min_length = _as_int(min_password_length)
    if min_length is None or min_length < 1:
        problems.append(f"min_password_length = {_show(min_password_length)}: not a length >= 1. Fix: use e.g. 8.")
        min_length = DEFAULT_MIN_PASSWORD_LENGTH

    listen = _as_bool(settings, "listen", name, problems)
    share = _as_bool(settings, "share", name, problems)
    api = _as_bool(settings, "api", name, problems)
    insecure = _as_bool(settings, "insecure_extension_access", name, problems)
    acknowledged = _as_bool(settings, "insecure_extension_access_acknowledged", name, problems)

    address = settings.get("listen_address") or ""
    address_exposed = False
    if not isinstance(address, str):
        problems.append(f"{name('listen_address')} = {_show(address)}: not a string. "
                        "Fix: set an IP address or host name, or leave it empty for 127.0.0.1.")
    elif address.strip() and not is_loopback(address):
        address_exposed = True

    network = []
    if listen:
        network.append(f"{name('listen')} = true")
    if address_exposed:
        network.append(f"{name('listen_address')} = {_show(address)}")
    exposed = bool(network) or share

    auth_users = settings.get("auth_users") or []
    api_auth_users = settings.get("api_auth_users") or []
    has_auth = isinstance(auth_users, list) and len(auth_users) > 0
    has_api_auth = isinstance(api_auth_users, list) and len(api_auth_users) > 0

    if network and not has_auth:
        problems.append(f"{name('auth_users')} is empty while the UI is exposed ({', '.join(network)}): anyone "
                        "who can reach the port gets the UI, which can run code on the host. Fix: add at least one "
                        f"{{username, password}} to {name('auth_users')} (password from ansible-vault), or keep "
                        f"the UI on loopback ({name('listen')}: false, {name('listen_address')}: '').")
    if share and not has_auth:
        problems.append(f"{name('share')} = true with empty {name('auth_users')}: a public gradio.live link "
                        "without a login lets anyone run code on this host and read its files (the RCE warning "
                        f"of the install guide). Fix: set {name('auth_users')}, or {name('share')}: false.")
    if share and has_api_auth:
        problems.append(f"{name('share')} = true with {name('api_auth_users')} set: gradio's public tunnel "
                        "(gradio.live) reaches the webui directly, around the front door that enforces the API "
                        "logins, so anyone with the link would get the API without them. Fix: set "
                        f"{name('share')}: false and serve through the front door ({name('listen')}: true), or "
                        f"empty {name('api_auth_users')}.")
    if api and exposed and not has_api_auth:
        problems.append(f"{name('api')} = true on an exposed server with empty {name('api_auth_users')}: the "
                        "REST API is not covered by the UI login, and /sdapi/v1/cmd-flags returns the UI "
                        f"credentials in clear. Fix: set {name('api_auth_users')}, or {name('api')}: false.")
    if insecure and exposed and not acknowledged:
        problems.append(f"{name('insecure_extension_access')} = true on an exposed server: anyone who can log in "
                        "can install extensions, i.e. run any code as the service user. Fix: set "
                        f"{name('insecure_extension_access')}: false, or confirm with "
                        f"{name('insecure_extension_access_acknowledged')}: true.")

    problems += _user_problems(auth_users, "auth_users", name, min_length, ",", "--gradio-auth")
    problems += _user_problems(api_auth_users, "api_auth_users", name, min_length, ":,", "--api-auth")
    problems += _port_problems(settings, name)
    return problems


class FilterModule:
    """sdfleet exposure filters."""

    def filters(self) -> dict[str, Any]:
        return {
            "exposure_problems": exposure_problems,
            "exposure_is_exposed": is_exposed,
        }
