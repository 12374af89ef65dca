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
from module_run import run_module
from refusal_catalog import refused

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
    return run_module("model_fetch", tmp_path, args, check)


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


def test_wrong_file_moved_aside_never_lost_and_permissions_fixed(tmp_path, srv):
    dest = tmp_path / "m.safetensors"
    url = [srv.base + "/files/model.safetensors"]
    dest.write_bytes(b"older version")
    old_sha = hashlib.sha256(b"older version").hexdigest()
    aside = tmp_path / f"m.safetensors.sdfleet-replaced-{old_sha[:12]}"
    check = run(tmp_path, check=True, dest=str(dest), url=url, sha256=SHA)
    assert check["moved_aside"] == str(aside) and not aside.exists() and dest.read_bytes() == b"older version"
    res = run(tmp_path, dest=str(dest), url=url, sha256=SHA, mode="0644")
    assert res["action"] == "downloaded" and res["moved_aside"] == str(aside) and res["set_aside"] == [str(aside)]
    assert any("moved aside" in n for n in res["notes"]), res
    assert dest.read_bytes() == DATA and aside.read_bytes() == b"older version"
    # reported on every later run (the fact's set_aside) until someone removes it
    assert run(tmp_path, dest=str(dest), sha256=SHA)["set_aside"] == [str(aside)]
    # a second different file gets a name of its own: the first one set aside is not overwritten
    dest.write_bytes(b"older version")
    run(tmp_path, dest=str(dest), url=url, sha256=SHA, mode="0644")
    assert sorted(p.name for p in tmp_path.glob("m.safetensors.sdfleet-replaced-*")) == [aside.name, aside.name + ".2"]
    dest.chmod(0o666)
    res = run(tmp_path, dest=str(dest), url=url, sha256=SHA, mode="0644")
    assert res["changed"] and res["action"] == "permissions"
    assert stat.S_IMODE(dest.stat().st_mode) == 0o644
    assert srv.stats("/files/model.safetensors")["requests"] == 2  # the two replacements; never for permissions


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


def test_absent_removes_only_the_file_with_the_entry_sha256(tmp_path):
    dest = tmp_path / "m.safetensors"
    dest.write_bytes(OTHER)
    res = run(tmp_path, dest=str(dest), state="absent", sha256=SHA)
    assert res["kept"] and res["action"] == "kept" and not res["changed"] and res["sha256"] == OTHER_SHA, res
    assert any("left in place" in n for n in res["notes"]) and dest.read_bytes() == OTHER
    res = run(tmp_path, dest=str(dest), state="absent", sha256=OTHER_SHA)
    assert res["changed"] and res["action"] == "removed" and not dest.exists()


def test_absent_removes_a_link_never_its_target(tmp_path):
    target = tmp_path / "target"
    target.write_bytes(b"keep me")
    link = tmp_path / "m.safetensors"
    link.symlink_to(target)
    res = run(tmp_path, dest=str(link), state="absent", sha256=SHA)
    assert res["action"] == "removed" and not os.path.lexists(link) and target.read_bytes() == b"keep me"


def test_absent_removes_file_and_is_idempotent(tmp_path):
    dest = tmp_path / "m.safetensors"
    dest.write_bytes(b"x")
    assert run(tmp_path, check=True, dest=str(dest), state="absent")["changed"] and dest.exists()
    res = run(tmp_path, dest=str(dest), state="absent")
    assert res["changed"] and res["action"] == "removed" and not dest.exists()
    assert not run(tmp_path, dest=str(dest), state="absent")["changed"]


def test_stale_mirror_copy_falls_back_to_the_next_source(tmp_path, srv):
    """5. The first URL (a mirror) serves another file: it is discarded with a note and upstream is used."""
    dest = tmp_path / "m.safetensors"
    res = run(tmp_path, dest=str(dest), url=[srv.base + "/files/other.safetensors", srv.base + "/files/model.safetensors"],
              sha256=SHA)
    assert res["changed"] and res["url_used"].endswith("/files/model.safetensors") and dest.read_bytes() == DATA, res
    assert any("other.safetensors" in n and OTHER_SHA in n and "next source" in n for n in res["notes"]), res
    assert parts(tmp_path) == []


