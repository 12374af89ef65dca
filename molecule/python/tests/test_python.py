"""python role on bare Debian: bookworm gets a usable 3.11 with the webui's libraries, trixie is refused untouched."""
import pytest

BOOKWORM = "python-bookworm"
TRIXIE = "python-trixie"


def _only(host, name):
    if host.backend.get_hostname() != name:
        pytest.skip(f"applies to {name} only")


LIBS_BOOKWORM = ["python3-venv", "python3-pip", "libgl1", "libglib2.0-0", "google-perftools", "bc"]


@pytest.mark.parametrize("pkg", LIBS_BOOKWORM)
def test_bookworm_python_packages_installed(host, pkg):
    _only(host, BOOKWORM)
    assert host.package(pkg).is_installed


def test_bookworm_python311_creates_a_venv_with_pip(host):
    _only(host, BOOKWORM)
    out = host.run("rm -rf /tmp/probe-venv && /usr/bin/python3.11 -m venv /tmp/probe-venv"
                   " && /tmp/probe-venv/bin/python -m pip --version")
    assert out.rc == 0, out.stderr
    assert "python 3.11" in out.stdout


def test_bookworm_tcmalloc_is_found_by_ldconfig(host):
    # webui.sh preloads libtcmalloc found with `ldconfig -p`.
    _only(host, BOOKWORM)
    assert "libtcmalloc" in host.run("ldconfig -p").stdout


@pytest.mark.parametrize("pkg", ["python3-venv", "python3-pip", "libgl1", "google-perftools"])
def test_trixie_refused_before_installing_anything(host, pkg):
    _only(host, TRIXIE)
    assert not host.package(pkg).is_installed
