"""Tests of the git_source module: ordered probing with fallback, one failure message, timeouts, ref checks."""
from __future__ import annotations

import json
import os
import pathlib
import socket
import stat
import subprocess
import time

import pytest
from module_run import run_module
from refusal_catalog import refused

from ansible_collections.sdfleet.toolkit.plugins.modules import git_source as gs

GIT_ENV = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@t", "GIT_CONFIG_GLOBAL": "/dev/null", "GIT_CONFIG_NOSYSTEM": "1"}


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
    # the host's /etc/gitconfig (a proxy, say) is not these tests' business
    return run_module("git_source", tmp_path, args, check,
                      env={"GIT_CONFIG_NOSYSTEM": "1", "no_proxy": "127.0.0.1", "NO_PROXY": "127.0.0.1"})


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
    fake.write_text('#!/bin/sh\ncase "$*" in *hang*) sleep 30;; esac\nexec git "$@"\n')
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    start = time.monotonic()
    res = run(tmp_path, sources=["http://127.0.0.1:9/hang.git", str(bare)], timeout=1, git=str(fake))
    assert time.monotonic() - start < 15
    assert res["source"] == str(bare), res
    assert res["tried"][0]["reason"] == "timed out after 1 s"


def test_no_sources_fails_naming_the_repo(tmp_path):
    res = run(tmp_path, sources=["", " "], name="BLIP",
              names={"sources": "sdfleet_webui_subrepo_sources.BLIP (webui_repo_subrepos[4].sources)"})
    assert res["failed"] and res["tried"] == []
    refused("webui_repo", "webui_repo_subrepos[4].sources", ["", " "], res["msg"], expect=["no source of BLIP"])


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


def test_advertised_commit_is_the_branch_head_or_the_peeled_tag():
    out = ("a1\tHEAD\nb2\trefs/heads/master\nc3\trefs/tags/v1.10.1\nd4\trefs/tags/v1.10.0\n"
           "e5\trefs/tags/v1.10.0^{}\n")
    assert gs.advertised_commit(out, "master") == "b2"
    assert gs.advertised_commit(out, "v1.10.1") == "c3"  # a lightweight tag is its commit
    assert gs.advertised_commit(out, "v1.10.0") == "e5"  # an annotated tag: the commit it points to
    assert gs.advertised_commit(out, "dev") == ""
    moved = out.replace("b2\trefs/heads/master", "f6\trefs/heads/master")
    assert gs.advertised_commit(moved, "master") == "f6"


def test_first_line_skips_blank_lines():
    assert gs.first_line("\n  \nfatal: x\nmore") == "fatal: x"
    assert gs.first_line("") == "no output"


def test_probe_uses_runner_result():
    def runner(argv, env, timeout):
        assert argv == ["git", "ls-remote", "--", "u", "HEAD"] and env["GIT_TERMINAL_PROMPT"] == "0"
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


# --- credentials in URLs: never in argv, .git/config or the result ------------------------------------------

TOKEN = "tok-Sekr1t-4242"
NAMES = {"sources": "sdfleet_webui_sources (webui_repo_sources)", "ref": "sdfleet_webui_version (webui_repo_version)",
         "force": "webui_repo_force", "dest": "webui_repo_dir", "timeout": "webui_repo_source_timeout",
         "fetch_timeout": "webui_repo_install_timeout",
         "http_proxy": "sdfleet_http_proxy (webui_repo_http_proxy)",
         "https_proxy": "sdfleet_https_proxy (webui_repo_https_proxy)"}


