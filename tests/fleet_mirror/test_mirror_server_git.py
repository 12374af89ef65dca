"""The fleet mirror's HTTP server (roles/fleet_mirror/files/sdfleet_mirror_server.py) serves git's dumb-HTTP files
but never a repository's config (its remote URL may have held credentials), FETCH_HEAD, hooks, logs or listings."""
from __future__ import annotations

import os
import pathlib
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
SERVER = ROOT / "roles" / "fleet_mirror" / "files" / "sdfleet_mirror_server.py"
TOKEN = "mir-T0ken-1414"
ENV = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
       "GIT_COMMITTER_EMAIL": "t@t", "GIT_CONFIG_GLOBAL": "/dev/null", "GIT_TERMINAL_PROMPT": "0",
       # the host's /etc/gitconfig (a proxy, say) is not this test's business
       "GIT_CONFIG_NOSYSTEM": "1", "no_proxy": "127.0.0.1", "NO_PROXY": "127.0.0.1"}


def git(*args: str, cwd: pathlib.Path | None = None) -> str:
    return subprocess.run(["git", *args], cwd=cwd, env=ENV, capture_output=True, text=True, check=True).stdout


@pytest.fixture(scope="module")
def mirror(tmp_path_factory):
    root = tmp_path_factory.mktemp("mirror")
    work = tmp_path_factory.mktemp("work")
    git("init", "-q", "-b", "master", str(work))
    (work / "f").write_text("x\n")
    git("add", "f", cwd=work)
    git("commit", "-q", "-m", "one", cwd=work)
    bare = root / "git" / "repo.git"
    git("clone", "-q", "--mirror", str(work), str(bare))
    # what an older mirror kept: the source with its credentials in the repository's config
    git("--git-dir", str(bare), "remote", "set-url", "origin", f"https://ci:{TOKEN}@git.example.org/repo.git")
    (bare / "FETCH_HEAD").write_text(f"abc\t\tbranch 'master' of https://ci:{TOKEN}@git.example.org/repo\n")
    git("--git-dir", str(bare), "update-server-info")
    # a pinned webui extension, where the GPU hosts look for it (git/extensions/<name>.git)
    ext = root / "git" / "extensions" / "sd-dynamic-prompts.git"
    git("clone", "-q", "--mirror", str(work), str(ext))
    git("--git-dir", str(ext), "update-server-info")
    (root / "simple").mkdir()
    (root / "simple" / "index.html").write_text("<html></html>\n")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = subprocess.Popen([sys.executable, str(SERVER), "--bind", "127.0.0.1", "--directory", str(root), str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    for _ in range(50):
        try:
            urllib.request.urlopen(base + "/simple/index.html", timeout=1)
            break
        except OSError:
            time.sleep(0.1)
    yield base
    proc.terminate()
    proc.wait(timeout=10)


def status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def test_git_clone_over_dumb_http_works(mirror, tmp_path):
    git("clone", "-q", f"{mirror}/git/repo.git", str(tmp_path / "c"))
    assert (tmp_path / "c" / "f").read_text() == "x\n"


@pytest.mark.parametrize("path", [
    "/git/repo.git/config", "//git/repo.git/config", "/git/./repo.git/config", "/git/repo.git/./config",
    "/git/x/../repo.git/config", "/git/repo.git/%63onfig", "/git/repo.git/config?x=1", "/git/repo.git/FETCH_HEAD",
    "/git/repo.git/description", "/git/repo.git/hooks/", "/git/repo.git/", "/git/repo.git",
    "/simple/../git/repo.git/config",
])
def test_repository_private_files_are_not_served(mirror, path):
    assert status(mirror + path) == 404


@pytest.mark.parametrize("path", ["/git/repo.git/HEAD", "/git/repo.git/info/refs", "/git/repo.git/objects/info/packs",
                                  "/simple/index.html", "/git/"])
def test_transport_files_and_the_rest_are_served(mirror, path):
    assert status(mirror + path) == 200


def test_an_extension_clones_from_its_own_path(mirror, tmp_path):
    git("clone", "-q", f"{mirror}/git/extensions/sd-dynamic-prompts.git", str(tmp_path / "e"))
    assert (tmp_path / "e" / "f").read_text() == "x\n"


@pytest.mark.parametrize("path", [
    "/git/extensions/sd-dynamic-prompts.git/config", "/git/extensions/sd-dynamic-prompts.git/hooks/",
    "/git/extensions/sd-dynamic-prompts.git/", "/git/extensions/", "/git/extensions",
    "/git/extensions/x/../sd-dynamic-prompts.git/description",
])
def test_an_extensions_private_files_are_not_served(mirror, path):
    assert status(mirror + path) == 404
