# -*- coding: utf-8 -*-
"""Filters for the webui_models role: validate ``webui_models_list`` and turn it into a placement plan.

- ``model_problems(models, allow_unverified, models_dir, embeddings_dir, partial_dir)``: every problem of the
  list, as messages naming the entry (``sdfleet_model_list[i].key (webui_models_list[i].key)``), the bad value
  (URL credentials masked) and the fix; empty when all is well. The role asserts on it before anything changes.
- ``model_plan(models, models_dir, embeddings_dir, cache_mode, mirror_urls, host)``: one record per item with its
  final path (``dest``), its directory and the models tree it lies in (``tree``), source kind, cache key and the
  URLs to try in order, shown with their credentials masked.
- ``model_urls(record, models)``: the real URLs of one record (the mirror's copy first, then the entry's URL with
  its credentials), read from the list at the task that needs them, so no record carries a secret.
- ``model_fill_sha256(plan, results)``: the present records, controller-file models completed with the sha256
  computed on the controller.
- ``model_facts(results)``: the ``sdfleet_models`` fact from the role's registered ``model_fetch`` results.

Kinds map to the webui's directories (reference/webui.md section 5): embeddings live in the embeddings dir
(``<data>/embeddings`` or ``--embeddings-dir``), not under ``<models>``. Every destination stays inside the models
tree (``webui_models_dir`` or ``webui_models_embeddings_dir``), after normalising.
"""
from __future__ import annotations

import hashlib
import posixpath
import re
from typing import Any, Optional
from urllib.parse import unquote, urlsplit

from ansible_collections.sdfleet.toolkit.plugins.filter.fleet_contract import base_urls
from ansible_collections.sdfleet.toolkit.plugins.module_utils.redact import redact_url, redact_urls

KIND_DIRS: dict[str, str] = {
    "checkpoint": "Stable-diffusion",
    "vae": "VAE",
    "lora": "Lora",
    "hypernetwork": "hypernetworks",
    "embedding": "",  # the embeddings dir itself
    "gfpgan": "GFPGAN",
    "codeformer": "Codeformer",
    "esrgan": "ESRGAN",
    "controlnet": "ControlNet",
}
SOURCES = ("url", "src", "shared_path")
STATES = ("present", "absent")
CACHE_MODES = ("controller", "mirror", "none")
STR_KEYS = ("name", "kind", "path", "url", "src", "shared_path", "sha256", "filename", "state")
KNOWN_KEYS = set(STR_KEYS) | {"link", "size"}
# A file model_fetch moved aside, next to the model it made room for: <name>.sdfleet-replaced-<sha256[:12]>.
ASIDE_MARK = ".sdfleet-replaced-"
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
VAR = "webui_models_list"
INVENTORY_VAR = "sdfleet_model_list"


class _Where:
    """``sdfleet_model_list[0].path (webui_models_list[0].path)``: the inventory name first, then the role's."""

    def __init__(self, inventory_var: str, index: Optional[int] = None) -> None:
        self.inventory_var, self.index = inventory_var, index

    def __call__(self, key: str = "") -> str:
        suffix = (f"[{self.index}]" if self.index is not None else "") + (f".{key}" if key else "")
        if not self.inventory_var:
            return f"{VAR}{suffix}"
        return f"{self.inventory_var}{suffix} ({VAR}{suffix})"


def _show(value: Any) -> str:
    """A bad value as the message shows it: YAML-ish, credentials in URLs masked, never longer than 120."""
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif value is None:
        text = "null"
    else:
        text = repr(value)
    text = redact_urls(text)
    return text if len(text) <= 120 else text[:117] + "..."


def _type(value: Any) -> str:
    """The YAML name of a value's type (Ansible hands filters its own subclasses of list, dict, int...)."""
    for kind, name in ((bool, "a boolean"), (int, "an integer"), (float, "a number"), (str, "a string"),
                       (list, "a list"), (dict, "a mapping")):
        if isinstance(value, kind):
            return name
    return "null" if value is None else type(value).__name__


