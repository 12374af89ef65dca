"""The fleet mirror's HTTP server as the role configures it (roles/fleet_mirror/templates): nginx with the role's own
config and git http-backend behind fcgiwrap, run here as plain processes on a scratch tree.

Git is served over smart HTTP and never a repository's config (its remote URL may have held credentials),
FETCH_HEAD, hooks, logs or listings; pushes are refused; files answer Range, so a cut download resumes; the
mirror's dot dirs (.download/) stay private. Needs Debian's nginx and fcgiwrap (make test installs them)."""
from __future__ import annotations

import hashlib
import os
import pathlib
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request

import jinja2
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
TEMPLATES = ROOT / "roles" / "fleet_mirror" / "templates"
TOKEN = "mir-T0ken-1414"
ENV = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
       "GIT_COMMITTER_EMAIL": "t@t", "GIT_CONFIG_GLOBAL": "/dev/null", "GIT_TERMINAL_PROMPT": "0",
       # the host's /etc/gitconfig (a proxy, say) is not this test's business
       "GIT_CONFIG_NOSYSTEM": "1", "no_proxy": "127.0.0.1", "NO_PROXY": "127.0.0.1"}
NGINX, FCGIWRAP = "/usr/sbin/nginx", "/usr/sbin/fcgiwrap"

pytestmark = pytest.mark.skipif(not (os.access(NGINX, os.X_OK) and os.access(FCGIWRAP, os.X_OK)),
                                reason="needs Debian's nginx and fcgiwrap (make test installs them: make host-tools)")


def git(*args: str, cwd: pathlib.Path | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", *args], cwd=cwd, env=ENV, capture_output=True, text=True, check=check)


def render(template: str, **variables: object) -> str:
    """The role's template with the role's variable names (Ansible's `comment` filter: one # line)."""
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)), undefined=jinja2.StrictUndefined,
                             keep_trailing_newline=True)
    env.filters["comment"] = lambda text: f"#\n# {text}\n#"
    env.filters["basename"] = os.path.basename
    return env.get_template(template).render(ansible_managed="managed by the test", **variables)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def as_nobody() -> list[str]:
    """Run the servers as an unprivileged account, as the unit does (nginx run by root would switch users)."""
    return ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"] if os.geteuid() == 0 else []


