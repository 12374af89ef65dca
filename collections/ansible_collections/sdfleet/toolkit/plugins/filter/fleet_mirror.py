# -*- coding: utf-8 -*-
"""Filters of the fleet_mirror role: what the mirror downloads, and what a controller seed must copy.

- ``fleet_mirror_launcher_pins(launch_utils)``: the torch/torchvision pins of a webui version's TORCH_COMMAND
  default and its XFORMERS_PACKAGE default, read from its ``modules/launch_utils.py``.
- ``fleet_mirror_pip_plan(requirements, launch_utils, ...)``: the requirement and constraint files of the mirror's
  ``simple/`` and the ``pip download`` argv of ``simple/`` and of each torch variant.
- ``fleet_mirror_git_entries(repos, extensions)``: every repository the mirror clones, as ``{path, sources}``
  (``path`` under ``git/``): the webui's by their first URL's basename, the extensions at their own path.
- ``fleet_mirror_url_path(url)``: where the mirror serves an archive pip installs from an URL (its URL's path).
- ``fleet_mirror_sums(text)``: a ``sha256sum`` file as ``{path: sha256}``.
- ``fleet_mirror_seed_plan(controller, mirror, recorded)``: the files a controller seed must copy, from listings.
- ``fleet_mirror_model_problems(models)`` / ``fleet_mirror_models(models)``: what is wrong with the model entries
  the mirror downloads, and the mirror's records of them: each file is stored by its sha256
  (``files/sha256/<sha256>``), so two models with the same file name never collide and a ``filename`` override
  changes nothing; entries without a sha256 are left to the hosts (the mirror could not verify them).

Pure functions (no Ansible import at module level), so tests/fleet_mirror/ calls them directly.
"""
from __future__ import annotations

import posixpath
import re
from typing import Any, Iterable, Optional
from urllib.parse import unquote, urlsplit

try:
    from ansible_collections.sdfleet.toolkit.plugins.module_utils.redact import redact_urls
except ImportError:  # loaded from its file by tests/fleet_mirror, without the collection on the path
    import importlib.util as _util
    import pathlib as _pathlib

    _spec = _util.spec_from_file_location(
        "sdfleet_redact", _pathlib.Path(__file__).resolve().parents[1] / "module_utils" / "redact.py")
    _redact = _util.module_from_spec(_spec)
    _spec.loader.exec_module(_redact)
    redact_urls = _redact.redact_urls

# The launcher's defaults, in the real v1.10.1/dev form (`os.environ.get('TORCH_COMMAND', f"pip install torch==2.1.2
# torchvision==0.16.2 --extra-index-url {torch_index_url}")`, the first TORCH_COMMAND of the file: later ones are
# the IPEX variants) and the stand-in's (the key and its default on separate lines, or a DEFAULT_* constant).
_TORCH_COMMAND = re.compile(r"""TORCH_COMMAND["']\s*,\s*f?["']pip install ([^"']+)["']""")
_XFORMERS = re.compile(r"""XFORMERS_PACKAGE\W[^\n]*?["'](xformers[^"'\s]*)["']""")
_TORCH_PIN = re.compile(r"^(torch|torchvision)==\S+$")
# Top-level names of the mirror's own tree: an archive URL whose path starts with one of them would shadow it.
RESERVED_DIRS = frozenset({"git", "simple", "torch", "files", ".download"})


class FleetMirrorError(ValueError):
    """A value the role cannot use; the message names the variable and the fix."""


def fleet_mirror_launcher_pins(launch_utils: str) -> dict[str, Any]:
    """``{"torch": ["torch==X", "torchvision==Y"], "xformers": "xformers==Z" or ""}`` from launch_utils.py's text
    (an empty text gives empty pins)."""
    torch: list[str] = []
    match = _TORCH_COMMAND.search(launch_utils or "")
    if match:
        torch = [word for word in match.group(1).split() if _TORCH_PIN.match(word)]
    xformers = _XFORMERS.search(launch_utils or "")
    return {"torch": torch, "xformers": xformers.group(1) if xformers else ""}


