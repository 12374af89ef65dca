"""Tests of the role_state module: a stamp records a role's work, the probe finds any drift from it."""
from __future__ import annotations

import hashlib
import hmac
import http.server
import json
import os
import pathlib
import stat
import threading

import pytest
from module_run import run_module


def run(tmp_path: pathlib.Path, check: bool = False, **args) -> dict:
    return run_module("role_state", tmp_path, {"stamp_dir": str(tmp_path / "state"), **args}, check, timeout=60)


@pytest.fixture
def managed(tmp_path):
    """What a role left: a file it wrote, a dir it made, a link it points."""
    (tmp_path / "etc").mkdir()
    conf = tmp_path / "etc/site.conf"
    conf.write_text("listen 7860;\n")
    conf.chmod(0o640)
    link = tmp_path / "etc/extensions"
    link.symlink_to("/opt/sd-webui/extensions")
    return {"files": [str(conf), str(tmp_path / "etc/absent.conf")], "paths": [str(tmp_path / "etc"), str(link)]}


def recorded(tmp_path, managed, **extra) -> dict:
    res = run(tmp_path, name="svc", state="record", inputs="d1", **managed, **extra)
    assert res["changed"] is False and res["current"] is True, res
    return res


def test_probe_without_a_stamp_is_not_current(tmp_path, managed):
    res = run(tmp_path, name="svc", inputs="d1", **managed)
    assert res["current"] is False and res["reasons"] == ["no stamp of an earlier run"], res
    assert res["changed"] is False


def test_probe_after_a_record_is_current_and_returns_the_recorded_facts(tmp_path, managed):
    recorded(tmp_path, managed, facts={"fingerprint_sha256": "AB:CD"})
    res = run(tmp_path, name="svc", inputs="d1", **managed)
    assert res["current"] is True and res["reasons"] == [], res
    assert res["facts"] == {"fingerprint_sha256": "AB:CD"}


def test_the_stamp_is_root_only_and_holds_no_input_value(tmp_path, managed):
    recorded(tmp_path, managed)
    stamp = tmp_path / "state/svc.json"
    assert stat.S_IMODE(stamp.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "state").stat().st_mode) == 0o700
    data = json.loads(stamp.read_text())
    key = tmp_path / "state/key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600 and len(key.read_bytes()) == 32
    # the inputs only as a digest keyed with the host's secret: not the value, not its plain hash
    assert data["digest"] == hmac.new(key.read_bytes(), b"d1", hashlib.sha256).hexdigest()
    assert "d1" not in stamp.read_text().replace(data["digest"], "") and "listen 7860" not in stamp.read_text()
    assert data["digest"] != hashlib.sha256(b"d1").hexdigest()
    assert not list((tmp_path / "state").glob("*.tmp"))


def test_the_inputs_never_show_in_the_answer(tmp_path, managed):
    res = run(tmp_path, name="svc", state="record", inputs='{"users":["alice:s3cret"]}', **managed)
    assert "s3cret" not in json.dumps(res), res
    res = run(tmp_path, name="svc", inputs='{"users":["alice:s3cret"]}', **managed)
    assert res["current"] is True and "s3cret" not in json.dumps(res), res


def test_a_lost_key_is_no_stamp(tmp_path, managed):
    recorded(tmp_path, managed)
    (tmp_path / "state/key").unlink()
    res = run(tmp_path, name="svc", inputs="d1", **managed)
    assert res["current"] is False and res["reasons"] == ["no stamp of an earlier run"], res


@pytest.mark.parametrize("drift, reason", [
    (lambda t: (t / "etc/site.conf").write_text("listen 0.0.0.0:7860;\n"), "site.conf: content changed"),
    (lambda t: (t / "etc/site.conf").chmod(0o644), "site.conf: mode changed"),
    (lambda t: (t / "etc/site.conf").unlink(), "site.conf: missing"),
    (lambda t: (t / "etc/absent.conf").write_text("planted\n"), "absent.conf: appeared"),
    (lambda t: ((t / "etc/extensions").unlink(), (t / "etc/extensions").symlink_to("/etc")), "extensions: target changed"),
    (lambda t: (t / "etc").chmod(0o777), "etc: mode changed"),
])
def test_any_drift_of_what_the_role_manages_makes_it_run_again(tmp_path, managed, drift, reason):
    recorded(tmp_path, managed)
    drift(tmp_path)
    res = run(tmp_path, name="svc", inputs="d1", **managed)
    assert res["current"] is False and res["facts"] == {}, res
    assert any(reason in r for r in res["reasons"]), res["reasons"]