@pytest.fixture(scope="module")
def versions(tmp_path_factory) -> dict:
    """A bare repo with tags v1 (a, webui-user.sh) and v2 (a changed, webui-user.sh changed, new config.json,
    new dir/x.txt); update-server-info'd so that a dumb HTTP server can serve it."""
    work = tmp_path_factory.mktemp("vwork")
    git("init", "-q", "-b", "master", str(work))
    (work / "a").write_text("a1\n")
    (work / "webui-user.sh").write_text("#!/bin/bash\n# upstream v1\n")
    git("add", ".", cwd=work)
    git("commit", "-q", "-m", "v1", cwd=work)
    git("tag", "v1", cwd=work)
    (work / "a").write_text("a2\n")
    (work / "webui-user.sh").write_text("#!/bin/bash\n# upstream v2\n")
    (work / "config.json").write_text('{"upstream": 2}\n')
    (work / "dir").mkdir()
    (work / "dir" / "x.txt").write_text("x2\n")
    git("add", ".", cwd=work)
    git("commit", "-q", "-m", "v2", cwd=work)
    git("tag", "v2", cwd=work)
    bare = tmp_path_factory.mktemp("vremote") / "repo.git"
    git("clone", "-q", "--bare", str(work), str(bare))
    git("update-server-info", cwd=bare)
    return {"bare": bare, "v1": git("rev-parse", "v1^{commit}", cwd=work), "v2": git("rev-parse", "v2^{commit}", cwd=work)}


@pytest.fixture(scope="module")
def auth_server(versions):
    """Dumb-HTTP git server over the bare repo that answers only to user 'ci' with TOKEN (401 otherwise)."""
    import base64
    import http.server
    import threading

    root = versions["bare"].parent
    want = "Basic " + base64.b64encode(f"ci:{TOKEN}".encode()).decode()
    seen: list[str] = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *a, **kw):
            super().__init__(*a, directory=str(root), **kw)

        def _auth(self) -> bool:
            seen.append(self.requestline)
            if self.headers.get("Authorization") == want:
                return True
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="git"')
            self.send_header("Content-Length", "0")
            self.end_headers()
            return False

        def do_GET(self):  # noqa: N802
            if self._auth():
                super().do_GET()

        def do_HEAD(self):  # noqa: N802
            if self._auth():
                super().do_HEAD()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield {"base": f"127.0.0.1:{server.server_address[1]}", "seen": seen}
    server.shutdown()


def argv_logging_git(tmp_path: pathlib.Path) -> tuple[pathlib.Path, pathlib.Path]:
    """A git wrapper that appends its argv (one line per call) to a log, then runs git."""
    log = tmp_path / "argv.log"
    fake = tmp_path / "loggit"
    fake.write_text(f'#!/bin/sh\nprintf "%s\\n" "$*" >> {log}\nexec git "$@"\n')
    fake.chmod(0o755)
    return fake, log


def test_credentialed_source_clones_without_the_token_in_argv_config_or_result(tmp_path, versions, auth_server):
    url = f"http://ci:{TOKEN}@{auth_server['base']}/repo.git"
    fake, log = argv_logging_git(tmp_path)
    dest = tmp_path / "co"
    res = run(tmp_path, sources=[url], ref="v1", dest=str(dest), git=str(fake), names=NAMES)
    assert not res.get("failed"), res
    assert res["after"] == versions["v1"] and res["changed"] is True
    assert git("rev-parse", "HEAD", cwd=dest) == versions["v1"]
    # the stored remote is the URL without credentials; nothing under .git holds the token
    assert git("config", "--get", "remote.origin.url", cwd=dest) == f"http://{auth_server['base']}/repo.git"
    for path in (dest / ".git").rglob("*"):
        if path.is_file():
            assert TOKEN.encode() not in path.read_bytes(), f"token stored in {path}"
    assert TOKEN not in log.read_text(), "the token reached git's argv"
    assert TOKEN not in json.dumps(res) and res["source"] == f"http://{auth_server['base']}/repo.git"
    assert res["tried"][0]["url"] == f"http://***@{auth_server['base']}/repo.git"


def test_credentialed_source_without_the_token_is_rejected_by_the_server(tmp_path, auth_server):
    """The auth server is real: the URL without credentials does not answer (so the header is what works)."""
    res = run(tmp_path, sources=[f"http://{auth_server['base']}/repo.git"], ref="v1")
    assert res["failed"] is True


def test_failure_message_redacts_credentials(tmp_path):
    dead = f"https://ci:{TOKEN}@127.0.0.1:{free_port()}/git/repo.git"
    res = run(tmp_path, sources=[dead], name="stable-diffusion-webui", names=NAMES)
    assert res["failed"] is True
    assert TOKEN not in json.dumps(res)
    assert f"1. https://***@127.0.0.1:" in res["msg"] and "(sdfleet_webui_sources (webui_repo_sources))" in res["msg"]


