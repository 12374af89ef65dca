"""model_fetch_wait: the progress line it prints (the polling itself runs in molecule/webui_models_faults)."""
from __future__ import annotations

import pytest

from ansible_collections.sdfleet.toolkit.plugins.action.model_fetch_wait import progress_line


@pytest.mark.parametrize("progress,line", [
    (None, "sd15: waiting for the server"),
    ({}, "sd15: waiting for the server"),
    ({"bytes": 1288490189, "total": 4294967296}, "sd15: 1.2 GiB of 4.0 GiB (30.0%)"),
    ({"bytes": 1048576, "total": 1048576}, "sd15: 1.0 MiB of 1.0 MiB (100.0%)"),
    ({"bytes": 512, "total": None}, "sd15: 512 B (size unknown)"),
    ({"bytes": 0, "total": 2048}, "sd15: 0 B of 2.0 KiB (0.0%)"),
])
def test_progress_line(progress, line):
    assert progress_line("sd15", progress) == line
