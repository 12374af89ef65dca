"""Start-up of the stand-in after the install steps: the dirs the real one creates at start, bind address, port,
share refusal, SIGTERM, serve."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading

from modules import cmd_args, server


def parsed_summary(args: argparse.Namespace) -> str:
    """JSON of the settings that arrived, without any credential (for tests and logs)."""
    return json.dumps({
        "device_id": args.device_id,
        "lowvram": args.lowvram, "medvram": args.medvram, "medvram_sdxl": args.medvram_sdxl, "lowram": args.lowram,
        "xformers": args.xformers, "opt_sdp_attention": args.opt_sdp_attention,
        "opt_sdp_no_mem_attention": args.opt_sdp_no_mem_attention, "opt_split_attention": args.opt_split_attention,
        "no_half": args.no_half, "no_half_vae": args.no_half_vae, "upcast_sampling": args.upcast_sampling,
        "precision": args.precision, "use_cpu": args.use_cpu, "skip_torch_cuda_test": args.skip_torch_cuda_test,
        "no_download_sd_model": args.no_download_sd_model,
        "listen": args.listen, "server_name": args.server_name, "host": bind_host(args), "port": args.port,
        "share": args.share, "api": args.api, "nowebui": args.nowebui, "subpath": args.subpath, "theme": args.theme,
        "gradio_auth_enabled": bool(args.gradio_auth or args.gradio_auth_path),
        "gradio_auth_path": args.gradio_auth_path, "api_auth_enabled": bool(args.api_auth),
        "enable_insecure_extension_access": args.enable_insecure_extension_access,
        "freeze_settings": args.freeze_settings,
        "data_dir": args.data_dir, "models_dir": cmd_args.models_path(args), "ckpt_dir": args.ckpt_dir,
        "embeddings_dir": args.embeddings_dir, "vae_dir": args.vae_dir, "lora_dir": args.lora_dir,
        "ui_settings_file": args.ui_settings_file,
    }, sort_keys=True)


def bind_host(args: argparse.Namespace) -> str:
    """--server-name, else 0.0.0.0 with --listen, else GRADIO_SERVER_NAME or 127.0.0.1.

    With --nowebui and neither flag, the real one hands uvicorn host=None, which binds all interfaces.
    """
    if args.server_name:
        return args.server_name
    if args.listen:
        return "0.0.0.0"
    if args.nowebui:
        return "0.0.0.0"
    return os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1")


def port_range(args: argparse.Namespace) -> range:
    """--port alone; without it Gradio scans GRADIO_SERVER_PORT (7860) + GRADIO_NUM_PORTS (100); nowebui: 7861."""
    if args.port:
        return range(args.port, args.port + 1)
    if args.nowebui:
        return range(7861, 7862)
    first = int(os.environ.get("GRADIO_SERVER_PORT", "7860"))
    return range(first, first + int(os.environ.get("GRADIO_NUM_PORTS", "100")))


def read_settings(args: argparse.Namespace) -> dict:
    """The settings file (--ui-settings-file) as a dict, {} when missing or not a JSON object."""
    try:
        with open(args.ui_settings_file, encoding="utf8") as handle:
            data = json.load(handle)
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def create_start_dirs(args: argparse.Namespace) -> None:
    """What the real one creates at every start: <data>/extensions (importing its extensions module, both modes)
    and, building the UI (not with --nowebui), <checkout>/config_states, even with --data-dir. On a read-only
    checkout that raises `OSError: [Errno 30] Read-only file system: '<checkout>/config_states'` and the start
    fails, as the real one's does."""
    os.makedirs(cmd_args.extensions_dir(args), exist_ok=True)
    if not args.nowebui:
        os.makedirs(os.path.join(cmd_args.SCRIPT_PATH, "config_states"), exist_ok=True)


def start(args: argparse.Namespace) -> int:
    """Serve until SIGTERM/SIGINT; 1 on --share or a taken port."""
    if args.share:
        print("sdfleet-standin: --share needs internet (a gradio.live tunnel) and is not supported by the stand-in",
              file=sys.stderr, flush=True)
        return 1
    create_start_dirs(args)
    host = bind_host(args)
    try:
        httpd = server.make_server(args, host, port_range(args))
    except server.PortTaken as exc:
        print(f"OSError: {exc}", file=sys.stderr, flush=True)
        return 1

    def stop(_signum: int, _frame: object) -> None:
        threading.Thread(target=httpd.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    port = httpd.server_address[1]
    print(f"Running on local URL:  http://{host}:{port}", flush=True)
    print("Startup time: 0.1s (stand-in).", flush=True)
    try:
        httpd.serve_forever(poll_interval=0.2)
    finally:
        httpd.server_close()
    print("Interrupted with signal, exiting", flush=True)
    return 0
