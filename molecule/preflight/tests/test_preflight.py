"""preflight (after nvidia_check over a fake nvidia-smi) only reads: after converge, idempotence and check, neither
host holds anything new."""
import pytest

# Paths that change without preflight's doing (Ansible's own runtime, the kernel, logs).
EPHEMERAL = ("/proc", "/sys", "/dev", "/run", "/tmp", "/root/.ansible", "/var/log", "/var/cache")


def test_accounts_unchanged_no_new_users(host):
    check = host.run("sha256sum -c /root/preflight-accounts.sha256")
    assert check.rc == 0, check.stdout + check.stderr


@pytest.mark.parametrize("path", ["/opt/sd-webui", "/opt/sd webui", "/var/lib/sd-webui"])
def test_install_dirs_not_created(host, path):
    assert not host.file(path).exists


def test_no_file_written_since_prepare(host):
    prune = " -o ".join(f"-path {p}" for p in EPHEMERAL)
    out = host.run(f"find / -xdev \\( {prune} \\) -prune -o -newer /root/preflight-marker -print")
    assert out.rc == 0, out.stderr
    assert out.stdout.split() == [], out.stdout


def test_port_holder_left_running(host):
    # preflight reports who holds the port; it never stops anything.
    assert host.socket("tcp://0.0.0.0:7860").is_listening


def test_good_host_port_holder_is_our_user(host):
    if host.backend.get_hostname() != "preflight-good":
        pytest.skip("only the good host runs its listener as sdwebui")
    out = host.run("ss -Hltne 'sport = :7860'")
    uid = out.stdout.split(" uid:")[1].split()[0]
    assert uid == host.run("id -u sdwebui").stdout.strip()


def test_bad_host_keeps_its_model_and_both_port_holders(host):
    # The refusal of instance 1's port and of the models' space read, and left, what they found.
    if host.backend.get_hostname() != "preflight-bad":
        pytest.skip("only the bad host holds instance 1's port and a model")
    assert host.socket("tcp://0.0.0.0:7861").is_listening
    assert host.file("/var/tmp/models/Stable-diffusion/have.safetensors").content_string == "already here\n"
