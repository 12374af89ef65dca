"""The test bed works: systemd runs as PID 1 and a role-managed unit serves."""
import json

PORT = 8765


def test_systemd_is_pid1(host):
    assert host.file("/proc/1/comm").content_string.strip() == "systemd"


def test_probe_unit_running_and_enabled(host):
    svc = host.service("sdfleet-bed-probe")
    assert svc.is_running, host.run("journalctl -u sdfleet-bed-probe --no-pager -n 30").stdout
    assert svc.is_enabled


def test_probe_socket_listens_on_loopback_only(host):
    assert host.socket(f"tcp://127.0.0.1:{PORT}").is_listening
    assert not host.socket(f"tcp://0.0.0.0:{PORT}").is_listening


def test_probe_answers_http(host):
    out = host.run(
        "python3 -c 'import json,urllib.request;"
        f"r=urllib.request.urlopen(\"http://127.0.0.1:{PORT}/\");"
        "print(json.dumps(r.status))'")
    assert out.rc == 0, out.stderr
    assert json.loads(out.stdout) == 200


def test_unit_file_has_managed_header(host):
    unit = host.file("/etc/systemd/system/sdfleet-bed-probe.service")
    assert unit.content_string.startswith("#")
    assert "Managed by sdfleet" in unit.content_string
    assert unit.mode == 0o644