def test_credentials_never_in_results_or_messages(tmp_path, srv):
    """7. user:token@ in a URL: masked in url_used, notes, failure messages and the echoed invocation."""
    dest = tmp_path / "m.safetensors"
    good = srv.base.replace("http://", "http://user:s3cret-tok@") + "/files/model.safetensors"
    dead = f"http://tok-only-s3cret@127.0.0.1:{_free_port()}/files/model.safetensors"
    res = run(tmp_path, dest=str(dest), url=[dead, good], sha256=SHA)
    assert res["changed"] and dest.read_bytes() == DATA, res
    assert "s3cret" not in json.dumps(res) and res["url_used"].startswith("http://***@"), res
    failed = run(tmp_path, dest=str(tmp_path / "n.safetensors"), url=[dead], sha256=OTHER_SHA)
    assert failed.get("failed") and "***@127.0.0.1" in failed["msg"] and "s3cret" not in json.dumps(failed)
    progress = (tmp_path / "partial" / f"{SHA}.progress").read_text()
    assert "s3cret" not in progress


NOBODY = 65534
as_root = pytest.mark.skipif(os.geteuid() != 0, reason="planting another user's links needs root")


def _plant(link: pathlib.Path, target: pathlib.Path) -> None:
    link.symlink_to(target)
    os.lchown(link, NOBODY, NOBODY)


def _state(path: pathlib.Path) -> tuple:
    st = path.lstat()
    content = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else sorted(os.listdir(path))
    return content, st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)


@as_root
def test_planted_dir_link_refused_and_target_untouched(tmp_path, srv):
    """6. The service user owns the models dir and plants Lora -> a victim dir: root refuses, naming the link."""
    models = tmp_path / "models"
    models.mkdir()
    os.chown(models, NOBODY, NOBODY)
    victim = tmp_path / "victim"
    victim.mkdir(mode=0o700)
    (victim / "passwd").write_text("root:x:0:0\n")
    _plant(models / "Lora", victim)
    before = (_state(victim), _state(victim / "passwd"))
    for args in ({"state": "directory", "owner": "nobody", "mode": "0755"},
                 {"url": [srv.base + "/files/model.safetensors"], "sha256": SHA, "owner": "nobody"},
                 {"sha256": SHA}):
        dest = models / "Lora" / ("" if args.get("state") else "passwd")
        res = run(tmp_path, dest=str(dest).rstrip("/"), tree=str(models), **args)
        assert res.get("failed") and "is a symlink" in res["msg"] and str(models / "Lora") in res["msg"], res
        assert "Fix" in res["msg"]
    assert (_state(victim), _state(victim / "passwd")) == before
    assert srv.stats("/files/model.safetensors")["requests"] == 0


@as_root
def test_root_owned_link_in_a_trusted_dir_is_followed(tmp_path):
    real = tmp_path / "real-models"
    real.mkdir()
    (tmp_path / "models").symlink_to(real)  # root's own link: followed
    res = run(tmp_path, dest=str(tmp_path / "models" / "Lora"), tree=str(tmp_path / "models"), state="directory",
              mode="0755")
    assert res["changed"] and (real / "Lora").is_dir(), res


@as_root
def test_verify_only_never_follows_a_planted_file_link(tmp_path):
    victim = tmp_path / "secret"
    victim.write_bytes(OTHER)
    dest = tmp_path / "m.safetensors"
    _plant(dest, victim)
    res = run(tmp_path, dest=str(dest), sha256=OTHER_SHA)
    assert not res["current"] and res["sha256"] is None and res["legacy_hash"] is None, res
    # and a download replaces the link (moved aside), never writing through it
    src = tmp_path / "share.safetensors"
    src.write_bytes(DATA)
    res = run(tmp_path, dest=str(dest), src=str(src), sha256=SHA, owner="nobody", mode="0644")
    assert res["action"] == "copied" and not dest.is_symlink() and dest.read_bytes() == DATA, res
    assert victim.read_bytes() == OTHER and (tmp_path / "m.safetensors.sdfleet-replaced-link").is_symlink()
    assert dest.stat().st_uid == NOBODY and victim.stat().st_uid == 0