def _sha(value: Any) -> Optional[str]:
    if value is None or value == "":
        return None
    text = str(value).strip().lower()
    return text[len("sha256:"):] if text.startswith("sha256:") else text


def _source(item: dict) -> list[str]:
    return [key for key in SOURCES if item.get(key) not in (None, "")]


def _default_filename(item: dict) -> Optional[str]:
    if item.get("filename"):
        return str(item["filename"])
    if item.get("url"):
        return posixpath.basename(unquote(urlsplit(str(item["url"])).path)) or None
    for key in ("src", "shared_path"):
        if item.get(key):
            return posixpath.basename(str(item[key]).rstrip("/")) or None
    return None


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


def _norm_root(path: Any) -> str:
    text = posixpath.normpath(str(path or "/"))
    return "/" + text.lstrip("/") if text.startswith("/") else text


def _dir(item: dict, models_dir: str, embeddings_dir: str) -> str:
    """The normalised absolute directory of a (type-checked) item."""
    path = item.get("path")
    if path:
        return posixpath.normpath(posixpath.join(models_dir, str(path)))
    kind = item["kind"]
    if kind == "embedding":
        return embeddings_dir
    return posixpath.join(models_dir, KIND_DIRS[kind])


def _tree(directory: str, models_dir: str, embeddings_dir: str) -> Optional[str]:
    """The models tree ``directory`` lies in (the deeper one when one tree holds the other); None when none."""
    trees = sorted((t for t in (models_dir, embeddings_dir) if _inside(directory, t)), key=len, reverse=True)
    return trees[0] if trees else None


def _type_problems(item: dict, name: _Where) -> list[str]:
    problems = []
    for key in STR_KEYS:
        value = item.get(key)
        if value is not None and not isinstance(value, str):
            fix = {"sha256": "quote the 64 hex digits of 'sha256sum FILE' as a string",
                   "kind": f"one of {sorted(KIND_DIRS)} as a string",
                   "url": "one http(s) URL as a string (the mirror, when there is one, is tried first by itself)",
                   "state": "present or absent"}.get(key, "write it as a string")
            problems.append(f"{name(key)} = {_show(value)} is {_type(value)}, not a string. Fix: {fix}.")
    if "link" in item and not isinstance(item["link"], bool):
        problems.append(f"{name('link')} = {_show(item['link'])} is not a boolean. Fix: link: true or false "
                        "(true only with shared_path).")
    if "size" in item:
        size = item["size"]
        if isinstance(size, bool) or not isinstance(size, int):
            problems.append(f"{name('size')} = {_show(size)} is not a whole number of bytes. Fix: the file's size "
                            "in bytes as an integer (stat -c %s FILE), or leave size out.")
        elif size <= 0:
            problems.append(f"{name('size')} = {_show(size)} is not a positive size. Fix: the file's size in bytes "
                            "(stat -c %s FILE), greater than 0, or leave size out.")
    return problems


def _path_problem(path: str, name: _Where, models_dir: str, embeddings_dir: str, partial_dir: str) -> Optional[str]:
    trees = f"webui_models_dir ({models_dir}) or webui_models_embeddings_dir ({embeddings_dir})"
    fix = (f"Fix: a directory relative to webui_models_dir (such as 'Lora/styles'), or an absolute one inside "
           f"{trees}.")
    if not path.strip() or "\0" in path:
        return f"{name('path')} = {_show(path)} is empty or holds a NUL byte. {fix}"
    directory = posixpath.normpath(posixpath.join(models_dir, path))
    if _tree(directory, models_dir, embeddings_dir) is None:
        how = "is absolute and outside" if path.startswith("/") else "leaves, through '..',"
        return (f"{name('path')} = {_show(path)} {how} the models tree (it normalises to {directory!r}, not inside "
                f"{trees}); root would place and chown files there. {fix}")
    if partial_dir and _inside(directory, partial_dir):
        return (f"{name('path')} = {_show(path)} is inside the role's private dir webui_models_partial_dir "
                f"({partial_dir}). {fix}")
    return None


