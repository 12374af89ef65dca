#!/usr/bin/python
# -*- coding: utf-8 -*-
"""Ansible module: pick the first URL of an ordered list that answers (a git repository or a file), and
optionally clone or update a checkout from it, refusing to lose local work."""
from __future__ import annotations

DOCUMENTATION = r"""
---
module: git_source
short_description: Pick the first reachable source of an ordered list, optionally check it out safely
version_added: "0.1.0"
description:
  - Probes each URL of I(sources) in order, under a timeout. With I(kind=git) (a repository) the probe is
    C(git ls-remote) with C(GIT_TERMINAL_PROMPT=0) (and SSH in batch mode), so a dead or private URL fails at once
    instead of asking for a password. With I(kind=http) (a file to download, such as the C(CLIP_PACKAGE) zip) it is
    an HTTP C(HEAD) that follows redirects and must end in status 200.
  - The first URL that answers (and, when I(ref) names a branch or tag, advertises it) wins and is returned.
  - When none answers, the task fails with one message listing every URL tried and why (the first line of git's
    error output, or the timeout).
  - "Credentials in a source (C(https://user:token@host/repo.git)) never reach git's command line, a stored file or
    the result: git gets the URL without them and an C(Authorization) header through C(GIT_CONFIG_COUNT) /
    C(GIT_CONFIG_KEY_n) / C(GIT_CONFIG_VALUE_n) in its environment; every URL in messages and results is redacted
    (C(https://***@host/...)); I(source) is the URL without credentials."
  - With I(dest), the winner is cloned there, or an existing checkout is fetched and moved to I(ref) (detached
    HEAD). Before anything in the checkout changes, the update is refused (nothing changed, a message naming the
    files and the fix) when tracked files have local edits, or when files that git does not track now would be
    overwritten because I(ref) tracks them (with other content). I(force) discards both. Files listed in
    I(managed_files) (rendered by another role, e.g. C(webui-user.sh)) never block an update - their skip-worktree
    mark is cleared and the upstream content restored before the checkout, for that role to render again.
  - Without I(dest), read-only; never reports a change. With I(dest) in check mode, reports whether the checkout
    would move and runs the refusal checks when the target commit is already known locally.
author:
  - sdfleet contributors
options:
  sources:
    description:
      - Git (or, with I(kind=http), file) URLs in order of preference. Empty strings are ignored.
      - Required unless I(repositories) is given.
    type: list
    elements: str
    default: []
  repositories:
    description:
      - Several lookups in one round trip (read-only; I(dest) must be empty), probed side by side. Each entry has
        its own C(name), C(sources), C(ref) (default empty), C(kind) (default C(git)) and C(names) (how its
        refusals name its inputs); I(timeout) and the proxies apply to all. The top-level I(sources), I(name),
        I(ref), I(kind) and I(names) are not used then.
      - Every entry's inputs are checked before any probe runs. When some entry has no source that answers, the
        task fails with one message per such entry (each as a single lookup's), and C(results) holds the others.
    type: list
    elements: dict
    default: []
  name:
    description: What the sources are for, used in the failure message.
    type: str
    default: repository
  ref:
    description:
      - A branch or tag the winner must advertise (a mirror that lags behind is skipped). A commit hash (7 to 40
        hex digits) or an empty string is not checked, as C(ls-remote) cannot prove a commit exists.
      - With I(dest), the branch, tag or commit to check out (required then).
    type: str
    default: ""
  timeout:
    description: Seconds allowed for each probe.
    type: int
    default: 30
  http_proxy:
    description: C(http_proxy) for the probes and the checkout; empty leaves the environment as it is.
    type: str
    default: ""
  https_proxy:
    description: C(https_proxy) for the probes and the checkout; empty leaves the environment as it is.
    type: str
    default: ""
  no_proxy:
    description: C(no_proxy) for the probes and the checkout; empty leaves the environment as it is.
    type: str
    default: ""
  git:
    description: The git program.
    type: str
    default: git
  kind:
    description: C(git) for a repository URL, C(http) for a file URL (I(ref) and I(dest) are ignored then).
    type: str
    choices: [git, http]
    default: git
  dest:
    description: Absolute path of a checkout to clone or update from the winning source; empty only probes.
    type: str
    default: ""
  force:
    description: With I(dest), discard local edits of tracked files and overwrite untracked files I(ref) tracks.
    type: bool
    default: false
  managed_files:
    description:
      - Paths (relative to I(dest)) of tracked files another role renders. Their local content and skip-worktree
        mark never block an update; they are restored to the checked-out version when the checkout moves.
    type: list
    elements: str
    default: []
  fetch_timeout:
    description: Seconds allowed for the clone or fetch (and the checkout).
    type: int
    default: 1800
  branch:
    description:
      - With I(dest), a local branch to keep the checkout on, reset to the target commit (C(git checkout -B)),
        instead of a detached HEAD. Empty (the default) detaches.
      - For a webui extension - the webui reads each extension's branch and skips one on a detached HEAD
        (C(/sdapi/v1/extensions) and the Extensions tab leave it out).
    type: str
    default: ""
  names:
    description:
      - "How refusals name the inputs, for example C(sources: sdfleet_webui_sources (webui_repo_sources)),
        C(ref: sdfleet_webui_version (webui_repo_version)), C(force: webui_repo_force). Missing keys name the
        module's options."
    type: dict
    default: {}
attributes:
  check_mode:
    support: full
    description: Probes the same in check mode; a checkout is not changed (see the description).
  diff_mode:
    support: none
"""

