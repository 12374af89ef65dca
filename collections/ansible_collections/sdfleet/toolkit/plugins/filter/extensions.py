# -*- coding: utf-8 -*-
"""Pinned webui extensions (``sdfleet_webui_extensions``): the one rule for what an entry may hold, where its
checkout lives, which sources it is fetched from (the fleet mirror first), and what the webui's
``disabled_extensions`` setting becomes.

Used by the ``preflight`` role (before any change on a host), by ``webui_repo`` (its own preflight, the clones,
the install stamp), by ``webui_service`` (``disabled_extensions`` in each instance's config.json) and by
``fleet_mirror`` (which repositories it mirrors, at which path). Pure functions, unit-tested without Ansible.
"""
from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

from ansible.errors import AnsibleFilterError

from ansible_collections.sdfleet.toolkit.plugins.filter.exposure import _show, _unknown_keys
from ansible_collections.sdfleet.toolkit.plugins.filter.fleet_contract import base_urls
from ansible_collections.sdfleet.toolkit.plugins.module_utils.redact import has_credentials, redact_urls


STATES = ("present", "disabled", "absent")
KEYS = ("name", "sources", "version", "state")
# A directory name under extensions/ (and an entry in the webui's disabled_extensions): letters, digits, ".", "_",
# "-", starting with a letter or digit. No "/", no "..", no spaces, nothing the shell or git would read as an option.
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
# A git URL: scheme://host/path (http, https, ssh, git, file) or scp-like user@host:path.
_URL = re.compile(r"^(?:(?:https?|ssh|git|file)://\S+|[A-Za-z0-9._-]+@[A-Za-z0-9.-]+:\S+)$")
_REF = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/+-]{0,199}$")
# Where the fleet mirror keeps an extension: git/extensions/<name>.git (names are unique; basenames need not be).
MIRROR_SUBDIR = "extensions"


def _fail(message: str) -> AnsibleFilterError:
    return AnsibleFilterError(message)


def _where(variable: str, index: int, field: str = "") -> str:
    """How a message names one field: ``sdfleet_webui_extensions[1].name``, and the role variable's same field when
    ``variable`` names one (``sdfleet_webui_extensions (webui_repo_extensions)``)."""
    inventory, _, role = variable.partition(" (")
    role = role.rstrip(")")
    return f"{inventory}[{index}]{field}" + (f" ({role}[{index}]{field})" if role else "")


def _credentials(url: str) -> bool:
    """Whether ``url`` carries a secret: a password, or any user part of an http(s) URL (tokens go there).
    An ssh user alone (``ssh://git@host/...``, ``git@host:path``) is a login name; the key is elsewhere."""
    if not has_credentials(url):
        return False
    parts = urlsplit(url)
    return parts.scheme not in ("ssh", "git+ssh") or parts.password is not None


