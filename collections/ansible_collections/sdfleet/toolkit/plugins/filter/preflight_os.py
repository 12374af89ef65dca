# -*- coding: utf-8 -*-
"""The preflight role's operating-system check: is the host's system listed in ``preflight_supported_os``, and
is it tested there.

Pure functions, unit-tested without Ansible (tests/unit/plugins/filter/test_preflight_os.py, which also proves
them equal to the Jinja in roles/preflight/vars/main.yml that they replace):

* :func:`preflight_os`: from the host's facts, the support matrix and ``preflight_allow_unsupported_os``, the
  status (``tested``, ``untested`` or ``unsupported``), the label (``Debian 12.5``), the problems (an unlisted
  system, unless allowed) and the warnings (an untested system; an unlisted one that is allowed).

The rules: an entry whose ``name`` is ``ansible_distribution`` is a candidate; only when none is, those whose
``name`` is ``ansible_os_family`` are. The first candidate whose ``versions`` (compared as strings) hold
``ansible_distribution_major_version`` or ``ansible_distribution_version``, or that lists no versions, decides:
``tested`` when its ``tested`` (default false) is true, else ``untested``. No such candidate: ``unsupported``.
Booleans are read as Ansible's ``bool`` filter reads them; a malformed matrix fails the filter, naming
``preflight_supported_os[i]`` and the fix.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Optional

from ansible.errors import AnsibleFilterError

from ansible_collections.sdfleet.toolkit.plugins.filter.exposure import _show, _unknown_keys


STATUSES = ("tested", "untested", "unsupported")
KEYS = ("name", "versions", "tested")
# The facts the check reads (ansible.builtin.setup's min subset has them all).
FACTS = ("distribution", "os_family", "distribution_version", "distribution_major_version")
VARIABLE = "preflight_supported_os"
ALLOW_VARIABLE = "preflight_allow_unsupported_os"
# What Ansible's bool filter accepts (ansible/plugins/filter/core.py: strings in any case, ints and bools by
# their lower-cased text); the rest it coerces with a deprecation warning, and this filter refuses.
_TRUE = frozenset({"yes", "on", "true", "1"})
_FALSE = frozenset({"no", "off", "false", "0"})
_EXAMPLE = '{name: Debian, versions: ["12", "13"], tested: true}'


def _bool(value: Any) -> Optional[bool]:
    """``value`` as Ansible's ``bool`` filter reads it; None (unset) is false; None when it is no boolean."""
    if value is None:
        return False
    if isinstance(value, str):
        text = value.lower()
    elif isinstance(value, int):  # bool is an int: True -> "true"
        text = str(value).lower()
    else:
        return None
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    return None


def _is_list(value: Any) -> bool:
    return isinstance(value, Sequence) and not isinstance(value, (str, bytes))


def _version(value: Any) -> Optional[str]:
    """A version as the Jinja's ``map('string')`` wrote it: a string, or a number's text; None otherwise."""
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    return None


def _entry_problems(index: int, entry: Any) -> list[str]:
    """The problems of ``preflight_supported_os[index]``, each naming the field and the fix."""
    at = f"{VARIABLE}[{index}]"
    if not isinstance(entry, Mapping):
        return [f"{at} is {_show(entry)}, not a mapping. Fix: write it as {_EXAMPLE}."]
    problems = _unknown_keys(at, entry, KEYS)
    name = entry.get("name")
    if not isinstance(name, str) or not name:
        problems.append(f"{at}.name is {_show(name)}, not a distribution or OS family. Fix: give an "
                        "ansible_distribution (Debian, Ubuntu, ...) or ansible_os_family (RedHat, Archlinux, ...), "
                        "e.g. name: Debian.")
    versions = entry.get("versions", [])
    if not _is_list(versions):
        problems.append(f"{at}.versions is {_show(versions)}, not a list of versions. Fix: list the accepted "
                        'major or full versions, quoted, e.g. versions: ["12", "13"], or versions: [] for any '
                        "version.")
    else:
        for number, version in enumerate(versions):
            if _version(version) is None:
                problems.append(f"{at}.versions[{number}] is {_show(version)}, not a version. Fix: give a major or "
                                'full version, quoted, e.g. "12" or "22.04".')
    if _bool(entry.get("tested", False)) is None:
        problems.append(f"{at}.tested is {_show(entry.get('tested'))}, not a boolean. Fix: set tested: true (sdfleet "
                        "tests this system) or tested: false (the default: it passes with a warning).")
    return problems