EXAMPLES = r"""
- name: Pick the webui source
  sdfleet.toolkit.git_source:
    name: stable-diffusion-webui
    sources:
      - https://github.com/AUTOMATIC1111/stable-diffusion-webui.git
      - https://mirror.example.org/git/stable-diffusion-webui.git
    ref: v1.10.1
    timeout: 20
  register: webui_source

- name: Clone or update the checkout from the first source that answers (credentials stay out of .git/config)
  sdfleet.toolkit.git_source:
    name: stable-diffusion-webui
    sources: ["https://ci:{{ vault_token }}@git.example.org/sd/stable-diffusion-webui.git"]
    ref: v1.10.1
    dest: /opt/sd-webui
    managed_files: [webui-user.sh]
    names: {sources: "sdfleet_webui_sources (webui_repo_sources)", ref: "sdfleet_webui_version (webui_repo_version)",
            force: webui_repo_force}
  no_log: true

- name: Pick the sources of a sub-repository and of a file in one round trip
  sdfleet.toolkit.git_source:
    repositories:
      - {name: BLIP_REPO, sources: ["http://mirror.lan:8080/git/BLIP.git", "https://github.com/salesforce/BLIP.git"]}
      - name: CLIP_PACKAGE
        kind: http
        sources: ["http://mirror.lan:8080/openai/CLIP/archive/d50d76daa670286dd6cacf3bcd80b5e4823fc8e1.zip"]
  register: picked   # picked.results[0].source, picked.results[1].source

- name: Pick the CLIP archive (fleet mirror first)
  sdfleet.toolkit.git_source:
    name: CLIP_PACKAGE
    kind: http
    sources:
      - http://mirror.lan:8080/openai/CLIP/archive/d50d76daa670286dd6cacf3bcd80b5e4823fc8e1.zip
      - https://github.com/openai/CLIP/archive/d50d76daa670286dd6cacf3bcd80b5e4823fc8e1.zip
"""
RETURN = r"""
results:
  description: With I(repositories), one record per entry, in order, C({name, source, index, tried, commit}) as a
    single lookup returns them (C(source) and C(index) absent for an entry no source of which answered).
  returned: when repositories is set
  type: list
  elements: dict
source:
  description: The URL that answered, without credentials (safe to store and show).
  returned: success
  type: str
  sample: https://mirror.example.org/git/stable-diffusion-webui.git
index:
  description: Position of I(source) in I(sources) (0 is the primary).
  returned: success
  type: int
  sample: 1
tried:
  description: One record per URL probed, in order, C({url, ok, reason, seconds}); URLs redacted.
  returned: always
  type: list
  elements: dict
  sample: [{url: "http://dead:8081/x.git", ok: false, reason: "Failed to connect ...: Connection refused",
            seconds: 0.01}]
commit:
  description: The commit the winner advertises for I(ref) (a branch's head, a tag's commit); empty when I(ref) is
    a commit or empty (not checked). A branch that moved upstream gives another one.
  returned: success
  type: str
before:
  description: With I(dest), the commit checked out before (empty for a fresh clone).
  returned: when dest is set
  type: str
after:
  description: With I(dest), the commit checked out after (in check mode, the target when known).
  returned: when dest is set
  type: str
restored:
  description: With I(dest), the I(managed_files) restored to the checked-out version.
  returned: when dest is set
  type: list
  elements: str
local_edits:
  description: On a refused update, the tracked files with local edits.
  returned: on refusal
  type: list
  elements: str
untracked:
  description: On a refused update, the untracked files the target would overwrite.
  returned: on refusal
  type: list
  elements: str
"""

import base64
import concurrent.futures
import os
import re
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import asdict, dataclass
from typing import Any, Callable, Mapping, Optional, Sequence

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.sdfleet.toolkit.plugins.module_utils.redact import (
    has_credentials, redact_urls, redact_value, strip_credentials)