def model_problems(models: Any, allow_unverified: bool = False, models_dir: str = "/opt/sd-webui/models",
                   embeddings_dir: str = "/opt/sd-webui/embeddings", partial_dir: str = "",
                   inventory_var: str = INVENTORY_VAR) -> list[str]:
    """Every problem of ``models`` (the value of webui_models_list), each naming the entry, the value and the fix."""
    name = _Where(inventory_var)
    problems: list[str] = []
    for var, value in (("webui_models_dir", models_dir), ("webui_models_embeddings_dir", embeddings_dir)):
        if not isinstance(value, str) or not value.startswith("/") or _norm_root(value) == "/":
            problems.append(f"{var} = {_show(value)} is not an absolute directory below /. Fix: an absolute path "
                            "such as /opt/sd-webui/models.")
    if problems:
        return problems
    models_dir, embeddings_dir = _norm_root(models_dir), _norm_root(embeddings_dir)
    partial_dir = _norm_root(partial_dir) if isinstance(partial_dir, str) and partial_dir.startswith("/") else ""
    if models is None:
        return []
    if not isinstance(models, list):
        return [f"{name()} = {_show(models)} is {_type(models)}, not a list. Fix: write it as a YAML list "
                "of models, one '- name: ...' entry each (or [] for none)."]
    seen: dict[str, str] = {}
    for index, item in enumerate(models):
        where = _Where(inventory_var, index)
        if not isinstance(item, dict):
            problems.append(f"{where()} = {_show(item)} is {_type(item)}, not a mapping. Fix: write each "
                            "model as a mapping with name, kind (or path), one source (url, src or shared_path) "
                            "and sha256.")
            continue
        typed = _type_problems(item, where)
        problems += typed
        bad = {key for key in STR_KEYS if item.get(key) is not None and not isinstance(item[key], str)}
        if "link" in item and not isinstance(item["link"], bool):
            bad.add("link")
        # The rules below read strings: a key of the wrong type is reported above and left out of them.
        item = {key: value for key, value in item.items() if key not in bad}
        name_ = item.get("name")
        label = f" (name {name_!r})" if name_ else ""
        if not name_ and "name" not in bad:
            problems.append(f"{where('name')} is missing. Fix: give each model a name.")
        for key, value in sorted(((str(k), v) for k, v in item.items() if k not in KNOWN_KEYS), key=lambda kv: kv[0]):
            hint = {"sources": "one URL in 'url' (with a fleet mirror, its copy is tried first by itself)",
                    "sha": "sha256", "checksum": "sha256", "dir": "path", "type": "kind"}.get(key)
            problems.append(f"{where(key)}{label} = {_show(value)} is not a model key. Fix: "
                            + (f"use {hint}." if hint else f"use only {sorted(KNOWN_KEYS)}."))
        state = item.get("state", "present")
        if state not in STATES and "state" not in bad:
            problems.append(f"{where('state')} = {_show(state)} is not one of {list(STATES)}. Fix: present (place "
                            "the file) or absent (remove it).")
        kind, path = item.get("kind"), item.get("path")
        directory: Optional[str] = None
        if kind and path:
            problems.append(f"{where('kind')}{label}: kind ({kind!r}) and path ({_show(path)}) are both given. Fix: "
                            "keep one of them.")
        elif path is not None:
            issue = _path_problem(path, where, models_dir, embeddings_dir, partial_dir)
            if issue:
                problems.append(issue)
            else:
                directory = _dir(item, models_dir, embeddings_dir)
        elif {"kind", "path"} & bad:
            pass
        elif kind not in KIND_DIRS:
            problems.append(f"{where('kind')} = {_show(kind)} is not one of {sorted(KIND_DIRS)}. Fix: use one of "
                            "them, or 'path:' with a directory inside the models tree.")
        else:
            directory = _dir(item, models_dir, embeddings_dir)
        sources = _source(item)
        if state == "present" and len(sources) != 1 and not set(SOURCES) & bad:
            problems.append(f"{where()}{label} needs exactly one source of {list(SOURCES)}, got "
                            f"{sources or 'none'}. Fix: keep one of them.")
        if len(sources) > 1 and state == "absent":
            problems.append(f"{where()}{label} has more than one source {sources}. Fix: keep one of them (or none).")
        url = item.get("url")
        if url and urlsplit(url).scheme not in ("http", "https"):
            problems.append(f"{where('url')} = {_show(url)} is not http(s). Fix: an http:// or https:// URL, or use "
                            "'src' (a file on the controller) / 'shared_path' (a path on the host).")
        shared = item.get("shared_path")
        if shared and not shared.startswith("/"):
            problems.append(f"{where('shared_path')} = {_show(shared)} is not absolute. Fix: an absolute path on "
                            "the host.")
        if item.get("link") and not shared:
            problems.append(f"{where('link')}{label}: link: true only applies to shared_path sources. Fix: drop "
                            "link, or use shared_path.")
        sha = _sha(item.get("sha256"))
        if sha is not None and not _SHA256.match(sha):
            problems.append(f"{where('sha256')} = {_show(item.get('sha256'))} is not 64 hex digits. Fix: the output "
                            "of 'sha256sum FILE'.")
        if state == "present" and url and sha is None and not allow_unverified and "sha256" not in bad:
            problems.append(f"{where('sha256')}{label}: sha256 is required for url sources, got none (url {_show(url)}). "
                            "Fix: add sha256 (sha256sum FILE), or set webui_models_allow_unverified: true to "
                            "accept unverified downloads.")
        filename = _default_filename(item)
        if not filename and ({"filename"} | set(SOURCES)) & bad:
            pass
        elif not filename:
            problems.append(f"{where('filename')}{label}: no file name (none given and none in the source). "
                            "Fix: set 'filename'.")
        elif ("/" in filename or "\0" in filename or filename.startswith(".") or ASIDE_MARK in filename):
            problems.append(f"{where('filename')} = {_show(filename)} is not a plain file name. Fix: a name without "
                            f"'/', not starting with '.', without {ASIDE_MARK!r}.")
        elif directory is not None:
            dest = posixpath.join(directory, filename)
            if dest in seen:
                problems.append(f"{where()}{label}: same destination {dest!r} as {seen[dest]} (kind and path, "
                                "'./' or trailing '/' name the same place). Fix: set distinct filenames or dirs.")
            else:
                seen[dest] = where()
    return problems


