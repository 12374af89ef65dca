"""Unit tests for sdfleet.toolkit.webui_args (plain pytest, no Ansible run)."""
from __future__ import annotations

import itertools
import shlex
import subprocess

import pytest
from ansible.errors import AnsibleFilterError
from refusal_catalog import refused

from ansible_collections.sdfleet.toolkit.plugins.filter import webui_args as mod

# The wiki's CPU recipe, as nvidia_check's default nvidia_check_cpu_flags put it in the plan.
CPU_FLAGS = ["--use-cpu", "all", "--precision", "full", "--no-half", "--skip-torch-cuda-test"]
GPU = {
    "lowvram": {"index": 0, "tier": "lowvram", "flags": ["--lowvram", "--xformers"]},
    "medvram": {"index": 0, "tier": "medvram", "flags": ["--medvram", "--xformers"]},
    "medvram_sdxl": {"index": 1, "tier": "medvram_sdxl", "flags": ["--medvram-sdxl", "--xformers"]},
    "full": {"index": 1, "tier": "full", "flags": ["--xformers"]},
    "cpu": {"tier": "cpu", "flags": CPU_FLAGS},
}
EXPOSURES = {
    "loopback": {},
    "listen": {"listen": True, "auth_path": "/etc/sd-webui/gradio-auth"},
    "address": {"listen_address": "10.0.0.5", "auth_path": "/etc/sd-webui/gradio-auth"},
    "share_api": {"share": True, "api": True, "auth_path": "/etc/sd-webui/gradio-auth",
                  "insecure_extension_access": True},
}
EXTRAS = {
    "none": [],
    "xformers_dup": ["--xformers"],
    "medvram": ["--medvram"],
    "lowvram": ["--lowvram"],
    "nohalf_upcast": ["--no-half", "--upcast-sampling"],
    "valued": ["--precision=autocast", "--loglevel WARNING"],
}
VRAM = ("--lowvram", "--medvram", "--medvram-sdxl")


def flags_of(args: list[str]) -> list[str]:
    return [a for a in args if a.startswith("--")]


def refusal(call, *args, **kwargs) -> str:
    """The message of the AnsibleFilterError that ``call`` raises (fails when it raises none)."""
    with pytest.raises(AnsibleFilterError) as err:
        call(*args, **kwargs)
    return str(err.value)


@pytest.mark.parametrize("tier,exposure,extra", list(itertools.product(GPU, EXPOSURES, EXTRAS)))
def test_matrix_invariants(tier, exposure, extra):
    args = mod.webui_args(GPU[tier], 7860, extra_args=EXTRAS[extra], **EXPOSURES[exposure])
    flags = flags_of(args)
    # every flag is a real webui flag, none repeated
    assert all(f in mod.ALLOWED_FLAGS for f in flags), flags
    assert len(flags) == len(set(flags)), flags
    assert "--no-download-sd-model" in flags
    assert args[args.index("--port") + 1] == "7860"
    # at most one VRAM flag, and it is the lowest of tier and extras
    vram = [f for f in flags if f in VRAM]
    assert len(vram) <= 1, flags
    if tier == "cpu":
        assert vram == [] and "--xformers" not in flags
        assert args[args.index("--use-cpu") + 1] == "all"
    else:
        wanted = [f for f in VRAM if f in GPU[tier]["flags"] or f in EXTRAS[extra]]
        assert vram == wanted[:1], (vram, wanted)
    assert not ("--no-half" in flags and "--upcast-sampling" in flags)
    # exposure: --server-name wins over --listen, never both; no secret flag ever
    assert not ("--listen" in flags and "--server-name" in flags)
    assert ("--listen" in flags) == (exposure == "listen")
    assert ("--server-name" in flags) == (exposure == "address")
    assert "--gradio-auth" not in flags and "--api-auth" not in flags
    assert ("--gradio-auth-path" in flags) == (exposure != "loopback")
    assert ("--api" in flags) == ("api" in exposure)
    assert ("--share" in flags) == (exposure == "share_api")


def test_lowvram_loopback_exact():
    assert mod.webui_args(GPU["lowvram"], 7860) == [
        "--lowvram", "--xformers", "--no-download-sd-model", "--port", "7860"]


