"""webui_models happy path: placement per kind, modes, sources, removal, the fact, one upstream transfer per file."""
from __future__ import annotations

import hashlib
import json
import os

import testinfra.utils.ansible_runner

import pytest

# The mirror platform is a fixture, not a converged host.
testinfra_hosts = testinfra.utils.ansible_runner.AnsibleRunner(os.environ["MOLECULE_INVENTORY_FILE"]).get_hosts("fleet")
PINS = json.load(open(os.path.join(os.environ["MOLECULE_PROJECT_DIRECTORY"], "build/fixture/pins.json"),
                      encoding="utf-8"))
FILES = PINS["files"]
MODELS = "/opt/sd-webui/models"
PLACED = [  # (path, pin, kind)
    (f"{MODELS}/Stable-diffusion/tiny-v1.safetensors", "tiny-v1.safetensors", "checkpoint"),
    (f"{MODELS}/VAE/tiny-vae.safetensors", "tiny-vae.safetensors", "vae"),
    ("/opt/sd-webui/embeddings/tiny-embedding.pt", "tiny-embedding.pt", "embedding"),
    (f"{MODELS}/GFPGAN/GFPGANv1.4.pth", "GFPGANv1.4.pth", "gfpgan"),
    (f"{MODELS}/ESRGAN/4x-tiny.safetensors", "tiny-v2.safetensors", "esrgan"),
]
URL_FILES = ["tiny-v1.safetensors", "tiny-vae.safetensors", "tiny-embedding.pt"]


@pytest.mark.parametrize("path,pin,kind", PLACED, ids=[p[2] for p in PLACED])
def test_model_placed_verified_and_owned(host, path, pin, kind):
    f = host.file(path)
    assert f.is_file and not f.is_symlink, path
    assert f.sha256sum == FILES[pin]["sha256"]
    assert (f.user, f.group, f.mode) == ("sdwebui", "sdwebui", 0o644)


def test_embedding_not_under_models(host):
    assert not host.file(f"{MODELS}/embeddings").exists
    assert not host.file(f"{MODELS}/tiny-embedding.pt").exists


def test_shared_path_link(host):
    link = host.file(f"{MODELS}/Lora/tiny-v2.safetensors")
    assert link.is_symlink and link.linked_to == "/srv/nfs/models/tiny-v2.safetensors"


def test_absent_model_removed(host):
    assert not host.file(f"{MODELS}/Lora/old-style.safetensors").exists


@pytest.mark.parametrize("sub", ["Stable-diffusion", "VAE", "Lora", "GFPGAN", "ESRGAN"])
def test_dirs_owned_and_not_world_writable(host, sub):
    d = host.file(f"{MODELS}/{sub}")
    assert d.is_directory and (d.user, d.mode) == ("sdwebui", 0o755)


PARTIAL = "/var/lib/sdfleet/models-partial"
OLD_VAE = "an older vae\n"
OLD_VAE_ASIDE = f"{MODELS}/VAE/tiny-vae.safetensors.sdfleet-replaced-" + hashlib.sha256(OLD_VAE.encode()).hexdigest()[:12]


def test_nothing_partial_or_staged_left(host):
    partial = host.file(PARTIAL)
    assert partial.is_directory and (partial.user, partial.mode) == ("root", 0o700)
    assert not host.file(f"{MODELS}/.sdfleet-partial").exists  # never inside a tree the service user can write
    left = host.run(f"find {PARTIAL} -name '*.part' -o -name '*.staged'").stdout.split()
    assert left == []


def test_different_file_moved_aside_not_lost(host):
    """The file that was where the VAE goes is next to it, renamed (the webui lists no such extension)."""
    aside = host.file(OLD_VAE_ASIDE)
    assert aside.is_file and aside.content_string == OLD_VAE
    facts = {m["name"]: m for m in json.loads(host.file("/root/sdfleet_models.json").content_string)}
    assert facts["tiny-vae"]["set_aside"] == [OLD_VAE_ASIDE]
    assert facts["tiny-v1"]["set_aside"] == []


def test_fact_has_the_webui_hashes(host):
    facts = {m["name"]: m for m in json.loads(host.file("/root/sdfleet_models.json").content_string)}
    assert set(facts) == {"tiny-v1", "tiny-vae", "tiny-embedding", "gfpgan", "shared-lora", "shared-upscaler"}
    v1 = facts["tiny-v1"]
    pin = FILES["tiny-v1.safetensors"]
    assert (v1["kind"], v1["path"]) == ("checkpoint", f"{MODELS}/Stable-diffusion/tiny-v1.safetensors")
    assert (v1["sha256"], v1["short_hash"], v1["legacy_hash"]) == (pin["sha256"], pin["short_hash"],
                                                                   pin["legacy_hash"])
    assert facts["gfpgan"]["sha256"] == FILES["GFPGANv1.4.pth"]["sha256"]
    assert facts["shared-lora"]["legacy_hash"] == FILES["tiny-v2.safetensors"]["legacy_hash"]


def test_upstream_served_each_file_once_for_three_hosts(host):
    """Controller cache: three hosts (and the idempotence and check runs) cost one transfer per file."""
    stats = json.loads(host.check_output("curl -sf http://webui_models-mirror:8080/_stats"))
    for name in URL_FILES:
        assert stats.get(f"/files/{name}") == {"requests": 1, "bytes": FILES[name]["size"]}, (name, stats)
    # controller and shared-path sources never touch the mirror
    assert "/files/GFPGANv1.4.pth" not in stats and "/files/tiny-v2.safetensors" not in stats
