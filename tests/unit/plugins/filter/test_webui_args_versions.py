"""webui_args against the real parser of each webui version (module_utils/webui_flags.py, derived from upstream)."""
from __future__ import annotations

import pathlib

import pytest
import yaml
from ansible.errors import AnsibleFilterError

from ansible_collections.sdfleet.toolkit.plugins.filter import gpu_tier
from ansible_collections.sdfleet.toolkit.plugins.filter import webui_args as mod
from ansible_collections.sdfleet.toolkit.plugins.module_utils import webui_flags as data

ROLE_DEFAULTS = yaml.safe_load((pathlib.Path(__file__).resolve().parents[4] / "roles/nvidia_check/defaults/main.yml")
                               .read_text(encoding="utf-8"))
FULL = {"index": 0, "tier": "full", "flags": ["--xformers"]}
TIER_RECORDS = {
    "cpu": {"tier": "cpu", "flags": ROLE_DEFAULTS["nvidia_check_cpu_flags"]},
    "lowvram": {"index": 0, "tier": "lowvram", "flags": ["--lowvram", "--xformers"]},
    "medvram": {"index": 0, "tier": "medvram", "flags": ["--medvram", "--xformers"]},
    "medvram_sdxl": {"index": 0, "tier": "medvram_sdxl", "flags": ["--medvram-sdxl", "--xformers"]},
    "full": FULL,
}
# Every option of webui_args that makes it emit a flag of its own.
ALL_OPTIONS = {"listen": True, "share": True, "auth_path": "/etc/sd-webui/gradio-auth", "api": True,
               "data_dir": "/var/lib/sd-webui/instance-0", "models_dir": "/opt/models",
               "embeddings_dir": "/opt/embeddings", "freeze_settings": True, "insecure_extension_access": True,
               "theme": "dark"}


def flags_of(args: list[str]) -> list[str]:
    return [a for a in args if a.startswith("--")]


# (b) flags the hand-written list refused although the real v1.10.1 parser accepts them
@pytest.mark.parametrize("extra", ["--api-log", "--no-gradio-queue", "--timeout-keep-alive 30",
                                   "--gradio-allowed-path /x", "--skip-version-check", "--ckpt-dir /srv/ckpt",
                                   "--codeformer-models-path /m/cf", "--esrgan-models-path /m/esrgan",
                                   "--ldsr-models-path /m/ldsr", "--log-startup",
                                   "--ui-settings-file /x/config.json", "--filenames-max-length 100"])
@pytest.mark.parametrize("version", ["", "v1.10.1", "dev"])
def test_real_flags_now_accepted(extra, version):
    args = mod.webui_args(FULL, 7860, extra_args=[extra], webui_version=version)
    i = args.index(extra.split()[0])
    assert args[i:i + len(extra.split())] == extra.split()


def test_default_version_is_v1_10_1():
    assert mod.DEFAULT_WEBUI_VERSION == "v1.10.1"
    assert mod.ALLOWED_FLAGS == {f: s["arity"] for f, s in data.FLAGS["v1.10.1"].items()}
    assert set(mod.WEBUI_VERSIONS) == set(data.FLAGS)


def test_repeatable_flags_add_up():
    args = mod.webui_args(FULL, 7860, extra_args=["--gradio-allowed-path /a", "--gradio-allowed-path=/b",
                                                  "--gradio-allowed-path /a"])
    assert [args[i + 1] for i, a in enumerate(args) if a == "--gradio-allowed-path"] == ["/a", "/b"]


# (c) an unknown flag is still refused, and the message says why and what to do
def test_unknown_flag_refused_with_hint():
    with pytest.raises(AnsibleFilterError) as err:
        mod.webui_args(FULL, 7860, extra_args=["--api-logg"])
    msg = str(err.value)
    assert msg.startswith("webui_service_extra_args: --api-logg is not a known AUTOMATIC1111 webui v1.10.1 flag")
    assert "did you mean --api-log?" in msg and "exits on unknown flags" in msg