@pytest.mark.parametrize("version", ["v1.9.4", "v1.10.1", "dev"])
def test_skip_install_only_when_the_dependencies_were_installed_at_provision(version):
    installed = mod.webui_args(GPU["lowvram"], 7860, skip_install=True, webui_version=version)
    assert installed.count("--skip-install") == 1
    assert "--skip-install" not in mod.webui_args(GPU["lowvram"], 7860, webui_version=version)
    # a user's own --skip-install is not refused, nor doubled
    both = mod.webui_args(GPU["lowvram"], 7860, skip_install=True, extra_args=["--skip-install"], webui_version=version)
    assert both.count("--skip-install") == 1
    assert mod.webui_args(GPU["lowvram"], 7860, skip_install="false") == mod.webui_args(GPU["lowvram"], 7860)


def test_full_tier_has_no_vram_flag():
    args = mod.webui_args(GPU["full"], 7861)
    assert not set(args) & set(VRAM)
    assert "--xformers" in args


def test_the_records_flags_are_taken_as_given():
    """nvidia_check decides a tier's flags once: a customised tier table's flags reach the argv unchanged."""
    rec = {"index": 0, "tier": "full", "flags": ["--medvram", "--opt-channelslast"]}
    assert mod.webui_args(rec, 7860)[:2] == ["--medvram", "--opt-channelslast"]
    custom_cpu = {"tier": "cpu", "flags": ["--use-cpu", "all", "--no-half", "--skip-torch-cuda-test",
                                           "--disable-nan-check"]}
    assert mod.webui_args(custom_cpu, 7860)[:5] == custom_cpu["flags"]


def test_the_argv_builder_has_no_tier_table_of_its_own():
    assert not hasattr(mod, "TIER_VRAM_FLAG") and not hasattr(mod, "CPU_TIER_ARGS")
    assert "tier" not in mod.webui_args.__kwdefaults__


def test_lower_tier_wins_both_directions():
    assert flags_of(mod.webui_args(GPU["lowvram"], 7860, extra_args=["--medvram"]))[0] == "--lowvram"
    args = mod.webui_args(GPU["medvram"], 7860, extra_args=["--lowvram"])
    assert "--lowvram" in args and "--medvram" not in args
    args = mod.webui_args(GPU["medvram_sdxl"], 7860, extra_args=["--medvram"])
    assert "--medvram" in args and "--medvram-sdxl" not in args


def test_no_half_drops_upcast_sampling():
    args = mod.webui_args(GPU["full"], 7860, extra_args=["--upcast-sampling", "--no-half"])
    assert "--no-half" in args and "--upcast-sampling" not in args
    args = mod.webui_args(GPU["full"], 7860, extra_args=["--upcast-sampling"])
    assert "--upcast-sampling" in args


def test_precision_half_with_no_half_refused():
    extra = ["--no-half", "--precision", "half"]
    refused("webui_service", "webui_service_extra_args", extra, refusal(mod.webui_args, GPU["full"], 7860,
                                                                        extra_args=extra),
            expect=["'--precision half' contradicts '--no-half'", "sdfleet_extra_args"])


def test_cpu_recipe_and_valued_override():
    args = mod.webui_args(GPU["cpu"], 7860)
    assert args[:6] == CPU_FLAGS
    args = mod.webui_args(GPU["cpu"], 7860, extra_args=["--precision autocast"])
    assert args.count("--precision") == 1 and args[args.index("--precision") + 1] == "autocast"


def test_equals_form_and_shell_split():
    args = mod.webui_args(GPU["full"], 7860, extra_args=["--precision=full --loglevel DEBUG"])
    assert args[args.index("--precision") + 1] == "full"
    assert args[args.index("--loglevel") + 1] == "DEBUG"


def test_use_cpu_takes_several_values():
    args = mod.webui_args(GPU["full"], 7860, extra_args=["--use-cpu interrogate gfpgan", "--no-half-vae"])
    i = args.index("--use-cpu")
    assert args[i + 1:i + 3] == ["interrogate", "gfpgan"]
    assert "--no-half-vae" in args


def test_styles_file_may_repeat():
    args = mod.webui_args(GPU["full"], 7860, extra_args=["--styles-file a.csv", "--styles-file b.csv",
                                                         "--styles-file a.csv"])
    assert args.count("--styles-file") == 2


def test_paths_theme_freeze_insecure():
    args = mod.webui_args(GPU["full"], 7860, data_dir="/var/lib/sd-webui/instance-1",
                          models_dir="/opt/sd-webui/models", embeddings_dir="/opt/sd-webui/embeddings",
                          freeze_settings=True, insecure_extension_access=True, theme="dark")
    assert args[args.index("--data-dir") + 1] == "/var/lib/sd-webui/instance-1"
    assert args[args.index("--models-dir") + 1] == "/opt/sd-webui/models"
    assert args[args.index("--embeddings-dir") + 1] == "/opt/sd-webui/embeddings"
    assert args[args.index("--theme") + 1] == "dark"
    assert "--freeze-settings" in args and "--enable-insecure-extension-access" in args


