"""scripts/webui_flags.py and the data it writes (module_utils/webui_flags.py).

- the committed data equals what the script derives from the real webui trees in ``<repo>/../shared/upstream``;
- the script's argparse semantics (arity, append, choices, aliases, top folder of an archive), on small sources;
- ``--check`` says when the committed data is stale.
"""
from __future__ import annotations

import importlib.util
import io
import pathlib
import tarfile

import pytest

from ansible_collections.sdfleet.toolkit.plugins.module_utils import webui_flags as data

ROOT = pathlib.Path(__file__).resolve().parents[2]
UPSTREAM = ROOT.parent / "shared" / "upstream"

_spec = importlib.util.spec_from_file_location("webui_flags_script", ROOT / "scripts" / "webui_flags.py")
assert _spec and _spec.loader
script = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(script)

needs_upstream = pytest.mark.skipif(
    not all(p.is_file() for p in script.default_sources(UPSTREAM).values()),
    reason=f"{UPSTREAM} (the real webui archives stable-diffusion-webui-<version>.tar.gz) is absent: "
           "the flag lists cannot be re-derived here")


@needs_upstream
def test_committed_data_equals_upstream():
    info, flags = script.derive(script.default_sources(UPSTREAM))
    assert flags == data.FLAGS, list(script.summary(data.FLAGS, flags))
    assert info == data.SOURCES
    assert script.render(info, flags) == script.DATA_MODULE.read_text(encoding="utf-8"), \
        "module_utils/webui_flags.py was edited by hand; run scripts/webui_flags.py --write"


@needs_upstream
def test_check_mode_passes_on_the_committed_data(capsys):
    assert script.main(["--check"]) == 0
    assert "matches upstream" in capsys.readouterr().out


@needs_upstream
def test_check_mode_fails_on_stale_data(tmp_path, monkeypatch, capsys):
    stale = dict(data.FLAGS)
    stale["v1.10.1"] = {k: v for k, v in data.FLAGS["v1.10.1"].items() if k != "--api-log"}
    module = tmp_path / "webui_flags.py"
    module.write_text(script.render(data.SOURCES, stale), encoding="utf-8")
    monkeypatch.setattr(script, "DATA_MODULE", module)
    monkeypatch.setattr(script, "ROOT", tmp_path)
    assert script.main(["--check"]) == 1
    assert "v1.10.1: added --api-log" in capsys.readouterr().err


def test_data_covers_the_supported_versions():
    assert tuple(data.FLAGS) == script.VERSIONS == ("v1.9.4", "v1.10.1", "dev")
    assert set(data.SOURCES) == set(data.FLAGS)
    for version, flags in data.FLAGS.items():
        assert len(flags) > 100, version
        assert all(f.startswith("--") for f in flags)
        assert all(s["arity"] in (0, 1, "+") for s in flags.values())


def test_known_upstream_facts_are_in_the_data():
    v110 = data.FLAGS["v1.10.1"]
    assert v110["--api-log"] == {"arity": 0}
    assert v110["--disable-tls-verify"] == {"arity": 0}  # store_false
    assert v110["--use-cpu"] == {"arity": "+", "type": "str.lower"}
    assert v110["--styles-file"] == {"action": "append", "arity": 1, "type": "str"}
    assert v110["--precision"]["choices"] == ["full", "half", "autocast"]
    assert v110["--timeout-keep-alive"] == {"arity": 1, "type": "int"}
    assert "--lora-dir" in v110  # added by extensions-builtin/Lora/preload.py
    assert "--models-dir" not in data.FLAGS["v1.9.4"]
    assert data.FLAGS["v1.9.4"]["--precision"]["choices"] == ["full", "autocast"]
    assert set(data.FLAGS["dev"]) - set(v110) == {"--uv"}


SOURCE = '''
import argparse
parser = argparse.ArgumentParser()
parser.add_argument("-f", action='store_true', help=argparse.SUPPRESS)
parser.add_argument("--switch", action='store_true')
parser.add_argument("--off", action="store_false", default=None)
parser.add_argument("--value", type=int, default=3)
parser.add_argument("--many", nargs='+', type=str.lower)
parser.add_argument("--any", nargs='*')
parser.add_argument("--pair", nargs=2)
parser.add_argument("--repeat", action='append', default=[])
parser.add_argument("--mode", choices=["a", "b"])
parser.add_argument("--color", "--colour", type=str)
'''


def test_script_derives_argparse_semantics():
    flags = script.flags_of_source(SOURCE, "cmd_args.py")
    assert flags == {
        "--switch": {"arity": 0},
        "--off": {"arity": 0},
        "--value": {"arity": 1, "type": "int"},
        "--many": {"arity": "+", "type": "str.lower"},
        "--any": {"arity": "+"},
        "--pair": {"arity": 2},
        "--repeat": {"arity": 1, "action": "append"},
        "--mode": {"arity": 1, "choices": ["a", "b"]},
        "--color": {"arity": 1, "type": "str"},
        "--colour": {"arity": 1, "type": "str", "alias_of": "--color"},
    }


@pytest.mark.parametrize("call", ['parser.add_argument("--x", nargs="?")', 'parser.add_argument("--x", action=Custom)',
                                  'parser.add_argument(NAME)', 'parser.add_argument("--x", choices=CHOICES)',
                                  'parser.add_argument("--x")\nparser.add_argument("--x")'])
def test_script_refuses_what_it_cannot_read(call):
    with pytest.raises(script.UpstreamError):
        script.flags_of_source(call, "cmd_args.py")


def _tar(path: pathlib.Path, files: dict[str, str]) -> pathlib.Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, text in files.items():
            blob = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))
    return path


def test_script_reads_tarballs_with_a_top_folder_and_builtin_preloads(tmp_path):
    top = "stable-diffusion-webui-1.0/"
    archive = _tar(tmp_path / "webui.tar.gz", {
        top + "modules/cmd_args.py": 'parser.add_argument("--a", action="store_true")\n',
        top + "extensions-builtin/Lora/preload.py": 'def preload(parser):\n    parser.add_argument("--lora-dir")\n',
        top + "extensions-builtin/Lora/deep/preload.py": 'parser.add_argument("--not-a-preload")\n',
        top + "modules/timer.py": 'parser.add_argument("--other-parser")\n',
    })
    assert script.flags_of_tree(archive) == {"--a": {"arity": 0}, "--lora-dir": {"arity": 1}}
    info, flags = script.derive({"x": archive})
    assert info == {"x": {"archive": "webui.tar.gz"}} and set(flags["x"]) == {"--a", "--lora-dir"}


def test_script_reports_a_missing_source(tmp_path, capsys):
    assert script.main([f"v1={tmp_path / 'absent.tar.gz'}"]) == 2
    assert "no such tree or archive" in capsys.readouterr().err
