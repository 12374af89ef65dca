"""webui_models faults: refusal before download, mismatch keeps the old file, cut transfer resumed with Range."""
from __future__ import annotations

import json
import os

import testinfra.utils.ansible_runner

# The mirror platform is a fixture, not a converged host.
testinfra_hosts = testinfra.utils.ansible_runner.AnsibleRunner(os.environ["MOLECULE_INVENTORY_FILE"]).get_hosts("fleet")
PINS = json.load(open(os.path.join(os.environ["MOLECULE_PROJECT_DIRECTORY"], "build/fixture/pins.json"),
                      encoding="utf-8"))
FILES = PINS["files"]
MODELS = "/opt/sd-webui/models"
MIRROR = "http://webui_models_faults-mirror:8080"


def _stats(host) -> dict:
    return json.loads(host.check_output(f"curl -sf {MIRROR}/_stats"))


def test_mismatch_kept_the_old_file(host):
    f = host.file(f"{MODELS}/Stable-diffusion/tiny-v2.safetensors")
    assert f.content_string == "the old checkpoint\n"


def test_no_partial_file_left(host):
    left = host.run(f"find {MODELS}/.sdfleet-partial -name '*.part' -o -name '*.staged'").stdout.split()
    assert left == []


def test_resumed_checkpoint_in_place(host):
    f = host.file(f"{MODELS}/Stable-diffusion/tiny-v1.safetensors")
    assert f.sha256sum == FILES["tiny-v1.safetensors"]["sha256"]
    assert (f.user, f.mode) == ("sdwebui", 0o644)


def test_dead_mirror_fell_back_to_upstream(host):
    f = host.file(f"{MODELS}/VAE/tiny-vae.safetensors")
    assert f.sha256sum == FILES["tiny-vae.safetensors"]["sha256"]


def test_resume_served_each_byte_once(host):
    """The cut transfer (1 MiB) plus the resumed rest: the whole file once, far below 2x its size."""
    size = FILES["tiny-v1.safetensors"]["size"]
    served = _stats(host)["/files/tiny-v1.safetensors"]
    assert served["requests"] == 2 and served["bytes"] == size < 2 * size, served


def test_unverified_model_never_requested(host):
    assert "/files/tiny-embedding.pt" not in _stats(host)
    assert not host.file("/opt/sd-webui/embeddings/tiny-embedding.pt").exists
