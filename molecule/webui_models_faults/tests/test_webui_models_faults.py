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
    left = host.run("find /var/lib/sdfleet/models-partial -name '*.part' -o -name '*.staged'").stdout.split()
    assert left == []


CANARY = "root:x:0:0:sdfleet canary:/root:/bin/sh\n"


def test_planted_link_targets_unchanged(host):
    """The canary file, its dir and /root: same bytes, owner and mode as prepare left them, nothing added."""
    f = host.file("/etc/sdfleet-canary/passwd")
    assert (f.content_string, f.user, f.group, f.mode) == (CANARY, "root", "root", 0o644)
    d = host.file("/etc/sdfleet-canary")
    assert (d.user, d.group, d.mode) == ("root", "root", 0o755)
    assert host.run("ls -A /etc/sdfleet-canary").stdout.split() == ["passwd"]
    root = host.file("/root")
    assert (root.user, root.mode) == ("root", 0o700)
    assert not host.file("/root/tiny-v2.safetensors").exists


def test_planted_links_left_as_they_were(host):
    """Refused, not followed nor replaced: the service user's links and partial dir are still its own."""
    def owner(path: str) -> str:  # of the link itself (File.user follows it: stat -L)
        return host.check_output(f"stat -c %U {path}")

    for link, target in (("Lora", "/etc/sdfleet-canary"), ("hypernetworks", "/root")):
        f = host.file(f"{MODELS}/{link}")
        assert f.is_symlink and f.linked_to == target and owner(f.path) == "sdwebui", link
    partial = host.file(f"{MODELS}/.sdfleet-partial")
    assert partial.is_directory and (partial.user, partial.mode) == ("sdwebui", 0o755)
    part = host.file(f"{MODELS}/.sdfleet-partial/{FILES['tiny-v2.safetensors']['sha256']}.part")
    assert part.is_symlink and owner(part.path) == "sdwebui"
    assert not host.file(f"{MODELS}/Stable-diffusion/planted.safetensors").exists


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