COMMIT_RE = re.compile(r"^[0-9a-fA-F]{7,40}$")
# A ref git itself would refuse, or one that reads as an option (check-ref-format's rules, plus a leading "-").
BAD_REF_RE = re.compile(r"(^-)|(\.\.)|([\s~^:?*\[\\\x00-\x1f\x7f])|(@\{)|(^/)|(/$)|(//)|(\.lock$)|(^@$)|(\.$)")
HTTP_SCHEMES = ("http://", "https://")


class Refused(Exception):
    """A refusal: the message names the input, shows its value (redacted) and says how to fix it."""


@dataclass(frozen=True)
class Probe:
    """The outcome of probing one URL (``url`` is redacted)."""

    url: str
    ok: bool
    reason: str
    seconds: float
    commit: str = ""


# --- credentials ---------------------------------------------------------------------------------------------

def auth_header(url: str) -> str:
    """``Authorization: Basic ...`` for an http(s) URL's user-info, or "" (none, or not http)."""
    if not url.startswith(HTTP_SCHEMES) or not has_credentials(url):
        return ""
    parts = urllib.parse.urlsplit(url)
    user = urllib.parse.unquote(parts.username or "")
    password = urllib.parse.unquote(parts.password or "")
    token = base64.b64encode(f"{user}:{password}".encode("utf-8")).decode("ascii")
    return f"Authorization: Basic {token}"


def git_url(url: str) -> str:
    """The URL git is given: an http(s) URL loses its credentials (they go in a header); others stay."""
    return strip_credentials(url) if url.startswith(HTTP_SCHEMES) else url


def auth_env(url: str) -> dict[str, str]:
    """Environment that gives git the credentials of ``url`` as an ``http.<url>.extraHeader`` (no argv, no file)."""
    header = auth_header(url)
    if not header:
        return {}
    return {"GIT_CONFIG_COUNT": "1", "GIT_CONFIG_KEY_0": f"http.{strip_credentials(url)}.extraHeader",
            "GIT_CONFIG_VALUE_0": header}


def probe_env(base: dict[str, str], http_proxy: str = "", https_proxy: str = "",
              no_proxy: str = "") -> dict[str, str]:
    """The environment for git: no prompts, C locale, and the proxies that are set (both spellings)."""
    env = dict(base)
    env.update({"GIT_TERMINAL_PROMPT": "0", "GIT_ASKPASS": "/bin/false", "SSH_ASKPASS": "/bin/false",
                "GIT_SSH_COMMAND": "ssh -o BatchMode=yes -o ConnectTimeout=15", "LC_ALL": "C"})
    for key in [k for k in env if k.startswith("GIT_CONFIG_KEY_") or k.startswith("GIT_CONFIG_VALUE_")]:
        del env[key]
    env.pop("GIT_CONFIG_COUNT", None)
    for name, value in (("http_proxy", http_proxy), ("https_proxy", https_proxy), ("no_proxy", no_proxy)):
        if value:
            env[name] = value
            env[name.upper()] = value
    return env


# --- input checks (before anything runs) --------------------------------------------------------------------

def _label(names: Mapping[str, Any], key: str) -> str:
    return str(names.get(key) or key)


def listed(sources: Sequence[str]) -> list[str]:
    """The sources given, stripped, empty ones left out."""
    return [s.strip() for s in sources if s and s.strip()]