def test_other_inputs_make_it_run_again(tmp_path, managed):
    recorded(tmp_path, managed)
    res = run(tmp_path, name="svc", inputs="d2", **managed)
    assert res["current"] is False and res["reasons"] == ["the inputs changed"], res


def test_a_log_witnessed_as_a_path_may_grow(tmp_path, managed):
    log = tmp_path / "etc/instance-0.log"
    log.write_text("start\n")
    managed["paths"].append(str(log))
    recorded(tmp_path, managed)
    log.write_text("start\nmore\n")
    assert run(tmp_path, name="svc", inputs="d1", **managed)["current"] is True


def test_a_path_that_is_not_witnessed_any_more_or_newly_is_a_difference(tmp_path, managed):
    recorded(tmp_path, managed)
    more = dict(managed, paths=managed["paths"] + [str(tmp_path)])
    res = run(tmp_path, name="svc", inputs="d1", **more)
    assert res["current"] is False and res["reasons"] == [f"{tmp_path}: not in the stamp"], res


def test_a_large_file_is_witnessed_by_size_and_time(tmp_path, managed):
    model = tmp_path / "etc/model.safetensors"
    model.write_bytes(b"w" * 4096)
    managed["stats"] = [str(model)]
    recorded(tmp_path, managed)
    assert "sha256" not in json.loads((tmp_path / "state/svc.json").read_text())["witnesses"][str(model)]
    assert run(tmp_path, name="svc", inputs="d1", **managed)["current"] is True
    with model.open("r+b") as handle:
        handle.truncate(2048)
    res = run(tmp_path, name="svc", inputs="d1", **managed)
    assert res["current"] is False and res["reasons"] == [f"{model}: content changed"], res


def test_a_command_is_witnessed_by_its_status_and_output(tmp_path, managed):
    flag = tmp_path / "flag"
    flag.write_text("one\n")
    managed["commands"] = [["cat", str(flag)]]
    recorded(tmp_path, managed)
    assert run(tmp_path, name="svc", inputs="d1", **managed)["current"] is True
    flag.write_text("two\n")
    res = run(tmp_path, name="svc", inputs="d1", **managed)
    assert res["reasons"] == [f"$ cat {flag}: output changed"], res
    flag.unlink()
    res = run(tmp_path, name="svc", inputs="d1", **managed)
    assert res["reasons"] == [f"$ cat {flag}: exit status changed"], res


def test_check_mode_records_nothing(tmp_path, managed):
    res = run(tmp_path, check=True, name="svc", state="record", inputs="d1", **managed)
    assert res["changed"] is False
    assert not (tmp_path / "state").exists()


def test_a_unit_that_cannot_be_asked_is_not_current(tmp_path, managed, monkeypatch):
    recorded(tmp_path, managed)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "systemctl"
    # a systemctl that answers as systemd does: one state per unit, in order
    fake.write_text('#!/bin/sh\nif [ "$1" = is-active ]; then echo active; echo failed; else echo enabled; '
                    'echo disabled; fi\n')
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    res = run(tmp_path, name="svc", inputs="d1", units=["a.service", "b.service"], **managed)
    assert res["current"] is False and res["reasons"] == ["b.service is failed", "b.service is disabled"], res


class _Ping(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 (http.server's name)
        self.send_response(200 if self.path == "/internal/ping" else 500)
        self.end_headers()

    def log_message(self, *args):
        pass


def test_urls_must_answer_200(tmp_path, managed):
    recorded(tmp_path, managed)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Ping)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        assert run(tmp_path, name="svc", inputs="d1", urls=[f"{base}/internal/ping"], **managed)["current"] is True
        res = run(tmp_path, name="svc", inputs="d1", urls=[f"{base}/internal/ping", f"{base}/other"], **managed)
        assert res["current"] is False and res["reasons"] == [f"{base}/other did not answer (HTTPError)"], res
    finally:
        server.shutdown()
        server.server_close()
    res = run(tmp_path, name="svc", inputs="d1", urls=[f"{base}/internal/ping"], **managed)
    assert res["reasons"] == [f"{base}/internal/ping did not answer (URLError)"], res