def requirement_lines(text: str) -> list[str]:
    """The requirement lines of a requirements file: comments, blanks and option lines dropped."""
    lines = (line.split(" #", 1)[0].split("\t#", 1)[0].strip() for line in (text or "").splitlines())
    return [line for line in lines if line and not line.startswith(("#", "-"))]


def _pip_common(index_url: str, trusted_hosts: Iterable[str]) -> list[str]:
    argv = ["python3", "-m", "pip", "download", "--quiet", "--disable-pip-version-check", "--no-input"]
    if index_url:
        argv.append(f"--index-url={index_url}")
    argv += [f"--trusted-host={host}" for host in trusted_hosts]
    return argv


def fleet_mirror_pip_plan(requirements: str, launch_utils: str, *, root: str,
                          torch_packages: Optional[list[str]] = None,
                          extra_requirements: Optional[list[str]] = None,
                          build_requirements: Optional[list[str]] = None,
                          xformers_package: str = "",
                          archives: Optional[list[str]] = None,
                          index_url: str = "",
                          trusted_hosts: Optional[list[str]] = None,
                          torch_index_urls: Optional[dict[str, str]] = None) -> dict[str, Any]:
    """What the mirror downloads for a webui version, as files and argv (run from any directory).

    ``simple/`` must hold everything a host installs, at the pins it installs, source-only packages included:
    the version's ``requirements_versions.txt`` (its unpinned ``torch`` line held to the torch pins), the URL
    archives' own dependencies (the archives themselves, already mirrored, are resolved in a pip run of their own,
    as the launcher installs them before the requirements), ``extra_requirements``, and, without dependencies, the build requirements (what the hosts' isolated
    builds of source packages need) and the xformers pin. The torch pins are ``torch_packages`` when set, else the
    version's TORCH_COMMAND default; they also constrain the isolated builds (``PIP_CONSTRAINT``).

    Returns ``{torch, xformers, requirements, constraints, requirements_file, constraints_file, skip, env, simple,
    torch_argv}``: ``simple`` is the list of argv for ``simple/`` (``.download/simple`` is their ``--dest``), run
    with ``env`` (``PIP_CONSTRAINT``: the constraints file, which pip also applies inside isolated builds),
    ``torch_argv`` maps each variant to its argv (``--dest .download/torch-<variant>``), ``skip`` the base names
    pip copies into the download dir that are not index files (the archives).
    """
    pins = fleet_mirror_launcher_pins(launch_utils)
    torch = list(torch_packages or []) or pins["torch"]
    if launch_utils and not torch:
        raise FleetMirrorError(
            "fleet_mirror: cannot read the torch pins of the webui version's TORCH_COMMAND default in its "
            "modules/launch_utils.py; set fleet_mirror_torch_packages (e.g. [torch==2.1.2, torchvision==0.16.2]).")
    xformers = xformers_package or pins["xformers"]
    builds = list(build_requirements or [])
    download = root.rstrip("/") + "/.download"
    reqs = requirement_lines(requirements) + list(extra_requirements or [])
    constraints = torch + builds
    common = _pip_common(index_url, trusted_hosts or [])
    simple = []
    if reqs:
        simple.append(common + ["--dest", f"{download}/simple", "-r", f"{download}/simple-requirements.txt"])
    # The archives are resolved on their own, as the launcher installs them before the requirements (open_clip's
    # archive is open-clip-torch 2.7.0, which requirements_versions.txt then replaces with 2.20.0).
    if archives:
        simple.append(common + ["--dest", f"{download}/simple"] + list(archives))
    no_deps = builds + ([xformers] if xformers else [])
    if no_deps:
        simple.append(common + ["--no-deps", "--dest", f"{download}/simple"] + no_deps)
    torch_argv = {}
    for variant, url in sorted((torch_index_urls or {}).items()):
        if torch:
            torch_argv[variant] = (_pip_common(url, trusted_hosts or []) + ["--no-deps", "--only-binary=:all:",
                                   "--dest", f"{download}/torch-{variant}"] + torch)
    return {
        "torch": torch,
        "xformers": xformers,
        "requirements": reqs,
        "constraints": constraints,
        "requirements_file": "".join(f"{line}\n" for line in reqs),
        "constraints_file": "".join(f"{line}\n" for line in constraints),
        "skip": [posixpath.basename(a) for a in archives or []],
        "env": {"PIP_CONSTRAINT": f"{download}/simple-constraints.txt"} if constraints else {},
        "simple": simple,
        "torch_argv": torch_argv,
    }


