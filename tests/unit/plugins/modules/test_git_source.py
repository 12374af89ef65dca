"""Tests of the git_source module: ordered probing with fallback, one failure message, timeouts, ref checks."""
from __future__ import annotations

import json
import os
import pathlib
import socket
import stat
import subprocess
import sys
import time

import pytest

from ansible_collections.sdfleet.toolkit.plugins.modules import git_source as gs

ROOT = pathlib.Path(__file__).resolve().parents[4]
MODULE = ROOT / "collections/ansible_collections/sdfleet/toolkit/plugins/modules/git_source.py"
GIT_ENV = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@t", "GIT_CONFIG_GLOBAL": "/dev/null"}


def git(*args: str, cwd: pathlib.Path | None = None) -> str:
    done = subprocess.run(["git", *args], cwd=cwd, env={**os.environ, **GIT_ENV}, capture_output=True, text=True,
                          check=True)
    return done.stdout.strip()


@pytest.fixture(scope="module")
def bare(tmp_path_factory) -> pathlib.Path:
    """A bare repo with master, tag v1.0 and branch dev."""
    work = tmp_path_factory.mktemp("work")
    git("init", "-q", "-b", "master", str(work))
    (work / "f").write_text("x\n")
    git("add", "f", cwd=work)
    git("commit", "-q", "-m", "one", cwd=work)
    git("tag", "-a", "v1.0", "-m", "v1.0", cwd=work)
    git("branch", "dev", cwd=work)
    repo = tmp_path_factory.mktemp("remote") / "repo.git"
    git("clone", "-q", "--bare", str(work), str(repo))
    return repo


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run(tmp_path: pathlib.Path, check: bool = False, **args) -> dict:
    argsfile = tmp_path / "args.json"
    argsfile.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": dict(args, _ansible_check_mode=check)}))
    env = dict(os.environ, PYTHONPATH=str(ROOT / "collections"))
    done = subprocess.run([sys.executable, str(MODULE), str(argsfile)], capture_output=True, text=True, env=env,
                          check=False, timeout=120)
    try:
        return json.loads(done.stdout)
    except ValueError:
        raise AssertionError(done.stdout + done.stderr) from None


def test_primary_wins_when_it_answers(tmp_path, bare):
    res = run(tmp_path, sources=[f"file://{bare}", str(tmp_path / "never-probed.git")])
    assert not res.get("failed") and res["changed"] is False, res
    assert (res["source"], res["index"]) == (f"file://{bare}", 0)
    assert [t["url"] for t in res["tried"]] == [f"file://{bare}"]


def test_dead_primary_falls_back_to_mirror(tmp_path, bare):
    dead = f"http://127.0.0.1:{free_port()}/git/repo.git"
    res = run(tmp_path, sources=[dead, str(bare)], name="webui")
    assert not res.get("failed"), res
    assert (res["source"], res["index"]) == (str(bare), 1)
    assert res["tried"][0]["ok"] is False and "127.0.0.1" in res["tried"][0]["reason"]
    assert res["tried"][1]["ok"] is True


def test_all_failing_gives_one_message_listing_every_url(tmp_path):
    dead = f"http://127.0.0.1:{free_port()}/git/repo.git"
    missing = str(tmp_path / "missing.git")
    res = run(tmp_path, sources=[dead, missing], name="stable-diffusion-webui", check=True)
    assert res["failed"] is True
    msg = res["msg"]
    assert msg.startswith("No source of stable-diffusion-webui answered (2 tried, in order): 1. " + dead)
    assert "2. " + missing + ": fatal:" in msg
    assert "Connection refused" in msg or "Failed to connect" in msg
    assert len(res["tried"]) == 2 and not any(t["ok"] for t in res["tried"])


def test_ref_missing_on_a_mirror_skips_it(tmp_path, bare):
    res = run(tmp_path, sources=[str(bare)], ref="v9.9")
    assert res["failed"] and "has no branch or tag 'v9.9'" in res["msg"], res
    for ref in ("v1.0", "dev", "master"):
        assert run(tmp_path, sources=[str(bare)], ref=ref)["source"] == str(bare)


def test_commit_ref_is_not_checked(tmp_path, bare):
    res = run(tmp_path, sources=[str(bare)], ref="0123456789abcdef0123456789abcdef01234567")
    assert res["source"] == str(bare) and not res.get("failed")


