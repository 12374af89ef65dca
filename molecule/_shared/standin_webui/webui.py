"""The real webui.py is the app; in the stand-in it simply runs the launcher (`python webui.py` works too)."""

from __future__ import annotations

import sys

import launch

if __name__ == "__main__":
    sys.exit(launch.main())