def check_inputs(params: Mapping[str, Any]) -> None:
    """Raise :class:`Refused` for an input no git run should see (nothing has run yet)."""
    names = params.get("names") or {}
    sources = listed(params["sources"])
    src = _label(names, "sources")
    if not sources:
        raise Refused(f"{src} lists no source of {params['name']} (got {redact_value(params['sources'])}). "
                      f"Fix: list at least one git URL.")
    for i, url in enumerate(sources):
        shown = redact_urls(url)
        if url.startswith("-"):
            raise Refused(f"{src}[{i}] = {shown!r} starts with '-': git would read it as an option. "
                          f"Fix: give the URL or path of the repository.")
        if re.search(r"\s", url):
            raise Refused(f"{src}[{i}] = {shown!r} contains white space. Fix: give one URL per list entry.")
        if has_credentials(url) and not url.startswith(HTTP_SCHEMES) and urllib.parse.urlsplit(url).password:
            raise Refused(f"{src}[{i}] = {shown!r} carries a password in a non-http(s) URL, which git would store "
                          f"and show. Fix: use https:// with the credentials, or an SSH key for ssh:// URLs.")
        if params["kind"] == "http" and has_credentials(url) and not url.startswith(HTTP_SCHEMES):
            raise Refused(f"{src}[{i}] = {shown!r}: credentials only work in http(s) URLs. Fix: use https://.")
    if params["timeout"] < 1:
        raise Refused(f"{_label(names, 'timeout')} = {params['timeout']}: must be at least 1 second. "
                      f"Fix: set it to 1 or more.")
    for name in ("http_proxy", "https_proxy"):
        value = params.get(name) or ""
        if value and not re.match(r"^(https?|socks5h?|socks4a?)://", value):
            shown = redact_urls(value)
            shown = f"***@{shown.rsplit('@', 1)[1]}" if "@" in shown else shown
            raise Refused(f"{_label(names, name)} = {shown!r} is not a proxy URL. "
                          f"Fix: write it as http://host:port (credentials as http://user:password@host:port).")
    if params["kind"] == "http" or not params.get("dest"):
        return
    dest, ref = params["dest"], params["ref"]
    if not os.path.isabs(dest) or not os.path.normpath(dest).strip("/"):
        raise Refused(f"{_label(names, 'dest')} = {dest!r} is not an absolute path below /. "
                      f"Fix: give the checkout's absolute path, e.g. /opt/sd-webui.")
    label = _label(names, "ref")
    if not ref.strip():
        raise Refused(f"{label} is empty: a checkout needs a tag, branch or commit. Fix: set it, e.g. v1.10.1.")
    if BAD_REF_RE.search(ref):
        raise Refused(f"{label} = {ref!r} is not a valid git tag, branch or commit name. "
                      f"Fix: give a tag, branch or commit as git names it, e.g. v1.10.1 or master.")
    if params["fetch_timeout"] < 1:
        raise Refused(f"{_label(names, 'fetch_timeout')} = {params['fetch_timeout']}: must be at least 1 second. "
                      f"Fix: set it to 1 or more.")
    branch = params.get("branch") or ""
    if branch and (BAD_REF_RE.search(branch) or not re.match(r"^[A-Za-z0-9][A-Za-z0-9._/-]*$", branch)):
        raise Refused(f"{_label(names, 'branch')} = {branch!r} is not a valid git branch name. "
                      f"Fix: give a plain name, e.g. sdfleet-pinned.")
    for i, path in enumerate(params.get("managed_files") or []):
        norm = os.path.normpath(path) if path else ""
        if not path or os.path.isabs(path) or norm == "." or norm.startswith("..") or path.startswith("-"):
            raise Refused(f"{_label(names, 'managed_files')}[{i}] = {path!r} is not a path inside the checkout. "
                          f"Fix: give it relative to {dest}, e.g. webui-user.sh.")


# --- probing ---------------------------------------------------------------------------------------------------

def first_line(text: str) -> str:
    """The first non-empty line of git's output, or a placeholder."""
    for line in text.splitlines():
        if line.strip():
            return line.strip()
    return "no output"


def advertises(ls_remote_output: str, ref: str) -> bool:
    """Whether `git ls-remote` output lists `ref` as a ref name, a branch or a tag."""
    wanted = {ref, f"refs/heads/{ref}", f"refs/tags/{ref}"}
    for line in ls_remote_output.splitlines():
        parts = line.split("\t", 1)
        if len(parts) == 2 and parts[1].removesuffix("^{}") in wanted:
            return True
    return False


def advertised_commit(ls_remote_output: str, ref: str) -> str:
    """The commit `ls-remote` output gives for `ref` (a branch, or a tag peeled to its commit); "" when not listed."""
    wanted = {ref, f"refs/heads/{ref}", f"refs/tags/{ref}"}
    found = ""
    for line in ls_remote_output.splitlines():
        parts = line.split("\t", 1)
        if len(parts) == 2 and parts[1].removesuffix("^{}") in wanted:
            if parts[1].endswith("^{}"):
                return parts[0]
            found = found or parts[0]
    return found


def needs_ref_check(ref: str) -> bool:
    """A branch or tag is checked; a commit hash or nothing is not."""
    return bool(ref) and not COMMIT_RE.match(ref)


def run_git(argv: Sequence[str], env: dict[str, str], timeout: float) -> tuple[Optional[int], str, str]:
    """Run git in its own process group; on timeout kill the group (git-remote-http included); rc None."""
    with subprocess.Popen(list(argv), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          env=env, text=True, start_new_session=True) as proc:
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            return None, "", ""
    return proc.returncode, out, err