def fleet_mirror_git_entries(repos: Any, extensions: Any = None) -> list[dict[str, Any]]:
    """The repositories to mirror, ``[{path, sources}]``: each list of ``repos`` (source URLs, the first URL's
    basename names it) and each ``{path, sources}`` of ``extensions`` (``webui_extensions_mirror_repos``)."""
    entries = [{"path": posixpath.basename(str(urls[0]).rstrip("/")), "sources": list(urls)}
               for urls in (repos or []) if urls]
    entries += [{"path": str(e["path"]), "sources": list(e["sources"])} for e in (extensions or [])]
    return entries


def fleet_mirror_url_path(url: str) -> str:
    """The path, under the mirror's root, of an archive pip installs from ``url`` (its URL's path, unquoted):
    ``https://github.com/openai/CLIP/archive/<c>.zip`` -> ``openai/CLIP/archive/<c>.zip``."""
    path = unquote(urlsplit(str(url)).path).lstrip("/")
    parts = path.split("/")
    if not path or path.endswith("/") or any(p in ("", ".", "..") for p in parts):
        raise FleetMirrorError(f"fleet_mirror_url_packages: {url!r} has no file path to serve it at; "
                               "list archive URLs such as https://github.com/<owner>/<repo>/archive/<commit>.zip.")
    if parts[0] in RESERVED_DIRS:
        raise FleetMirrorError(f"fleet_mirror_url_packages: {url!r} would be served at /{path}, inside the mirror's "
                               f"own {parts[0]}/ tree; serve that archive from another URL.")
    return path


def fleet_mirror_sums(text: str) -> dict[str, str]:
    """``{path: sha256}`` from a ``sha256sum`` file (``<hex>  <path>`` lines; others ignored)."""
    sums = {}
    for line in (text or "").splitlines():
        digest, _, path = line.partition("  ")
        if re.fullmatch(r"[0-9a-f]{64}", digest) and path:
            sums[path.lstrip("*")] = digest
    return sums


def _listing(text: str) -> dict[str, tuple[str, ...]]:
    """``{path: (fields...)}`` from ``find -printf '%p\\t...'`` lines."""
    entries = {}
    for line in (text or "").splitlines():
        fields = line.split("\t")
        if len(fields) >= 2 and fields[0]:
            entries[fields[0]] = tuple(fields[1:])
    return entries


def fleet_mirror_seed_plan(controller: str, mirror: str, recorded: str) -> dict[str, list[str]]:
    """What a controller seed must copy: ``{"files": [paths relative to the tree, sorted]}``.

    ``controller``: the controller dir's files now (``<path>\\t<size>\\t<mtime>`` lines), ``recorded``: the same
    listing as it was when it was last copied completely (the mirror keeps it), ``mirror``: the mirror's files now
    (``<path>\\t<size>``). A file is copied when the mirror lacks it or holds another size, or when its size or
    mtime on the controller moved since the recorded listing (or it has no record); an unchanged tree copies nothing,
    without reading any file's content.
    """
    now, before, there = _listing(controller), _listing(recorded), _listing(mirror)
    copy = sorted(path for path, (size, *_rest) in now.items()
                  if there.get(path, ("",))[0] != size or before.get(path) != now[path])
    return {"files": copy}


_SHA256 = re.compile(r"^[0-9a-f]{64}$")
MODELS_DIR = "files/sha256"


def _name(index: Optional[int], key: str = "", inventory_var: str = "sdfleet_model_list") -> str:
    suffix = (f"[{index}]" if index is not None else "") + (f".{key}" if key else "")
    return f"{inventory_var}{suffix} (fleet_mirror_models{suffix})"


def _shown(value: Any) -> str:
    text = redact_urls(repr(value))
    return text if len(text) <= 120 else text[:117] + "..."


def _sha(value: str) -> str:
    text = value.strip().lower()
    return text[len("sha256:"):] if text.startswith("sha256:") else text