@pytest.mark.parametrize("flag,variable", [
    ("--port 80", "webui_service_port"),
    ("--listen", "webui_service_listen"),
    ("--server-name 0.0.0.0", "webui_service_listen_address"),
    ("--gradio-auth a:b", "webui_service_auth_users"),
    ("--gradio-auth-path /x", "webui_service_auth_users"),
    ("--api-auth a:b", "webui_service_api_auth_users"),
    ("--api", "webui_service_api"),
    ("--share", "webui_service_share"),
    ("--data-dir /x", "webui_service_data_root"),
    ("--theme dark", "webui_service_theme"),
    ("--device-id 1", "CUDA_VISIBLE_DEVICES"),
])
def test_managed_flags_refused_in_extra_args(flag, variable):
    refused("webui_service", "webui_service_extra_args", [flag],
            refusal(mod.webui_args, GPU["full"], 7860, extra_args=[flag]), expect=[variable, "is managed by the role"])


@pytest.mark.parametrize("flag", ["--nowebui", "--ngrok tok", "--allow-code", "--disable-safe-unpickle"])
def test_dangerous_flags_refused(flag):
    message = refused("webui_service", "webui_service_extra_args", [flag],
                      refusal(mod.webui_args, GPU["full"], 7860, extra_args=[flag]), expect=["is refused"])
    assert "tok" not in message.replace("token", "")  # a flag's value (an ngrok token) is never shown


@pytest.mark.parametrize("extra", [["--medvramm"], ["--tests"], ["--always-batch-cond-uncond-typo"], ["xformers"],
                                   ["--precision"], ["--use-cpu"], ["--xformers", "full"], ["'--unbalanced"],
                                   ["--precision 'full"]])
def test_unknown_or_malformed_extra_args_refused(extra):
    refused("webui_service", "webui_service_extra_args", extra,
            refusal(mod.webui_args, GPU["full"], 7860, extra_args=extra), expect=["sdfleet_extra_args"])


@pytest.mark.parametrize("extra,fragment", [
    (True, "is a bool, not a list"),
    (False, "is a bool, not a list"),
    ({"--xformers": True}, "is a dict, not a list"),
    (7, "is a int, not a list"),
    ([True], "[0] is a bool, not a string"),
    (["--xformers", None], "[1] is a null, not a string"),
    ([["--xformers"]], "[0] is a list, not a string"),
    ([{"--precision": "full"}], "[0] is a dict, not a string"),
])
def test_extra_args_of_the_wrong_type_name_the_variable(extra, fragment):
    refused("webui_service", "webui_service_extra_args", extra,
            refusal(mod.webui_args, GPU["full"], 7860, extra_args=extra), expect=[fragment])


def test_unknown_flag_in_gpu_record_refused():
    record = {"tier": "full", "flags": ["--turbo"]}
    refused("webui_service", "sdfleet_gpu flags", record, refusal(mod.webui_args, record, 7860),
            expect=["--turbo", "nvidia_check_tier_table"])
    record = {"index": 0, "tier": "full", "flags": "--xformers"}
    refused("webui_service", "sdfleet_gpu", record, refusal(mod.webui_args, record, 7860),
            expect=["the flags of GPU record 0 are str"])


@pytest.mark.parametrize("port", [0, 65536, -1, True, "7860", None, [7860]])
def test_bad_port_refused(port):
    refused("webui_service", "webui_service_port", port, refusal(mod.webui_args, GPU["full"], port),
            expect=["sdfleet_port"])


@pytest.mark.parametrize("record", [{"tier": "huge", "flags": []}, {"tier": ["full"], "flags": []},
                                    "full", ["--xformers"]])
def test_bad_gpu_records_refused(record):
    refused("webui_service", "sdfleet_gpu", record, refusal(mod.webui_args, record, 7860),
            expect=["nvidia_check"])


@pytest.mark.parametrize("theme", ["solarized", ["dark"], True])
def test_bad_theme_refused(theme):
    refused("webui_service", "webui_service_theme", theme, refusal(mod.webui_args, GPU["full"], 7860, theme=theme))