def probe(url: str, ref: str, env: dict[str, str], timeout: float, git: str = "git",
          runner: Callable[..., tuple[Optional[int], str, str]] = run_git) -> Probe:
    """Probe one URL with `git ls-remote` (all refs when `ref` must be checked, else HEAD only).

    git gets the URL without credentials (they travel in the environment); the record shows it redacted."""
    target = git_url(url)
    argv = [git, "ls-remote", "--", target] if needs_ref_check(ref) else [git, "ls-remote", "--", target, "HEAD"]
    shown = redact_urls(url)
    start = time.monotonic()
    try:
        rc, out, err = runner(argv, {**env, **auth_env(url)}, timeout)
    except OSError as exc:
        return Probe(shown, False, f"cannot run {git}: {exc}", round(time.monotonic() - start, 2))
    seconds = round(time.monotonic() - start, 2)
    if rc is None:
        return Probe(shown, False, f"timed out after {timeout:g} s", seconds)
    if rc != 0:
        return Probe(shown, False, redact_urls(first_line(err or out)), seconds)
    if needs_ref_check(ref) and not advertises(out, ref):
        return Probe(shown, False, f"answers but has no branch or tag {ref!r}", seconds)
    return Probe(shown, True, "ok", seconds, advertised_commit(out, ref) if needs_ref_check(ref) else "")


