# -*- coding: utf-8 -*-
"""What a running webui install is doing, read from the end of its log: one line for a progress message.

The install log (``/var/log/sd-webui/install.log``) holds every install run, each opened by a marker line
(``=== sdfleet webui_repo install run ...``). Within the current run the launcher prints its steps
(``Installing torch and torchvision``, ``Installing requirements``, ``Cloning K-diffusion into ...``, an
extension's ``Installing sd-dynamic-prompts requirements.txt``) and pip prints ``Collecting <requirement>``,
``Downloading <file> (<size>)`` and ``Installing collected packages: ...``. Pure functions, no Ansible import.
"""
from __future__ import annotations

import re

MARKER = "=== sdfleet webui_repo install run"
_STEP = re.compile(r"^(Installing (?!collected packages).+|Cloning .+? into|Fetching updates for .+|"
                   r"Checking out commit for .+?(?= with hash)|Launching Web UI|Exiting because of --exit argument)")
_COLLECT = re.compile(r"^\s*Collecting (\S+)")
_DOWNLOAD = re.compile(r"^\s*Downloading (\S+?)(?: \(([^)]+)\))?\s*$")
_PACKAGES = re.compile(r"^\s*Installing collected packages: (.+)$")


def current_run(text: str, marker: str = MARKER) -> str:
    """The part of ``text`` after the last ``marker`` line (all of it when there is none)."""
    at = text.rfind(marker)
    return text if at < 0 else text[text.find("\n", at) + 1:] if "\n" in text[at:] else ""


def _short(name: str, width: int = 60) -> str:
    """A file or requirement name cut to ``width`` characters (wheel names are long)."""
    name = name.rsplit("/", 1)[-1]
    return name if len(name) <= width else name[: width - 3] + "..."


def install_progress(text: str, elapsed: float, label: str = "webui install") -> str:
    """One line for the current run in ``text`` (the log's tail): the launcher's step, pip's count and last
    download, and the time since the wait began, e.g. ``webui install: Installing requirements - 23 packages
    collected, downloading torch-2.1.2-cp311-cp311-manylinux1_x86_64.whl (670.2 MB); 4 min 10 s``."""
    step, collected, download, packages = "", 0, "", 0
    for line in current_run(text).splitlines():
        line = line.rstrip("\r")
        if match := _STEP.match(line):
            step = match.group(1).strip().removesuffix(" into")
            collected, download, packages = 0, "", 0
        elif match := _COLLECT.match(line):
            collected += 1
            download = ""
        elif match := _DOWNLOAD.match(line):
            download = _short(match.group(1)) + (f" ({match.group(2)})" if match.group(2) else "")
        elif match := _PACKAGES.match(line):
            packages = len([p for p in match.group(1).split(",") if p.strip()])
    minutes, seconds = divmod(int(elapsed), 60)
    took = f"{minutes} min {seconds} s" if minutes else f"{seconds} s"
    if not step and not collected:
        return f"{label}: starting; {took}"
    def count(n: int) -> str:
        return f"{n} package{'' if n == 1 else 's'}"

    parts = []
    if packages:
        parts.append(f"installing {count(packages)}")
    elif download:
        parts.append(f"{count(collected)} collected, downloading {download}" if collected else f"downloading {download}")
    elif collected:
        parts.append(f"{count(collected)} collected")
    detail = f" - {', '.join(parts)}" if parts else ""
    return f"{label}: {step or 'pip'}{detail}; {took}"
