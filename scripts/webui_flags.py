#!/usr/bin/env python3
"""Derive the webui flag allow-list from the real AUTOMATIC1111 parsers (make flags).

The webui builds its parser in ``modules/cmd_args.py`` and lets every built-in extension add flags through
``extensions-builtin/<name>/preload.py`` (``modules/shared_cmd_options.py`` preloads them all, whatever the
settings). This script reads those files with ``ast``, never running upstream code, and turns each
``add_argument`` call into data: for every long option its arity by argparse semantics (store_true,
store_false and other value-less actions: 0; ``nargs`` ``+`` or ``*``: ``"+"``; an integer ``nargs``: that
number; anything else: 1), and, where given, ``type`` (as written), ``choices``, ``action: append`` (the flag
may repeat and its values add up) and ``alias_of`` (a second option string of the same argument).
Short options (only the hidden ``-f`` that ``webui.sh`` handles) are left out. Flags that third-party
extensions add are not covered.

The result is written, as a generated Python module, to the one place the filters read it:
``collections/ansible_collections/sdfleet/toolkit/plugins/module_utils/webui_flags.py``.

Usage::

    scripts/webui_flags.py                 # print the derived module
    scripts/webui_flags.py --write         # refresh the committed module
    scripts/webui_flags.py --check         # exit 1 when the committed module differs from upstream
    scripts/webui_flags.py --check v1.10.1=path/to/tree-or-tarball ...

Without sources it reads ``<repo>/../shared/upstream/stable-diffusion-webui-<version>.tar.gz`` for each of
``VERSIONS`` and takes their commits from that folder's ``manifest.json``. Exit status: 0 good, 1 the
committed module is stale, 2 a source is missing or holds a call this script cannot read.
"""
from __future__ import annotations

import argparse
import ast
import difflib
import fnmatch
import json
import pathlib
import sys
import tarfile
from collections.abc import Iterable, Mapping
from typing import Any, Union

ROOT = pathlib.Path(__file__).resolve().parents[1]
UPSTREAM = ROOT.parent / "shared" / "upstream"
DATA_MODULE = ROOT / "collections/ansible_collections/sdfleet/toolkit/plugins/module_utils/webui_flags.py"
# Supported webui versions, oldest first: archive stable-diffusion-webui-<version>.tar.gz in UPSTREAM.
VERSIONS: tuple[str, ...] = ("v1.9.4", "v1.10.1", "dev")
PARSER_FILE = "modules/cmd_args.py"
PRELOAD_GLOB = "extensions-builtin/*/preload.py"

# argparse actions that consume no value.
_SWITCH_ACTIONS = frozenset({"store_true", "store_false", "store_const", "append_const", "count"})
_VALUE_ACTIONS = frozenset({"store", "append", "extend"})

Arity = Union[int, str]
Spec = dict[str, Any]


class UpstreamError(Exception):
    """A source is missing or holds an ``add_argument`` call this script cannot turn into data."""


def _literal(node: ast.expr, where: str, what: str) -> Any:
    try:
        return ast.literal_eval(node)
    except ValueError:
        raise UpstreamError(f"{where}: {what} is not a literal ({ast.unparse(node)}); teach scripts/webui_flags.py "
                            "how to read it") from None


def flags_of_source(text: str, where: str) -> dict[str, Spec]:
    """The long options of every ``*.add_argument(...)`` call in one Python source, with their specs."""
    flags: dict[str, Spec] = {}
    for node in ast.walk(ast.parse(text, filename=where)):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and node.func.attr == "add_argument"):
            continue
        at = f"{where}:{node.lineno}"
        options = [_literal(arg, at, "an option string") for arg in node.args]
        if not options or not all(isinstance(o, str) and o.startswith("-") for o in options):
            raise UpstreamError(f"{at}: positional argument or odd option strings {options!r}")
        kw = {k.arg: k.value for k in node.keywords if k.arg}
        action = _literal(kw["action"], at, "action") if "action" in kw else "store"
        nargs = _literal(kw["nargs"], at, "nargs") if "nargs" in kw else None
        if action in _SWITCH_ACTIONS and nargs is None:
            arity: Arity = 0
        elif action in _VALUE_ACTIONS and nargs in ("+", "*"):
            arity = "+"
        elif action in _VALUE_ACTIONS and nargs is None:
            arity = 1
        elif action in _VALUE_ACTIONS and isinstance(nargs, int) and not isinstance(nargs, bool) and nargs > 0:
            arity = nargs
        else:
            raise UpstreamError(f"{at}: unsupported action={action!r} nargs={nargs!r} for {options[0]}")
        spec: Spec = {"arity": arity}
        if "type" in kw:
            spec["type"] = ast.unparse(kw["type"])
        if "choices" in kw:
            spec["choices"] = [str(c) for c in _literal(kw["choices"], at, "choices")]
        if action in ("append", "extend"):
            spec["action"] = "append"
        longs = [o for o in options if o.startswith("--")]
        for i, flag in enumerate(longs):
            if flag in flags:
                raise UpstreamError(f"{at}: {flag} is added twice (argparse would refuse it)")
            flags[flag] = dict(spec, alias_of=longs[0]) if i else dict(spec)
    return flags


