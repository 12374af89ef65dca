"""Command-line flags of the stand-in: every flag of the real v1.10.1 parser (`modules/cmd_args.py` plus the flags
the built-in extensions add in their `preload.py`), with the real dests, types and defaults, so that
`/sdapi/v1/cmd-flags` answers the same keys and values.

Flags the stand-in does not act on are still accepted and stored, because the real webui accepts them; an unknown
flag is an argparse error (exit 2) unless IGNORE_CMD_ARGS_ERRORS is set. `--exit` is deliberately absent: the real
launcher checks `"--exit" in sys.argv` directly.

Defaults that are paths hang off the checkout (`SCRIPT_PATH`), `--data-dir` and `--models-dir`, which are read
first (as the real `paths_internal` does). Path flags of the real parser are made absolute without resolving
symlinks (`abs_path`); string defaults go through the type too (argparse converts them).
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

SCRIPT_PATH = Path(__file__).resolve().parents[1]


def abs_path(value: str) -> str:
    """The real `normalized_filepath`: absolute, relative to the cwd, symlinks kept."""
    return str(Path(value).absolute())


# (flag, kind, default), in the real parser's order. Kinds: "bool" (store_true), "store_false", "path"
# (abs_path), "str", "int", "json" (json.loads), "append" (list of str), "append_raw" (list, no type),
# "precision" (its three choices), "use_cpu" (nargs +, lower-cased). A default ("data", "x") is <data-dir>/x,
# ("models", "x") <models>/x, ("script", "x") <checkout>/x, ("data_list", "") the list [<data-dir>].
_FLAGS: tuple[tuple[str, str, object], ...] = (
    ("-f", "bool", False),
    ("--update-all-extensions", "bool", False),
    ("--skip-python-version-check", "bool", False),
    ("--skip-torch-cuda-test", "bool", False),
    ("--reinstall-xformers", "bool", False),
    ("--reinstall-torch", "bool", False),
    ("--update-check", "bool", False),
    ("--test-server", "bool", False),
    ("--log-startup", "bool", False),
    ("--skip-prepare-environment", "bool", False),
    ("--skip-install", "bool", False),
    ("--dump-sysinfo", "bool", False),
    ("--loglevel", "str", None),
    ("--do-not-download-clip", "bool", False),
    ("--data-dir", "path", ("script", "")),
    ("--models-dir", "path", None),
    ("--config", "path", ("script", "configs/v1-inference.yaml")),
    ("--ckpt", "path", ("script", "model.ckpt")),
    ("--ckpt-dir", "path", None),
    ("--vae-dir", "path", None),
    ("--gfpgan-dir", "path", "./GFPGAN"),
    ("--gfpgan-model", "path", None),
    ("--no-half", "bool", False),
    ("--no-half-vae", "bool", False),
    ("--no-progressbar-hiding", "bool", False),
    ("--max-batch-count", "int", 16),
    ("--embeddings-dir", "path", ("data", "embeddings")),
    ("--textual-inversion-templates-dir", "path", ("script", "textual_inversion_templates")),
    ("--hypernetwork-dir", "path", ("models", "hypernetworks")),
    ("--localizations-dir", "path", ("script", "localizations")),
    ("--allow-code", "bool", False),
    ("--medvram", "bool", False),
    ("--medvram-sdxl", "bool", False),
    ("--lowvram", "bool", False),
    ("--lowram", "bool", False),
    ("--always-batch-cond-uncond", "bool", False),
    ("--unload-gfpgan", "bool", False),
    ("--precision", "precision", "autocast"),
    ("--upcast-sampling", "bool", False),
    ("--share", "bool", False),
    ("--ngrok", "str", None),
    ("--ngrok-region", "str", ""),
    ("--ngrok-options", "json", {}),
    ("--enable-insecure-extension-access", "bool", False),
    ("--codeformer-models-path", "path", ("models", "Codeformer")),
    ("--gfpgan-models-path", "path", ("models", "GFPGAN")),
    ("--esrgan-models-path", "path", ("models", "ESRGAN")),
    ("--bsrgan-models-path", "path", ("models", "BSRGAN")),
    ("--realesrgan-models-path", "path", ("models", "RealESRGAN")),
    ("--dat-models-path", "path", ("models", "DAT")),
    ("--clip-models-path", "path", None),
    ("--xformers", "bool", False),
    ("--force-enable-xformers", "bool", False),
    ("--xformers-flash-attention", "bool", False),
    ("--deepdanbooru", "bool", False),
    ("--opt-split-attention", "bool", False),
    ("--opt-sub-quad-attention", "bool", False),
    ("--sub-quad-q-chunk-size", "int", 1024),
    ("--sub-quad-kv-chunk-size", "int", None),
    ("--sub-quad-chunk-threshold", "int", None),
    ("--opt-split-attention-invokeai", "bool", False),
    ("--opt-split-attention-v1", "bool", False),
    ("--opt-sdp-attention", "bool", False),
    ("--opt-sdp-no-mem-attention", "bool", False),
    ("--disable-opt-split-attention", "bool", False),
    ("--disable-nan-check", "bool", False),
    ("--use-cpu", "use_cpu", []),
    ("--use-ipex", "bool", False),
    ("--disable-model-loading-ram-optimization", "bool", False),
    ("--listen", "bool", False),
    ("--port", "int", None),
    ("--show-negative-prompt", "bool", False),
    ("--ui-config-file", "str", ("data", "ui-config.json")),
    ("--hide-ui-dir-config", "bool", False),
    ("--freeze-settings", "bool", False),
    ("--freeze-settings-in-sections", "str", None),
    ("--freeze-specific-settings", "str", None),
    ("--ui-settings-file", "str", ("data", "config.json")),
    ("--gradio-debug", "bool", False),
    ("--gradio-auth", "str", None),
    ("--gradio-auth-path", "path", None),
    ("--gradio-img2img-tool", "str", None),
    ("--gradio-inpaint-tool", "str", None),
    ("--gradio-allowed-path", "append_raw", ("data_list", "")),
    ("--opt-channelslast", "bool", False),
    ("--styles-file", "append", []),
    ("--autolaunch", "bool", False),
    ("--theme", "str", None),
    ("--use-textbox-seed", "bool", False),
    ("--disable-console-progressbars", "bool", False),
    ("--enable-console-prompts", "bool", False),
    ("--vae-path", "path", None),
    ("--disable-safe-unpickle", "bool", False),
    ("--api", "bool", False),
    ("--api-auth", "str", None),
    ("--api-log", "bool", False),
    ("--nowebui", "bool", False),
    ("--ui-debug-mode", "bool", False),
    ("--device-id", "str", None),
    ("--administrator", "bool", False),
    ("--cors-allow-origins", "str", None),
    ("--cors-allow-origins-regex", "str", None),
    ("--tls-keyfile", "str", None),
    ("--tls-certfile", "str", None),
    ("--disable-tls-verify", "store_false", None),
    ("--server-name", "str", None),
    ("--gradio-queue", "bool", True),
    ("--no-gradio-queue", "bool", False),
    ("--skip-version-check", "bool", False),
    ("--no-hashing", "bool", False),
    ("--no-download-sd-model", "bool", False),
    ("--subpath", "str", None),
    ("--add-stop-route", "bool", False),
    ("--api-server-stop", "bool", False),
    ("--timeout-keep-alive", "int", 30),
    ("--disable-all-extensions", "bool", False),
    ("--disable-extra-extensions", "bool", False),
    ("--skip-load-model-at-start", "bool", False),
    ("--unix-filenames-sanitization", "bool", False),
    ("--filenames-max-length", "int", 128),
    ("--no-prompt-history", "bool", False),
    # Added by the built-in extensions' preload.py (Lora, LDSR, ScuNET, SwinIR), so part of the real cmd_opts.
    ("--lora-dir", "path", ("models", "Lora")),
    ("--lyco-dir-backcompat", "path", ("models", "LyCORIS")),
    ("--ldsr-models-path", "str", ("models", "LDSR")),
    ("--scunet-models-path", "str", ("models", "ScuNET")),
    ("--swinir-models-path", "str", ("models", "SwinIR")),
)


def base_paths(argv: list[str]) -> tuple[str, str]:
    """(data dir, models dir) as the real paths_internal pre-parse finds them (models: --models-dir or
    <data>/models)."""
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--data-dir", type=str, default=str(SCRIPT_PATH))
    pre.add_argument("--models-dir", type=str, default=None)
    known, _rest = pre.parse_known_args(argv)
    return known.data_dir, known.models_dir or os.path.join(known.data_dir, "models")


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The argument parser (real flag names, dests, types and defaults; path defaults from `argv`'s
    --data-dir / --models-dir)."""
    data_path, models_path = base_paths(argv or [])
    roots = {"script": str(SCRIPT_PATH), "data": data_path, "models": models_path}
    parser = argparse.ArgumentParser(prog="launch.py")
    for flag, kind, default in _FLAGS:
        if isinstance(default, tuple):
            root, rel = default
            default = [data_path] if root == "data_list" else (os.path.join(roots[root], rel) if rel
                                                               else roots[root])
        extra: dict[str, object] = {"help": argparse.SUPPRESS} if flag == "-f" else {}
        if kind == "bool":
            parser.add_argument(flag, action="store_true", default=default, **extra)
        elif kind == "store_false":
            parser.add_argument(flag, action="store_false", default=default)
        elif kind == "path":
            parser.add_argument(flag, type=abs_path, default=default)
        elif kind == "str":
            parser.add_argument(flag, type=str, default=default)
        elif kind == "int":
            parser.add_argument(flag, type=int, default=default)
        elif kind == "json":
            parser.add_argument(flag, type=json.loads, default=default)
        elif kind == "append":
            parser.add_argument(flag, type=str, action="append", default=default)
        elif kind == "append_raw":
            parser.add_argument(flag, action="append", default=default)
        elif kind == "precision":
            parser.add_argument(flag, type=str, choices=["full", "half", "autocast"], default=default)
        elif kind == "use_cpu":
            parser.add_argument(flag, nargs="+", type=str.lower, default=default)
        else:  # pragma: no cover (a typo in the table)
            raise ValueError(f"unknown kind {kind} for {flag}")
    return parser