@pytest.mark.parametrize("version", ["v1.9.4", "v1.10.1", "dev", "some-branch"])
def test_made_up_flag_refused_in_every_version(version):
    with pytest.raises(AnsibleFilterError, match="--turbo-mode is not a known AUTOMATIC1111 webui"):
        mod.webui_args(FULL, 7860, extra_args=["--turbo-mode"], webui_version=version)


def test_flag_of_another_version_refused_naming_it():
    assert "--uv" in mod.webui_args(FULL, 7860, extra_args=["--uv"], webui_version="dev")
    with pytest.raises(AnsibleFilterError, match=r"--uv is not a flag of AUTOMATIC1111 webui v1\.10\.1 .*only dev"):
        mod.webui_args(FULL, 7860, extra_args=["--uv"], webui_version="v1.10.1")
    with pytest.raises(AnsibleFilterError, match=r"--uv is not a flag of AUTOMATIC1111 webui v1\.10\.1"):
        mod.webui_args(FULL, 7860, extra_args=["--uv"])  # the default version


def test_version_by_commit_and_unknown_ref():
    commit = data.SOURCES["dev"]["commit"]
    assert "--uv" in mod.webui_args(FULL, 7860, extra_args=["--uv"], webui_version=commit[:10])
    label, specs = mod.webui_flag_specs("v1.10.0")
    assert "not a listed version" in label and set(specs) == set().union(*map(set, data.FLAGS.values()))


def test_values_checked_against_the_parser():
    with pytest.raises(AnsibleFilterError, match="use one of full, autocast"):
        mod.webui_args(FULL, 7860, extra_args=["--precision half"], webui_version="v1.9.4")
    assert "half" in mod.webui_args(FULL, 7860, extra_args=["--precision half"], webui_version="v1.10.1")
    with pytest.raises(AnsibleFilterError, match=r"--timeout-keep-alive takes a number \(int\), not 'soon'"):
        mod.webui_args(FULL, 7860, extra_args=["--timeout-keep-alive soon"])


@pytest.mark.parametrize("source", ["extra_args", "record"])
@pytest.mark.parametrize("flag,variable", [("--gradio-auth a:b", "webui_service_auth_users"),
                                           ("--api-auth a:b", "webui_service_api_auth_users"),
                                           ("--listen", "webui_service_listen"),
                                           ("--device-id 1", "CUDA_VISIBLE_DEVICES")])
def test_managed_flags_refused_from_every_source(source, flag, variable):
    """The parser knows them, but the role owns them: refused in extra args and in GPU records alike."""
    kwargs = {"extra_args": [flag]} if source == "extra_args" else {}
    gpu = FULL if source == "extra_args" else {"tier": "full", "flags": [flag]}
    with pytest.raises(AnsibleFilterError, match=f"is managed by the role; set .*{variable}"):
        mod.webui_args(gpu, 7860, **kwargs)


@pytest.mark.parametrize("flag", sorted(mod.REFUSED_FLAGS))
@pytest.mark.parametrize("version", mod.WEBUI_VERSIONS)
def test_refused_flags_stay_refused(flag, version):
    with pytest.raises(AnsibleFilterError, match="is refused"):
        mod.webui_args(FULL, 7860, extra_args=[flag + (" tok" if flag == "--ngrok" else "")], webui_version=version)


# (d) every flag the role renders is a flag of the real parser of every supported version
@pytest.mark.parametrize("version", mod.WEBUI_VERSIONS)
def test_role_tables_name_real_flags(version):
    known = data.FLAGS[version]
    tier_flags = [flag for row in ROLE_DEFAULTS["nvidia_check_tier_table"] for flag in row["flags"]]
    tables = {*flags_of(ROLE_DEFAULTS["nvidia_check_cpu_flags"]), *tier_flags, *mod.VRAM_FLAGS_LOW_FIRST,
              *mod.CUDA_ONLY_FLAGS, *mod.MANAGED_FLAGS, *mod.REFUSED_FLAGS, "--no-download-sd-model"}
    missing = tables - set(known)
    assert missing == ({"--models-dir"} if version == "v1.9.4" else set()), missing