def _tree_files(source: pathlib.Path) -> list[tuple[str, str]]:
    """``(name, text)`` of the parser file and the built-in preload files of a tree or tarball."""
    if source.is_dir():
        found = [source / PARSER_FILE] + sorted(source.glob(PRELOAD_GLOB))
        if not found[0].is_file():
            raise UpstreamError(f"{source}: no {PARSER_FILE}; is this a webui tree?")
        return [(str(p.relative_to(source)), p.read_text(encoding="utf-8")) for p in found]
    if not source.is_file():
        raise UpstreamError(f"{source}: no such tree or archive")
    with tarfile.open(source) as tar:
        members = {m.name.removeprefix("./"): m for m in tar.getmembers() if m.isfile()}
        # The tree may sit under one top folder (GitHub archives: <repo>-<ref>/).
        tops = sorted((n[: -len(PARSER_FILE)] for n in members if n.endswith(PARSER_FILE)), key=len)
        if not tops:
            raise UpstreamError(f"{source}: no {PARSER_FILE} inside; is this a webui archive?")
        top = tops[0]
        names = [top + PARSER_FILE] + sorted(n for n in members if fnmatch.fnmatch(n, top + PRELOAD_GLOB)
                                             and n.count("/") == (top + PRELOAD_GLOB).count("/"))
        out: list[tuple[str, str]] = []
        for name in names:
            handle = tar.extractfile(members[name])
            assert handle is not None  # a regular file
            out.append((name[len(top):], handle.read().decode("utf-8")))
        return out


def flags_of_tree(source: pathlib.Path) -> dict[str, Spec]:
    """Every long option the webui in ``source`` (a tree or a tarball) accepts, sorted by name."""
    flags: dict[str, Spec] = {}
    for name, text in _tree_files(source):
        for flag, spec in flags_of_source(text, f"{source.name}/{name}").items():
            if flag in flags:
                raise UpstreamError(f"{source.name}/{name}: {flag} is added twice (argparse would refuse it)")
            flags[flag] = spec
    return dict(sorted(flags.items()))


def default_sources(upstream: pathlib.Path = UPSTREAM) -> dict[str, pathlib.Path]:
    """``{version: archive}`` of the supported versions in the shared upstream folder."""
    return {v: upstream / f"stable-diffusion-webui-{v}.tar.gz" for v in VERSIONS}


def derive(sources: Mapping[str, pathlib.Path]) -> tuple[dict[str, dict[str, str]], dict[str, dict[str, Spec]]]:
    """``(SOURCES, FLAGS)`` for the given ``{version: tree or tarball}``; commits from a ``manifest.json`` beside."""
    info: dict[str, dict[str, str]] = {}
    flags: dict[str, dict[str, Spec]] = {}
    for version, path in sources.items():
        flags[version] = flags_of_tree(path)
        entry = {"archive": path.name}
        manifest = path.parent / "manifest.json"
        if path.is_file() and manifest.is_file():
            for item in json.loads(manifest.read_text(encoding="utf-8")):
                if item.get("archive") == path.name:
                    entry["commit"] = str(item["commit"])
        info[version] = entry
    return info, flags