def _entry_problems(index: int, entry: Any, var: str) -> list[str]:
    """The problems of one entry (``var`` names the list, e.g. ``sdfleet_webui_extensions (webui_repo_extensions)``)."""
    at = _where(var, index)
    if not isinstance(entry, Mapping):
        return [f"{at} is {_show(entry)}, not a mapping. Fix: write it as "
                "{name: sd-dynamic-prompts, sources: [https://github.com/adieyal/sd-dynamic-prompts.git], "
                "version: v2.9.1}."]
    problems = _unknown_keys(at, entry, KEYS)
    name = entry.get("name")
    if not isinstance(name, str) or not name:
        problems.append(f"{_where(var, index, '.name')} is {_show(name)}. Fix: give the directory name under extensions/, e.g. "
                        "sd-dynamic-prompts.")
    elif not _NAME.match(name) or ".." in name:
        problems.append(f"{_where(var, index, '.name')} {name!r} is not a plain directory name (it becomes extensions/<name>; no '/', "
                        "no '..', no spaces, starting with a letter or digit, at most 100 characters). "
                        "Fix: use the repository's name, e.g. sd-dynamic-prompts.")
    sources = entry.get("sources")
    if not isinstance(sources, (list, tuple)) or not sources:
        problems.append(f"{_where(var, index, '.sources')} is {_show(redact_urls(sources) if isinstance(sources, str) else sources)}, "
                        "not a non-empty list of git URLs. Fix: list them in order, e.g. "
                        "[https://github.com/adieyal/sd-dynamic-prompts.git].")
    else:
        for n, url in enumerate(sources):
            where = _where(var, index, f".sources[{n}]")
            if not isinstance(url, str) or not url.strip():
                problems.append(f"{where} is {_show(url)}, not a git URL. Fix: give an https:// (or ssh://, "
                                "git@host:path) URL of the extension's repository.")
            elif _credentials(url):
                problems.append(f"{where} {redact_urls(url)!r} holds credentials. The webui shows each "
                                "extension's remote URL on its Extensions tab and runs git with it (check for "
                                "updates), so they would reach its users and its config. Fix: serve the extension "
                                "from a URL without credentials (the fleet mirror mirrors it: set the credentials "
                                "nowhere but there), or vendor it into a repository the hosts can read.")
            elif not _URL.match(url.strip()):
                problems.append(f"{where} {redact_urls(url)!r} is not a git URL. Fix: give an https:// (or ssh://, "
                                "git@host:path) URL of the extension's repository.")
    version = entry.get("version")
    if not isinstance(version, str) or not version.strip():
        hint = " (quote it: YAML reads 2.9 as a number)" if isinstance(version, (int, float)) and not isinstance(
            version, bool) else ""
        problems.append(f"{_where(var, index, '.version')} is {_show(version)}{hint}, not a tag or commit. Fix: pin the extension, "
                        "e.g. version: v2.9.1 or a 40-hex commit.")
    elif not _REF.match(version) or ".." in version or version.endswith((".lock", "/")):
        problems.append(f"{_where(var, index, '.version')} {version!r} is not a git tag, branch or commit name. Fix: give the tag "
                        "(v2.9.1) or commit to check out.")
    state = entry.get("state", "present")
    if state not in STATES:
        problems.append(f"{_where(var, index, '.state')} is {_show(state)}. Fix: use present, disabled (the webui's own "
                        "disabled_extensions) or absent (moved aside, never deleted).")
    return problems


def webui_extensions_problems(extensions: Any, localization: Any = "", variable: str = "sdfleet_webui_extensions",
                              localization_variable: str = "sdfleet_localization") -> list[str]:
    """Every refused entry or field of ``extensions`` (and ``localization``), each naming the variable and a fix.

    ``variable`` and ``localization_variable`` are how the messages name the inputs (the inventory name, and the
    role variable in brackets where a role checks its own: ``sdfleet_webui_extensions (webui_repo_extensions)``).
    """
    var = variable
    if extensions is None:
        extensions = []
    if not isinstance(extensions, (list, tuple)):
        return [f"{var} is {_show(redact_urls(extensions) if isinstance(extensions, str) else extensions)}, not a "
                "list. Fix: give a list of {name, sources, version, state} entries ([] for none)."]
    problems: list[str] = []
    label = var.split(" ")[0]
    seen: dict[str, int] = {}
    for index, entry in enumerate(extensions):
        problems.extend(_entry_problems(index, entry, var))
        name = entry.get("name") if isinstance(entry, Mapping) else None
        if isinstance(name, str) and name:
            key = name.casefold()
            if key in seen:
                problems.append(f"{_where(var, index, '.name')} {name!r} is also the name of {label}[{seen[key]}] (one "
                                "directory extensions/<name> each; names that differ only in case collide too). "
                                f"Fix: keep one entry per extension in {var}.")
            else:
                seen[key] = index
    if localization not in ("", None):
        loc_var = localization_variable
        if not isinstance(localization, str) or not _NAME.match(localization) or ".." in localization:
            problems.append(f"{loc_var} is {_show(localization)}: not the name of a localization file (the webui "
                            "reads localizations/<name>.json). Fix: give its name without .json, e.g. zh_CN, or "
                            "'None' for the webui's own English.")
    return problems


