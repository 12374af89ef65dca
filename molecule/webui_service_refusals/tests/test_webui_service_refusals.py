"""After every refusal case the host is untouched: nothing of webui_service or of the front door exists."""
import pytest


@pytest.mark.parametrize("path", [
    "/etc/systemd/system/sd-webui@.service",
    "/etc/systemd/system/sd-webui@0.service.d",
    "/etc/sd-webui",
    "/var/lib/sd-webui",
    "/var/log/sd-webui",
    "/usr/local/bin/sd-webui-ctl",
    "/opt/sd-webui",
    "/etc/nginx",
    "/etc/systemd/system/nginx.service.d",
])
def test_refused_host_path_absent(host, path):
    assert not host.file(path).exists, f"{path} was created although every case was refused"


def test_refused_host_no_webui_unit_loaded(host):
    out = host.run("systemctl list-units --all --no-legend 'sd-webui@*'")
    assert out.rc == 0, out.stderr
    assert out.stdout.strip() == ""


def test_refused_host_nothing_listens(host):
    out = host.run("ss -Hltn")
    assert ":7860" not in out.stdout



def test_refused_host_has_no_nginx(host):
    assert not host.package("nginx").is_installed
