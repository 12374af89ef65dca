"""What GET /internal/sysinfo answers, shaped like the real v1.10.1 `modules/sysinfo.py`: the same top-level keys,
the `Environment` filtered by the same whitelist of variable names (COMMANDLINE_ARGS included, verbatim), the
`Commandline` with an argv item hidden only where it *equals* the --gradio-auth or --api-auth value, the settings
file as `Config`. Values the stand-in cannot know (torch's collect_env, psutil) are the error strings the real
one prints when those are missing.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import json
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

from modules import cmd_args, launch_utils

# The variables the real sysinfo copies out of the environment (every other one is left out).
ENVIRONMENT_WHITELIST = frozenset({
    "GIT", "INDEX_URL", "WEBUI_LAUNCH_LIVE_OUTPUT", "GRADIO_ANALYTICS_ENABLED", "PYTHONPATH", "TORCH_INDEX_URL",
    "TORCH_COMMAND", "REQS_FILE", "XFORMERS_PACKAGE", "CLIP_PACKAGE", "OPENCLIP_PACKAGE", "ASSETS_REPO",
    "STABLE_DIFFUSION_REPO", "K_DIFFUSION_REPO", "BLIP_REPO", "ASSETS_COMMIT_HASH", "STABLE_DIFFUSION_COMMIT_HASH",
    "K_DIFFUSION_COMMIT_HASH", "BLIP_COMMIT_HASH", "COMMANDLINE_ARGS", "IGNORE_CMD_ARGS_ERRORS",
})
# The real one hashes the text with a placeholder in the "Checksum" field, then puts the hash there; the stand-in
# does the same with its own placeholder (so the real `sysinfo.check()` would not accept its output).
CHECKSUM_PLACEHOLDER = "sdfleet-standin-sysinfo-checksum-placeholder"


def environment() -> dict[str, str]:
    """The whitelisted variables, sorted by name."""
    return {key: os.environ[key] for key in sorted(os.environ) if key in ENVIRONMENT_WHITELIST}


def commandline(args: argparse.Namespace) -> list[str]:
    """sys.argv with an item replaced by `<hidden>` only when it is exactly the --gradio-auth or --api-auth value
    (so `--gradio-auth=u:p` is shown whole, as in the real one)."""
    hidden = {value for value in (args.gradio_auth, args.api_auth) if value}
    return ["<hidden>" if item in hidden else item for item in sys.argv]


def git_info(path: Path) -> dict[str, Any]:
    """name, path, commit, branch, remote of an extension dir (git values only for a checkout)."""
    is_repo = (path / ".git").is_dir()

    def run_git(*git_args: str) -> str | None:
        return launch_utils.git_output(["-C", str(path), *git_args], path) if is_repo else None

    return {"name": path.name, "path": str(path), "commit": run_git("rev-parse", "HEAD"),
            "branch": run_git("branch", "--show-current"), "remote": run_git("remote", "get-url", "origin")}


def extensions(args: argparse.Namespace, config: dict[str, Any], enabled: bool) -> list[dict[str, Any]]:
    """Extension dirs, enabled or not by the `disabled_extensions` setting."""
    root = Path(cmd_args.extensions_dir(args))
    disabled = set(config.get("disabled_extensions", []))
    if not root.is_dir():
        return []
    return [git_info(path) for path in sorted(root.iterdir()) if path.is_dir() and enabled != (path.name in disabled)]


def packages() -> list[str]:
    """`pip freeze --all`, else name==version of every distribution (the real order of attempts)."""
    try:
        return subprocess.check_output([sys.executable, "-m", "pip", "freeze", "--all"], timeout=60,
                                       stderr=subprocess.DEVNULL).decode("utf8").splitlines()
    except (OSError, subprocess.SubprocessError):
        return sorted(f"{dist.metadata['Name']}=={dist.version}" for dist in importlib.metadata.distributions())


def torch_info() -> Any:
    """torch's collect_env, or the error (the stub torch has none: a string, as when the real import fails)."""
    try:
        import torch.utils.collect_env  # noqa: PLC0415 (only here, as in the real one)

        return torch.utils.collect_env.get_env_info()._asdict()
    except Exception as exc:  # noqa: BLE001 (any failure is reported as text, as the real one does)
        return str(exc)


def cpu_info() -> dict[str, Any]:
    """The processor, plus psutil's counts or its import error."""
    info: dict[str, Any] = {"model": platform.processor()}
    try:
        import psutil  # noqa: PLC0415

        info["count logical"] = psutil.cpu_count(logical=True)
        info["count physical"] = psutil.cpu_count(logical=False)
    except Exception as exc:  # noqa: BLE001
        info["error"] = str(exc)
    return info


def ram_info() -> Any:
    """psutil's memory figures, or its import error."""
    try:
        import psutil  # noqa: PLC0415

        ram = psutil.virtual_memory()
        return {name: f"{getattr(ram, name)}B" for name in ("total", "used", "free") if getattr(ram, name, 0)}
    except Exception as exc:  # noqa: BLE001
        return str(exc)


def get_dict(args: argparse.Namespace, config: dict[str, Any], startup_total: float) -> dict[str, Any]:
    """The sysinfo dict (the real key order)."""
    script_path = cmd_args.SCRIPT_PATH
    git_status = (launch_utils.git_output(["-C", str(script_path), "status"], script_path)
                  if (script_path / ".git").is_dir() else None)
    return {
        "Platform": platform.platform(),
        "Python": platform.python_version(),
        "Version": launch_utils.git_tag(script_path),
        "Commit": launch_utils.commit_hash(script_path),
        "Git status": git_status,
        "Script path": str(script_path),
        "Data path": args.data_dir,
        "Extensions dir": cmd_args.extensions_dir(args),
        "Checksum": CHECKSUM_PLACEHOLDER,
        "Commandline": commandline(args),
        "Torch env info": torch_info(),
        "Exceptions": list(reversed(launch_utils.exception_records)),
        "CPU": cpu_info(),
        "RAM": ram_info(),
        "Extensions": extensions(args, config, enabled=True),
        "Inactive extensions": extensions(args, config, enabled=False),
        "Environment": environment(),
        "Config": config,
        "Startup": {"total": startup_total, "records": {}},
        "Packages": packages(),
    }


def get(args: argparse.Namespace, config: dict[str, Any], startup_total: float = 0.1) -> str:
    """The text the route answers: JSON (indent 4, not ASCII-escaped) whose Checksum is the SHA-256 of the text
    with the placeholder in its place."""
    text = json.dumps(get_dict(args, config, startup_total), ensure_ascii=False, indent=4)
    return text.replace(CHECKSUM_PLACEHOLDER, hashlib.sha256(text.encode("utf8")).hexdigest())