def test_hanging_source_times_out_and_the_next_wins(tmp_path, bare):
    fake = tmp_path / "fakegit"
    fake.write_text('#!/bin/sh\ncase "$2" in *hang*) sleep 30;; esac\nexec git "$@"\n')
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    start = time.monotonic()
    res = run(tmp_path, sources=["http://127.0.0.1:9/hang.git", str(bare)], timeout=1, git=str(fake))
    assert time.monotonic() - start < 15
    assert res["source"] == str(bare), res
    assert res["tried"][0]["reason"] == "timed out after 1 s"


def test_no_sources_fails_naming_the_repo(tmp_path):
    res = run(tmp_path, sources=["", " "], name="BLIP")
    assert res["failed"] and "no sources given for BLIP" in res["msg"]


def test_probe_env_sets_no_prompt_and_proxies():
    env = gs.probe_env({"PATH": "/bin"}, http_proxy="http://p:3128", no_proxy="mirror")
    assert env["GIT_TERMINAL_PROMPT"] == "0" and "BatchMode=yes" in env["GIT_SSH_COMMAND"]
    assert env["http_proxy"] == env["HTTP_PROXY"] == "http://p:3128"
    assert env["no_proxy"] == env["NO_PROXY"] == "mirror"
    assert "https_proxy" not in env and "HTTPS_PROXY" not in env


def test_advertises_matches_branches_tags_and_peeled_tags():
    out = "a\tHEAD\nb\trefs/heads/master\nc\trefs/tags/v1.10.1\nd\trefs/tags/v1.10.0^{}\n"
    assert gs.advertises(out, "master") and gs.advertises(out, "v1.10.1") and gs.advertises(out, "v1.10.0")
    assert not gs.advertises(out, "dev") and not gs.advertises(out, "v1.10")


def test_first_line_skips_blank_lines():
    assert gs.first_line("\n  \nfatal: x\nmore") == "fatal: x"
    assert gs.first_line("") == "no output"


def test_probe_uses_runner_result():
    def runner(argv, env, timeout):
        assert argv == ["git", "ls-remote", "u", "HEAD"] and env["GIT_TERMINAL_PROMPT"] == "0"
        return 128, "", "fatal: repository 'u' not found\nhint"
    res = gs.probe("u", "", gs.probe_env({}), 5, runner=runner)
    assert (res.ok, res.reason) == (False, "fatal: repository 'u' not found")


# --- kind: http (a file URL such as the CLIP_PACKAGE zip) ---------------------------------------------------

@pytest.fixture(scope="module")
def http_root(tmp_path_factory):
    """A loopback HTTP server: /a/x.zip exists, /moved redirects to it, everything else is 404."""
    import http.server
    import threading

    root = tmp_path_factory.mktemp("www")
    (root / "a").mkdir()
    (root / "a" / "x.zip").write_bytes(b"PK\x05\x06" + b"\0" * 18)

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *a, **kw):
            super().__init__(*a, directory=str(root), **kw)

        def do_HEAD(self):  # noqa: N802 (http.server's naming)
            if self.path == "/moved":
                self.send_response(302)
                self.send_header("Location", "/a/x.zip")
                self.end_headers()
                return
            super().do_HEAD()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_http_dead_and_missing_sources_fall_back_to_the_file(tmp_path, http_root):
    dead = f"http://127.0.0.1:{free_port()}/a/x.zip"
    out = run(tmp_path, kind="http", name="CLIP_PACKAGE",
              sources=[dead, f"{http_root}/missing.zip", f"{http_root}/a/x.zip"])
    assert out.get("failed") is not True, out
    assert out["source"] == f"{http_root}/a/x.zip" and out["index"] == 2
    assert [t["ok"] for t in out["tried"]] == [False, False, True]
    assert "cannot connect" in out["tried"][0]["reason"]
    assert out["tried"][1]["reason"] == "HTTP 404"


def test_http_redirect_is_followed(tmp_path, http_root):
    out = run(tmp_path, kind="http", sources=[f"{http_root}/moved"])
    assert out["source"] == f"{http_root}/moved" and out["tried"][0]["ok"] is True


def test_http_none_answering_names_the_package_and_every_url(tmp_path, http_root):
    out = run(tmp_path, kind="http", name="OPENCLIP_PACKAGE", sources=[f"{http_root}/nope.zip", "file:///etc/passwd"])
    assert out["failed"] is True
    assert "No source of OPENCLIP_PACKAGE answered (2 tried" in out["msg"]
    assert f"{http_root}/nope.zip: HTTP 404" in out["msg"] and "file:///etc/passwd: not an http(s) URL" in out["msg"]


def test_http_probe_reports_a_timeout():
    import socket as _socket

    def status(url, timeout):
        raise _socket.timeout("timed out")

    result = gs.probe_http("http://x.invalid/f.zip", 2, status)
    assert not result.ok and result.reason == "timed out after 2 s"
