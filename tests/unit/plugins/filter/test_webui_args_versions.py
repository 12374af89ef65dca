"""webui_args against the real parser of each webui version (module_utils/webui_flags.py, derived from upstream)."""
from __future__ import annotations

import pathlib

import pytest
import yaml
from ansible.errors import AnsibleFilterError
from refusal_catalog import refused

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


def refusal(call, *args, **kwargs) -> str:
    """The message of the AnsibleFilterError that ``call`` raises (fails when it raises none)."""
    with pytest.raises(AnsibleFilterError) as err:
        call(*args, **kwargs)
    return str(err.value)


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
    msg = refused("webui_service", "webui_service_extra_args", ["--api-logg"],
                  refusal(mod.webui_args, FULL, 7860, extra_args=["--api-logg"]),
                  expect=["did you mean --api-log?", "exits on unknown flags"])
    assert msg.startswith("sdfleet_extra_args (webui_service_extra_args): --api-logg is not a known AUTOMATIC1111 "
                          "webui v1.10.1 flag")


@pytest.mark.parametrize("version", ["v1.9.4", "v1.10.1", "dev", "some-branch"])
def test_made_up_flag_refused_in_every_version(version):
    refused("webui_service", "webui_service_extra_args", {"extra_args": ["--turbo-mode"], "webui_version": version},
            refusal(mod.webui_args, FULL, 7860, extra_args=["--turbo-mode"], webui_version=version),
            expect=["--turbo-mode is not a known AUTOMATIC1111 webui"])


def test_flag_of_another_version_refused_naming_it():
    assert "--uv" in mod.webui_args(FULL, 7860, extra_args=["--uv"], webui_version="dev")
    refused("webui_service", "webui_service_extra_args", {"extra_args": ["--uv"], "webui_version": "v1.10.1"},
            refusal(mod.webui_args, FULL, 7860, extra_args=["--uv"], webui_version="v1.10.1"),
            expect=["--uv is not a flag of AUTOMATIC1111 webui v1.10.1", "only dev has it"])
    with pytest.raises(AnsibleFilterError, match=r"--uv is not a flag of AUTOMATIC1111 webui v1\.10\.1"):
        mod.webui_args(FULL, 7860, extra_args=["--uv"])  # the default version


def test_version_by_commit_and_unknown_ref():
    commit = data.SOURCES["dev"]["commit"]
    assert "--uv" in mod.webui_args(FULL, 7860, extra_args=["--uv"], webui_version=commit[:10])
    label, specs = mod.webui_flag_specs("v1.10.0")
    assert "not a listed version" in label and set(specs) == set().union(*map(set, data.FLAGS.values()))


def test_values_checked_against_the_parser():
    refused("webui_service", "webui_service_extra_args", {"extra_args": ["--precision half"], "webui_version": "v1.9.4"},
            refusal(mod.webui_args, FULL, 7860, extra_args=["--precision half"], webui_version="v1.9.4"),
            expect=["use one of full, autocast"])
    assert "half" in mod.webui_args(FULL, 7860, extra_args=["--precision half"], webui_version="v1.10.1")
    refused("webui_service", "webui_service_extra_args", ["--timeout-keep-alive soon"],
            refusal(mod.webui_args, FULL, 7860, extra_args=["--timeout-keep-alive soon"]),
            expect=["--timeout-keep-alive takes a number (int), not 'soon'"])


@pytest.mark.parametrize("source", ["extra_args", "record"])
@pytest.mark.parametrize("flag,variable", [("--gradio-auth a:b", "webui_service_auth_users"),
                                           ("--api-auth a:b", "webui_service_api_auth_users"),
                                           ("--listen", "webui_service_listen"),
                                           ("--device-id 1", "CUDA_VISIBLE_DEVICES")])
def test_managed_flags_refused_from_every_source(source, flag, variable):
    """The parser knows them, but the role owns them: refused in extra args and in GPU records alike."""
    kwargs = {"extra_args": [flag]} if source == "extra_args" else {}
    gpu = FULL if source == "extra_args" else {"tier": "full", "flags": [flag]}
    message = refusal(mod.webui_args, gpu, 7860, **kwargs)
    if source == "extra_args":
        refused("webui_service", "webui_service_extra_args", [flag], message, expect=["is managed by the role", variable])
    else:
        refused("webui_service", "sdfleet_gpu flags", gpu, message, expect=["is managed by the role", variable])