def head_status(url: str, timeout: float) -> int:
    """HTTP status of a HEAD request to `url` (redirects followed; proxies from the environment).

    Credentials in `url` are sent as an Authorization header, never in the request line."""
    header = auth_header(url)
    headers = {"User-Agent": "sdfleet-source-probe"}
    if header:
        headers["Authorization"] = header.split(": ", 1)[1]
    request = urllib.request.Request(strip_credentials(url), method="HEAD", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 (http/https only)
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def probe_http(url: str, timeout: float, status: Callable[[str, float], int] = head_status) -> Probe:
    """Probe a file URL with HEAD: status 200 wins; anything else is the reason it did not."""
    start = time.monotonic()
    shown = redact_urls(url)
    if not url.startswith(HTTP_SCHEMES):
        return Probe(shown, False, "not an http(s) URL", 0.0)
    try:
        code = status(url, timeout)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        text = f"timed out after {timeout:g} s" if "timed out" in str(reason) else f"cannot connect: {reason}"
        return Probe(shown, False, redact_urls(text), round(time.monotonic() - start, 2))
    seconds = round(time.monotonic() - start, 2)
    if code != 200:
        return Probe(shown, False, f"HTTP {code}", seconds)
    return Probe(shown, True, "ok", seconds)


def choose(sources: Sequence[str], ref: str, env: dict[str, str], timeout: float, git: str = "git",
           runner: Callable[..., tuple[Optional[int], str, str]] = run_git, kind: str = "git",
           status: Callable[[str, float], int] = head_status) -> list[Probe]:
    """Probe in order and stop at the first success; return every probe made."""
    tried: list[Probe] = []
    for url in sources:
        result = probe_http(url, timeout, status) if kind == "http" else probe(url, ref, env, timeout, git, runner)
        tried.append(result)
        if result.ok:
            break
    return tried


def failure_message(name: str, tried: Sequence[Probe], label: str = "") -> str:
    """One message naming every URL tried and why it failed (URLs redacted)."""
    lines = [f"{i}. {redact_urls(p.url)}: {redact_urls(p.reason)}" for i, p in enumerate(tried, 1)]
    where = f" ({label})" if label else ""
    return (f"No source of {name}{where} answered ({len(tried)} tried, in order): " + "; ".join(lines)
            + ". Fix the network or proxy, or add a reachable mirror to the list.")


# --- checkout ----------------------------------------------------------------------------------------------------

class GitError(Exception):
    """A git command failed (message redacted)."""


class Checkout:
    """git in one checkout, with the environment (credentials, proxies) and timeout of this run."""

    def __init__(self, dest: str, env: dict[str, str], git: str = "git", timeout: float = 1800,
                 runner: Callable[..., tuple[Optional[int], str, str]] = run_git) -> None:
        self.dest, self.env, self.git_bin, self.timeout, self.runner = dest, env, git, timeout, runner

    def run(self, *args: str, check: bool = True, cwd: bool = True) -> str:
        argv = [self.git_bin, "-C", self.dest, *args] if cwd else [self.git_bin, *args]
        rc, out, err = self.runner(argv, self.env, self.timeout)
        if check and rc != 0:
            what = " ".join(redact_urls(a) for a in args[:2])
            reason = "timed out" if rc is None else first_line(err or out)
            raise GitError(f"git {what} failed in {self.dest}: {redact_urls(reason)}")
        return out

    def head(self) -> str:
        rc, out, _ = self.runner([self.git_bin, "-C", self.dest, "rev-parse", "--verify", "-q", "HEAD^{commit}"],
                                 self.env, self.timeout)
        return out.strip() if rc == 0 else ""

    def resolve(self, ref: str) -> str:
        """The commit ``ref`` names after a fetch: a branch of origin, a tag, or a commit (full or short)."""
        for candidate in (f"refs/remotes/origin/{ref}", f"refs/tags/{ref}", ref):
            rc, out, _ = self.runner([self.git_bin, "-C", self.dest, "rev-parse", "--verify", "-q", "--end-of-options",
                                      f"{candidate}^{{commit}}"], self.env, self.timeout)
            if rc == 0 and out.strip():
                return out.strip()
        return ""

    def fetch(self, url: str) -> None:
        self.run("fetch", "--quiet", "--force", "--tags", "--", git_url(url),
                 "+refs/heads/*:refs/remotes/origin/*")

    def local_edits(self, managed: Sequence[str]) -> list[str]:
        out = self.run("status", "--porcelain=v1", "-z", "--untracked-files=no", "--ignore-submodules=all")
        files: list[str] = []
        entries = out.split("\0")
        i = 0
        while i < len(entries):
            entry = entries[i]
            i += 1
            if len(entry) < 4:
                continue
            status, path = entry[:2], entry[3:]
            if "R" in status or "C" in status:
                i += 1  # the rename's source path follows
            if path not in managed:
                files.append(path)
        return sorted(files)

    def untracked_overwritten(self, target: str, managed: Sequence[str]) -> tuple[list[str], list[str]]:
        """Files on disk that git does not track now and ``target`` tracks: those with other content (or in the
        way), and those with the same content (git refuses those too; they can go, nothing is lost)."""
        tracked = set(self.run("ls-files", "-z").split("\0"))
        blobs: dict[str, tuple[str, str]] = {}
        for entry in self.run("ls-tree", "-r", "-z", "--full-tree", target).split("\0"):
            if not entry:
                continue
            meta, path = entry.split("\t", 1)
            mode, kind, sha = meta.split()
            if kind == "blob":
                blobs[path] = (mode, sha)
        hits: list[str] = []
        same: list[str] = []
        for path, (mode, sha) in blobs.items():
            if path in tracked or path in managed:
                continue
            full = os.path.join(self.dest, path)
            parts = path.split("/")
            blocker = next((("/".join(parts[:n])) for n in range(1, len(parts))
                            if "/".join(parts[:n]) not in tracked
                            and os.path.lexists(os.path.join(self.dest, *parts[:n]))
                            and not os.path.isdir(os.path.join(self.dest, *parts[:n]))), "")
            if blocker:
                hits.append(blocker)
                continue
            if not os.path.lexists(full):
                continue
            if os.path.isdir(full) and not os.path.islink(full):
                hits.append(path)
                continue
            if mode != "120000" and os.path.isfile(full) and not os.path.islink(full):
                if self.run("hash-object", "--", full).strip() == sha:
                    same.append(path)
                    continue
            hits.append(path)
        return sorted(set(hits)), sorted(same)

    def restore(self, paths: Sequence[str]) -> list[str]:
        """Clear the skip-worktree mark of ``paths`` and restore their committed content; the paths restored."""
        tracked = [p for p in paths if self.run("ls-files", "--", p).strip()]
        if not tracked:
            return []
        # One mark per update-index call: a second mark option replaces the first.
        self.run("update-index", "--no-skip-worktree", "--", *tracked)
        self.run("update-index", "--no-assume-unchanged", "--", *tracked)
        self.run("checkout", "--", *tracked)
        return tracked


def refusal_local_edits(dest: str, files: Sequence[str], ref: str, names: Mapping[str, Any]) -> str:
    shown = ", ".join(files[:20]) + (f" and {len(files) - 20} more" if len(files) > 20 else "")
    return (f"{dest} has local edits to tracked files: {shown}. Updating to {ref} ({_label(names, 'ref')}) would "
            f"discard them; nothing was changed. Fix: save them elsewhere and revert them (git -C {dest} diff > "
            f"my.patch; git -C {dest} checkout -- .), or set {_label(names, 'force')}: true to discard them.")


def refusal_untracked(dest: str, files: Sequence[str], ref: str, names: Mapping[str, Any]) -> str:
    shown = ", ".join(files[:20]) + (f" and {len(files) - 20} more" if len(files) > 20 else "")
    return (f"{dest} has untracked files that {ref} ({_label(names, 'ref')}) tracks with other content: {shown}. "
            f"Updating would overwrite them; nothing was changed. Fix: move them out of {dest} (e.g. mv "
            f"{dest}/{files[0]} ~/), or set {_label(names, 'force')}: true to overwrite them.")


def checkout(url: str, params: Mapping[str, Any], env: dict[str, str], check_mode: bool,
             runner: Callable[..., tuple[Optional[int], str, str]] = run_git) -> dict[str, Any]:
    """Clone or update ``params['dest']`` at ``params['ref']`` from ``url``; raise Refused to refuse, GitError."""
    dest, ref, force = params["dest"], params["ref"], bool(params["force"])
    branch = params.get("branch") or ""
    on_branch = ["-B", branch] if branch else ["--detach"]
    names = params.get("names") or {}
    managed = [os.path.normpath(p) for p in params.get("managed_files") or []]
    repo = Checkout(dest, {**env, **auth_env(url)}, params["git"], params["fetch_timeout"], runner)
    stored_url = git_url(url)
    if not os.path.exists(os.path.join(dest, ".git")):
        if os.path.isdir(dest) and os.listdir(dest):
            raise Refused(f"{_label(names, 'dest')} = {dest} exists, is not a git checkout and is not empty; "
                          f"nothing was changed. Fix: move it away, or point {_label(names, 'dest')} elsewhere.")
        if check_mode:
            return {"changed": True, "before": "", "after": "", "restored": []}
        existed = os.path.isdir(dest)
        os.makedirs(dest, exist_ok=True)
        try:
            repo.run("init", "--quiet")
            repo.run("remote", "add", "origin", stored_url)
            repo.fetch(url)
            target = repo.resolve(ref)
            if not target:
                raise GitError(f"{redact_urls(url)} has no branch, tag or commit {ref!r} ({_label(names, 'ref')})")
            repo.run("checkout", "--quiet", *on_branch, target)
        except (GitError, OSError):
            # A clone that failed leaves nothing behind: no half-made checkout for the next run to trip on.
            if existed:
                shutil.rmtree(os.path.join(dest, ".git"), ignore_errors=True)
            else:
                shutil.rmtree(dest, ignore_errors=True)
            raise
        return {"changed": True, "before": "", "after": target, "restored": []}

    before = repo.head()
    if check_mode:
        target = repo.resolve(ref)  # what the checkout knows (a branch may have moved upstream since)
        if not target:
            return {"changed": True, "before": before, "after": "", "restored": []}
    else:
        repo.fetch(url)
        target = repo.resolve(ref)
        if not target:
            raise GitError(f"{redact_urls(url)} has no branch, tag or commit {ref!r} ({_label(names, 'ref')})")
    stored = repo.run("config", "--get", "remote.origin.url", check=False).strip()
    if target == before:
        current = repo.run("symbolic-ref", "--quiet", "--short", "HEAD", check=False).strip()
        off_branch = bool(branch) and current != branch
        if (stored != stored_url or off_branch) and not check_mode:
            if stored != stored_url:
                repo.run("remote", "remove", "origin", check=False)
                repo.run("remote", "add", "origin", stored_url)
            if off_branch:
                repo.run("checkout", "--quiet", "-B", branch, target)
            return {"changed": True, "before": before, "after": target, "restored": []}
        return {"changed": stored != stored_url or off_branch, "before": before, "after": target, "restored": []}
    identical: list[str] = []
    if not force:
        # Both checks before refusing, so that one message names everything in the way.
        edits = repo.local_edits(managed)
        untracked, identical = repo.untracked_overwritten(target, managed)
        if edits or untracked:
            parts = ([refusal_local_edits(dest, edits, ref, names)] if edits else []) + (
                [refusal_untracked(dest, untracked, ref, names)] if untracked else [])
            raise Refused(" ".join(parts), {"local_edits": edits, "untracked": untracked})
    if check_mode:
        return {"changed": True, "before": before, "after": target, "restored": []}
    for path in identical:  # the target's own content: git would refuse to overwrite it, nothing is lost
        os.unlink(os.path.join(dest, path))
    restored = repo.restore(managed)
    if stored != stored_url:
        repo.run("remote", "remove", "origin", check=False)
        repo.run("remote", "add", "origin", stored_url)
    repo.run("checkout", "--quiet", *(["--force"] if force else []), *on_branch, target)
    return {"changed": True, "before": before, "after": target, "restored": restored}


LOOKUP_KEYS = ("name", "sources", "ref", "kind", "names")


def lookup_params(params: Mapping[str, Any], entry: Mapping[str, Any]) -> dict[str, Any]:
    """The parameters of one entry of ``repositories``: the entry's own lookup keys over the shared ones (timeout,
    proxies, git), read-only (no dest)."""
    unknown = sorted(set(entry) - set(LOOKUP_KEYS))
    if unknown:
        raise Refused(f"repositories entry {entry.get('name', '?')!r} has unknown keys {unknown}: "
                      f"Fix: give only {', '.join(LOOKUP_KEYS)}.")
    kind = entry.get("kind") or "git"
    if kind not in ("git", "http"):
        raise Refused(f"repositories entry {entry.get('name', '?')!r}: kind = {kind!r}. Fix: use git or http.")
    return {**params, "name": str(entry.get("name") or "repository"), "sources": list(entry.get("sources") or []),
            "ref": str(entry.get("ref") or ""), "kind": kind, "names": dict(entry.get("names") or {}), "dest": ""}


def pick(params: Mapping[str, Any], env: dict[str, str]) -> tuple[dict[str, Any], Optional[str]]:
    """Probe one lookup: its result record (``{name, tried, commit}``, with ``source`` and ``index`` when a source
    answered) and, when none did, the failure message."""
    sources = listed(params["sources"])
    tried = choose(sources, params["ref"], env, params["timeout"], params["git"], kind=params["kind"])
    result: dict[str, Any] = {"name": params["name"], "tried": [asdict(p) for p in tried], "commit": ""}
    if not tried[-1].ok:
        return result, failure_message(params["name"], tried, _label(params["names"], "sources")
                                       if params["names"] else "")
    url = sources[len(tried) - 1]
    result.update(source=git_url(url) if params["kind"] == "git" else strip_credentials(url), index=len(tried) - 1,
                  commit=tried[-1].commit)
    return result, None


def pick_all(params: Mapping[str, Any], env: dict[str, str], workers: int = 8) -> tuple[list[dict[str, Any]], list[str]]:
    """Every entry of ``repositories``, inputs checked first (Refused before any probe), then probed side by side:
    the records in order and the failure messages in order."""
    lookups = [lookup_params(params, entry) for entry in params["repositories"]]
    for lookup in lookups:
        check_inputs(lookup)
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, min(workers, len(lookups)))) as pool:
        picked = list(pool.map(lambda lookup: pick(lookup, env), lookups))
    return [record for record, _ in picked], [msg for _, msg in picked if msg]