def parse(argv: list[str]) -> argparse.Namespace:
    """Parse argv (without the program name); `--exit` is ignored here as in the real launcher.

    Exits 2 with argparse's message on an unknown flag unless IGNORE_CMD_ARGS_ERRORS is set.
    """
    argv = [arg for arg in argv if arg != "--exit"]
    parser = build_parser(argv)
    if os.environ.get("IGNORE_CMD_ARGS_ERRORS"):
        args, _unknown = parser.parse_known_args(argv)
    else:
        args = parser.parse_args(argv)
    return args


def parse_known(argv: list[str]) -> argparse.Namespace:
    """What the real launcher module parses at import (`parse_known_args`): never fails on unknown flags."""
    argv = [arg for arg in argv if arg != "--exit"]
    args, _unknown = build_parser(argv).parse_known_args(argv)
    return args


def models_path(args: argparse.Namespace) -> str:
    """The models root: --models-dir, else <data>/models (the real `paths.models_path`)."""
    return args.models_dir or os.path.join(args.data_dir, "models")


def extensions_dir(args: argparse.Namespace) -> str:
    """<data>/extensions (the real `paths_internal.extensions_dir`)."""
    return os.path.join(args.data_dir, "extensions")


def flags_response(args: argparse.Namespace, parser: argparse.ArgumentParser | None = None) -> dict[str, object]:
    """What GET /sdapi/v1/cmd-flags answers: one key per flag of the parser (nothing set after parsing), each
    value passed through the real response model (pydantic v1, a field per flag typed by its default: a flag
    whose default is None is a `str` field, so an int or bool value comes back as a string, e.g. "port": "7861")."""
    parser = parser or build_parser()
    answer: dict[str, object] = {}
    for action in parser._actions:  # noqa: SLF001 (argparse keeps no public list)
        if action.dest == "help":
            continue
        value = getattr(args, action.dest, action.default)
        if action.default is None and isinstance(value, (int, float)):  # bool is an int too
            value = str(value)
        answer[action.dest] = value
    return answer
