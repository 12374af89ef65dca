"""The catalogue of refused inputs: every bad input a test proves is refused, with the message it gets.

Tests call :func:`refused` where they check a refusal. It asserts that the message names the variable and
holds the expected fragments, and records the case. At the end of the session the plugin writes
``build/refusals.json`` (one entry per distinct ``(role, variable, input)``), which
``scripts/refusal_table.py`` turns into the "Refused inputs" table of each role README (and checks).

Registered as a pytest plugin (``-p refusal_catalog`` in pyproject's addopts).
"""
from __future__ import annotations

import json
import os
import pathlib
import re
from collections.abc import Sequence
from typing import Any, Union

from ansible_collections.sdfleet.toolkit.plugins.module_utils.redact import redact_urls

ROLES = ("preflight", "nvidia_check", "python", "git", "fleet_mirror", "webui_repo", "webui_models",
         "webui_service", "front_door", "update")
OUT = pathlib.Path(__file__).resolve().parent.parent / "build" / "refusals.json"
_CASES: dict[tuple[str, str, str], dict[str, str]] = {}


SECRET_KEYS = ("password", "private_key", "token", "secret")
# Temporary dirs differ per run; the tables must not.
_TMP = re.compile(r"(?:/private)?/tmp/(?:pytest-of-[^/\s]+/pytest-\d+/[^/\s'\"]+|tmp[A-Za-z0-9_]{6,})")


def _stable(text: str) -> str:
    """``text`` with per-run temporary paths replaced by ``<tmp>``."""
    return _TMP.sub("<tmp>", text)


def _masked(value: Any) -> Any:
    """``value`` with the values of secret-named keys shown as ``***`` (the tables go into READMEs)."""
    if isinstance(value, dict):
        return {key: "***" if any(word in str(key).lower() for word in SECRET_KEYS) and value[key] not in ("", None)
                else _masked(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_masked(item) for item in value]
    return value


def _shown(value: Any) -> str:
    """The bad input as one short line: secret-named values masked, URL credentials redacted, at most 120."""
    text = value if isinstance(value, str) else json.dumps(_masked(value), sort_keys=True, default=str)
    text = _stable(redact_urls(re.sub(r"\s+", " ", text)))
    return text if len(text) <= 120 else text[:117] + "..."


def refused(role: str, variable: str, bad_input: Any, message: Union[str, Sequence[str]],
            expect: Union[str, Sequence[str]] = ()) -> str:
    """Assert that ``message`` refuses ``bad_input`` by name, and record the case.

    ``message`` is the refusal text, or a list of problems (exactly one must name ``variable``).
    ``expect`` holds fragments the message must contain besides the variable name ("Fix:" always).
    Returns the message.
    """
    assert role in ROLES, f"unknown role {role!r} (one of {ROLES})"
    if not isinstance(message, str):
        hits = [m for m in message if variable in m]
        assert len(hits) == 1, f"expected one problem naming {variable!r}, got {list(message)}"
        message = hits[0]
    assert variable in message, f"the refusal does not name {variable!r}: {message}"
    fragments = [expect] if isinstance(expect, str) else list(expect)
    for fragment in fragments + ["Fix"]:
        assert fragment in message, f"expected {fragment!r} in: {message}"
    raw = bad_input if isinstance(bad_input, str) else json.dumps(bad_input, sort_keys=True, default=str)
    key = (role, variable, _stable(raw))  # distinct inputs count apart even when their shown (masked) forms agree
    _CASES[key] = {"role": role, "variable": variable, "input": _shown(bad_input), "message": _shown_message(message)}
    return message


def _shown_message(message: str) -> str:
    text = _stable(redact_urls(re.sub(r"\s+", " ", message).strip()))
    return text if len(text) <= 400 else text[:397] + "..."


def cases() -> list[dict[str, str]]:
    """The recorded cases, sorted by role, variable, input."""
    return [_CASES[key] for key in sorted(_CASES)]


def pytest_sessionfinish(session: Any, exitstatus: int) -> None:  # noqa: ARG001 (pytest hook signature)
    """Write build/refusals.json when the session recorded cases (a subset run writes a subset: see its count)."""
    if not _CASES or os.environ.get("SDFLEET_REFUSALS_OUT") == "":
        return
    out = pathlib.Path(os.environ.get("SDFLEET_REFUSALS_OUT") or OUT)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(cases(), indent=1, sort_keys=True) + "\n", encoding="utf-8")
    tmp.replace(out)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """One line: how many distinct refused inputs this session proved, per role."""
    if not _CASES:
        return
    per_role: dict[str, int] = {}
    for role, _variable, _input in _CASES:
        per_role[role] = per_role.get(role, 0) + 1
    detail = ", ".join(f"{role} {count}" for role, count in sorted(per_role.items()))
    terminalreporter.write_line(f"refused inputs proven: {len(_CASES)} distinct ({detail})")