def test_http_kind_sends_credentials_as_a_header(tmp_path, auth_server):
    ok = run(tmp_path, kind="http", sources=[f"http://ci:{TOKEN}@{auth_server['base']}/repo.git/HEAD"])
    assert not ok.get("failed"), ok
    assert ok["source"] == f"http://{auth_server['base']}/repo.git/HEAD" and TOKEN not in json.dumps(ok)
    bad = run(tmp_path, kind="http", sources=[f"http://ci:wrong@{auth_server['base']}/repo.git/HEAD"])
    assert bad["failed"] and "HTTP 401" in bad["msg"] and "wrong" not in bad["msg"]


def test_auth_env_builds_an_extra_header_for_http_only():
    env = gs.auth_env(f"https://ci:{TOKEN}@git.example.org/sd/repo.git")
    assert env["GIT_CONFIG_COUNT"] == "1"
    assert env["GIT_CONFIG_KEY_0"] == "http.https://git.example.org/sd/repo.git.extraHeader"
    assert env["GIT_CONFIG_VALUE_0"].startswith("Authorization: Basic ")
    assert gs.auth_env("https://git.example.org/x.git") == {}
    assert gs.auth_env("ssh://git@host/x.git") == {} and gs.git_url("ssh://git@host/x.git") == "ssh://git@host/x.git"
    assert gs.git_url("https://a%40b:p%3Aq@h/x.git") == "https://h/x.git"
    import base64
    value = gs.auth_header("https://a%40b:p%3Aq@h/x.git").split()[-1]
    assert base64.b64decode(value).decode() == "a@b:p:q"


# --- checkout: updates refuse to lose local work; the rendered launcher never blocks ----------------------

def clone_at(tmp_path: pathlib.Path, versions: dict, ref: str = "v1") -> pathlib.Path:
    dest = tmp_path / "checkout"
    res = run(tmp_path, sources=[str(versions["bare"])], ref=ref, dest=str(dest))
    assert not res.get("failed") and res["after"] == versions[ref], res
    return dest


def snapshot(dest: pathlib.Path) -> dict:
    """Everything a refused update must leave as it was: HEAD, the index flags, the config, every file."""
    files = {str(p.relative_to(dest)): p.read_bytes() for p in dest.rglob("*")
             if p.is_file() and ".git/objects" not in str(p) and ".git/refs" not in str(p)
             and p.name not in ("FETCH_HEAD", "packed-refs", "index")}
    return {"head": git("rev-parse", "HEAD", cwd=dest), "flags": git("ls-files", "-v", cwd=dest),
            "status": git("status", "--porcelain", "--untracked-files=all", cwd=dest), "files": files}


def test_update_moves_the_checkout_and_is_idempotent(tmp_path, versions):
    dest = clone_at(tmp_path, versions)
    res = run(tmp_path, sources=[str(versions["bare"])], ref="v2", dest=str(dest))
    assert (res["changed"], res["before"], res["after"]) == (True, versions["v1"], versions["v2"]), res
    assert (dest / "config.json").read_text() == '{"upstream": 2}\n'
    again = run(tmp_path, sources=[str(versions["bare"])], ref="v2", dest=str(dest))
    assert again["changed"] is False and again["after"] == versions["v2"]
    check = run(tmp_path, check=True, sources=[str(versions["bare"])], ref=versions["v1"], dest=str(dest))
    assert check["changed"] is True and git("rev-parse", "HEAD", cwd=dest) == versions["v2"]


UNTRACKED_CASES = {
    "config.json": {"config.json": '{"mine": 1}\n'},
    "dir/x.txt": {"dir/x.txt": "my notes\n"},
    "config.json, dir/x.txt": {"config.json": "{}\n", "dir/x.txt": "mine\n"},
    "dir": {"dir": "a file where v2 has a directory\n"},
}


