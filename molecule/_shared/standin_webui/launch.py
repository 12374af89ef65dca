"""Entry point of the stand-in webui (a test fixture; see README.md), shaped like the real v1.10.1 launch.py.

As in the real one, importing it appends COMMANDLINE_ARGS to sys.argv and offers the helpers extensions'
`install.py` scripts use (`from launch import run_pip, is_installed`), run with PYTHONPATH=<checkout>.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

from modules import cmd_args, launch_utils, sysinfo, webui_main

sys.argv += shlex.split(os.environ.get("COMMANDLINE_ARGS", ""))

# What the real launch.py re-exports for extensions (the args are parsed leniently at import, as there).
args = cmd_args.parse_known(sys.argv[1:])
python = sys.executable
git = launch_utils.git_cmd()
index_url = os.environ.get("INDEX_URL", "")
dir_repos = "repositories"
is_installed = launch_utils.is_installed


def run(command: str, desc: str | None = None, errdesc: str | None = None, custom_env: dict[str, str] | None = None,
        live: bool = False) -> str:
    """A shell command, as the real `launch.run`: its stdout, or RuntimeError with the command and its output."""
    if desc is not None:
        print(desc, flush=True)
    result = subprocess.run(command, shell=True, env=os.environ if custom_env is None else custom_env,
                            encoding="utf8", errors="ignore", check=False,
                            **({} if live else {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE}))
    if result.returncode != 0:
        bits = [f"{errdesc or 'Error running command'}.", f"Command: {command}", f"Error code: {result.returncode}"]
        bits += [f"stdout: {result.stdout}"] if result.stdout else []
        bits += [f"stderr: {result.stderr}"] if result.stderr else []
        raise RuntimeError("\n".join(bits))
    return result.stdout or ""


def run_pip(command: str, desc: str | None = None, live: bool = False) -> str | None:
    """`python -m pip <command> --prefer-binary [--index-url $INDEX_URL]` (skipped under --skip-install)."""
    return launch_utils.run_pip(args, shlex.split(command), str(desc))


def repo_dir(name: str) -> str:
    """<checkout>/repositories/<name>."""
    return os.path.join(launch_utils.SCRIPT_PATH, dir_repos, name)


def git_clone(url: str, dir: str, name: str, commithash: str | None = None) -> None:  # noqa: A002 (real name)
    """Clone or move a checkout to a commit, as the real `git_clone`."""
    launch_utils.git_clone(url, Path(dir), name, commithash)


def list_extensions(settings_file: str) -> list[str]:
    """The extension dirs whose installers run."""
    return launch_utils.list_extensions(args, settings_file)


run_extension_installer = launch_utils.run_extension_installer


def main() -> int:
    """Parse argv strictly, run the install steps, then serve."""
    parsed = cmd_args.parse(sys.argv[1:])
    print(f"sdfleet-standin: parsed {webui_main.parsed_summary(parsed)}", flush=True)
    if parsed.dump_sysinfo:  # before any install step, as the real one
        filename = time.strftime("sysinfo-%Y-%m-%d-%H-%M.json", time.gmtime())
        with open(filename, "w", encoding="utf8") as handle:
            handle.write(sysinfo.get(parsed, webui_main.read_settings(parsed)))
        print(f"Sysinfo saved as {filename}. Exiting...", flush=True)
        return 0
    if not parsed.skip_prepare_environment:
        try:
            launch_utils.prepare_environment(parsed)
        except launch_utils.LaunchError as exc:
            print(f"RuntimeError: {exc}", file=sys.stderr, flush=True)
            return 1
        # As in the real launcher, the --exit check sits at the end of prepare_environment(): with
        # --skip-prepare-environment it is never reached and the server starts.
        if "--exit" in sys.argv:
            print("Exiting because of --exit argument", flush=True)
            return 0
    print(f"Launching {'API server' if parsed.nowebui else 'Web UI'} with arguments: {shlex.join(sys.argv[1:])}",
          flush=True)
    return webui_main.start(parsed)


if __name__ == "__main__":
    sys.exit(main())