def render(info: Mapping[str, Mapping[str, str]], flags: Mapping[str, Mapping[str, Spec]]) -> str:
    """The generated module's text: one line per flag, so that a diff names the flags that changed."""
    # Every value is a str, int or list of str: JSON is also a Python literal here.
    lines = [
        "# Generated by scripts/webui_flags.py from the real AUTOMATIC1111 webui trees: do not edit.",
        "# Refresh: scripts/webui_flags.py --write. Check: scripts/webui_flags.py --check.",
        '"""Command-line flags of each supported AUTOMATIC1111 webui version (data only, derived with ``ast``).',
        "",
        "``FLAGS[version][flag]``: ``arity`` (0 a switch, 1 one value, ``\"+\"`` one or more values), and where",
        "upstream gives them ``type`` (as written), ``choices``, ``action: append`` (repeatable, values add up)",
        "and ``alias_of``. ``SOURCES[version]``: the archive, and its commit where known.",
        '"""',
        "from __future__ import annotations",
        "",
        "from typing import Any",
        "",
        "SOURCES: dict[str, dict[str, str]] = {",
    ]
    lines += [f"    {json.dumps(v)}: {json.dumps(dict(e), sort_keys=True)}," for v, e in info.items()]
    lines += ["}", "", "FLAGS: dict[str, dict[str, dict[str, Any]]] = {"]
    for version, specs in flags.items():
        lines.append(f"    {json.dumps(version)}: {{")
        lines += [f"        {json.dumps(f)}: {json.dumps(s, sort_keys=True)}," for f, s in specs.items()]
        lines.append("    },")
    lines.append("}")
    return "\n".join(lines) + "\n"


def summary(old: Mapping[str, Mapping[str, Spec]], new: Mapping[str, Mapping[str, Spec]]) -> Iterable[str]:
    """Human lines: per version, the flags added, removed or changed from ``old`` to ``new``."""
    seen = set(old) | set(new)
    for version in [v for v in VERSIONS if v in seen] + sorted(seen - set(VERSIONS)):
        before, after = old.get(version, {}), new.get(version, {})
        added = sorted(set(after) - set(before))
        removed = sorted(set(before) - set(after))
        changed = sorted(f for f in set(before) & set(after) if before[f] != after[f])
        for label, names in (("added", added), ("removed", removed), ("changed", changed)):
            if names:
                yield f"{version}: {label} {', '.join(names)}"


def _committed_flags(text: str) -> dict[str, dict[str, Spec]]:
    """``FLAGS`` of a generated module's text (read as a literal, not run)."""
    for node in ast.parse(text).body:
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.target.id == "FLAGS":
            return dict(ast.literal_eval(node.value)) if node.value else {}
    return {}


def main(argv: list[str] | None = None) -> int:
    cli = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0],
                                  formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = cli.add_mutually_exclusive_group()
    mode.add_argument("--write", action="store_true", help=f"write {DATA_MODULE.relative_to(ROOT)}")
    mode.add_argument("--check", action="store_true", help="exit 1 when the committed module is stale")
    cli.add_argument("sources", nargs="*", metavar="VERSION=PATH",
                     help=f"webui trees or tarballs (default: {', '.join(VERSIONS)} from {UPSTREAM})")
    opts = cli.parse_args(argv)
    try:
        sources = default_sources()
        if opts.sources:
            pairs = [s.partition("=") for s in opts.sources]
            if any(not v or not sep or not p for v, sep, p in pairs):
                cli.error("sources are VERSION=PATH, e.g. v1.10.1=../shared/upstream/"
                          "stable-diffusion-webui-v1.10.1.tar.gz")
            sources = {v: pathlib.Path(p) for v, _, p in pairs}
        text = render(*derive(sources))
    except UpstreamError as exc:
        print(f"webui_flags: {exc}", file=sys.stderr)
        return 2
    if opts.write:
        DATA_MODULE.write_text(text, encoding="utf-8")
        print(f"wrote {DATA_MODULE.relative_to(ROOT)}: "
              + ", ".join(f"{v} {len(f)} flags" for v, f in _committed_flags(text).items()))
        return 0
    if opts.check:
        committed = DATA_MODULE.read_text(encoding="utf-8") if DATA_MODULE.is_file() else ""
        if committed == text:
            print(f"{DATA_MODULE.relative_to(ROOT)} matches upstream")
            return 0
        print(f"{DATA_MODULE.relative_to(ROOT)} is stale; run scripts/webui_flags.py --write", file=sys.stderr)
        notes = list(summary(_committed_flags(committed) if committed else {}, _committed_flags(text)))
        for line in notes or difflib.unified_diff(committed.splitlines(), text.splitlines(), "committed",
                                                  "upstream", lineterm=""):
            print(f"  {line}", file=sys.stderr)
        return 1
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
