# -*- coding: utf-8 -*-
"""The fleet contract's rules: where a fleet's hosts fetch from (the fleet mirror first, upstream after it) and
which inventory names the contract knows.

``roles/sdfleet/vars/main.yml`` (the map of ``sdfleet_*`` names onto role variables) calls these filters and holds
no logic of its own; ``roles/sdfleet/tasks/check.yml`` calls ``fleet_contract_problems``.

* ``fleet_mirrors(groups, hostvars, port, use_mirror, host)``: the fleet mirrors in the order a host tries them
  (its own site's or rack's first), ``[]`` without one;
* ``fleet_endpoints(mirror_urls, up, ...)``: the pip and torch indexes, trusted hosts, no_proxy and model sources
  each host uses, the first serving mirror's, the inventory's own when none serves;
* ``fleet_mirror_first(sources, mirror_git)``: a repository's sources, the fleet mirror's copy first;
* ``fleet_subrepos(sources, commits, mirror_git)``: the webui's sub-repositories as ``webui_repo_subrepos``;
* ``fleet_url_packages(sources, mirror_urls)``: the archives pip installs from an URL as ``webui_repo_url_packages``;
* ``fleet_contract_problems(host_vars, spec_names, published, mapping, effective)``: the inventory names nobody reads;
* ``fleet_batches(hosts, batch)``: hosts in batches of ``batch`` (a count or ``"N%"``, as a play's ``serial``).

Pure functions (``hostvars`` may be plain dicts), unit-tested without Ansible.
"""
from __future__ import annotations

import difflib
import re
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

from ansible.errors import AnsibleFilterError
from ansible.module_utils.parsing.convert_bool import boolean

# An sdfleet_* name, or a private step of the map (__sdfleet_*), as a template reads it; and the mirror group.
_SDFLEET_NAME = re.compile(r"(?<![A-Za-z0-9])(?:__)?sdfleet_[a-z0-9_]+")
_GROUP_REF = re.compile(r"groups\[['\"]sdfleet_mirror['\"]\]")


def _repo_name(url: str) -> str:
    """The last path segment of a clone URL (``.../stable-diffusion-webui.git`` -> ``stable-diffusion-webui.git``)."""
    return str(url).rstrip("/").rsplit("/", 1)[-1]


def _first_sources(sources: Any, what: str) -> list[str]:
    if isinstance(sources, str) or not isinstance(sources, Sequence) or not sources:
        raise AnsibleFilterError(f"{what} is {sources!r}: not a non-empty list of URLs. Fix: list the URLs, "
                                 "the primary first.")
    return [str(s) for s in sources]


# Groups every fleet has: they say nothing about the site or rack a host stands in.
_FLEET_GROUPS = frozenset({"all", "ungrouped", "webui_hosts", "sdfleet_mirror"})


def _own_vars(hostvars: Mapping[str, Any], host: str) -> Mapping[str, Any]:
    """``host``'s variables: one lookup (each lookup in Ansible's HostVars computes them again)."""
    own = hostvars.get(host) if hasattr(hostvars, "get") else None
    return own if hasattr(own, "get") else {}


def fleet_mirrors(groups: Mapping[str, Sequence[str]] | None, hostvars: Mapping[str, Any], port: Any,
                  use_mirror: Any = True, host: str = "") -> list[dict[str, str]]:
    """``[{name, url}]``, one per host of group ``sdfleet_mirror``, in the order ``host`` tries them: the mirrors
    that share an inventory group with it (its site's or rack's) first, then the others, each part in inventory
    order. ``url`` is ``http://<address>:<port>``: the mirror's host vars ``sdfleet_mirror_address`` (else its
    inventory name) and ``sdfleet_mirror_port`` (else ``port``). ``[]`` without a mirror or when ``use_mirror`` is
    false."""
    groups = groups if isinstance(groups, Mapping) else {}
    mirrors = [str(m) for m in groups.get("sdfleet_mirror") or []]
    if not mirrors or not boolean(use_mirror, strict=False):
        return []
    own = {g for g, members in groups.items() if g not in _FLEET_GROUPS and host in (members or [])}
    near = [m for m in mirrors if any(m in (groups.get(g) or []) for g in own)]
    out = []
    for mirror in near + [m for m in mirrors if m not in near]:
        own = _own_vars(hostvars, mirror)
        address = own.get("sdfleet_mirror_address") or mirror
        mirror_port = own.get("sdfleet_mirror_port") or port
        try:
            url = f"http://{address}:{int(mirror_port)}"
        except (TypeError, ValueError):
            raise AnsibleFilterError(f"sdfleet_mirror_port of {mirror} is {mirror_port!r}: not a port number. "
                                     "Fix: a whole number from 1 to 65535.") from None
        out.append({"name": mirror, "url": url})
    return out


