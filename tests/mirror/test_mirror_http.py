"""The mirror's package indexes, model files (Range, HEAD), byte counters and failure switches."""

from __future__ import annotations

import hashlib
import http.client
import io
import json
import os
import re
import subprocess
import sys
import time
import zipfile
from pathlib import Path
from typing import Any

import pytest

from mirror_helpers import Mirror

TINY = "/files/tiny-v1.safetensors"


def pip_install(target: Path, index_url: str, *reqs: str) -> subprocess.CompletedProcess[str]:
    """`pip install` into the venv `target` from `index_url` only: no cache, no user/site pip config."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    env.update(PIP_CONFIG_FILE=os.devnull, PIP_NO_INPUT="1", PIP_DISABLE_PIP_VERSION_CHECK="1")
    return subprocess.run([sys.executable, "-m", "pip", "--python", str(target / "bin" / "python"), "install",
                           "--no-cache-dir", "--index-url", index_url, *reqs],
                          env=env, capture_output=True, text=True, timeout=120, check=False)


@pytest.fixture
def venv(tmp_path: Path) -> Path:
    """An empty venv (pip is driven from outside with `pip --python`, so none is installed into it)."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(tmp_path / "venv")], check=True)
    return tmp_path / "venv"


def venv_python(venv: Path, code: str) -> str:
    """Run `code` with the venv's interpreter; its stdout."""
    return subprocess.run([str(venv / "bin" / "python"), "-c", code], capture_output=True, text=True,
                          check=True, timeout=30).stdout.strip()


# -- indexes ---------------------------------------------------------------------------------------------
def test_pip_installs_six_from_simple_index(mirror: Mirror, venv: Path) -> None:
    proc = pip_install(venv, f"{mirror.url}/simple/", "six==1.16.0", "packaging==24.1")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert venv_python(venv, "import six, packaging; print(six.__version__, packaging.__version__)") == "1.16.0 24.1"


@pytest.mark.parametrize("variant", ["cu121", "cpu"])
def test_stub_torch_installs_from_its_index(mirror: Mirror, venv: Path, variant: str) -> None:
    proc = pip_install(venv, f"{mirror.url}/torch/{variant}/", "torch==2.1.2", "torchvision==0.16.2")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = venv_python(venv, "import torch, torchvision; "
                            "print(torch.__version__, torchvision.__version__, torch.cuda.is_available())")
    assert out == f"2.1.2+{variant} 0.16.2+{variant} False"


def test_index_links_carry_the_wheels_sha256(mirror: Mirror, pins: dict[str, Any]) -> None:
    records = pins["wheels"]["simple"] + pins["wheels"]["torch"]["cu121"] + pins["wheels"]["torch"]["cpu"]
    assert {r["filename"] for r in records} >= {
        "six-1.16.0-py2.py3-none-any.whl", "torch-2.1.2+cu121-py3-none-any.whl",
        "torchvision-0.16.2+cpu-py3-none-any.whl"}
    for record in records:
        page_url = record["path"].rsplit("/", 1)[0] + "/"
        status, _, page = mirror.get(page_url)
        assert status == 200
        match = re.search(rf'href="{re.escape(record["filename"])}#sha256=([0-9a-f]{{64}})"', page.decode())
        assert match, page
        status, _, wheel = mirror.get(record["path"])
        assert status == 200
        assert hashlib.sha256(wheel).hexdigest() == match.group(1) == record["sha256"]


def test_stub_xformers_installs_from_simple(mirror: Mirror, venv: Path) -> None:
    proc = pip_install(venv, f"{mirror.url}/simple/", "-U", "-I", "--no-deps", "xformers==0.0.23.post1")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert venv_python(venv, "import xformers; print(xformers.__version__)") == "0.0.23.post1"


# -- URL packages (GitHub archive paths) -----------------------------------------------------------------------
def test_url_package_archives_are_served_at_githubs_paths(mirror: Mirror, pins: dict[str, Any]) -> None:
    assert pins["archives"]["CLIP_PACKAGE"]["path"] == (
        "/openai/CLIP/archive/d50d76daa670286dd6cacf3bcd80b5e4823fc8e1.zip")
    assert pins["archives"]["OPENCLIP_PACKAGE"]["path"] == (
        "/mlfoundations/open_clip/archive/bb6e834e9c70d9c27d0dc3ecedeebeaeb1ffad6b.zip")
    for record in pins["archives"].values():
        assert record["upstream"] == "https://github.com" + record["path"]
        status, headers, _ = mirror.get(record["path"], method="HEAD")  # what the role's source probe sends
        assert (status, headers["Content-Length"]) == (200, str(record["size"]))
        status, _, data = mirror.get(record["path"])
        assert status == 200 and hashlib.sha256(data).hexdigest() == record["sha256"]
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            names = archive.namelist()
            assert archive.comment.decode() == record["commit"]  # as GitHub's archives carry it
        assert {name.split("/", 1)[0] for name in names} == {record["top"]}  # one top folder <repo>-<commit>
        assert record["top"] + "/setup.py" in names


