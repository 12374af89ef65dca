#!/usr/bin/python
# -*- coding: utf-8 -*-
"""Ansible module: pick the first URL of an ordered list that answers (a git repository or a file)."""
from __future__ import annotations

DOCUMENTATION = r"""
---
module: git_source
short_description: Pick the first reachable source of an ordered list (primary first, then mirrors)
version_added: "0.1.0"
description:
  - Probes each URL of I(sources) in order, under a timeout. With I(kind=git) (a repository) the probe is
    C(git ls-remote) with C(GIT_TERMINAL_PROMPT=0) (and SSH in batch mode), so a dead or private URL fails at once
    instead of asking for a password. With I(kind=http) (a file to download, such as the C(CLIP_PACKAGE) zip) it is
    an HTTP C(HEAD) that follows redirects and must end in status 200.
  - The first URL that answers (and, when I(ref) names a branch or tag, advertises it) wins and is returned.
  - When none answers, the task fails with one message listing every URL tried and why (the first line of git's
    error output, or the timeout).
  - Read-only; never reports a change and runs the same in check mode.
author:
  - sdfleet contributors
options:
  sources:
    description: Git URLs in order of preference. Empty strings are ignored.
    type: list
    elements: str
    required: true
  name:
    description: What the sources are for, used in the failure message.
    type: str
    default: repository
  ref:
    description:
      - A branch or tag the winner must advertise (a mirror that lags behind is skipped). A commit hash (7 to 40
        hex digits) or an empty string is not checked, as C(ls-remote) cannot prove a commit exists.
    type: str
    default: ""
  timeout:
    description: Seconds allowed for each probe.
    type: int
    default: 30
  http_proxy:
    description: C(http_proxy) for the probes; empty leaves the environment as it is.
    type: str
    default: ""
  https_proxy:
    description: C(https_proxy) for the probes; empty leaves the environment as it is.
    type: str
    default: ""
  no_proxy:
    description: C(no_proxy) for the probes; empty leaves the environment as it is.
    type: str
    default: ""
  git:
    description: The git program.
    type: str
    default: git
  kind:
    description: C(git) for a repository URL, C(http) for a file URL (I(ref) is ignored then).
    type: str
    choices: [git, http]
    default: git
attributes:
  check_mode:
    support: full
    description: Read-only; probes the same in check mode.
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

- name: Clone from it
  ansible.builtin.git:
    repo: "{{ webui_source.source }}"
    dest: /opt/sd-webui
    version: v1.10.1

- name: Pick the CLIP archive (fleet mirror first)
  sdfleet.toolkit.git_source:
    name: CLIP_PACKAGE
    kind: http
    sources:
      - http://mirror.lan:8080/openai/CLIP/archive/d50d76daa670286dd6cacf3bcd80b5e4823fc8e1.zip
      - https://github.com/openai/CLIP/archive/d50d76daa670286dd6cacf3bcd80b5e4823fc8e1.zip
"""
RETURN = r"""
source:
  description: The URL that answered.
  returned: success
  type: str
  sample: https://mirror.example.org/git/stable-diffusion-webui.git
index:
  description: Position of I(source) in I(sources) (0 is the primary).
  returned: success
  type: int
  sample: 1
tried:
  description: One record per URL probed, in order, C({url, ok, reason, seconds}).
  returned: always
  type: list
  elements: dict
  sample: [{url: "http://dead:8081/x.git", ok: false, reason: "Failed to connect ...: Connection refused",
            seconds: 0.01}]
"""

import os
import re
import signal
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass
from typing import Any, Callable, Sequence

from ansible.module_utils.basic import AnsibleModule

COMMIT_RE = re.compile(r"^[0-9a-fA-F]{7,40}$")


@dataclass(frozen=True)
class Probe:
    """The outcome of probing one URL."""

    url: str
    ok: bool
    reason: str
    seconds: float


def probe_env(base: dict[str, str], http_proxy: str = "", https_proxy: str = "",
              no_proxy: str = "") -> dict[str, str]:
    """The environment for git: no prompts, C locale, and the proxies that are set (both spellings)."""
    env = dict(base)
    env.update({"GIT_TERMINAL_PROMPT": "0", "GIT_ASKPASS": "/bin/false", "SSH_ASKPASS": "/bin/false",
                "GIT_SSH_COMMAND": "ssh -o BatchMode=yes -o ConnectTimeout=15", "LC_ALL": "C"})
    for name, value in (("http_proxy", http_proxy), ("https_proxy", https_proxy), ("no_proxy", no_proxy)):
        if value:
            env[name] = value
            env[name.upper()] = value
    return env


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


def needs_ref_check(ref: str) -> bool:
    """A branch or tag is checked; a commit hash or nothing is not."""
    return bool(ref) and not COMMIT_RE.match(ref)


