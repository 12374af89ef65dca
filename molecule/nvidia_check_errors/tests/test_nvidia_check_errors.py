"""nvidia_check_errors: every refusal happened in converge (block/rescue asserts); here, the hosts are untouched."""
import json

import pytest


@pytest.mark.parametrize("tree", ["/etc", "/opt", "/usr", "/var/lib", "/var/tmp"])
def test_role_changed_nothing_on_the_host(host, tree):
    """Nothing under these trees is newer than the marker prepare wrote last."""
    cmd = host.run(f"find {tree} -xdev -mindepth 1 -newer /var/tmp/sdfleet-prepared -print")
    assert cmd.rc == 0, cmd.stderr
    assert cmd.stdout.strip() == ""


def test_nvidia_smi_stays_missing(host):
    """The no_device/driver_missing cases relied on no nvidia-smi on PATH; nothing installed one."""
    assert not host.exists("nvidia-smi")


def test_fake_configs_are_intact(host):
    """Each case's fake config is still the one prepare wrote (the role never touches it)."""
    for case in host.ansible.get_variables()["error_cases"]:
        if "fake" in case:
            config = host.file(f"/etc/sdfleet/cases/{case.get('id', case['state'])}.json")
            assert json.loads(config.content_string) == case["fake"]