@pytest.mark.parametrize("option,value,variable", [
    ("listen", "maybe", "webui_service_listen"),
    ("listen", [True], "webui_service_listen"),
    ("share", "sometimes", "webui_service_share"),
    ("share", {"on": 1}, "webui_service_share"),
    ("api", 2, "webui_service_api"),
    ("api", "enabled", "webui_service_api"),
    ("freeze_settings", "frozen", "webui_service_freeze_settings"),
    ("insecure_extension_access", ["yes"], "webui_service_insecure_extension_access"),
    ("listen_address", ["0.0.0.0"], "webui_service_listen_address"),
    ("listen_address", True, "webui_service_listen_address"),
    ("listen_address", "10.0.0.5\n--share", "webui_service_listen_address"),
    ("auth_path", {"path": "/x"}, "webui_service_config_dir"),
    ("data_dir", ["/srv"], "webui_service_data_root"),
    ("models_dir", True, "webui_service_models_dir"),
    ("embeddings_dir", {"dir": "/e"}, "webui_service_embeddings_dir"),
    ("webui_version", ["v1.10.1"], "sdfleet_webui_version"),
    ("webui_version", True, "sdfleet_webui_version"),
    ("exposed", "perhaps", "exposed"),
])
def test_options_of_the_wrong_type_name_the_variable(option, value, variable):
    refused("webui_service", variable, value, refusal(mod.webui_args, GPU["full"], 7860, **{option: value}))


def test_string_booleans_from_extra_vars_are_read_as_booleans():
    args = mod.webui_args(GPU["full"], 7860, listen="false", share="no", api="true")
    assert "--listen" not in args and "--share" not in args and "--api" in args


@pytest.mark.parametrize("kwargs,variable", [
    ({"base_port": "http"}, "webui_service_port"),
    ({"base_port": [7860]}, "webui_service_port"),
    ({"base_port": True}, "webui_service_port"),
    ({"public_base_port": "public"}, "webui_service_port"),
    ({"single_instance": "one"}, "webui_service_single_instance"),
    ({"data_root": ["/srv"]}, "webui_service_data_root"),
    ({"data_root": "relative/dir"}, "webui_service_data_root"),
])
def test_instance_options_of_the_wrong_type_name_the_variable(kwargs, variable):
    facts = {"tier": "full", "gpus": [GPU["full"]]}
    refused("webui_service", variable, kwargs, refusal(mod.webui_instances, facts, **kwargs))


@pytest.mark.parametrize("facts,fragment", [
    (["gpu0"], "not the nvidia_check plan" if False else "expected the nvidia_check plan"),
    ("ok", "expected the nvidia_check plan"),
    ({"tier": "full", "gpus": "GPU-0"}, "sdfleet_gpu.gpus is a str"),
    ({"tier": "cpu", "flags": "--use-cpu all"}, "sdfleet_gpu.flags is a str"),
    ({"tier": "full", "gpus": [{"index": "first", "tier": "full"}, {"index": 1, "tier": "full"}]}, "index 'first'"),
])
def test_gpu_plans_of_the_wrong_shape_name_the_variable(facts, fragment):
    refused("webui_service", "sdfleet_gpu", facts, refusal(mod.webui_instances, facts, 7860), expect=[fragment])


def test_instances_per_gpu():
    facts = {"state": "ok", "tier": "medvram", "gpus": [GPU["medvram"] | {"index": 0}, GPU["full"] | {"index": 1}]}
    inst = mod.webui_instances(facts, 7860)
    assert [(i["index"], i["port"], i["cuda_visible_devices"], i["tier"]) for i in inst] == [
        (0, 7860, "0", "medvram"), (1, 7861, "1", "full")]
    assert inst[1]["data_dir"] == "/var/lib/sd-webui/instance-1"


def test_instances_name_their_gpu_by_uuid():
    """RTX 2070 (PCI bus 01, index 0) + GTX 750 Ti (bus 04, index 1): CUDA's fastest-first order agrees here, but
    not on a host whose slower card sits on the lower bus; the UUID names the card whatever the order."""
    facts = {"state": "ok", "tier": "lowvram", "gpus": [
        GPU["medvram_sdxl"] | {"index": 0, "uuid": "GPU-11111111-2222-3333-4444-555555555555"},
        GPU["lowvram"] | {"index": 1, "uuid": "GPU-66666666-7777-8888-9999-000000000000"}]}
    inst = mod.webui_instances(facts, 7860)
    assert [i["cuda_visible_devices"] for i in inst] == ["GPU-11111111-2222-3333-4444-555555555555",
                                                         "GPU-66666666-7777-8888-9999-000000000000"]
    assert [i["tier"] for i in inst] == ["medvram_sdxl", "lowvram"]


