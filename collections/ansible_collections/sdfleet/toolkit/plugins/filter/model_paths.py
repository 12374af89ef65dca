# -*- coding: utf-8 -*-
"""Filters for the webui_models role: validate ``webui_models_list`` and turn it into a placement plan.

- ``model_problems(models, allow_unverified)``: every problem of the list, as messages naming the item, the bad value
  and the fix (empty list when all is well). The role asserts on it before anything is downloaded.
- ``model_plan(models, models_dir, embeddings_dir, cache_mode, mirror_url)``: one record per item with its final
  path (``dest``), directory, source kind, the cache key and the URLs to try in order.
- ``model_fill_sha256(plan, results)``: the present records, controller-file models completed with the sha256
  computed on the controller.
- ``model_facts(results)``: the ``sdfleet_models`` fact from the role's registered ``model_fetch`` results.

Kinds map to the webui's directories (reference/webui.md section 5): embeddings live in the embeddings dir
(``<data>/embeddings`` or ``--embeddings-dir``), not under ``<models>``.
"""
from __future__ import annotations

import hashlib
import posixpath
import re
from typing import Any, Optional
from urllib.parse import unquote, urlsplit

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
KNOWN_KEYS = {"name", "kind", "path", "url", "src", "shared_path", "link", "sha256", "filename", "state"}
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
VAR = "webui_models_list"


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


def _subdir_problem(path: str) -> Optional[str]:
    parts = [p for p in path.split("/") if p]
    if not parts:
        return "is empty"
    if ".." in parts:
        return "contains '..'"
    return None


def model_problems(models: Any, allow_unverified: bool = False) -> list[str]:
    """Every problem of ``models`` (the value of webui_models_list), each naming the item, the value and the fix."""
    if models is None:
        return []
    if not isinstance(models, list):
        return [f"{VAR} must be a list of models, got {type(models).__name__}. Fix: write it as a YAML list."]
    problems: list[str] = []
    seen: dict[str, str] = {}
    for index, item in enumerate(models):
        where = f"{VAR}[{index}]"
        if not isinstance(item, dict):
            problems.append(f"{where}: each model must be a mapping, got {item!r}. Fix: use name/kind/url/sha256 keys.")
            continue
        name = item.get("name")
        if name:
            where = f"{where} (name '{name}')"
        else:
            problems.append(f"{where}: 'name' is missing. Fix: give each model a name.")
        unknown = sorted(set(item) - KNOWN_KEYS)
        if unknown:
            problems.append(f"{where}: unknown keys {unknown}. Fix: use only {sorted(KNOWN_KEYS)}.")
        state = item.get("state", "present")
        if state not in STATES:
            problems.append(f"{where}: state {state!r} is not one of {list(STATES)}.")
        kind, path = item.get("kind"), item.get("path")
        if kind and path:
            problems.append(f"{where}: give either kind ({kind!r}) or path ({path!r}), not both.")
        elif path:
            issue = _subdir_problem(str(path))
            if issue:
                problems.append(f"{where}: path {path!r} {issue}. Fix: a sub-path of the models dir or an absolute "
                                "directory without '..'.")
        elif kind not in KIND_DIRS:
            problems.append(f"{where}: kind {kind!r} is not one of {sorted(KIND_DIRS)}. Fix: use one of them, or "
                            "'path:' with a directory (relative to webui_models_dir, or absolute).")
        sources = _source(item)
        if state == "present" and len(sources) != 1:
            problems.append(f"{where}: needs exactly one source of {list(SOURCES)}, got {sources or 'none'}.")
        if len(sources) > 1 and state == "absent":
            problems.append(f"{where}: more than one source {sources}.")
        url = item.get("url")
        if url and urlsplit(str(url)).scheme not in ("http", "https"):
            problems.append(f"{where}: url {url!r} is not http(s). Fix: an http:// or https:// URL, or use "
                            "'src' (a file on the controller) / 'shared_path' (a path on the host).")
        for key in ("src", "shared_path"):
            if item.get(key) and not str(item[key]).startswith("/") and key == "shared_path":
                problems.append(f"{where}: shared_path {item[key]!r} must be an absolute path on the host.")
        if "link" in item and not isinstance(item["link"], bool):
            problems.append(f"{where}: link {item['link']!r} must be true or false.")
        if item.get("link") and not item.get("shared_path"):
            problems.append(f"{where}: link: true only applies to shared_path sources.")
        sha = _sha(item.get("sha256"))
        if sha is not None and not _SHA256.match(sha):
            problems.append(f"{where}: sha256 {item.get('sha256')!r} is not 64 hex digits. Fix: the output of "
                            "'sha256sum FILE'.")
        if state == "present" and url and sha is None and not allow_unverified:
            problems.append(f"{where}: sha256 is required for url sources, got none (url {url!r}). Fix: add "
                            "sha256 (sha256sum FILE), or set webui_models_allow_unverified: true to accept "
                            "unverified downloads.")
        filename = _default_filename(item)
        if not filename:
            problems.append(f"{where}: no file name (none given and none in the source). Fix: set 'filename'.")
        elif "/" in filename or filename.startswith(".") or filename in ("", "."):
            problems.append(f"{where}: filename {filename!r} must be a plain name (no '/', not hidden).")
        if filename and (kind in KIND_DIRS or path):
            dest = posixpath.join(str(path) if path else kind, filename)
            if dest in seen:
                problems.append(f"{where}: same destination {dest!r} as {seen[dest]}. Fix: set distinct filenames.")
            else:
                seen[dest] = where
    return problems


