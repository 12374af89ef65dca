"""Pure functions of the builder and the server."""

from __future__ import annotations

import hashlib
from pathlib import Path
from types import ModuleType

import pytest

from mirror_helpers import MIRROR_DIR
from script_import import load_script


def load(name: str) -> ModuleType:
    """Import a script of molecule/_shared/mirror/ by path."""
    return load_script(MIRROR_DIR / f"{name}.py", f"sdfleet_{name}")


builder = load("build_fixture")
server = load("mirror_server")


def test_changelog_keeps_the_standins_own_sections() -> None:
    source = "## 1.10.1\n\n* fix\n\n## 1.10.0\n\n* feature\n"
    assert builder.changelog_at(source, "1.10.0", []) == "## 1.10.0\n\n* feature\n"
    assert builder.changelog_at(source, "1.10.1", ["1.10.0"]) == source


def test_changelog_is_generated_without_a_source_heading() -> None:
    text = builder.changelog_at("no headings\n", "1.10.1", ["1.10.0"])
    assert text.startswith("## 1.10.1\n") and "\n## 1.10.0\n" in text


def test_legacy_hash_reads_the_window_at_one_mib() -> None:
    data = bytes(range(256)) * 8192  # 2 MiB
    assert builder.legacy_hash(data) == hashlib.sha256(data[0x100000:0x110000]).hexdigest()[:8]
    assert builder.legacy_hash(data[:0x100000]) == "e3b0c442"  # nothing left to read at the offset
    short = data[:0x100000 + 10]
    assert builder.legacy_hash(short) == hashlib.sha256(short[0x100000:]).hexdigest()[:8]


def test_requirement_pins_add_the_standins_lines(tmp_path: Path) -> None:
    src = tmp_path
    (src / "requirements_versions.txt").write_text("six==1.16.0\ntorch\nTorchVision==0.16.2\nFoo_Bar == 1.0 # c\n")
    assert builder.requirement_pins(src) == [("Foo_Bar", "1.0"), ("packaging", "24.1"), ("six", "1.16.0")]


@pytest.mark.parametrize(("header", "expected"), [
    ("bytes=0-0", (0, 0)), ("bytes=5-", (5, 9)), ("bytes=-3", (7, 9)), ("bytes=8-100", (8, 9)),
    ("bytes=10-", None), ("bytes=5-4", None), ("bytes=-0", None), ("bytes=-", None), ("bytes=0-1,3-4", None),
    ("items=0-1", None),
])
def test_parse_range(header: str, expected: tuple[int, int] | None) -> None:
    assert server.parse_range(header, 10) == expected


@pytest.mark.parametrize(("body", "message"), [
    ({"path": "x", "status": 503}, "absolute"),
    ({"path": "/a", "times": 0, "status": 503}, "times"),
    ({"path": "/a", "status": 99}, "status"),
    ({"path": "/a", "delay": -1}, "delay"),
    ({"path": "/a"}, "at least one"),
    ({"path": "/a", "status": 503, "colour": "red"}, "unknown keys"),
    ([], "JSON object"),
])
def test_parse_rule_refuses_bad_rules(body: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        server.parse_rule(body)


def test_rule_prefix_match_and_use_count() -> None:
    state = server.State()
    state.rules.append(server.parse_rule({"path": "/git/BLIP.git/*", "status": 503, "times": 2}))
    assert state.take_rule("/git/k-diffusion.git/info/refs") is None
    assert state.take_rule("/git/BLIP.git/info/refs").status == 503
    assert state.take_rule("/git/BLIP.git/git-upload-pack").status == 503
    assert state.take_rule("/git/BLIP.git/info/refs") is None


def test_split_cgi_reads_the_status_header() -> None:
    status, headers, body = server.split_cgi(b"Status: 404 Not Found\r\nContent-Type: text/plain\r\n\r\nnope")
    assert (status, headers, body) == (404, [("Content-Type", "text/plain")], b"nope")
    assert server.split_cgi(b"Content-Type: x\n\nok")[0] == 200