def test_instances_single_and_cpu():
    facts = {"state": "ok", "tier": "medvram", "gpus": [GPU["medvram"], GPU["full"]]}
    assert len(mod.webui_instances(facts, 7860, single_instance=True)) == 1
    cpu = mod.webui_instances({"state": "cpu", "tier": "cpu", "gpus": []}, 7860)
    assert cpu == [{"index": 0, "port": 7860, "public_port": 7860, "data_dir": "/var/lib/sd-webui/instance-0",
                    "cuda_visible_devices": "", "tier": "cpu", "gpu": {"index": 0, "tier": "cpu", "flags": []}}]
    assert mod.webui_instances(None, 7860)[0]["tier"] == "cpu"
    pinned = mod.webui_instances({"state": "cpu", "tier": "cpu", "flags": CPU_FLAGS, "gpus": []}, 7860)
    assert len(pinned) == 1 and pinned[0]["gpu"]["flags"] == CPU_FLAGS


def test_plan_adds_per_instance_args():
    facts = {"state": "ok", "tier": "medvram", "gpus": [GPU["medvram"] | {"index": 0}, GPU["full"] | {"index": 1}]}
    plan = mod.webui_plan(facts, 7860, data_root="/srv/sd", listen=True, auth_path="/etc/a", api=True)
    assert [p["args"][p["args"].index("--port") + 1] for p in plan] == ["7860", "7861"]
    assert "--medvram" in plan[0]["args"] and "--medvram" not in plan[1]["args"]
    assert plan[1]["args"][plan[1]["args"].index("--data-dir") + 1] == "/srv/sd/instance-1"
    assert all("--listen" in p["args"] and "--api" in p["args"] for p in plan)


def test_instances_port_overflow_refused():
    facts = {"tier": "full", "gpus": [GPU["full"] | {"index": 0}, GPU["full"] | {"index": 1}]}
    refused("webui_service", "webui_service_port", {"base_port": 65535, "instances": 2},
            refusal(mod.webui_instances, facts, 65535), expect=["65536"])


def test_systemd_argv_quoting():
    assert mod.webui_systemd_argv(["--port", 80, "--data-dir", "/a b/%i", "--x", 'q"$']) == (
        '--port 80 --data-dir "/a b/%%i" --x "q\\"$$"')


def test_auth_lines():
    users = [{"username": "alice", "password": "s3cret:with-colon"}, {"username": "bob", "password": "pw2pw2pw2"}]
    assert mod.webui_auth_lines(users) == "alice:s3cret:with-colon\nbob:pw2pw2pw2\n"
    assert mod.webui_auth_lines([]) == ""


@pytest.mark.parametrize("user", [{"username": "a:b", "password": "longpassword"},
                                  {"username": "a,b", "password": "longpassword"},
                                  {"username": "ab", "password": "long,password"},
                                  {"username": "ab", "password": ""},
                                  {"username": "ab", "password": "line\nbreak"}])
def test_auth_lines_refuses_bad_users(user):
    message = refused("webui_service", "webui_service_auth_users", [user], refusal(mod.webui_auth_lines, [user]))
    assert user["password"] not in message or not user["password"]


@pytest.mark.parametrize("users", ["alice:password", {"username": "a", "password": "longpassword"},
                                   [{"username": ["a"], "password": "longpassword"}], ["alice:password"]])
def test_auth_lines_refuses_users_of_the_wrong_shape(users):
    refused("webui_service", "webui_service_auth_users", users, refusal(mod.webui_auth_lines, users))


def test_instances_behind_a_front_door_bind_the_backend_ports_and_publish_the_public_ones():
    facts = {"tier": "full", "gpus": [GPU["full"] | {"index": 0}, GPU["full"] | {"index": 1}]}
    plan = mod.webui_plan(facts, 27860, public_base_port=7860, listen_address="127.0.0.1", api=True)
    assert [(p["port"], p["public_port"]) for p in plan] == [(27860, 7860), (27861, 7861)]
    assert plan[1]["args"][plan[1]["args"].index("--port") + 1] == "27861"
    # --server-name keeps the webui's "non-local" mode (extension installs from the UI stay disabled).
    assert plan[0]["args"][plan[0]["args"].index("--server-name") + 1] == "127.0.0.1"
    assert "--listen" not in plan[0]["args"] and "--api-auth" not in plan[0]["args"]
    summary = mod.webui_summary(plan, "gpu1.example", "https")
    assert [(s["port"], s["backend_port"], s["url"]) for s in summary] == [
        (7860, 27860, "https://gpu1.example:7860/"), (7861, 27861, "https://gpu1.example:7861/")]