def _dir(item: dict, models_dir: str, embeddings_dir: str) -> str:
    path = item.get("path")
    if path:
        path = str(path).rstrip("/")
        return path if path.startswith("/") else posixpath.join(models_dir, path)
    kind = item["kind"]
    if kind == "embedding":
        return embeddings_dir
    return posixpath.join(models_dir, KIND_DIRS[kind])


def _key(item: dict, sha: Optional[str]) -> str:
    """The cache key: the expected sha256, else a hash of where the bytes come from."""
    if sha:
        return sha
    origin = str(item.get("url") or item.get("src") or item.get("shared_path") or item.get("name"))
    return "unverified-" + hashlib.sha256(origin.encode("utf-8")).hexdigest()[:24]


def model_plan(models: Any, models_dir: str, embeddings_dir: str, cache_mode: str = "none",
               mirror_url: str = "") -> list[dict]:
    """One placement record per model of a valid ``models`` list (check it with model_problems first)."""
    plan = []
    mirror = (mirror_url or "").rstrip("/")
    for item in models or []:
        sha = _sha(item.get("sha256"))
        filename = _default_filename(item) or ""
        directory = _dir(item, models_dir.rstrip("/"), embeddings_dir.rstrip("/"))
        sources = _source(item)
        source = sources[0] if sources else "none"
        urls: list[str] = []
        if source == "url":
            if cache_mode == "mirror" and mirror:
                urls.append(f"{mirror}/{filename}")
            urls.append(str(item["url"]))
        plan.append({
            "name": str(item.get("name", filename)),
            "kind": str(item.get("kind") or "path"),
            "state": item.get("state", "present"),
            "source": source,
            "url": item.get("url"),
            "urls": urls,
            "src": item.get("src"),
            "shared_path": item.get("shared_path"),
            "link": bool(item.get("link", False)),
            "sha256": sha,
            "filename": filename,
            "dir": directory,
            "dest": posixpath.join(directory, filename),
            "key": _key(item, sha),
            "via_controller": source == "src" or (source == "url" and cache_mode == "controller"),
        })
    return plan


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
    ``{name, kind, path, sha256, short_hash, legacy_hash}`` per model (hashes null when unknown, e.g. in check mode
    before a download)."""
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
        })
    return facts


class FilterModule:
    """sdfleet.toolkit.model_problems / model_plan / model_fill_sha256 / model_facts."""

    def filters(self) -> dict:
        return {"model_problems": model_problems, "model_plan": model_plan, "model_facts": model_facts,
                "model_fill_sha256": model_fill_sha256}
