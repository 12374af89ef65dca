"""install_wait: the progress line it prints from the install log's tail (the polling is model_fetch_wait's)."""
from __future__ import annotations

import pytest

from ansible_collections.sdfleet.toolkit.plugins.module_utils.install_progress import current_run, install_progress

OLD_RUN = """=== sdfleet webui_repo install run, stamp aaa: launch.py --exit
Installing requirements
Collecting old-package==1.0
Exiting because of --exit argument
"""
RUN = """=== sdfleet webui_repo install run, stamp bbb: launch.py --exit --skip-torch-cuda-test
Python 3.11.2 (main, Mar 13 2023, 12:18:29) [GCC 12.2.0]
Version: v1.10.1
Installing torch and torchvision
Looking in indexes: http://mirror:8080/simple/, http://mirror:8080/torch/cu121/
Collecting torch==2.1.2
  Downloading http://mirror:8080/torch/cu121/torch/torch-2.1.2-cp311-cp311-manylinux1_x86_64.whl (670.2 MB)
Collecting filelock (from torch==2.1.2)
  Downloading filelock-3.13.1-py3-none-any.whl (11 kB)
Collecting nvidia-cudnn-cu12==8.9.2.26 (from torch==2.1.2)
  Downloading nvidia_cudnn_cu12-8.9.2.26-py3-none-manylinux1_x86_64.whl (731.7 MB)
"""


def test_only_the_current_run_counts():
    assert current_run(OLD_RUN + RUN).startswith("Python 3.11.2")
    assert current_run("no marker\n") == "no marker\n"
    assert current_run(OLD_RUN.splitlines()[0]) == ""


@pytest.mark.parametrize("text,elapsed,line", [
    ("", 3, "webui install: starting; 3 s"),
    (OLD_RUN + "=== sdfleet webui_repo install run, stamp c\n", 12, "webui install: starting; 12 s"),
    (OLD_RUN + RUN, 250, "webui install: Installing torch and torchvision - 3 packages collected, downloading "
                         "nvidia_cudnn_cu12-8.9.2.26-py3-none-manylinux1_x86_64.whl (731.7 MB); 4 min 10 s"),
    (RUN + "Collecting jinja2\n", 61, "webui install: Installing torch and torchvision - 4 packages collected; "
                                     "1 min 1 s"),
    (RUN + "Installing collected packages: mpmath, filelock, torch\n", 400,
     "webui install: Installing torch and torchvision - installing 3 packages; 6 min 40 s"),
    # a new step starts its own count
    (RUN + "Successfully installed torch-2.1.2\nInstalling clip\nCollecting ftfy\n", 30,
     "webui install: Installing clip - 1 package collected; 30 s"),
    (RUN + "Cloning K-diffusion into /opt/sd-webui/repositories/k-diffusion...\n", 90,
     "webui install: Cloning K-diffusion; 1 min 30 s"),
    (RUN + "Installing sd-dynamic-prompts requirements.txt\n", 5,
     "webui install: Installing sd-dynamic-prompts requirements.txt; 5 s"),
])
def test_the_line_says_what_is_installed_and_how_far(text, elapsed, line):
    assert install_progress(text, elapsed) == line


def test_no_retry_countdown_and_long_names_are_cut():
    text = RUN + "  Downloading " + "x" * 200 + ".whl (1.0 GB)\n"
    line = install_progress(text, 5)
    assert "retries" not in line and len(line) < 200 and line.endswith("... (1.0 GB); 5 s")
