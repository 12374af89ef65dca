"""model_fetch: run as Ansible runs it (a subprocess with an args file) against the local mirror server
(molecule/_shared/mirror/mirror_server.py: Range, byte counters, cut switch) serving generated files."""
from __future__ import annotations

import hashlib
import json
import os
import re
import pathlib
import socket
import stat
import subprocess
import sys
import time
import urllib.request

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[4]
MODULE = ROOT / "collections/ansible_collections/sdfleet/toolkit/plugins/modules/model_fetch.py"
SERVER = ROOT / "molecule/_shared/mirror/mirror_server.py"
SIZE = 3 * 1024 * 1024 + 4321
DATA = hashlib.shake_256(b"sdfleet-model-fetch").digest(SIZE)
SHA = hashlib.sha256(DATA).hexdigest()
OTHER = hashlib.shake_256(b"other").digest(2 * 1024 * 1024)
OTHER_SHA = hashlib.sha256(OTHER).hexdigest()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    def __init__(self, base: str) -> None:
        self.base = base

    def post(self, path: str, data: dict) -> dict:
        req = urllib.request.Request(self.base + path, data=json.dumps(data).encode(), method="POST")
        with urllib.request.urlopen(req, timeout=10) as resp:
            return json.loads(resp.read() or b"{}")

    def stats(self, path: str) -> dict:
        with urllib.request.urlopen(self.base + "/_stats", timeout=10) as resp:
            return json.loads(resp.read()).get(path, {"requests": 0, "bytes": 0})


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    if not SERVER.is_file():
        pytest.skip("the mirror server (molecule/_shared/mirror/mirror_server.py) is not in this checkout")
    root = tmp_path_factory.mktemp("mirror")
    (root / "files").mkdir()
    (root / "git").mkdir()  # the server insists on a fixture layout; no repos are needed here
    (root / "files" / "model.safetensors").write_bytes(DATA)
    (root / "files" / "other.safetensors").write_bytes(OTHER)
    port = _free_port()
    proc = subprocess.Popen([sys.executable, str(SERVER), "--root", str(root), "--port", str(port),
                             "--bind", "127.0.0.1"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    srv = Server(f"http://127.0.0.1:{port}")
    deadline = time.monotonic() + 10
    while True:
        try:
            urllib.request.urlopen(srv.base + "/_ping", timeout=1).read()
            break
        except OSError:
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.1)
    yield srv
    proc.terminate()
    proc.wait(timeout=10)


@pytest.fixture
def srv(server):
    server.post("/_reset", {})
    return server


def run(tmp_path: pathlib.Path, check: bool = False, **args) -> dict:
    args.setdefault("partial_dir", str(tmp_path / "partial"))
    argsfile = tmp_path / "args.json"
    argsfile.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": dict(args, _ansible_check_mode=check)}))
    env = dict(os.environ, PYTHONPATH=str(ROOT / "collections"))
    done = subprocess.run([sys.executable, str(MODULE), str(argsfile)], capture_output=True, text=True, env=env,
                          check=False, timeout=120)
    try:
        return json.loads(done.stdout)
    except ValueError:
        raise AssertionError(done.stdout + done.stderr) from None


def parts(tmp_path: pathlib.Path) -> list[str]:
    d = tmp_path / "partial"
    return sorted(p.name for p in d.iterdir() if p.name.endswith(".part")) if d.is_dir() else []


def legacy(data: bytes) -> str:
    return hashlib.sha256(data[0x100000:0x110000]).hexdigest()[:8]


def test_download_places_verified_file_and_skips_next_time(tmp_path, srv):
    dest = tmp_path / "m.safetensors"
    url = srv.base + "/files/model.safetensors"
    res = run(tmp_path, dest=str(dest), url=[url], sha256=SHA, mode="0644")
    assert res["changed"] and res["action"] == "downloaded" and not res.get("failed"), res
    assert dest.read_bytes() == DATA
    assert stat.S_IMODE(dest.stat().st_mode) == 0o644
    assert (res["sha256"], res["short_hash"], res["legacy_hash"], res["size"]) == (SHA, SHA[:10], legacy(DATA), SIZE)
    assert parts(tmp_path) == []
    progress = json.loads((tmp_path / "partial" / f"{SHA}.progress").read_text())
    assert progress["bytes"] == progress["total"] == SIZE
    assert srv.stats("/files/model.safetensors") == {"requests": 1, "bytes": SIZE}

    again = run(tmp_path, dest=str(dest), url=[url], sha256=SHA, mode="0644")
    assert not again["changed"] and again["current"] and again["action"] == "none", again
    assert again["legacy_hash"] == legacy(DATA)
    assert srv.stats("/files/model.safetensors")["requests"] == 1


def test_check_mode_writes_nothing(tmp_path, srv):
    dest = tmp_path / "m.safetensors"
    res = run(tmp_path, check=True, dest=str(dest), url=[srv.base + "/files/model.safetensors"], sha256=SHA)
    assert res["changed"] and res["action"] == "downloaded" and not res["current"]
    assert not dest.exists() and not (tmp_path / "partial").exists()
    assert srv.stats("/files/model.safetensors")["requests"] == 0


def test_mismatch_keeps_old_file_and_leaves_no_partial(tmp_path, srv):
    dest = tmp_path / "m.safetensors"
    dest.write_bytes(b"old model")
    res = run(tmp_path, dest=str(dest), url=[srv.base + "/files/other.safetensors"], sha256=SHA)
    assert res.get("failed") and not res["changed"], res
    assert SHA in res["msg"] and OTHER_SHA in res["msg"]
    assert dest.read_bytes() == b"old model"
    assert parts(tmp_path) == []


def test_interrupted_download_resumes_next_run(tmp_path, srv):
    dest = tmp_path / "m.safetensors"
    url = srv.base + "/files/model.safetensors"
    cut = 1024 * 1024
    srv.post("/_control", {"path": "/files/model.safetensors", "cut_after": cut, "times": 1})
    res = run(tmp_path, dest=str(dest), url=[url], sha256=SHA)
    assert res.get("failed") and "resumes" in res["msg"], res
    assert not dest.exists()
    assert (tmp_path / "partial" / f"{SHA}.part").stat().st_size == cut

    res = run(tmp_path, dest=str(dest), url=[url], sha256=SHA)
    assert res["changed"] and res["action"] == "resumed" and res["resumed_from"] == cut, res
    assert res["bytes_downloaded"] == SIZE - cut
    assert dest.read_bytes() == DATA and parts(tmp_path) == []
    served = srv.stats("/files/model.safetensors")
    assert served == {"requests": 2, "bytes": SIZE}  # every byte once: far below 2x the size


def test_retries_resume_within_one_run(tmp_path, srv):
    dest = tmp_path / "m.safetensors"
    srv.post("/_control", {"path": "/files/model.safetensors", "cut_after": 500000, "times": 2})
    res = run(tmp_path, dest=str(dest), url=[srv.base + "/files/model.safetensors"], sha256=SHA, retries=2)
    assert res["changed"] and res["action"] == "resumed" and dest.read_bytes() == DATA, res
    assert srv.stats("/files/model.safetensors") == {"requests": 3, "bytes": SIZE}


def test_stale_partial_with_wrong_bytes_is_removed(tmp_path, srv):
    dest = tmp_path / "m.safetensors"
    (tmp_path / "partial").mkdir()
    (tmp_path / "partial" / f"{SHA}.part").write_bytes(b"\0" * 1000)
    res = run(tmp_path, dest=str(dest), url=[srv.base + "/files/model.safetensors"], sha256=SHA)
    assert res.get("failed") and "mismatch" in res["msg"]
    assert parts(tmp_path) == [] and not dest.exists()
    # and the run after that starts clean and succeeds
    res = run(tmp_path, dest=str(dest), url=[srv.base + "/files/model.safetensors"], sha256=SHA)
    assert res["action"] == "downloaded" and dest.read_bytes() == DATA


def test_first_url_dead_falls_back_to_next(tmp_path, srv):
    dest = tmp_path / "m.safetensors"
    dead = f"http://127.0.0.1:{_free_port()}/files/model.safetensors"
    res = run(tmp_path, dest=str(dest), url=[dead, srv.base + "/files/model.safetensors"], sha256=SHA)
    assert res["changed"] and res["url_used"].startswith(srv.base), res


def test_wrong_file_replaced_and_permissions_fixed(tmp_path, srv):
    dest = tmp_path / "m.safetensors"
    url = [srv.base + "/files/model.safetensors"]
    dest.write_bytes(b"older version")
    assert run(tmp_path, dest=str(dest), url=url, sha256=SHA, mode="0644")["action"] == "downloaded"
    assert dest.read_bytes() == DATA
    dest.chmod(0o666)
    res = run(tmp_path, dest=str(dest), url=url, sha256=SHA, mode="0644")
    assert res["changed"] and res["action"] == "permissions"
    assert stat.S_IMODE(dest.stat().st_mode) == 0o644
    assert srv.stats("/files/model.safetensors")["requests"] == 1


def test_unverified_download_is_kept_once_there(tmp_path, srv):
    dest = tmp_path / "m.safetensors"
    url = [srv.base + "/files/other.safetensors"]
    res = run(tmp_path, dest=str(dest), url=url)
    assert res["changed"] and res["sha256"] == OTHER_SHA
    assert not run(tmp_path, dest=str(dest), url=url)["changed"]
    assert srv.stats("/files/other.safetensors")["requests"] == 1


def test_src_copy_link_and_move(tmp_path):
    src = tmp_path / "share.safetensors"
    src.write_bytes(OTHER)
    copy = tmp_path / "copy.safetensors"
    res = run(tmp_path, dest=str(copy), src=str(src), sha256=OTHER_SHA)
    assert res["action"] == "copied" and copy.read_bytes() == OTHER and not copy.is_symlink()
    assert not run(tmp_path, dest=str(copy), src=str(src), sha256=OTHER_SHA)["changed"]
    # without a sha256, a copy is current when it equals the source
    assert not run(tmp_path, dest=str(copy), src=str(src))["changed"]

    link = tmp_path / "link.safetensors"
    res = run(tmp_path, dest=str(link), src=str(src), link=True, sha256=OTHER_SHA)
    assert res["action"] == "linked" and os.readlink(link) == str(src)
    assert not run(tmp_path, dest=str(link), src=str(src), link=True, sha256=OTHER_SHA)["changed"]

    bad = run(tmp_path, dest=str(tmp_path / "bad.safetensors"), src=str(src), sha256=SHA)
    assert bad.get("failed") and SHA in bad["msg"] and OTHER_SHA in bad["msg"]
    assert not (tmp_path / "bad.safetensors").exists() and parts(tmp_path) == []

    staged = tmp_path / "partial" / "staged.tmp"
    staged.write_bytes(OTHER)
    moved = tmp_path / "moved.safetensors"
    res = run(tmp_path, dest=str(moved), src=str(staged), remove_src=True, sha256=OTHER_SHA)
    assert res["action"] == "moved" and moved.read_bytes() == OTHER and not staged.exists()


def test_verify_only_reports_missing_and_present(tmp_path):
    dest = tmp_path / "m.safetensors"
    res = run(tmp_path, dest=str(dest), sha256=OTHER_SHA)
    assert not res["changed"] and not res["current"] and res["action"] == "missing"
    dest.write_bytes(OTHER)
    res = run(tmp_path, dest=str(dest), sha256=OTHER_SHA)
    assert res["current"] and not res["changed"] and res["legacy_hash"] == legacy(OTHER) and res["short_hash"] == OTHER_SHA[:10]
    res = run(tmp_path, dest=str(dest), sha256=SHA)
    assert not res["current"] and not res["changed"] and dest.read_bytes() == OTHER
    # verify-only follows a link (a shared_path model placed with link: true)
    link = tmp_path / "l.safetensors"
    link.symlink_to(dest)
    res = run(tmp_path, dest=str(link), sha256=OTHER_SHA)
    assert res["current"] and res["sha256"] == OTHER_SHA


def test_absent_removes_file_and_is_idempotent(tmp_path):
    dest = tmp_path / "m.safetensors"
    dest.write_bytes(b"x")
    assert run(tmp_path, check=True, dest=str(dest), state="absent")["changed"] and dest.exists()
    res = run(tmp_path, dest=str(dest), state="absent")
    assert res["changed"] and res["action"] == "removed" and not dest.exists()
    assert not run(tmp_path, dest=str(dest), state="absent")["changed"]


def test_bad_sha256_refused(tmp_path):
    res = run(tmp_path, dest=str(tmp_path / "m"), url=["http://127.0.0.1:1/x"], sha256="abc")
    assert res.get("failed") and "64 hex" in res["msg"]


def test_documentation_parses_and_matches_the_argument_spec():
    """ansible-doc renders the module only when DOCUMENTATION is valid YAML; its options are the real ones."""
    import ast

    import yaml

    tree = ast.parse(MODULE.read_text(encoding="utf-8"))
    docs = {t.id: ast.literal_eval(node.value) for node in tree.body if isinstance(node, ast.Assign)
            for t in node.targets if isinstance(t, ast.Name) and t.id in ("DOCUMENTATION", "EXAMPLES", "RETURN")}
    doc = yaml.safe_load(docs["DOCUMENTATION"])
    yaml.safe_load(docs["EXAMPLES"])
    ret = yaml.safe_load(docs["RETURN"])
    spec_keys = set(re.findall(r'^\s+"(\w+)": \{"type"', MODULE.read_text(encoding="utf-8"), re.M))
    assert set(doc["options"]) == spec_keys
    assert {"current", "action", "sha256", "short_hash", "legacy_hash", "bytes_downloaded"} <= set(ret)