def test_url_packages_build_from_the_simple_index_alone(mirror: Mirror, pins: dict[str, Any], tmp_path: Path) -> None:
    """pip builds the setup.py projects with build isolation: setuptools and wheel must come from /simple/."""
    venv = tmp_path / "with-pip"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=180)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    env.update(PIP_CONFIG_FILE=os.devnull, PIP_NO_INPUT="1", PIP_DISABLE_PIP_VERSION_CHECK="1")
    urls = [mirror.url + record["path"] for record in pins["archives"].values()]
    proc = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "--no-cache-dir", "--use-pep517",
                           "--index-url", f"{mirror.url}/simple/", *urls], env=env, capture_output=True, text=True,
                          timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = venv_python(venv, "import clip, open_clip, importlib.metadata as m; "
                            "print(clip.__version__, open_clip.__version__, m.version('open_clip_torch'))")
    assert out == "1.0 2.7.0 2.7.0"
    assert {"setuptools==69.5.1", "wheel==0.43.0"} <= set(pins["wheels"]["build"])


def test_directory_without_slash_redirects(mirror: Mirror) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", mirror.port, timeout=10)
    try:
        conn.request("GET", "/simple/six")
        response = conn.getresponse()
        assert (response.status, response.getheader("Location")) == (301, "/simple/six/")
    finally:
        conn.close()


# -- files -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("header", "first", "last"), [
    ("bytes=1048576-1114111", 1048576, 1114111),
    ("bytes=3145000-", 3145000, 3145727),
    ("bytes=-100", 3145628, 3145727),
])
def test_range_get_returns_206_and_the_right_bytes(mirror: Mirror, header: str, first: int, last: int) -> None:
    data = (mirror.root / TINY.lstrip("/")).read_bytes()
    status, headers, body = mirror.get(TINY, {"Range": header})
    assert status == 206
    assert headers["Content-Range"] == f"bytes {first}-{last}/{len(data)}"
    assert body == data[first:last + 1]


def test_unsatisfiable_range_is_416(mirror: Mirror) -> None:
    status, headers, _ = mirror.get(TINY, {"Range": "bytes=9999999-"})
    assert status == 416 and headers["Content-Range"] == "bytes */3145728"


def test_head_gives_length_without_body(mirror: Mirror) -> None:
    status, headers, body = mirror.get(TINY, method="HEAD")
    assert (status, headers["Content-Length"], headers["Accept-Ranges"], body) == (200, "3145728", "bytes", b"")


def test_files_match_pins(mirror: Mirror, pins: dict[str, Any]) -> None:
    assert set(pins["files"]) == {"tiny-v1.safetensors", "tiny-v2.safetensors", "tiny-vae.safetensors",
                                  "tiny-embedding.pt", "GFPGANv1.4.pth"}
    for name, record in pins["files"].items():
        status, _, data = mirror.get(record["path"])
        assert status == 200, name
        digest = hashlib.sha256(data).hexdigest()
        assert (len(data), digest, digest[:10]) == (record["size"], record["sha256"], record["short_hash"])
        # the webui's legacy hash: what a read of 64 KiB at offset 1 MiB returns (b"" past the end)
        assert hashlib.sha256(data[0x100000:0x110000]).hexdigest()[:8] == record["legacy_hash"]
    assert pins["files"]["tiny-embedding.pt"]["legacy_hash"] == hashlib.sha256(b"").hexdigest()[:8]
    assert pins["files"]["tiny-v1.safetensors"]["legacy_hash"] != pins["files"]["tiny-v2.safetensors"]["legacy_hash"]


@pytest.mark.parametrize("name", ["tiny-v1.safetensors", "tiny-v2.safetensors", "tiny-vae.safetensors"])
def test_safetensors_files_have_a_valid_header(fixture_dir: Path, name: str) -> None:
    data = (fixture_dir / "files" / name).read_bytes()
    length = int.from_bytes(data[:8], "little")
    header = json.loads(data[8:8 + length])
    begin, end = header["weight"]["data_offsets"]
    assert end - begin == len(data) - 8 - length