def run_git(argv: Sequence[str], env: dict[str, str], timeout: float) -> tuple[int | None, str, str]:
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
          runner: Callable[..., tuple[int | None, str, str]] = run_git) -> Probe:
    """Probe one URL with `git ls-remote` (all refs when `ref` must be checked, else HEAD only)."""
    argv = [git, "ls-remote", url] if needs_ref_check(ref) else [git, "ls-remote", url, "HEAD"]
    start = time.monotonic()
    try:
        rc, out, err = runner(argv, env, timeout)
    except OSError as exc:
        return Probe(url, False, f"cannot run {git}: {exc}", round(time.monotonic() - start, 2))
    seconds = round(time.monotonic() - start, 2)
    if rc is None:
        return Probe(url, False, f"timed out after {timeout:g} s", seconds)
    if rc != 0:
        return Probe(url, False, first_line(err or out), seconds)
    if needs_ref_check(ref) and not advertises(out, ref):
        return Probe(url, False, f"answers but has no branch or tag {ref!r}", seconds)
    return Probe(url, True, "ok", seconds)


def head_status(url: str, timeout: float) -> int:
    """HTTP status of a HEAD request to `url` (redirects followed; proxies from the environment)."""
    request = urllib.request.Request(url, method="HEAD", headers={"User-Agent": "sdfleet-source-probe"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 (http/https only)
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def probe_http(url: str, timeout: float, status: Callable[[str, float], int] = head_status) -> Probe:
    """Probe a file URL with HEAD: status 200 wins; anything else is the reason it did not."""
    start = time.monotonic()
    if not url.startswith(("http://", "https://")):
        return Probe(url, False, "not an http(s) URL", 0.0)
    try:
        code = status(url, timeout)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        text = f"timed out after {timeout:g} s" if "timed out" in str(reason) else f"cannot connect: {reason}"
        return Probe(url, False, text, round(time.monotonic() - start, 2))
    seconds = round(time.monotonic() - start, 2)
    if code != 200:
        return Probe(url, False, f"HTTP {code}", seconds)
    return Probe(url, True, "ok", seconds)


def choose(sources: Sequence[str], ref: str, env: dict[str, str], timeout: float, git: str = "git",
           runner: Callable[..., tuple[int | None, str, str]] = run_git, kind: str = "git",
           status: Callable[[str, float], int] = head_status) -> list[Probe]:
    """Probe in order and stop at the first success; return every probe made."""
    tried: list[Probe] = []
    for url in sources:
        result = probe_http(url, timeout, status) if kind == "http" else probe(url, ref, env, timeout, git, runner)
        tried.append(result)
        if result.ok:
            break
    return tried


def failure_message(name: str, tried: Sequence[Probe]) -> str:
    """One message naming every URL tried and why it failed."""
    lines = [f"{i}. {p.url}: {p.reason}" for i, p in enumerate(tried, 1)]
    return (f"No source of {name} answered ({len(tried)} tried, in order): " + "; ".join(lines)
            + ". Fix the network or proxy, or add a reachable mirror to the list.")


def main() -> None:
    """Module entry point."""
    module = AnsibleModule(
        argument_spec={
            "sources": {"type": "list", "elements": "str", "required": True},
            "name": {"type": "str", "default": "repository"},
            "ref": {"type": "str", "default": ""},
            "timeout": {"type": "int", "default": 30},
            "http_proxy": {"type": "str", "default": ""},
            "https_proxy": {"type": "str", "default": ""},
            "no_proxy": {"type": "str", "default": ""},
            "git": {"type": "str", "default": "git"},
            "kind": {"type": "str", "default": "git", "choices": ["git", "http"]},
        },
        supports_check_mode=True,
    )
    params: dict[str, Any] = module.params
    sources = [s.strip() for s in params["sources"] if s and s.strip()]
    if not sources:
        module.fail_json(msg=f"git_source: no sources given for {params['name']}; list at least one git URL.",
                         tried=[])
    if params["timeout"] < 1:
        module.fail_json(msg=f"git_source: timeout must be at least 1 second, got {params['timeout']}.", tried=[])
    env = probe_env(dict(os.environ), params["http_proxy"], params["https_proxy"], params["no_proxy"])
    if params["kind"] == "http":
        os.environ.update({k: v for k, v in env.items() if k.lower().endswith("_proxy")})
    tried = choose(sources, params["ref"], env, params["timeout"], params["git"], kind=params["kind"])
    records = [asdict(p) for p in tried]
    if not tried[-1].ok:
        module.fail_json(msg=failure_message(params["name"], tried), tried=records)
    module.exit_json(changed=False, source=tried[-1].url, index=len(tried) - 1, tried=records)


if __name__ == "__main__":
    main()
