# -*- coding: utf-8 -*-
"""Credentials in URLs: the one rule for hiding them (``https://user:token@host/`` → ``https://***@host/``).

Every message, report, log line and rendered file that carries a URL goes through :func:`redact_urls`
(text) or :func:`redact_url` (one URL). Modules import this file; the ``sdfleet.toolkit.redact_urls``
filter exposes the same functions to templates and tasks. Pure functions, no Ansible import.
"""
from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit, urlunsplit

MASK = "***"

# scheme://userinfo@ : userinfo is everything up to the last "@" before the host part ends
# (RFC 3986: no "/", "?", "#" or whitespace in it). Covers http(s), git, ssh, ftp, socks5h proxies...
_USERINFO = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.-]*://)(?P<userinfo>[^/?#\s@'\"]+)@")


def has_credentials(url: Any) -> bool:
    """True when ``url`` (any string) holds a user name or password before its host."""
    return isinstance(url, str) and bool(_USERINFO.search(url))


def redact_urls(text: Any) -> str:
    """``text`` with the user-info part of every URL in it replaced by ``***`` (non-strings are str()-ed)."""
    return _USERINFO.sub(lambda m: f"{m.group('scheme')}{MASK}@", str(text))


def redact_url(url: Any) -> str:
    """One URL with its user-info replaced by ``***`` (a string without credentials comes back unchanged)."""
    return redact_urls(url)


def strip_credentials(url: str) -> str:
    """``url`` without its user-info at all (``https://host/path``): what may be stored where others read it."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))


def redact_value(value: Any) -> Any:
    """Redact URLs in every string of a nested structure (dicts, lists, tuples); other values stay."""
    if isinstance(value, str):
        return redact_urls(value)
    if isinstance(value, dict):
        return {key: redact_value(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact_value(item) for item in value]
    return value