@pytest.mark.parametrize("flag", sorted(mod.REFUSED_FLAGS))
@pytest.mark.parametrize("version", mod.WEBUI_VERSIONS)
def test_refused_flags_stay_refused(flag, version):
    extra = [flag + (" tok" if flag == "--ngrok" else "")]
    refused("webui_service", "webui_service_extra_args", {"extra_args": extra, "webui_version": version},
            refusal(mod.webui_args, FULL, 7860, extra_args=extra, webui_version=version), expect=["is refused"])


# (d) every flag the role renders is a flag of the real parser of every supported version
@pytest.mark.parametrize("version", mod.WEBUI_VERSIONS)
def test_role_tables_name_real_flags(version):
    known = data.FLAGS[version]
    tier_flags = [flag for row in ROLE_DEFAULTS["nvidia_check_tier_table"] for flag in row["flags"]]
    tables = {*flags_of(ROLE_DEFAULTS["nvidia_check_cpu_flags"]), *tier_flags, *mod.VRAM_FLAGS_LOW_FIRST,
              *mod.CUDA_ONLY_FLAGS, *mod.MANAGED_FLAGS, *mod.REFUSED_FLAGS, "--no-download-sd-model"}
    missing = tables - set(known)
    assert missing == ({"--models-dir"} if version == "v1.9.4" else set()), missing
    # what stands in for --models-dir where it is missing: real flags of every version
    assert {flag for flag, _sub in mod.MODELS_SUBDIR_FLAGS} - set(known) == set()


@pytest.mark.parametrize("tier", sorted(TIER_RECORDS))
@pytest.mark.parametrize("version", mod.WEBUI_VERSIONS)
def test_rendered_args_are_real_flags(version, tier):
    options = dict(ALL_OPTIONS)  # v1.9.4 has no --models-dir: the per-kind flags stand in (see below)
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


def test_models_dir_becomes_the_per_kind_flags_where_the_parser_lacks_it():
    """v1.9.4 has no --models-dir (its models path is <data dir>/models): the shared models dir is passed kind
    by kind (--ckpt-dir, --vae-dir, --lora-dir, ...), each a subdir of it; v1.10.1 and dev get --models-dir."""
    old = mod.webui_args(FULL, 7860, models_dir="/opt/models/", data_dir="/var/lib/sd-webui/instance-0",
                         webui_version="v1.9.4")
    assert "--models-dir" not in old
    for flag, sub in mod.MODELS_SUBDIR_FLAGS:
        assert old[old.index(flag) + 1] == f"/opt/models/{sub}", (flag, old)
    assert old[old.index("--ckpt-dir") + 1] == "/opt/models/Stable-diffusion"
    for version in ("v1.10.1", "dev"):
        new = mod.webui_args(FULL, 7860, models_dir="/opt/models", webui_version=version)
        assert new[new.index("--models-dir") + 1] == "/opt/models" and "--ckpt-dir" not in new
    assert not {f for f, _ in mod.MODELS_SUBDIR_FLAGS} & set(mod.webui_args(FULL, 7860, webui_version="v1.9.4"))


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
    assert "--bind-all (an alias of --listen) is managed by the role" in refusal(mod.webui_args, FULL, 7860,
                                                                                extra_args=["--bind-all"])


# (e) CORS settings that match every origin are refused while the UI is exposed
CORS_WILD = [["--cors-allow-origins *"], ["--cors-allow-origins=*"], ["--cors-allow-origins https://a.example,*"],
             ["--cors-allow-origins null"], ["--cors-allow-origins-regex .*"], ["--cors-allow-origins-regex .+"],
             ["--cors-allow-origins-regex 'https?://.*'"], ["--cors-allow-origins-regex '(https|http)://[^/]+'"],
             ["--cors-allow-origins-regex '.*|x'"]]
EXPOSED = {"listen": {"listen": True}, "address": {"listen_address": "10.0.0.5"}, "share": {"share": True},
           "front_door": {"listen_address": "127.0.0.1", "exposed": True}}