@pytest.mark.parametrize("tier", sorted(TIER_RECORDS))
@pytest.mark.parametrize("version", mod.WEBUI_VERSIONS)
def test_rendered_args_are_real_flags(version, tier):
    options = dict(ALL_OPTIONS)
    if version == "v1.9.4":
        options.pop("models_dir")  # v1.9.4 has no --models-dir: see the next test
    for exposure in ({}, {"listen": False, "listen_address": "10.0.0.5"}):
        args = mod.webui_args(TIER_RECORDS[tier], 7860, webui_version=version, **(options | exposure))
        unknown = [f for f in flags_of(args) if f not in data.FLAGS[version]]
        assert unknown == [], (version, tier, args)
        if "--precision" in args:
            assert args[args.index("--precision") + 1] in data.FLAGS[version]["--precision"]["choices"]


@pytest.mark.parametrize("version", mod.WEBUI_VERSIONS)
def test_gpu_record_flags_are_real_flags(version):
    """The flags nvidia_check writes into GPU records (tier table, quirks, attention, cpu recipe) parse."""
    defaults = yaml.safe_load((pathlib.Path(__file__).resolve().parents[4] / "roles" / "nvidia_check" / "defaults"
                               / "main.yml").read_text(encoding="utf-8"))
    record_flags = [*gpu_tier.CPU_FLAGS, *defaults["nvidia_check_cpu_flags"],
                    *(f for row in defaults["nvidia_check_tier_table"] for f in row["flags"]),
                    *(f for row in defaults["nvidia_check_quirks"] for f in row["flags"]),
                    *(f for flags in gpu_tier.ATTENTION_FLAGS.values() for f in flags)]
    assert mod.parse_flags(record_flags, "sdfleet_gpu GPU record flags", version)
    assert not [f for f in record_flags if f.startswith("--") and f not in data.FLAGS[version]]


def test_models_dir_refused_for_v1_9_4():
    with pytest.raises(AnsibleFilterError, match=r"webui_service_models_dir: the role would pass --models-dir, which "
                       r"AUTOMATIC1111 webui v1\.9\.4 does not know \(only v1\.10\.1, dev"):
        mod.webui_args(FULL, 7860, models_dir="/opt/models", webui_version="v1.9.4")
    assert "--models-dir" not in mod.webui_args(FULL, 7860, webui_version="v1.9.4")


def test_plan_passes_the_version_through():
    facts = {"tier": "full", "gpus": [FULL]}
    with pytest.raises(AnsibleFilterError, match="only dev"):
        mod.webui_plan(facts, 7860, extra_args=["--uv"], webui_version="v1.10.1")
    assert "--uv" in mod.webui_plan(facts, 7860, extra_args=["--uv"], webui_version="dev")[0]["args"]


def test_aliases_stand_for_their_flag(monkeypatch):
    """No supported version has aliases today; a parser that gains one is handled as argparse does."""
    monkeypatch.setitem(data.FLAGS["v1.10.1"], "--xf", {"arity": 0, "alias_of": "--xformers"})
    monkeypatch.setitem(data.FLAGS["v1.10.1"], "--bind-all", {"arity": 0, "alias_of": "--listen"})
    assert mod.webui_args({"tier": "full", "flags": ["--xf"]}, 7860, extra_args=["--xformers"]).count("--xformers") == 1
    with pytest.raises(AnsibleFilterError, match=r"--bind-all \(an alias of --listen\) is managed by the role"):
        mod.webui_args(FULL, 7860, extra_args=["--bind-all"])