def base_urls(value: Any) -> list[str]:
    """Mirror base URLs as the filters take them (a list, one string, or nothing): a list, empty ones dropped,
    without trailing ``/``."""
    items = [value] if isinstance(value, str) else list(value or [])
    return [str(u).rstrip("/") for u in items if u]


def fleet_endpoints(mirror_urls: Sequence[str] | str, up: Any = True, pip_index_url: str = "",
                    pip_trusted_hosts: Sequence[str] | None = None, torch_index_url_cuda: str = "",
                    torch_index_url_cpu: str = "", models_cache_mode: str = "controller",
                    no_proxy: str = "") -> dict[str, Any]:
    """What a GPU host fetches from. ``mirror_urls`` are its mirrors in the order it tries them (``fleet_mirrors``);
    ``up`` the ones that serve it (``playbooks/mirror.yml`` asks each): ``True`` for all (a run without that play),
    false or ``[]`` for none. pip has one index per run: the first mirror up gives the indexes; git and the model
    files try every mirror up in turn, then upstream. With a mirror in the fleet the models come from the mirrors
    or upstream, never pushed from the controller; without one, the inventory's own settings hold."""
    mirrors = base_urls(mirror_urls)
    if up is True or (isinstance(up, str) and boolean(up, strict=False)):
        live = mirrors
    else:
        wanted = set(base_urls(up)) if isinstance(up, (list, tuple)) else set()
        live = [u for u in mirrors if u in wanted]
    index = live[0] if live else ""
    index_host = urlsplit(index).hostname or "" if index else ""
    hosts = list(dict.fromkeys(urlsplit(u).hostname or "" for u in mirrors))
    return {
        "mirrors": live,
        "mirror_git": [f"{u}/git/" for u in live],
        "pip_index_url": f"{index}/simple/" if index else str(pip_index_url or ""),
        "pip_trusted_hosts": [str(h) for h in (pip_trusted_hosts or [])] + ([index_host] if index_host else []),
        "torch_index_url_cuda": f"{index}/torch/{{build}}/" if index else str(torch_index_url_cuda or ""),
        "torch_index_url_cpu": f"{index}/torch/cpu/" if index else str(torch_index_url_cpu or ""),
        "models_cache_mode": "mirror" if mirrors else str(models_cache_mode),
        "models_mirror_urls": [f"{u}/files" for u in live],
        "no_proxy": ",".join(([str(no_proxy)] if no_proxy else []) + [h for h in hosts if h]),
    }


def fleet_mirror_first(sources: Sequence[str], mirror_git: Sequence[str] | str = ()) -> list[str]:
    """``sources`` with the fleet mirror's copy of the repository (``<mirror_git><name of the first source>``)
    in front; ``sources`` unchanged without a mirror."""
    urls = _first_sources(sources, "the repository's sources")
    bases = [mirror_git] if isinstance(mirror_git, str) else list(mirror_git or [])
    return [f"{base}{_repo_name(urls[0])}" for base in bases if base] + urls


def fleet_subrepos(sources: Mapping[str, Sequence[str]], commits: Mapping[str, str],
                   mirror_git: Sequence[str] | str = ()) -> list[dict[str, Any]]:
    """``[{env, commit, sources}]`` per sub-repository of ``sdfleet_webui_subrepo_sources``, in its order, each
    pinned to its commit of ``sdfleet_webui_subrepo_commits`` and fetched from the fleet mirror first."""
    if not isinstance(sources, Mapping) or not isinstance(commits, Mapping):
        raise AnsibleFilterError("sdfleet_webui_subrepo_sources and sdfleet_webui_subrepo_commits must be mappings "
                                 "of the sub-repository names (ASSETS, STABLE_DIFFUSION, ...). Fix: write them as such.")
    missing = sorted(set(sources) ^ set(commits))
    if missing:
        raise AnsibleFilterError(f"sdfleet_webui_subrepo_sources and sdfleet_webui_subrepo_commits name different "
                                 f"sub-repositories ({', '.join(missing)}). Fix: give each one both.")
    return [{"env": env, "commit": str(commits[env]),
             "sources": fleet_mirror_first(_first_sources(urls, f"sdfleet_webui_subrepo_sources.{env}"), mirror_git)}
            for env, urls in sources.items()]


def fleet_url_packages(sources: Mapping[str, Sequence[str]], mirror_urls: Sequence[str] | str = ()
                       ) -> list[dict[str, Any]]:
    """``[{env, sources}]`` per archive of ``sdfleet_webui_package_sources``; a fleet mirror serves each archive at
    its first URL's path (``/openai/CLIP/archive/<commit>.zip``), so the copies of ``mirror_urls`` (the mirrors
    that serve this host, in order) come first."""
    if not isinstance(sources, Mapping):
        raise AnsibleFilterError("sdfleet_webui_package_sources must map CLIP_PACKAGE and OPENCLIP_PACKAGE to URLs. "
                                 "Fix: write it as such.")
    bases = base_urls(mirror_urls)
    out = []
    for env, urls in sources.items():
        urls = _first_sources(urls, f"sdfleet_webui_package_sources.{env}")
        out.append({"env": env, "sources": [base + urlsplit(urls[0]).path for base in bases] + urls})
    return out