def main() -> None:
    """Module entry point."""
    module = AnsibleModule(
        argument_spec={
            "sources": {"type": "list", "elements": "str", "default": []},
            "repositories": {"type": "list", "elements": "dict", "default": []},
            "name": {"type": "str", "default": "repository"},
            "ref": {"type": "str", "default": ""},
            "timeout": {"type": "int", "default": 30},
            "http_proxy": {"type": "str", "default": ""},
            "https_proxy": {"type": "str", "default": ""},
            "no_proxy": {"type": "str", "default": ""},
            "git": {"type": "str", "default": "git"},
            "kind": {"type": "str", "default": "git", "choices": ["git", "http"]},
            "dest": {"type": "str", "default": ""},
            "force": {"type": "bool", "default": False},
            "managed_files": {"type": "list", "elements": "str", "default": []},
            "fetch_timeout": {"type": "int", "default": 1800},
            "branch": {"type": "str", "default": ""},
            "names": {"type": "dict", "default": {}},
        },
        supports_check_mode=True,
    )
    params: dict[str, Any] = module.params
    # The invocation shown at -vvv: every URL redacted (AnsibleModule would echo the sources as given).
    invocation = {"module_args": redact_value(params)}

    def fail(**kwargs: Any) -> None:
        module.fail_json(invocation=invocation, **redact_value(kwargs))

    env = probe_env(dict(os.environ), params["http_proxy"], params["https_proxy"], params["no_proxy"])
    if params["repositories"] or params["kind"] == "http":
        # urllib (kind http) reads the proxies from the environment
        os.environ.update({k: v for k, v in env.items() if k.lower().endswith("_proxy")})
    if params["repositories"]:
        if params["dest"]:
            fail(msg="repositories only probes: dest must be empty. Fix: check out one repository per task.",
                 refused=True, results=[])
        try:
            results, failures = pick_all(params, env)
        except Refused as exc:
            fail(msg=str(exc.args[0]), refused=True, results=[])
        if failures:
            fail(msg=" ".join(failures), results=results)
        module.exit_json(invocation=invocation, changed=False, **redact_value({"results": results}))
    try:
        check_inputs(params)
    except Refused as exc:
        fail(msg=str(exc.args[0]), refused=True, tried=[])
    record, failure = pick(params, env)
    if failure:
        fail(msg=failure, tried=record["tried"])
    result: dict[str, Any] = {"changed": False, **{k: record[k] for k in ("source", "index", "tried", "commit")}}
    if params["dest"] and params["kind"] == "git":
        url = listed(params["sources"])[record["index"]]  # the winner as given (its credentials go to git's env)
        try:
            result.update(checkout(url, params, env, module.check_mode))
        except Refused as exc:
            extra = exc.args[1] if len(exc.args) > 1 else {}
            fail(msg=str(exc.args[0]), refused=True, **result, **extra)
        except GitError as exc:
            fail(msg=str(exc), **result)
    module.exit_json(invocation=invocation, **redact_value(result))


if __name__ == "__main__":
    main()