@pytest.mark.parametrize("extra", CORS_WILD)
def test_cors_wildcards_are_refused_while_exposed(extra):
    for how, options in EXPOSED.items():
        message = refusal(mod.webui_args, FULL, 7860, extra_args=extra, **options)
        assert "sdfleet_extra_args (webui_service_extra_args)" in message and "Fix:" in message, how
    refused("webui_service", "webui_service_extra_args", {"extra_args": extra, "listen": True},
            refusal(mod.webui_args, FULL, 7860, extra_args=extra, listen=True), expect=["on an exposed server"])


@pytest.mark.parametrize("extra", CORS_WILD)
def test_cors_wildcards_are_accepted_on_loopback(extra):
    assert "--cors-allow-origins" in " ".join(mod.webui_args(FULL, 7860, extra_args=extra))


@pytest.mark.parametrize("extra", [["--cors-allow-origins https://app.example.org,https://b.example.org"],
                                   [r"--cors-allow-origins-regex 'https://([a-z]+\.)?example\.org'"]])
def test_exact_cors_origins_are_accepted_while_exposed(extra):
    assert "--cors-allow-origins" in " ".join(mod.webui_args(FULL, 7860, extra_args=extra, listen=True))


def test_a_cors_regex_that_does_not_compile_is_refused():
    extra = ["--cors-allow-origins-regex '(unclosed'"]
    refused("webui_service", "webui_service_extra_args", {"extra_args": extra, "listen": True},
            refusal(mod.webui_args, FULL, 7860, extra_args=extra, listen=True), expect=["not a valid regex"])


# (f) the preflight role checks extra args with the same rules, as a list of problems
PREFLIGHT = {"prefix": "sdfleet_", "role_prefix": "preflight_"}


@pytest.mark.parametrize("extra,kwargs,fragment", [
    (["--cors-allow-origins *"], {"exposed": True}, "allows '*'"),
    (["--cors-allow-origins null"], {"exposed": True}, "allows 'null'"),
    (["--cors-allow-origins-regex .*"], {"exposed": True}, "matches any origin"),
    (["--cors-allow-origins-regex 'https?://.*'"], {"exposed": "true"}, "matches any origin"),
    (["--medvramm"], {}, "did you mean --medvram"),
    (["--uv"], {"webui_version": "v1.10.1"}, "only dev has it"),
    (["--listen"], {}, "sdfleet_listen (webui_service_listen)"),
    (["--port 80"], {}, "sdfleet_port"),
    (["--api-auth a:b"], {}, "sdfleet_api_auth_users"),
    (["--allow-code"], {}, "is refused"),
    (["--ngrok tok"], {}, "is refused"),
    (["--precision half"], {"webui_version": "v1.9.4"}, "use one of full, autocast"),
    (["xformers"], {}, "is not a flag"),
    (["--precision"], {}, "needs a value"),
    (True, {}, "is a bool, not a list"),
    ({"--xformers": True}, {}, "is a dict, not a list"),
    ([None], {}, "[0] is a null, not a string"),
    (["'--unbalanced"], {}, "cannot be split"),
    (["--xformers"], {"webui_version": ["v1.10.1"]}, "sdfleet_webui_version"),
])
def test_preflight_extra_args_problems(extra, kwargs, fragment):
    problems = mod.webui_extra_args_problems(extra, **kwargs, **PREFLIGHT)
    variable = "sdfleet_webui_version" if "webui_version" in fragment else "preflight_extra_args"
    refused("preflight", variable, {"extra_args": extra, **kwargs}, problems, expect=[fragment])


def test_preflight_extra_args_problems_lists_every_problem():
    problems = mod.webui_extra_args_problems(["--medvramm", "--listen", "--cors-allow-origins *", "--xformers"],
                                             exposed=True, **PREFLIGHT)
    assert len(problems) == 3 and all(p.startswith("sdfleet_extra_args (preflight_extra_args): ") for p in problems)
    assert mod.webui_extra_args_problems(["--xformers", "--cors-allow-origins *"], **PREFLIGHT) == []
    assert mod.webui_extra_args_problems([], exposed=True) == [] and mod.webui_extra_args_problems(None) == []


def test_one_owner_of_the_flag_rules():
    """webui_args raises exactly what the preflight problems list says (the same function decides both)."""
    extra = ["--medvramm", "--listen", "--cors-allow-origins *"]
    problems = mod.webui_extra_args_problems(extra, exposed=True, role_prefix="webui_service_")
    assert refusal(mod.webui_args, FULL, 7860, extra_args=extra, listen=True) == " | ".join(problems)