def fleet_contract_problems(host_vars: Mapping[str, Any], spec_names: Sequence[str], published: Sequence[str],
                            mapping: Mapping[str, Any], effective: Mapping[str, Any] | None = None) -> list[str]:
    """One message per inventory name the contract would silently ignore, each with its fix:

    * an ``sdfleet_*`` name that is neither in the spec nor a fact a role publishes (a misspelling, a removed name);
    * a role variable the map (``mapping``: ``{role variable: its template}``) sets, whose value in ``host_vars``
      differs from the one the roles see (``effective``: the map wins over an inventory; an extra var wins over the
      map, so an ``-e`` of the same name is not refused).
    """
    known = set(spec_names) | set(published) | {k for k in mapping if k.startswith("sdfleet_")}
    effective = effective or {}
    problems = []
    for name in sorted(str(k) for k in host_vars.keys()):
        if name.startswith("sdfleet_") and name not in known:
            close = _closest(name, sorted(spec_names))
            hint = f"did you mean {close}? " if close else ""
            problems.append(f"{name}: not an sdfleet setting, so it is ignored ({hint}every name: ansible-doc -t role "
                            f"sdfleet.toolkit.sdfleet). Fix: correct or remove it.")
        elif name in mapping and not name.startswith("__") and name in effective \
                and effective[name] != host_vars[name]:
            # the names its template reads itself, else those its map steps read
            sources = sorted(_read_names(name, mapping, direct=True) or _read_names(name, mapping)) \
                or ["an sdfleet_* name"]
            problems.append(f"{name}: set by the fleet contract from {', '.join(sources)}, so the inventory's value "
                            f"is ignored. Fix: set {' / '.join(sources)} instead.")
    return problems


def _read_names(name: str, mapping: Mapping[str, Any], seen: frozenset[str] = frozenset(),
                direct: bool = False) -> set[str]:
    """The inventory names the map's template of ``name`` reads: ``direct``, only those it names itself; else also
    through the map's steps (``webui_repo_pip_index_url`` -> ``__sdfleet_endpoints`` -> ``sdfleet_pip_index_url``,
    ...). Never the group ``groups['sdfleet_mirror']``, nor ``name`` itself."""
    text = _GROUP_REF.sub("", str(mapping.get(name, "")))
    found: set[str] = set()
    for ref in set(_SDFLEET_NAME.findall(text)) - {name} - seen:
        if ref in mapping:  # a step of the map (private, or an output such as sdfleet_mirror_urls)
            if not direct:
                found |= _read_names(ref, mapping, seen | {name})
        elif not ref.startswith("__"):
            found.add(ref)
    return found


def fleet_batches(hosts: Sequence[str], batch: Any) -> list[list[str]]:
    """``hosts`` in order, cut into batches of ``batch`` hosts: a positive count, or ``"N%"`` of the hosts (rounded
    down, at least one host), as a play's ``serial`` reads it; ``[]`` for no hosts."""
    names = [str(h) for h in hosts or []]
    size = _batch_size(batch, len(names))
    return [names[i:i + size] for i in range(0, len(names), size)]


def _batch_size(batch: Any, count: int) -> int:
    text = str(batch).strip()
    match = re.fullmatch(r"(\d+)%", text)
    if match and 0 < int(match.group(1)) <= 100:
        return max(1, count * int(match.group(1)) // 100)
    if not isinstance(batch, bool) and re.fullmatch(r"\d+", text) and int(text) > 0:
        return int(text)
    raise AnsibleFilterError(f"sdfleet_restart_batch = {batch!r}: not a count of hosts or a percentage. Fix: a "
                             "positive whole number (2) or a percentage from 1% to 100% (\"25%\").")


def _closest(name: str, candidates: Sequence[str]) -> str:
    match = difflib.get_close_matches(name, candidates, n=1, cutoff=0.8)
    return match[0] if match else ""


class FilterModule:
    """The fleet contract's filters."""

    def filters(self) -> dict[str, Any]:
        return {
            "fleet_mirrors": fleet_mirrors,
            "fleet_endpoints": fleet_endpoints,
            "fleet_mirror_first": fleet_mirror_first,
            "fleet_subrepos": fleet_subrepos,
            "fleet_url_packages": fleet_url_packages,
            "fleet_contract_problems": fleet_contract_problems,
            "fleet_batches": fleet_batches,
        }