@pytest.mark.parametrize("expected", list(UNTRACKED_CASES))
def test_update_refuses_untracked_files_the_new_version_tracks(tmp_path, versions, expected):
    dest = clone_at(tmp_path, versions)
    for rel, content in UNTRACKED_CASES[expected].items():
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        (dest / rel).write_text(content)
    before = snapshot(dest)
    res = run(tmp_path, sources=[str(versions["bare"])], ref="v2", dest=str(dest), names=NAMES)
    assert res["failed"] is True and res.get("refused") is True, res
    assert res["untracked"] == expected.split(", ")
    refused("webui_repo", "webui_repo_force", f"untracked {expected} that v2 tracks", res["msg"],
            expect=[f"tracks with other content: {expected}.", "nothing was changed", "sdfleet_webui_version",
                    f"mv {dest}/{expected.split(', ')[0]} ~/"])
    assert snapshot(dest) == before, "a refused update changed the checkout"


def test_untracked_file_with_the_same_content_is_no_conflict(tmp_path, versions):
    dest = clone_at(tmp_path, versions)
    (dest / "config.json").write_text('{"upstream": 2}\n')
    res = run(tmp_path, sources=[str(versions["bare"])], ref="v2", dest=str(dest))
    assert not res.get("failed") and res["after"] == versions["v2"], res


def test_force_overwrites_untracked_files(tmp_path, versions):
    dest = clone_at(tmp_path, versions)
    (dest / "config.json").write_text('{"mine": 1}\n')
    res = run(tmp_path, sources=[str(versions["bare"])], ref="v2", dest=str(dest), force=True)
    assert not res.get("failed") and (dest / "config.json").read_text() == '{"upstream": 2}\n', res


@pytest.mark.parametrize("edited", [["a"], ["a", "webui-user.sh"]])
def test_update_refuses_local_edits_and_changes_nothing(tmp_path, versions, edited):
    dest = clone_at(tmp_path, versions)
    for rel in edited:
        (dest / rel).write_text("local edit\n")
    before = snapshot(dest)
    res = run(tmp_path, sources=[str(versions["bare"])], ref="v2", dest=str(dest), names=NAMES)
    assert res["failed"] is True and res["local_edits"] == sorted(edited), res
    refused("webui_repo", "webui_repo_force", f"local edits to {', '.join(edited)}", res["msg"],
            expect=[f"local edits to tracked files: {', '.join(sorted(edited))}.", "nothing was changed",
                    "webui_repo_force: true"])
    assert snapshot(dest) == before


def test_local_edits_and_untracked_files_are_named_in_one_refusal(tmp_path, versions):
    dest = clone_at(tmp_path, versions)
    (dest / "a").write_text("local edit\n")
    (dest / "config.json").write_text("{}\n")
    before = snapshot(dest)
    res = run(tmp_path, sources=[str(versions["bare"])], ref="v2", dest=str(dest), names=NAMES)
    assert (res["local_edits"], res["untracked"]) == (["a"], ["config.json"]), res
    refused("webui_repo", "webui_repo_force", "local edits to a and untracked config.json", res["msg"],
            expect=["local edits to tracked files: a.", "tracks with other content: config.json."])
    assert snapshot(dest) == before


def test_force_discards_local_edits(tmp_path, versions):
    dest = clone_at(tmp_path, versions)
    (dest / "a").write_text("local edit\n")
    res = run(tmp_path, sources=[str(versions["bare"])], ref="v2", dest=str(dest), force=True)
    assert not res.get("failed") and (dest / "a").read_text() == "a2\n", res


def render_launcher(dest: pathlib.Path) -> None:
    """What webui_service does: render webui-user.sh over the tracked file and mark it skip-worktree."""
    (dest / "webui-user.sh").write_text("#!/bin/bash\n# rendered by sdfleet\n")
    git("update-index", "--skip-worktree", "--", "webui-user.sh", cwd=dest)


def test_skip_worktree_launcher_blocks_a_plain_git_update(tmp_path, versions):
    """The problem being fixed: git refuses to move a skip-worktree file that the update changes."""
    dest = clone_at(tmp_path, versions)
    render_launcher(dest)
    done = subprocess.run(["git", "-C", str(dest), "checkout", "-q", "v2"], capture_output=True, text=True,
                          env={**os.environ, **GIT_ENV}, check=False)
    assert done.returncode != 0 and "webui-user.sh" in done.stderr