def fleet_mirror_model_problems(models: Any, inventory_var: str = "sdfleet_model_list") -> list[str]:
    """The problems of the model entries in what the mirror reads of them (name, url, sha256, state), each naming
    the entry (inventory name first), the bad value (credentials masked) and the fix."""
    if models is None:
        return []
    if not isinstance(models, list):
        return [f"{_name(None, '', inventory_var)} = {_shown(models)} is not a list. Fix: write it as a YAML list of "
                "models (or [] for none)."]
    problems = []
    for index, item in enumerate(models):
        if not isinstance(item, dict):
            problems.append(f"{_name(index, '', inventory_var)} = {_shown(item)} is not a mapping. Fix: write each "
                            "model as a mapping with name, url and sha256.")
            continue
        for key in ("name", "url", "sha256", "state"):
            value = item.get(key)
            if value is not None and not isinstance(value, str):
                problems.append(f"{_name(index, key, inventory_var)} = {_shown(value)} is not a string. Fix: write "
                                f"it as a quoted string.")
        url, sha, state = item.get("url"), item.get("sha256"), item.get("state", "present")
        if isinstance(url, str) and url and urlsplit(url).scheme not in ("http", "https"):
            problems.append(f"{_name(index, 'url', inventory_var)} = {_shown(url)} is not http(s). Fix: an http:// "
                            "or https:// URL.")
        if isinstance(sha, str) and sha and not _SHA256.match(_sha(sha)):
            problems.append(f"{_name(index, 'sha256', inventory_var)} = {_shown(sha)} is not 64 hex digits. Fix: the "
                            "output of 'sha256sum FILE'.")
        if isinstance(state, str) and state not in ("present", "absent"):
            problems.append(f"{_name(index, 'state', inventory_var)} = {_shown(state)} is not present or absent. "
                            "Fix: one of them.")
    return problems


def fleet_mirror_models(models: Any, inventory_var: str = "sdfleet_model_list") -> list[dict[str, Any]]:
    """The models the mirror downloads: ``{index, name, sha256, path, url}`` per present entry with an url and a
    sha256 (``path`` under the mirror's root, ``url`` with its credentials masked: the real one stays in the entry
    ``index``). Raises FleetMirrorError with every problem."""
    problems = fleet_mirror_model_problems(models, inventory_var)
    if problems:
        raise FleetMirrorError("fleet_mirror refused its model list: " + " | ".join(problems))
    out = []
    for index, item in enumerate(models or []):
        if item.get("state", "present") != "present" or not item.get("url") or not item.get("sha256"):
            continue
        sha = _sha(item["sha256"])
        out.append({"index": index, "name": item.get("name") or sha[:12], "sha256": sha,
                    "path": f"{MODELS_DIR}/{sha}", "url": redact_urls(item["url"])})
    seen: set[str] = set()
    return [rec for rec in out if not (rec["sha256"] in seen or seen.add(rec["sha256"]))]  # one download per file


class FilterModule:
    """fleet_mirror's filters."""

    def filters(self) -> dict[str, Any]:
        return {
            "fleet_mirror_launcher_pins": fleet_mirror_launcher_pins,
            "fleet_mirror_pip_plan": _ansible_errors(fleet_mirror_pip_plan),
            "fleet_mirror_url_path": _ansible_errors(fleet_mirror_url_path),
            "fleet_mirror_git_entries": fleet_mirror_git_entries,
            "fleet_mirror_requirement_lines": requirement_lines,
            "fleet_mirror_sums": fleet_mirror_sums,
            "fleet_mirror_seed_plan": fleet_mirror_seed_plan,
            "fleet_mirror_model_problems": fleet_mirror_model_problems,
            "fleet_mirror_models": _ansible_errors(fleet_mirror_models),
        }


def _ansible_errors(func):
    """``func`` with FleetMirrorError raised as AnsibleFilterError (its message shown as it is)."""
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except FleetMirrorError as exc:
            from ansible.errors import AnsibleFilterError  # only under Ansible
            raise AnsibleFilterError(str(exc)) from exc
    wrapped.__name__ = func.__name__
    wrapped.__doc__ = func.__doc__
    return wrapped