def _checked(extensions: Any) -> list[Mapping[str, Any]]:
    """``extensions`` when accepted (else the filter fails with every problem)."""
    problems = webui_extensions_problems(extensions)
    if problems:
        raise _fail(" | ".join(problems))
    return list(extensions or [])


def webui_extensions_mirror_first(extensions: Any, mirror_git: Any = "") -> list[dict[str, Any]]:
    """The entries as given (defaults filled in), each one's ``sources`` led by the fleet mirrors' copies,
    ``<mirror_git>extensions/<name>.git`` for each of ``mirror_git`` (the git base URLs of the mirrors that serve
    this host, in order: a list, one string, or empty without a mirror). What the inventory map hands to
    webui_repo."""
    bases = base_urls(mirror_git)
    out = []
    for entry in _checked(extensions):
        name = entry["name"]
        sources = [f"{base}/{MIRROR_SUBDIR}/{name}.git" for base in bases] + \
            [s.strip() for s in entry["sources"]]
        out.append({"name": name, "sources": sources, "version": entry["version"].strip(),
                    "state": entry.get("state", "present")})
    return out


def webui_extensions_plan(extensions: Any, extensions_dir: str) -> list[dict[str, Any]]:
    """The entries with their defaults, where webui_repo works on them: ``{index, name, sources, version, state,
    dest}`` (``index``: the position in the list, for messages; ``dest``: ``<extensions_dir>/<name>``)."""
    return [dict(entry, index=index, dest=f"{extensions_dir.rstrip('/')}/{entry['name']}")
            for index, entry in enumerate(webui_extensions_mirror_first(extensions))]


def webui_extensions_mirror_repos(extensions: Any) -> list[dict[str, Any]]:
    """What the fleet mirror clones: ``{path: extensions/<name>.git, sources, version}`` per extension that a host
    keeps (present or disabled)."""
    return [{"path": f"{MIRROR_SUBDIR}/{e['name']}.git", "sources": [s.strip() for s in e["sources"]],
             "version": e["version"].strip()}
            for e in _checked(extensions) if e.get("state", "present") != "absent"]


def webui_extensions_disabled(current: Any, extensions: Any) -> list[str]:
    """The webui's ``disabled_extensions`` setting after a converge: what it held for extensions sdfleet does not
    manage (a user's choice on the Extensions tab), plus the managed ones whose state is ``disabled``; sorted.
    ``extensions``: entries with ``name`` and ``state`` (``sdfleet_webui.extensions``, or the inventory's list)."""
    managed = {str(e["name"]): e.get("state", "present") for e in (extensions or [])
               if isinstance(e, Mapping) and "name" in e}
    kept: Sequence[Any] = current if isinstance(current, (list, tuple)) else []
    others = {str(n) for n in kept if str(n) not in managed}
    return sorted(others | {n for n, state in managed.items() if state == "disabled"})


def webui_extensions_state(plan: Sequence[Mapping[str, Any]], commits: Any) -> list[dict[str, str]]:
    """What a host publishes of its extensions (``sdfleet_webui.extensions``): ``{name, version, state, commit}``
    per entry of ``plan`` (``webui_extensions_plan``). ``commits`` are the checked-out commits of the kept entries
    (present or disabled), in order; an absent entry's commit is ``""``."""
    kept_commits = iter([str(c or "").strip() for c in (commits or [])])
    out = []
    for entry in plan or []:
        kept = entry.get("state", "present") != "absent"
        out.append({"name": str(entry["name"]), "version": str(entry["version"]), "state": str(entry["state"]),
                    "commit": next(kept_commits, "") if kept else ""})
    return out


class FilterModule:
    """sdfleet webui extension filters."""

    def filters(self) -> dict[str, Any]:
        return {
            "webui_extensions_problems": webui_extensions_problems,
            "webui_extensions_plan": webui_extensions_plan,
            "webui_extensions_mirror_first": webui_extensions_mirror_first,
            "webui_extensions_mirror_repos": webui_extensions_mirror_repos,
            "webui_extensions_disabled": webui_extensions_disabled,
            "webui_extensions_state": webui_extensions_state,
        }