def test_managed_launcher_never_blocks_an_update(tmp_path, versions):
    dest = clone_at(tmp_path, versions)
    render_launcher(dest)
    res = run(tmp_path, sources=[str(versions["bare"])], ref="v2", dest=str(dest), managed_files=["webui-user.sh"])
    assert not res.get("failed") and res["after"] == versions["v2"], res
    assert res["restored"] == ["webui-user.sh"]
    assert (dest / "webui-user.sh").read_text() == "#!/bin/bash\n# upstream v2\n"
    assert git("ls-files", "-v", "--", "webui-user.sh", cwd=dest).startswith("H "), "skip-worktree mark left"


def test_managed_launcher_is_left_alone_when_nothing_moves(tmp_path, versions):
    dest = clone_at(tmp_path, versions)
    render_launcher(dest)
    res = run(tmp_path, sources=[str(versions["bare"])], ref="v1", dest=str(dest), managed_files=["webui-user.sh"])
    assert res["changed"] is False and res["restored"] == []
    assert (dest / "webui-user.sh").read_text() == "#!/bin/bash\n# rendered by sdfleet\n"


def test_managed_launcher_with_local_edits_elsewhere_is_still_refused(tmp_path, versions):
    dest = clone_at(tmp_path, versions)
    render_launcher(dest)
    (dest / "a").write_text("mine\n")
    res = run(tmp_path, sources=[str(versions["bare"])], ref="v2", dest=str(dest), managed_files=["webui-user.sh"],
              names=NAMES)
    assert res["failed"] and res["local_edits"] == ["a"], res
    assert (dest / "webui-user.sh").read_text() == "#!/bin/bash\n# rendered by sdfleet\n"
    assert git("ls-files", "-v", "--", "webui-user.sh", cwd=dest).startswith("S ")


def test_old_credentialed_remote_url_is_rewritten_without_credentials(tmp_path, versions):
    dest = clone_at(tmp_path, versions)
    git("remote", "set-url", "origin", f"https://ci:{TOKEN}@example.invalid/repo.git", cwd=dest)
    res = run(tmp_path, sources=[str(versions["bare"])], ref="v1", dest=str(dest))
    assert res["changed"] is True and TOKEN not in (dest / ".git" / "config").read_text()


def test_non_checkout_dest_is_refused(tmp_path, versions):
    dest = tmp_path / "bundle"
    dest.mkdir()
    (dest / "launch.py").write_text("print()\n")
    res = run(tmp_path, sources=[str(versions["bare"])], ref="v1", dest=str(dest), names=NAMES)
    refused("webui_repo", "webui_repo_dir", "a non-empty dir that is no checkout", res["msg"],
            expect=["is not a git checkout", "nothing was changed"])
    assert sorted(p.name for p in dest.iterdir()) == ["launch.py"]


def test_missing_ref_fails_naming_it(tmp_path, versions):
    dest = clone_at(tmp_path, versions)
    res = run(tmp_path, sources=[str(versions["bare"])], ref="0123456789abcdef0123456789abcdef01234567",
              dest=str(dest), names=NAMES)
    assert res["failed"] and "has no branch, tag or commit" in res["msg"] and "webui_repo_version" in res["msg"]
    assert git("rev-parse", "HEAD", cwd=dest) == versions["v1"]


