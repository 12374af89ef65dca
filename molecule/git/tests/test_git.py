"""git role: installed, safe.directory, proxies set and removed, mirror rewrites, no terminal prompt."""
import pytest

BOOKWORM = "git-bookworm"
TRIXIE = "git-trixie"


def _only(host, name):
    if host.backend.get_hostname() != name:
        pytest.skip(f"applies to {name} only")



def _sysconf(host, name):
    out = host.run(f"git config --system --get-all {name}")
    return out.stdout.split() if out.rc == 0 else []


def test_git_installed(host):
    assert host.package("git").is_installed


def test_safe_directory_for_install_dir(host):
    assert "/opt/sd-webui" in _sysconf(host, "safe.directory")


def test_bookworm_extra_safe_directory_once(host):
    _only(host, BOOKWORM)
    assert _sysconf(host, "safe.directory") == ["/opt/sd-webui", "/srv/extra-checkout"]


def test_bookworm_proxies_set(host):
    _only(host, BOOKWORM)
    assert _sysconf(host, "http.proxy") == ["http://proxy.invalid:3128"]
    assert _sysconf(host, "https.proxy") == ["http://proxy.invalid:3129"]


def test_bookworm_rewrite_sends_github_urls_to_the_mirror(host):
    # A bare repo under the file:// mirror answers for its https://github.com/ URL: no network involved.
    _only(host, BOOKWORM)
    assert _sysconf(host, "url.file:///srv/gitmirror/.insteadof") == ["https://github.com/"]
    out = host.run("rm -rf /srv/gitmirror && git init -q --bare /srv/gitmirror/org/repo.git"
                   " && GIT_TERMINAL_PROMPT=0 git ls-remote https://github.com/org/repo.git")
    assert out.rc == 0, out.stderr


def test_bookworm_terminal_prompt_disabled_for_login_shells(host):
    _only(host, BOOKWORM)
    f = host.file("/etc/profile.d/sdfleet-git.sh")
    assert f.mode == 0o644 and f.user == "root"
    assert f.content_string.startswith("#") and "Managed by sdfleet" in f.content_string
    assert host.run("bash -lc 'echo $GIT_TERMINAL_PROMPT'").stdout.strip() == "0"


def test_trixie_old_proxies_and_stale_rewrite_removed(host):
    _only(host, TRIXIE)
    assert _sysconf(host, "http.proxy") == []
    assert _sysconf(host, "https.proxy") == []
    assert _sysconf(host, "url.http://stale-mirror.invalid/.insteadof") == []
    assert "stale-mirror" not in host.file("/etc/gitconfig").content_string
    assert "old-proxy-secret" not in host.file("/etc/gitconfig").content_string


def test_trixie_prompt_file_removed_when_disabled(host):
    _only(host, TRIXIE)
    assert not host.file("/etc/profile.d/sdfleet-git.sh").exists


def test_gitconfig_is_world_readable_and_holds_no_credential(host):
    f = host.file("/etc/gitconfig")
    assert f.mode & 0o004, "every user's git reads /etc/gitconfig"
    assert "@" not in f.content_string, f.content_string