def _key(item: dict, sha: Optional[str]) -> str:
    """The cache key: the expected sha256, else a hash of where the bytes come from."""
    if sha:
        return sha
    origin = str(item.get("url") or item.get("src") or item.get("shared_path") or item.get("name"))
    return "unverified-" + hashlib.sha256(origin.encode("utf-8")).hexdigest()[:24]


def model_plan(models: Any, models_dir: str, embeddings_dir: str, cache_mode: str = "none",
               mirror_urls: Any = (), host: str = "") -> list[dict]:
    """One placement record per model of a valid ``models`` list (check it with model_problems first).

    URLs are shown with credentials masked (``url``, ``urls``); ``model_urls`` gives the real ones. A fleet mirror
    holds model files by sha256 (``<mirror>/sha256/<hex>``), so only entries with a sha256 are fetched from the
    mirrors (``mirror_urls``: their prefixes in the order to try, or one prefix), each in turn."""
    plan = []
    mirrors = base_urls(mirror_urls)
    models_dir, embeddings_dir = _norm_root(models_dir), _norm_root(embeddings_dir)
    for index, item in enumerate(models or []):
        sha = _sha(item.get("sha256"))
        filename = _default_filename(item) or ""
        directory = _dir(item, models_dir, embeddings_dir)
        sources = _source(item)
        source = sources[0] if sources else "none"
        mirrored = [f"{m}/sha256/{sha}" for m in mirrors] if source == "url" and cache_mode == "mirror" and sha else []
        urls = [redact_url(u) for u in mirrored] + ([redact_url(item["url"])] if source == "url" else [])
        plan.append({
            "name": str(item.get("name", filename)),
            "index": index,
            "host": host,
            "kind": str(item.get("kind") or "path"),
            "state": item.get("state", "present"),
            "source": source,
            "url": redact_url(item["url"]) if item.get("url") else None,
            "urls": urls,
            "mirror_urls": mirrored,
            "src": item.get("src"),
            "shared_path": item.get("shared_path"),
            "link": bool(item.get("link", False)),
            "sha256": sha,
            "size": item.get("size"),
            "filename": filename,
            "dir": directory,
            "tree": _tree(directory, models_dir, embeddings_dir) or models_dir,
            "dest": posixpath.join(directory, filename),
            "key": _key(item, sha),
            "via_controller": source == "src" or (source == "url" and cache_mode == "controller"),
        })
    return plan