def test_a_branch_keeps_the_checkout_off_a_detached_head(tmp_path, versions):
    """Extensions: the webui skips one on a detached HEAD (GitPython's active_branch raises there)."""
    dest = tmp_path / "ext"
    res = run(tmp_path, sources=[str(versions["bare"])], ref="v1", dest=str(dest), branch="sdfleet-pinned")
    assert not res.get("failed") and res["changed"] and res["after"] == versions["v1"], res
    assert git("symbolic-ref", "--short", "HEAD", cwd=dest) == "sdfleet-pinned"
    again = run(tmp_path, sources=[str(versions["bare"])], ref="v1", dest=str(dest), branch="sdfleet-pinned")
    assert not again.get("failed") and not again["changed"], again
    moved = run(tmp_path, sources=[str(versions["bare"])], ref="v2", dest=str(dest), branch="sdfleet-pinned")
    assert moved["changed"] and git("rev-parse", "sdfleet-pinned", cwd=dest) == versions["v2"]
    assert git("symbolic-ref", "--short", "HEAD", cwd=dest) == "sdfleet-pinned"
    # a checkout left detached (by hand, or by an earlier version) is put back on the branch, once
    git("checkout", "-q", "--detach", cwd=dest)
    check = run(tmp_path, check=True, sources=[str(versions["bare"])], ref="v2", dest=str(dest), branch="sdfleet-pinned")
    assert check["changed"] and git("rev-parse", "--abbrev-ref", "HEAD", cwd=dest) == "HEAD"
    back = run(tmp_path, sources=[str(versions["bare"])], ref="v2", dest=str(dest), branch="sdfleet-pinned")
    assert back["changed"] and git("symbolic-ref", "--short", "HEAD", cwd=dest) == "sdfleet-pinned"
    assert not run(tmp_path, sources=[str(versions["bare"])], ref="v2", dest=str(dest), branch="sdfleet-pinned")["changed"]


@pytest.mark.parametrize("premade", [False, True])
def test_a_failed_first_clone_leaves_nothing_behind(tmp_path, versions, premade):
    """A commit no source has (ls-remote cannot check commits): the clone fails after git init; the next run must
    not find a half-made checkout (an extension's dir would then be 'not a git checkout', or an empty repo)."""
    dest = tmp_path / "extensions" / "sd-dynamic-prompts"
    if premade:
        dest.mkdir(parents=True)
    res = run(tmp_path, sources=[str(versions["bare"])], ref="0123456789abcdef0123456789abcdef01234567",
              dest=str(dest), names=NAMES)
    assert res["failed"] and "has no branch, tag or commit" in res["msg"], res
    assert dest.is_dir() == premade
    if premade:
        assert list(dest.iterdir()) == []
    again = run(tmp_path, sources=[str(versions["bare"])], ref="v1", dest=str(dest))
    assert not again.get("failed") and again["after"] == versions["v1"], again


# --- bad inputs, refused before git runs -------------------------------------------------------------------

def params(**over) -> dict:
    base = {"sources": ["https://github.com/AUTOMATIC1111/stable-diffusion-webui.git"], "name": "webui",
            "ref": "v1.10.1", "timeout": 30, "http_proxy": "", "https_proxy": "", "no_proxy": "", "git": "git",
            "kind": "git", "dest": "/opt/sd-webui", "force": False, "managed_files": ["webui-user.sh"],
            "fetch_timeout": 1800, "names": NAMES}
    return {**base, **over}


def refusal_of(**over) -> str:
    with pytest.raises(gs.Refused) as info:
        gs.check_inputs(params(**over))
    return str(info.value.args[0])


BAD_REFS = ["-v1.10.1", "--upload-pack=touch /tmp/x", "v1..v2", "v1 10", "v1~1", "v1^", "v1:x", "v1?", "v1*",
            "v1[0]", "feature/", "/v1", "a//b", "v1.lock", "@", "v1.", "x@{1}", "tab\tref", " "]


@pytest.mark.parametrize("ref", BAD_REFS)
def test_bad_ref_is_refused(ref):
    msg = refusal_of(ref=ref)
    refused("webui_repo", "webui_repo_version", ref, msg,
            expect=["sdfleet_webui_version (webui_repo_version)"] + ([repr(ref)] if ref.strip() else ["is empty"]))


BAD_SOURCES = [
    ("-oProxyCommand=touch /tmp/pwned", "starts with '-'"),
    ("--upload-pack=sh", "starts with '-'"),
    ("https://host/a.git https://host/b.git", "white space"),
    (f"ssh://ci:{TOKEN}@git.example.org/repo.git", "password in a non-http(s) URL"),
    (f"git://ci:{TOKEN}@git.example.org/repo.git", "password in a non-http(s) URL"),
    (f"ftp://ci:{TOKEN}@git.example.org/repo.git", "password in a non-http(s) URL"),
]