def test_env_line():
    assert mod.webui_env_line("TORCH_COMMAND", "pip install torch==2.1.2") == 'TORCH_COMMAND="pip install torch==2.1.2"'
    assert mod.webui_env_line("THREADS", 8) == 'THREADS="8"'


@pytest.mark.parametrize("name,value,fragment", [("BAD-NAME", "x", "not a shell identifier"),
                                                 (3, "x", "not a shell identifier"),
                                                 ("GOOD", ["x"], "is a list"),
                                                 ("GOOD", None, "is a null"),
                                                 ("GOOD", "a\nb", "newline")])
def test_env_line_refuses_what_no_environment_file_can_hold(name, value, fragment):
    refused("webui_service", "webui_service_environment", {name: value}, refusal(mod.webui_env_line, name, value),
            expect=[fragment])


@pytest.mark.parametrize("args", ["--port 7860", {"--port": 7860}, [["--port"]], ["--x", None], ["a\nb"]])
def test_systemd_argv_refuses_what_is_not_a_list_of_strings(args):
    refusal(mod.webui_systemd_argv, args)


@pytest.mark.parametrize("secrets", [{"a": 1}, 3.5])
def test_redact_refuses_secrets_of_the_wrong_type(secrets):
    assert "not a list" in refusal(mod.webui_redact, "text", secrets)


def test_redact_takes_one_bare_secret():
    assert mod.webui_redact("user:Hunter2222", "Hunter2222") == "user:********"


@pytest.mark.parametrize("plan", ["plan", [{"index": 0}], None])
def test_summary_refuses_what_is_not_a_plan(plan):
    assert "webui_plan" in refusal(mod.webui_summary, plan)


def test_filter_module_exports():
    assert set(mod.FilterModule().filters()) == {"webui_args", "webui_instances", "webui_plan", "webui_systemd_argv",
                                                 "webui_auth_lines", "webui_env_line",
                                                 "webui_redact", "webui_summary", "webui_extra_args_problems"}


def test_redact():
    text = "Launching Web UI with arguments: --port 7860 --api-auth api:TopSecret99\nlogin alice:Hunter2222"
    out = mod.webui_redact(text, ["TopSecret99", "Hunter2222", ""])
    assert "TopSecret99" not in out and "Hunter2222" not in out
    assert "--api-auth ********" in out and "--port 7860" in out


def test_summary():
    plan = mod.webui_plan({"tier": "full", "gpus": [GPU["full"] | {"index": 0}]}, 7860)
    assert mod.webui_summary(plan, "gpu1.example") == [
        {"index": 0, "port": 7860, "backend_port": 7860, "url": "http://gpu1.example:7860/", "tier": "full",
         "flags": plan[0]["args"]}]
    assert mod.webui_summary(plan, "fd00::1")[0]["url"] == "http://[fd00::1]:7860/"


STANDIN = __import__("pathlib").Path(__file__).resolve().parents[4] / "molecule" / "_shared" / "standin_webui"


@pytest.mark.skipif(not (STANDIN / "modules" / "cmd_args.py").is_file(), reason="stand-in webui not present")
def test_allow_list_is_known_to_the_standin_parser():
    """The stand-in mirrors the real v1.10.1 flag set: it knows no flag the real parser lacks, and every
    argv the role renders parses there. (The allow-list now is the real parser's, a superset of the
    stand-in's: the stand-in leaves out a few do-nothing UI flags.)"""
    import importlib.util

    spec = importlib.util.spec_from_file_location("standin_cmd_args", STANDIN / "modules" / "cmd_args.py")
    cmd_args = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cmd_args)
    known = {opt for action in cmd_args.build_parser()._actions for opt in action.option_strings}
    assert not {f for f in known if f.startswith("--")} - set(mod.ALLOWED_FLAGS) - {"--help"}
    for gpu in GPU.values():
        args = mod.webui_args(gpu, 7860, listen=True, auth_path="/x", api=True, data_dir="/d", theme="dark",
                              extra_args=["--use-cpu interrogate", "--styles-file a.csv"])
        cmd_args.build_parser().parse_args(args)  # exits (SystemExit) on an unknown flag or bad value