@pytest.fixture(scope="module")
def mirror():
    base = pathlib.Path(tempfile.mkdtemp(prefix="sdfleet-mirror-nginx-"))
    base.chmod(0o755)
    root, run, work = base / "srv", base / "run", base / "work"
    for d in (root, run, work):
        d.mkdir()
    run.chmod(0o777)
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
    (root / "simple" / "six").mkdir(parents=True)
    (root / "simple" / "six" / "six-1.16.0-py2.py3-none-any.whl").write_bytes(b"wheel")
    (root / "files" / "sha256").mkdir(parents=True)
    big = os.urandom(8 << 20)
    (root / "files" / "sha256" / hashlib.sha256(big).hexdigest()).write_bytes(big)
    (root / ".download").mkdir()
    (root / ".download" / "url-packages.sha256").write_text(f"{TOKEN}\n")
    for path in base.rglob("*"):
        if path.is_dir() and path != run:
            path.chmod(0o755)
    if os.geteuid() == 0:  # the mirror's tree belongs to the account that serves it (git's safe.directory)
        subprocess.run(["chown", "-R", "nobody:nogroup", str(root)], check=True)
    port = free_port()
    variables = {"fleet_mirror_user": "nobody", "fleet_mirror_workers": "2", "fleet_mirror_git_workers": 2,
                 "fleet_mirror_bind": "127.0.0.1", "fleet_mirror_port": port, "fleet_mirror_root": str(root),
                 "__fleet_mirror_run_dir": str(run), "__fleet_mirror_cache_dir": str(run),
                 "__fleet_mirror_git_socket": str(run / "git.sock")}
    conf, site = run / "nginx.conf", run / "site.conf"
    variables.update(__fleet_mirror_conf=str(conf), __fleet_mirror_site=str(site))
    conf.write_text(render("etc/sdfleet-mirror/nginx.conf.j2", **variables))
    # journald's /dev/log is not here: the access log goes to a file instead of syslog
    site.write_text(render("etc/sdfleet-mirror/site.conf.j2", **variables)
                    .replace("syslog:server=unix:/dev/log,tag=sdfleet_mirror,nohostname", str(run / "access.log")))
    checked = subprocess.run([*as_nobody(), NGINX, "-e", "stderr", "-t", "-q", "-c", str(conf)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stderr
    fcgi = subprocess.Popen([*as_nobody(), FCGIWRAP, "-f", "-c", "2", "-s", f"unix:{run / 'git.sock'}"],
                            stderr=subprocess.DEVNULL)
    nginx = subprocess.Popen([*as_nobody(), NGINX, "-e", "stderr", "-c", str(conf), "-g", "daemon off;"],
                             stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    for _ in range(100):
        if (run / "git.sock").exists() and status(url + "/simple/") == 200:
            break
        time.sleep(0.1)
    if nginx.poll() is not None:
        pytest.fail(f"nginx did not start: {nginx.stderr.read() if nginx.stderr else ''}")
    yield {"url": url, "root": root, "big": big, "access_log": run / "access.log"}
    for proc in (nginx, fcgi):
        proc.terminate()
        proc.wait(timeout=10)
    shutil.rmtree(base, ignore_errors=True)


def request(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10) as response:
            return int(response.status), dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        return int(exc.code), dict(exc.headers), exc.read()
    except OSError:
        return 0, {}, b""


def status(url: str) -> int:
    return request(url)[0]


def test_git_is_served_over_smart_http(mirror):
    code, headers, body = request(mirror["url"] + "/git/repo.git/info/refs?service=git-upload-pack")
    assert code == 200, body[:300]
    assert headers["Content-Type"] == "application/x-git-upload-pack-advertisement"
    assert b"# service=git-upload-pack" in body


def test_git_clone_works_and_fetches_over_smart_http(mirror, tmp_path):
    out = git("-c", "protocol.version=2", "clone", "-q", f"{mirror['url']}/git/repo.git", str(tmp_path / "c"))
    assert (tmp_path / "c" / "f").read_text() == "x\n", out.stderr
    # the clone's pack came from git-upload-pack (smart), not from static pack files (dumb)
    log = mirror["access_log"].read_text()
    assert '"POST /git/repo.git/git-upload-pack HTTP/1.1" 200' in log, log[-2000:]
    assert "/objects/pack/" not in log


def test_a_push_is_refused(mirror, tmp_path):
    clone = tmp_path / "p"
    git("clone", "-q", f"{mirror['url']}/git/repo.git", str(clone))
    (clone / "g").write_text("y\n")
    git("add", "g", cwd=clone)
    git("commit", "-q", "-m", "two", cwd=clone)
    pushed = git("push", "origin", "HEAD:master", cwd=clone, check=False)
    assert pushed.returncode != 0 and "403" in pushed.stderr, pushed.stderr
    assert git("--git-dir", str(mirror["root"] / "git/repo.git"), "rev-list", "--count", "master").stdout.strip() == "1"


@pytest.mark.parametrize("path", [
    "/git/repo.git/config", "//git/repo.git/config", "/git/./repo.git/config", "/git/repo.git/./config",
    "/git/x/../repo.git/config", "/git/repo.git/%63onfig", "/git/repo.git/config?x=1", "/git/repo.git/FETCH_HEAD",
    "/git/repo.git/description", "/git/repo.git/hooks/", "/git/repo.git/", "/git/repo.git", "/git/",
    "/simple/../git/repo.git/config", "/.download/url-packages.sha256", "/.download/", "/files/../.download/",
    "/git/repo.git/info/refs?service=git-receive-pack",
])
def test_private_files_are_not_served(mirror, path):
    code, _, body = request(mirror["url"] + path)
    assert code in (403, 404), (path, code)
    assert TOKEN.encode() not in body


@pytest.mark.parametrize("path", [
    "/git/extensions/sd-dynamic-prompts.git/config", "/git/extensions/sd-dynamic-prompts.git/hooks/",
    "/git/extensions/sd-dynamic-prompts.git/", "/git/extensions/", "/git/extensions",
    "/git/extensions/x/../sd-dynamic-prompts.git/description",
])
def test_an_extensions_private_files_are_not_served(mirror, path):
    assert status(mirror["url"] + path) == 404


def test_an_extension_clones_from_its_own_path(mirror, tmp_path):
    git("clone", "-q", f"{mirror['url']}/git/extensions/sd-dynamic-prompts.git", str(tmp_path / "e"))
    assert (tmp_path / "e" / "f").read_text() == "x\n"


def test_simple_lists_a_projects_files_for_pip(mirror):
    code, _, body = request(mirror["url"] + "/simple/six/")
    assert code == 200 and b'href="six-1.16.0-py2.py3-none-any.whl"' in body


def test_a_file_answers_range_requests(mirror):
    big = mirror["big"]
    url = f"{mirror['url']}/files/sha256/{hashlib.sha256(big).hexdigest()}"
    code, headers, body = request(url, {"Range": "bytes=1000-1999"})
    assert code == 206 and body == big[1000:2000]
    assert headers["Content-Range"] == f"bytes 1000-1999/{len(big)}"


def test_a_cut_download_resumes_where_it_stopped(mirror, tmp_path):
    """curl cut after half the file, then `curl -C -`: the second half only crosses the wire."""
    big = mirror["big"]
    url = f"{mirror['url']}/files/sha256/{hashlib.sha256(big).hexdigest()}"
    dest = tmp_path / "model"
    half = len(big) // 2
    first = subprocess.run(["curl", "-s", "-o", str(dest), "-r", f"0-{half - 1}", "-w", "%{size_download}", url],
                           capture_output=True, text=True, check=True)
    second = subprocess.run(["curl", "-s", "-C", "-", "-o", str(dest), "-w", "%{size_download}", url],
                            capture_output=True, text=True, check=True)
    assert int(first.stdout) + int(second.stdout) == len(big)
    assert hashlib.sha256(dest.read_bytes()).hexdigest() == hashlib.sha256(big).hexdigest()
