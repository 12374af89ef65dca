"""Entry point of the stand-in webui (a test fixture; see README.md), shaped like the real v1.10.1 launch.py."""

from __future__ import annotations

import os
import shlex
import sys

from modules import cmd_args, launch_utils, webui_main


def main() -> int:
    """Append COMMANDLINE_ARGS to argv, parse it strictly, run the install steps, then serve."""
    sys.argv += shlex.split(os.environ.get("COMMANDLINE_ARGS", ""))
    args = cmd_args.parse(sys.argv[1:])
    print(f"sdfleet-standin: parsed {webui_main.parsed_summary(args)}", flush=True)
    if not args.skip_prepare_environment:
        try:
            launch_utils.prepare_environment(args)
        except launch_utils.LaunchError as exc:
            print(f"RuntimeError: {exc}", file=sys.stderr, flush=True)
            return 1
        # As in the real launcher, the --exit check sits at the end of prepare_environment(): with
        # --skip-prepare-environment it is never reached and the server starts.
        if "--exit" in sys.argv:
            print("Exiting because of --exit argument", flush=True)
            return 0
    print(f"Launching Web UI with arguments: {shlex.join(sys.argv[1:])}", flush=True)
    return webui_main.start(args)


if __name__ == "__main__":
    sys.exit(main())
