"""The mirror's git smart HTTP: clone, tags, fetch of a pinned commit by hash, shallow clone, auth refusal."""

from __future__ import annotations

import gzip
import http.client
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from mirror_helpers import Mirror, git, git_env

SUB_REPOS = ["stablediffusion", "generative-models", "k-diffusion", "BLIP", "stable-diffusion-webui-assets"]


def pkt(line: str) -> bytes:
    """One git pkt-line."""
    data = line.encode()
    return f"{len(data) + 4:04x}".encode() + data


def test_clone_describes_v1_10_1_on_master(mirror: Mirror, pins: dict[str, Any], tmp_path: Path) -> None:
    git("clone", f"{mirror.url}/git/stable-diffusion-webui.git", str(tmp_path / "w"))
    assert git("describe", "--tags", cwd=tmp_path / "w").stdout.strip() == "v1.10.1"
    assert git("rev-parse", "--abbrev-ref", "HEAD", cwd=tmp_path / "w").stdout.strip() == "master"
    assert git("rev-parse", "HEAD", cwd=tmp_path / "w").stdout.strip() == pins["webui"]["tags"]["v1.10.1"]


def test_webui_refs_match_pins(mirror: Mirror, pins: dict[str, Any], tmp_path: Path) -> None:
    webui = pins["webui"]
    git("clone", "--quiet", f"{mirror.url}{webui['path']}", str(tmp_path / "w"))
    repo = tmp_path / "w"
    for tag, commit in webui["tags"].items():
        assert git("cat-file", "-t", f"refs/tags/{tag}", cwd=repo).stdout.strip() == "tag"  # annotated
        assert git("rev-parse", f"{tag}^{{commit}}", cwd=repo).stdout.strip() == commit
    dev = webui["branches"]["dev"]
    assert git("rev-parse", "origin/dev", cwd=repo).stdout.strip() == dev
    assert git("rev-parse", "origin/dev~1", cwd=repo).stdout.strip() == webui["branches"]["master"]
    assert git("describe", "--tags", "origin/dev", cwd=repo).stdout.strip() == webui["dev_describe"]
    assert git("rev-parse", "v1.10.1~1", cwd=repo).stdout.strip() == webui["tags"]["v1.10.0"]


@pytest.mark.parametrize("protocol", ["0", "2"])  # v0 needs the server's *SHA1InWant settings; v2 allows it
@pytest.mark.parametrize("name", SUB_REPOS)
def test_sub_repo_pinned_commit_fetches_by_hash(mirror: Mirror, pins: dict[str, Any], tmp_path: Path,
                                                name: str, protocol: str) -> None:
    sub = pins["repos"][name]
    assert sub["pin"] != sub["head"]
    git("init", "--quiet", str(tmp_path))
    git("remote", "add", "origin", f"{mirror.url}{sub['path']}", cwd=tmp_path)
    git("-c", f"protocol.version={protocol}", "fetch", "--quiet", "origin", sub["pin"], cwd=tmp_path)
    git("checkout", "--quiet", "FETCH_HEAD", cwd=tmp_path)
    assert git("rev-parse", "HEAD", cwd=tmp_path).stdout.strip() == sub["pin"]
    remote_head = git("ls-remote", "origin", f"refs/heads/{sub['branch']}", cwd=tmp_path).stdout.split()[0]
    assert remote_head == sub["head"]


def test_shallow_clone_of_a_tag(mirror: Mirror, pins: dict[str, Any], tmp_path: Path) -> None:
    git("clone", "--quiet", "--depth", "1", "--branch", "v1.10.0", f"{mirror.url}/git/stable-diffusion-webui.git",
        str(tmp_path / "w"))
    assert git("rev-list", "--count", "HEAD", cwd=tmp_path / "w").stdout.strip() == "1"
    assert git("rev-parse", "HEAD", cwd=tmp_path / "w").stdout.strip() == pins["webui"]["tags"]["v1.10.0"]


def test_auth_path_fails_fast_without_prompting(mirror: Mirror, tmp_path: Path) -> None:
    started = time.monotonic()
    proc = git("clone", f"{mirror.url}/auth/x.git", str(tmp_path / "x"), check=False)
    assert proc.returncode != 0
    assert time.monotonic() - started < 5
    assert "terminal prompts disabled" in proc.stderr or "Authentication failed" in proc.stderr, proc.stderr
    status, headers, _ = mirror.get("/auth/x.git/info/refs?service=git-upload-pack")
    assert status == 401 and headers["WWW-Authenticate"].startswith("Basic")


def upload_pack_request(pins: dict[str, Any]) -> bytes:
    """A protocol-v0 upload-pack request wanting the BLIP pin."""
    return pkt(f"want {pins['repos']['BLIP']['pin']} ofs-delta\n") + b"0000" + pkt("done\n")


def test_upload_pack_accepts_gzip_body(mirror: Mirror, pins: dict[str, Any]) -> None:
    status, headers, body = mirror.get(
        "/git/BLIP.git/git-upload-pack", method="POST", body=gzip.compress(upload_pack_request(pins)),
        headers={"Content-Type": "application/x-git-upload-pack-request", "Content-Encoding": "gzip"})
    assert status == 200, body
    assert headers["Content-Type"] == "application/x-git-upload-pack-result"
    assert b"PACK" in body


def test_upload_pack_accepts_chunked_body(mirror: Mirror, pins: dict[str, Any]) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", mirror.port, timeout=30)
    try:
        conn.request("POST", "/git/BLIP.git/git-upload-pack", body=iter([upload_pack_request(pins)]),
                     headers={"Content-Type": "application/x-git-upload-pack-request"}, encode_chunked=True)
        response = conn.getresponse()
        assert response.status == 200
        assert b"PACK" in response.read()
    finally:
        conn.close()


def test_unknown_repo_is_not_found(mirror: Mirror) -> None:
    assert mirror.get("/git/nope.git/info/refs?service=git-upload-pack")[0] == 404


def test_protocol_v2_is_negotiated(mirror: Mirror, tmp_path: Path) -> None:
    env = {**git_env(), "GIT_TRACE_PACKET": "1"}
    proc = subprocess.run(["git", "-c", "protocol.version=2", "ls-remote", f"{mirror.url}/git/BLIP.git"],
                          env=env, capture_output=True, text=True, timeout=30, check=True, cwd=os.fspath(tmp_path))
    assert "git< version 2" in proc.stderr
    assert "refs/heads/main" in proc.stdout