@as_root
@pytest.mark.parametrize("case", ["owned-by-nobody", "parent-writable", "planted-link"])
def test_unsafe_partial_dir_refused(tmp_path, srv, case):
    """6. A partial dir the service user could plant links in (or swap) is refused before any byte is written."""
    victim = tmp_path / "passwd"
    victim.write_text("root:x:0:0\n")
    before = _state(victim)
    if case == "owned-by-nobody":
        partial = tmp_path / "partial"
        partial.mkdir(mode=0o700)
        os.chown(partial, NOBODY, NOBODY)
        _plant(partial / f"{SHA}.part", victim)
    elif case == "parent-writable":
        shared = tmp_path / "models"
        shared.mkdir(mode=0o777)
        shared.chmod(0o777)
        partial = shared / ".sdfleet-partial"
    else:
        shared = tmp_path / "models"
        shared.mkdir()
        os.chown(shared, NOBODY, NOBODY)
        partial = shared / ".sdfleet-partial"
        _plant(partial, tmp_path)
    res = run(tmp_path, dest=str(tmp_path / "m.safetensors"), partial_dir=str(partial),
              url=[srv.base + "/files/model.safetensors"], sha256=SHA)
    msg = refused("webui_models", "webui_models_partial_dir", f"{case}: {partial}", res["msg"],
                  expect=["refusing partial_dir"])
    assert res.get("failed") and str(partial) in msg
    assert _state(victim) == before and not (tmp_path / "m.safetensors").exists()
    assert srv.stats("/files/model.safetensors")["requests"] == 0


@as_root
def test_partial_file_link_is_removed_unread(tmp_path, srv):
    """A link where the partial file goes (planted before root took the dir) is removed, never appended to."""
    victim = tmp_path / "passwd"
    victim.write_text("root:x:0:0\n")
    before = _state(victim)
    partial = tmp_path / "partial"
    partial.mkdir(mode=0o700)
    _plant(partial / f"{SHA}.part", victim)
    _plant(partial / f"{SHA}.progress", victim)
    dest = tmp_path / "m.safetensors"
    res = run(tmp_path, dest=str(dest), url=[srv.base + "/files/model.safetensors"], sha256=SHA)
    assert res["changed"] and dest.read_bytes() == DATA and res["resumed_from"] == 0, res
    assert _state(victim) == before


def test_dest_outside_its_tree_refused(tmp_path):
    res = run(tmp_path, dest="/etc/x.pt", tree=str(tmp_path), sha256=SHA)
    assert res.get("failed") and "not inside the models tree" in res["msg"]


def test_directory_state_creates_with_owner_and_mode_and_is_idempotent(tmp_path):
    tree = tmp_path / "models"
    res = run(tmp_path, dest=str(tree / "Lora" / "styles"), tree=str(tree), state="directory", mode="0750")
    assert res["changed"] and res["action"] == "created", res
    assert [stat.S_IMODE(p.stat().st_mode) for p in (tree, tree / "Lora", tree / "Lora" / "styles")] == [0o750] * 3
    again = run(tmp_path, dest=str(tree / "Lora" / "styles"), tree=str(tree), state="directory", mode="0750")
    assert not again["changed"], again
    (tree / "Lora" / "styles").chmod(0o777)
    fixed = run(tmp_path, check=True, dest=str(tree / "Lora" / "styles"), tree=str(tree), state="directory",
                mode="0750")
    assert fixed["changed"] and fixed["action"] == "permissions"
    assert stat.S_IMODE((tree / "Lora" / "styles").stat().st_mode) == 0o777  # check mode changed nothing


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