# -- counters and control --------------------------------------------------------------------------------
def test_stats_count_body_bytes_and_reset_clears_them(fresh_mirror: Mirror) -> None:
    fresh_mirror.get(TINY, {"Range": "bytes=0-999"})
    fresh_mirror.get(TINY, method="HEAD")
    assert fresh_mirror.stats()[TINY] == {"requests": 2, "bytes": 1000}
    fresh_mirror.post_json("/_reset", {})
    assert TINY not in fresh_mirror.stats()


def test_stats_count_each_request_of_a_keep_alive_connection_once(fresh_mirror: Mirror) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", fresh_mirror.port, timeout=10)
    try:
        sizes = []
        for _ in range(3):
            conn.request("GET", "/simple/six/")
            sizes.append(len(conn.getresponse().read()))
    finally:
        conn.close()
    assert fresh_mirror.stats()["/simple/six/"] == {"requests": 3, "bytes": sum(sizes)}


def test_cut_ends_a_get_early_once(fresh_mirror: Mirror) -> None:
    status, rule = fresh_mirror.post_json("/_control", {"path": TINY, "cut_after": 1048576, "times": 1})
    assert status == 200 and rule["cut_after"] == 1048576
    conn = http.client.HTTPConnection("127.0.0.1", fresh_mirror.port, timeout=10)
    try:
        conn.request("GET", TINY)
        response = conn.getresponse()
        assert response.getheader("Content-Length") == "3145728"
        with pytest.raises(http.client.IncompleteRead) as err:
            response.read()
        assert len(err.value.partial) == 1048576
    finally:
        conn.close()
    assert fresh_mirror.stats()[TINY] == {"requests": 1, "bytes": 1048576}
    status, _, body = fresh_mirror.get(TINY)  # the rule was used up
    assert status == 200 and len(body) == 3145728
    # resuming from where the cut left off completes the file
    status, _, rest = fresh_mirror.get(TINY, {"Range": "bytes=1048576-"})
    assert status == 206 and len(rest) == 3145728 - 1048576
    assert fresh_mirror.stats()[TINY] == {"requests": 3, "bytes": 1048576 + 3145728 + 2097152}


def test_status_rule_answers_then_expires(fresh_mirror: Mirror) -> None:
    fresh_mirror.post_json("/_control", {"path": "/simple/six/*", "status": 503, "times": 2})
    assert fresh_mirror.get("/simple/six/")[0] == 503
    assert fresh_mirror.get("/simple/six/index.html")[0] == 503
    assert fresh_mirror.get("/simple/six/")[0] == 200


def test_delay_rule_slows_one_request(fresh_mirror: Mirror) -> None:
    fresh_mirror.post_json("/_control", {"path": "/files/GFPGANv1.4.pth", "delay": 0.5})
    started = time.monotonic()
    assert fresh_mirror.get("/files/GFPGANv1.4.pth")[0] == 200
    assert time.monotonic() - started >= 0.5


def test_control_rejects_bad_rules(fresh_mirror: Mirror) -> None:
    status, answer = fresh_mirror.post_json("/_control", {"path": TINY, "cut_after": -1})
    assert status == 400 and "cut_after" in answer["error"]
    status, answer = fresh_mirror.post_json("/_control", {"path": TINY})
    assert status == 400
    assert fresh_mirror.get("/_control")[2].strip() == b"[]"


def test_unknown_path_is_404(mirror: Mirror) -> None:
    assert mirror.get("/nothing/here")[0] == 404
    conn = http.client.HTTPConnection("127.0.0.1", mirror.port, timeout=10)
    try:
        conn.request("GET", "/files/../../etc/passwd")
        assert conn.getresponse().status == 404
    finally:
        conn.close()


def test_if_range_with_a_stale_validator_sends_the_whole_file(mirror: Mirror) -> None:
    _, headers, _ = mirror.get(TINY, method="HEAD")
    assert mirror.get(TINY, {"Range": "bytes=0-9", "If-Range": headers["ETag"]})[0] == 206
    status, _, body = mirror.get(TINY, {"Range": "bytes=0-9", "If-Range": '"stale"'})
    assert status == 200 and len(body) == 3145728


def test_negative_times_rule_lasts_until_reset(fresh_mirror: Mirror) -> None:
    fresh_mirror.post_json("/_control", {"path": "/files/tiny-embedding.pt", "status": 500, "times": -1})
    assert [fresh_mirror.get("/files/tiny-embedding.pt")[0] for _ in range(3)] == [500, 500, 500]
    assert fresh_mirror.get("/files/tiny-embedding.pt", method="HEAD")[0] == 200  # HEAD ignores rules
    fresh_mirror.post_json("/_reset", {})
    assert fresh_mirror.get("/files/tiny-embedding.pt")[0] == 200