@pytest.mark.parametrize(("url", "problem"), BAD_SOURCES)
def test_bad_source_is_refused_without_showing_its_secret(url, problem):
    msg = refusal_of(sources=["https://github.com/x/y.git", url])
    refused("webui_repo", "webui_repo_sources", url.replace(TOKEN, "***"), msg,
            expect=["sdfleet_webui_sources (webui_repo_sources)[1]", problem])
    assert TOKEN not in msg


@pytest.mark.parametrize("url", [f"ssh://ci:{TOKEN}@h/f.zip", f"ftp://ci:{TOKEN}@h/f.zip"])
def test_credentialed_non_http_file_source_is_refused(url):
    msg = refusal_of(kind="http", sources=[url], dest="")
    refused("webui_repo", "webui_repo_sources", "file " + url.replace(TOKEN, "***"), msg, expect=["non-http(s)"])
    assert TOKEN not in msg


@pytest.mark.parametrize("sources", [[], [""], ["  ", ""]])
def test_empty_sources_are_refused(sources):
    refused("webui_repo", "webui_repo_sources", sources, refusal_of(sources=sources), expect=["lists no source"])


@pytest.mark.parametrize("dest", ["opt/sd-webui", "./sd-webui", "/", "//", "~sdwebui/webui"])
def test_bad_dest_is_refused(dest):
    refused("webui_repo", "webui_repo_dir", dest, refusal_of(dest=dest), expect=["not an absolute path", repr(dest)])


@pytest.mark.parametrize("path", ["/opt/sd-webui/webui-user.sh", "../webui-user.sh", "", ".", "-x", "a/../../b"])
def test_bad_managed_file_is_refused(path):
    """managed_files is the role's own list (not an input): refused all the same, but not a catalogued input."""
    msg = refusal_of(managed_files=[path])
    assert msg.startswith("managed_files[0] = ") and "is not a path inside the checkout" in msg and "Fix:" in msg


@pytest.mark.parametrize(("name", "value"), [("timeout", 0), ("timeout", -5), ("fetch_timeout", 0),
                                             ("fetch_timeout", -1)])
def test_bad_timeouts_are_refused(name, value):
    refused("webui_repo", NAMES[name], value, refusal_of(**{name: value}), expect=[f"= {value}", "at least 1"])


@pytest.mark.parametrize(("name", "value"), [
    ("http_proxy", "proxy.lan:3128"), ("https_proxy", f"ci:{TOKEN}@proxy.lan:3128"), ("http_proxy", "-x"),
    ("https_proxy", "ftp://proxy.lan:21"),
])
def test_bad_proxy_is_refused_without_showing_its_secret(name, value):
    msg = refusal_of(**{name: value})
    variable = NAMES[name].split("(")[1].rstrip(")")
    refused("webui_repo", variable, value.replace(TOKEN, "***"), msg, expect=[NAMES[name], "not a proxy URL"])
    assert TOKEN not in msg


def test_module_refuses_bad_input_before_running_git(tmp_path):
    fake, log = argv_logging_git(tmp_path)
    res = run(tmp_path, sources=["https://x.invalid/r.git"], ref="v1..v2", dest=str(tmp_path / "d"), git=str(fake),
              names=NAMES)
    assert res["failed"] and "not a valid git tag" in res["msg"]
    assert not log.exists() and not (tmp_path / "d").exists()


# --- repositories: several lookups in one round trip -------------------------------------------------------------

