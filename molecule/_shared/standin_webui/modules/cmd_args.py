"""Command-line flags of the stand-in, named and defaulted as in the real v1.10.1 `modules/cmd_args.py`.

Only the flags a provisioning tool may pass are listed (webui.md sections 5, 7, 10 and 11) plus the
launcher-only ones. Flags the stand-in does not act on are still accepted, because the real webui accepts
them; an unknown flag is an argparse error (exit 2) unless IGNORE_CMD_ARGS_ERRORS is set.
`--exit` is deliberately absent: the real launcher checks `"--exit" in sys.argv` directly.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

SCRIPT_PATH = Path(__file__).resolve().parents[1]

USE_CPU_CHOICES = ["all", "sd", "interrogate", "gfpgan", "bsrgan", "esrgan", "scunet", "codeformer"]

# Flags that only take a value and that the stand-in stores but does not act on.
_VALUE_FLAGS = (
    "--ckpt", "--vae-path", "--config", "--ui-config-file", "--textual-inversion-templates-dir",
    "--realesrgan-models-path", "--bsrgan-models-path", "--dat-models-path", "--swinir-models-path",
    "--ldsr-models-path", "--scunet-models-path", "--clip-models-path", "--lyco-dir-backcompat",
    "--cors-allow-origins", "--cors-allow-origins-regex", "--tls-keyfile", "--tls-certfile", "--ngrok",
    "--ngrok-region", "--ngrok-options", "--freeze-settings-in-sections", "--freeze-specific-settings",
    "--sub-quad-q-chunk-size", "--sub-quad-kv-chunk-size", "--sub-quad-chunk-threshold",
    "--gfpgan-dir", "--gfpgan-model", "--loglevel",
)
# Boolean flags the stand-in stores but does not act on (they change model loading or the UI only).
_BOOL_FLAGS = (
    "--lowram", "--xformers", "--force-enable-xformers", "--xformers-flash-attention", "--reinstall-xformers",
    "--reinstall-torch", "--opt-sdp-attention", "--opt-sdp-no-mem-attention", "--opt-split-attention",
    "--opt-split-attention-invokeai", "--opt-split-attention-v1", "--opt-sub-quad-attention",
    "--disable-opt-split-attention", "--opt-channelslast", "--no-half", "--no-half-vae", "--upcast-sampling",
    "--disable-nan-check", "--disable-model-loading-ram-optimization", "--always-batch-cond-uncond",
    "--use-ipex", "--no-download-sd-model", "--do-not-download-clip", "--no-hashing", "--skip-load-model-at-start",
    "--ui-debug-mode", "--skip-python-version-check", "--skip-prepare-environment", "--skip-install",
    "--skip-torch-cuda-test", "--skip-version-check", "--update-check", "--update-all-extensions",
    "--test-server", "--log-startup", "--dump-sysinfo", "--disable-all-extensions", "--disable-extra-extensions",
    "--disable-safe-unpickle", "--allow-code", "--hide-ui-dir-config", "--no-prompt-history", "--disable-tls-verify",
    "--api-server-stop", "--api-log", "--autolaunch", "--gradio-debug", "--no-gradio-queue", "--unload-gfpgan",
    "--deepdanbooru", "--show-negative-prompt", "--gradio-queue", "--add-stop-route", "--enable-console-prompts",
    "--enable-insecure-extension-access", "--freeze-settings", "--nowebui", "--api", "--listen", "--share",
    "--lowvram", "--medvram", "--medvram-sdxl",
)


def build_parser(data_dir_default: str | None = None) -> argparse.ArgumentParser:
    """The argument parser (real flag names, dests and defaults)."""
    data_default = data_dir_default or str(SCRIPT_PATH)
    parser = argparse.ArgumentParser(prog="launch.py")
    parser.add_argument("-f", action="store_true", help=argparse.SUPPRESS)
    # Paths (webui.md section 5).
    parser.add_argument("--data-dir", type=str, default=data_default, help="base path where all user data is stored")
    parser.add_argument("--models-dir", type=str, default=None, help="base path where models are stored")
    parser.add_argument("--ckpt-dir", type=str, default=None, help="extra directory searched for checkpoints")
    parser.add_argument("--vae-dir", type=str, default=None)
    parser.add_argument("--lora-dir", type=str, default=None)
    parser.add_argument("--embeddings-dir", type=str, default=None)
    parser.add_argument("--hypernetwork-dir", type=str, default=None)
    parser.add_argument("--localizations-dir", type=str, default=None)
    parser.add_argument("--gfpgan-models-path", type=str, default=None)
    parser.add_argument("--codeformer-models-path", type=str, default=None)
    parser.add_argument("--esrgan-models-path", type=str, default=None)
    parser.add_argument("--ui-settings-file", type=str, default=None)
    parser.add_argument("--styles-file", type=str, action="append", default=[])
    parser.add_argument("--gradio-allowed-path", type=str, action="append", default=[])
    # Exposure (webui.md section 7).
    parser.add_argument("--server-name", type=str, default=None)
    parser.add_argument("--port", type=int, default=None)
    parser.add_argument("--gradio-auth", type=str, default=None)
    parser.add_argument("--gradio-auth-path", type=str, default=None)
    parser.add_argument("--api-auth", type=str, default=None)
    parser.add_argument("--theme", type=str, choices=["light", "dark"], default=None)
    parser.add_argument("--subpath", type=str, default=None)
    parser.add_argument("--timeout-keep-alive", type=int, default=30)
    # Device (webui.md section 10).
    parser.add_argument("--device-id", type=str, default=None)
    parser.add_argument("--precision", type=str, choices=["full", "half", "autocast"], default="autocast")
    parser.add_argument("--use-cpu", nargs="+", choices=USE_CPU_CHOICES, type=str.lower, default=[])
    for flag in _VALUE_FLAGS:
        parser.add_argument(flag, type=str, default=None)
    for flag in _BOOL_FLAGS:
        parser.add_argument(flag, action="store_true")
    return parser


def parse(argv: list[str]) -> argparse.Namespace:
    """Parse argv (without the program name); `--exit` is ignored here as in the real launcher.

    Exits 2 with argparse's message on an unknown flag unless IGNORE_CMD_ARGS_ERRORS is set.
    Path flags are made absolute, as the real webui does since 1.8.
    """
    argv = [arg for arg in argv if arg != "--exit"]
    parser = build_parser()
    if os.environ.get("IGNORE_CMD_ARGS_ERRORS"):
        args, _unknown = parser.parse_known_args(argv)
    else:
        args = parser.parse_args(argv)
    args.data_dir = os.path.abspath(args.data_dir)
    for name in ("models_dir", "ckpt_dir", "vae_dir", "lora_dir", "embeddings_dir", "hypernetwork_dir",
                 "localizations_dir", "gfpgan_models_path", "codeformer_models_path", "esrgan_models_path",
                 "ui_settings_file", "gradio_auth_path"):
        value = getattr(args, name)
        if value:
            setattr(args, name, os.path.abspath(value))
    if args.models_dir is None:
        args.models_dir = os.path.join(args.data_dir, "models")
    if args.ui_settings_file is None:
        args.ui_settings_file = os.path.join(args.data_dir, "config.json")
    if args.embeddings_dir is None:
        args.embeddings_dir = os.path.join(args.data_dir, "embeddings")
    return args