def model_urls(record: dict, *lists: Any) -> list[str]:
    """The URLs to fetch ``record`` from, in order: its mirror copies, then its entry's own URL (credentials kept:
    pass the result only to model_fetch, which masks them). The entry is the record's ``index`` in the first list
    whose entry there has the record's (masked) URL, else any entry with that URL (the controller cache fetches
    a record planned on another host of the play)."""
    urls = list(record.get("mirror_urls") or [])
    wanted = record.get("url")
    if not wanted:
        return urls
    entries = [e for models in lists if isinstance(models, list) for e in (
        [models[record["index"]]] if 0 <= record.get("index", -1) < len(models) else []) + models]
    for entry in entries:
        if isinstance(entry, dict) and isinstance(entry.get("url"), str) and redact_url(entry["url"]) == wanted:
            return urls + [entry["url"]]
    raise ValueError(f"{VAR}[{record.get('index')}]: no entry has the url {wanted} of its plan record any more; "
                     "run the role again.")


def _loop_item(result: dict) -> dict:
    """The loop item of one registered loop result (under its loop_var)."""
    return result.get(result.get("ansible_loop_var", "item")) or {}


def model_fill_sha256(plan: Any, results: Any) -> list[dict]:
    """The present records of ``plan``, with the sha256 (and cache key) of controller-file models taken from the
    registered results of hashing them on the controller (matched by item name and src)."""
    hashed = {}
    for result in results or []:
        item = _loop_item(result)
        if result.get("sha256"):
            hashed[(item.get("name"), item.get("src"))] = result["sha256"]
    out = []
    for rec in plan or []:
        if rec.get("state") != "present":
            continue
        if rec.get("source") == "src" and not rec.get("sha256"):
            sha = hashed.get((rec.get("name"), rec.get("src")))
            if sha:
                rec = dict(rec, sha256=sha, key=sha)
        out.append(rec)
    return out


def model_facts(results: Any) -> list[dict]:
    """The ``sdfleet_models`` fact from the registered loop results of ``model_fetch`` (verify-only) over plan records:
    ``{name, kind, path, sha256, short_hash, legacy_hash, set_aside}`` per model (hashes null when unknown, e.g. in
    check mode before a download; ``set_aside``: the earlier files model_fetch moved aside next to it, kept until
    someone removes them)."""
    facts = []
    for result in results or []:
        item = _loop_item(result)
        sha = result.get("sha256") or item.get("sha256")
        facts.append({
            "name": item.get("name"),
            "kind": item.get("kind"),
            "path": item.get("dest"),
            "sha256": sha,
            "short_hash": sha[:10] if sha else None,
            "legacy_hash": result.get("legacy_hash"),
            "set_aside": list(result.get("set_aside") or []),
        })
    return facts


class FilterModule:
    """sdfleet.toolkit.model_problems / model_plan / model_urls / model_fill_sha256 / model_facts."""

    def filters(self) -> dict:
        return {"model_problems": model_problems, "model_plan": model_plan, "model_facts": model_facts,
                "model_fill_sha256": model_fill_sha256, "model_urls": model_urls}