def _matrix(supported_os: Any) -> list[dict[str, Any]]:
    """The entries as ``{name, versions (strings), tested (bool)}``; fails with every problem when malformed."""
    if not _is_list(supported_os):
        raise AnsibleFilterError(f"{VARIABLE} is {_show(supported_os)}, not a list. Fix: give a list of "
                                 f"{{name, versions, tested}} entries, e.g. [{_EXAMPLE}].")
    problems = [p for index, entry in enumerate(supported_os) for p in _entry_problems(index, entry)]
    if problems:
        raise AnsibleFilterError(" | ".join(problems))
    return [{"name": entry["name"], "versions": [_version(v) for v in entry.get("versions", [])],
             "tested": bool(_bool(entry.get("tested", False)))} for entry in supported_os]


def _facts(facts: Any) -> dict[str, Any]:
    if not isinstance(facts, Mapping):
        raise AnsibleFilterError(f"ansible_facts is {type(facts).__name__}, not a dict. Fix: pass ansible_facts "
                                 "(gathered by ansible.builtin.setup).")
    missing = [key for key in FACTS if key not in facts]
    if missing:
        raise AnsibleFilterError(f"ansible_facts has no {', '.join(missing)}: the operating system is unknown. Fix: "
                                 "gather the facts first (ansible.builtin.setup, gather_subset: [min]).")
    return {key: facts[key] for key in FACTS}


def _status(facts: Mapping[str, Any], matrix: Sequence[Mapping[str, Any]]) -> str:
    """``tested``, ``untested`` or ``unsupported`` (see the module's rules)."""
    candidates = ([e for e in matrix if e["name"] == facts["distribution"]]
                  or [e for e in matrix if e["name"] == facts["os_family"]])
    host = {str(facts["distribution_major_version"]), str(facts["distribution_version"])}
    for entry in candidates:
        if not entry["versions"] or host & set(entry["versions"]):
            return "tested" if entry["tested"] else "untested"
    return "unsupported"


def _listed(matrix: Sequence[Mapping[str, Any]]) -> str:
    """The matrix in a sentence: ``Debian 12/13, RedHat (any version) [untested]``."""
    return ", ".join(f"{e['name']} {'/'.join(e['versions']) if e['versions'] else '(any version)'}"
                     f"{'' if e['tested'] else ' [untested]'}" for e in matrix)


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def preflight_os(facts: Mapping[str, Any], supported_os: Sequence[Mapping[str, Any]],
                 allow_unsupported_os: Any = False) -> dict[str, Any]:
    """The host's system against the matrix: ``{status, label, problems, warnings}`` (see DOCUMENTATION)."""
    matrix = _matrix(supported_os)
    allow = _bool(allow_unsupported_os)
    if allow is None:
        raise AnsibleFilterError(f"{ALLOW_VARIABLE} is {_show(allow_unsupported_os)}, not a boolean. Fix: set it to "
                                 "true (warn on a system not in preflight_supported_os) or false (refuse it).")
    host = _facts(facts)
    status = _status(host, matrix)
    label = f"{_text(host['distribution'])} {_text(host['distribution_version'])}"
    problems: list[str] = []
    warnings: list[str] = []
    if status == "untested":
        warnings.append(f"ansible_distribution = {label}: supported by design but untested by sdfleet.")
    elif status == "unsupported" and allow:
        warnings.append(f"ansible_distribution = {label}: not supported; continuing because "
                        f"{ALLOW_VARIABLE} is true.")
    elif status == "unsupported":
        problems.append(f"ansible_distribution = {label}: not a supported system. Fix: use one of {_listed(matrix)}; "
                        f"or list it in {VARIABLE}, or set {ALLOW_VARIABLE}: true to try anyway.")
    return {"status": status, "label": label, "problems": problems, "warnings": warnings}


class FilterModule:
    """sdfleet preflight operating-system filter."""

    def filters(self) -> dict[str, Any]:
        return {"preflight_os": preflight_os}