def test_repositories_pick_each_entry_in_order_in_one_call(tmp_path, bare, http_root):
    dead = f"http://127.0.0.1:{free_port()}/git/repo.git"
    out = run(tmp_path, timeout=5, repositories=[
        {"name": "stable-diffusion-webui", "sources": [f"file://{bare}"], "ref": "v1.0"},
        {"name": "BLIP_REPO", "sources": [dead, str(bare)]},
        {"name": "CLIP_PACKAGE", "kind": "http", "sources": [f"{http_root}/missing.zip", f"{http_root}/a/x.zip"]},
    ])
    assert out.get("failed") is not True and out["changed"] is False, out
    assert [r["name"] for r in out["results"]] == ["stable-diffusion-webui", "BLIP_REPO", "CLIP_PACKAGE"]
    assert [(r["source"], r["index"]) for r in out["results"]] == [
        (f"file://{bare}", 0), (str(bare), 1), (f"{http_root}/a/x.zip", 1)]
    # the tag's commit as a single lookup of the same ref advertises it; none for an unchecked ref
    single = run(tmp_path, sources=[f"file://{bare}"], ref="v1.0")
    assert out["results"][0]["commit"] == single["commit"] == git("rev-parse", "v1.0^{commit}", cwd=bare)
    assert out["results"][1]["commit"] == "" and out["results"][2]["tried"][0]["reason"] == "HTTP 404"


def test_repositories_name_every_entry_without_a_source_in_one_failure(tmp_path, bare):
    dead = f"http://ci:{TOKEN}@127.0.0.1:{free_port()}/git/repo.git"
    out = run(tmp_path, repositories=[
        {"name": "BLIP_REPO", "sources": [dead], "names": {"sources": "webui_repo_subrepos[0].sources"}},
        {"name": "k-diffusion", "sources": [str(bare)]},
        {"name": "extension tagcomplete", "sources": [str(bare)], "ref": "v9.9"},
    ])
    assert out["failed"] is True
    msg = out["msg"]
    assert msg.startswith("No source of BLIP_REPO (webui_repo_subrepos[0].sources) answered (1 tried, in order): 1. ")
    assert "No source of extension tagcomplete answered (1 tried, in order)" in msg and "'v9.9'" in msg
    assert "k-diffusion" not in msg and out["results"][1]["source"] == str(bare)
    assert TOKEN not in json.dumps(out)


def test_repositories_check_every_entry_before_probing_any(tmp_path):
    fake, log = argv_logging_git(tmp_path)
    out = run(tmp_path, git=str(fake), repositories=[
        {"name": "ok", "sources": ["https://x.invalid/r.git"]},
        {"name": "BLIP_REPO", "sources": ["--upload-pack=sh"], "names": {"sources": "webui_repo_subrepos[1].sources"}},
    ])
    assert out["failed"] and out["refused"] is True
    assert "webui_repo_subrepos[1].sources[0] = '--upload-pack=sh' starts with '-'" in out["msg"]
    assert not log.exists()


@pytest.mark.parametrize(("entry", "problem"), [
    ({"name": "x", "sources": ["a"], "dest": "/opt/x"}, "unknown keys ['dest']"),
    ({"name": "x", "sources": ["a"], "kind": "svn"}, "kind = 'svn'"),
])
def test_repositories_refuse_an_entry_the_module_cannot_probe(tmp_path, entry, problem):
    """The role's own list (not an input): refused all the same, but not a catalogued input."""
    out = run(tmp_path, repositories=[entry])
    assert out["failed"] and out["refused"] is True and problem in out["msg"] and "Fix:" in out["msg"]


def test_repositories_with_a_checkout_are_refused(tmp_path, bare):
    out = run(tmp_path, repositories=[{"name": "x", "sources": [str(bare)]}], dest=str(tmp_path / "d"))
    assert out["failed"] and "dest must be empty" in out["msg"] and not (tmp_path / "d").exists()


def test_repositories_probe_side_by_side(tmp_path, bare):
    """Four lookups run at once: every probe has started before the first one ends (each holds for 2 s)."""
    fake, log = tmp_path / "slowgit", tmp_path / "probes.log"
    fake.write_text(f'#!/bin/sh\necho start >> {log}\nsleep 2\necho end >> {log}\nexec git "$@"\n')
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    out = run(tmp_path, git=str(fake), repositories=[{"name": f"r{i}", "sources": [str(bare)]} for i in range(4)])
    assert [r["source"] for r in out["results"]] == [str(bare)] * 4, out
    events = log.read_text().split()
    assert events[:4] == ["start"] * 4 and events.count("end") == 4, events
