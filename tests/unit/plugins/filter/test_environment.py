"""Unit tests for sdfleet.toolkit.environment_problems: the launcher environment a fleet may add."""
from __future__ import annotations

import pytest
from refusal_catalog import refused

from ansible_collections.sdfleet.toolkit.plugins.filter import environment as mod

WS = {"prefix": "sdfleet_", "role_prefix": "webui_service_"}
PF = {"prefix": "sdfleet_", "role_prefix": "preflight_"}


@pytest.mark.parametrize("environment", [
    {},
    None,
    {"SDFLEET_STANDIN_FAKE_CUDA": "1"},
    {"PYTORCH_CUDA_ALLOC_CONF": "expandable_segments:True", "OMP_NUM_THREADS": 8, "RATIO": 0.5},
    {"HF_ENDPOINT": "https://hf-mirror.example.org", "SD_WEBUI_LOG_LEVEL": "WARNING", "PYTHONHASHSEED": "0"},
    {"https_proxy": "http://proxy.example.org:3128", "NO_PROXY": "localhost"},
    {"GRADIO_TEMP_DIR": "/var/lib/sd-webui/tmp", "_private": ""},
])
def test_accepted_environments(environment):
    assert mod.environment_problems(environment, **WS) == []


# --- names that change exposure or argument parsing (webui and gradio 3.41 code) ------------------------------

@pytest.mark.parametrize("environment,fragment", [
    ({"COMMANDLINE_ARGS": "--share --listen --allow-code"}, "sdfleet_extra_args"),
    ({"COMMANDLINE_ARGS": ""}, "sdfleet_extra_args"),
    ({"IGNORE_CMD_ARGS_ERRORS": "1"}, "ignores flags"),
    ({"GRADIO_SERVER_NAME": "0.0.0.0"}, "sdfleet_listen_address"),
    ({"GRADIO_SERVER_PORT": 80}, "sdfleet_port"),
    ({"GRADIO_NUM_PORTS": "100"}, "sdfleet_port"),
    ({"GRADIO_ROOT_PATH": "/sd"}, "URL root"),
    ({"GRADIO_SHARE": "True"}, "sdfleet_share"),
])
def test_exposure_and_parsing_names_are_refused(environment, fragment):
    problems = mod.environment_problems(environment, **WS)
    name = next(iter(environment))
    refused("webui_service", "webui_service_environment", environment, problems,
            expect=[f"sdfleet_environment.{name}", fragment])


# --- names the roles set themselves: the variable to set instead ---------------------------------------------

@pytest.mark.parametrize("name,variable", [
    ("TORCH_COMMAND", "sdfleet_torch_build"),
    ("TORCH_INDEX_URL", "sdfleet_torch_index_url_cuda"),
    ("INDEX_URL", "sdfleet_pip_index_url"),
    ("XFORMERS_PACKAGE", "sdfleet_torch_build"),
    ("CLIP_PACKAGE", "sdfleet_webui_package_sources.CLIP_PACKAGE"),
    ("OPENCLIP_PACKAGE", "sdfleet_webui_package_sources.OPENCLIP_PACKAGE"),
    ("REQS_FILE", "constraints"),
    ("REQS_FILE_FOR_NPU", "constraints"),
    ("HF_HOME", "webui_service_data_root"),
    ("XDG_CACHE_HOME", "webui_service_data_root"),
    ("MPLCONFIGDIR", "webui_service_data_root"),
    ("CUDA_VISIBLE_DEVICES", "sdfleet_gpu"),
    ("CUDA_DEVICE_ORDER", "sdfleet_gpu"),
    ("python_cmd", "webui_service_python_cmd"),
    ("venv_dir", "webui_service_venv_dir"),
    ("VIRTUAL_ENV", "webui_service_venv_dir"),
    ("install_dir", "webui_service_install_dir"),
    ("clone_dir", "webui_service_install_dir"),
    ("ASSETS_REPO", "sdfleet_webui_subrepo_sources.ASSETS"),
    ("STABLE_DIFFUSION_REPO", "sdfleet_webui_subrepo_sources.STABLE_DIFFUSION"),
    ("STABLE_DIFFUSION_XL_REPO", "sdfleet_webui_subrepo_sources.STABLE_DIFFUSION_XL"),
    ("K_DIFFUSION_REPO", "sdfleet_webui_subrepo_sources.K_DIFFUSION"),
    ("BLIP_REPO", "sdfleet_webui_subrepo_sources.BLIP"),
    ("ASSETS_COMMIT_HASH", "sdfleet_webui_subrepo_commits.ASSETS"),
    ("STABLE_DIFFUSION_COMMIT_HASH", "sdfleet_webui_subrepo_commits.STABLE_DIFFUSION"),
    ("STABLE_DIFFUSION_XL_COMMIT_HASH", "sdfleet_webui_subrepo_commits.STABLE_DIFFUSION_XL"),
    ("K_DIFFUSION_COMMIT_HASH", "sdfleet_webui_subrepo_commits.K_DIFFUSION"),
    ("BLIP_COMMIT_HASH", "sdfleet_webui_subrepo_commits.BLIP"),
    ("PIP_INDEX_URL", "sdfleet_pip_index_url"),
    ("PIP_CONFIG_FILE", "sdfleet_pip_index_url"),
    ("PIP_EXTRA_INDEX_URL", "sdfleet_pip_trusted_hosts"),
])
def test_names_the_roles_manage_are_refused_naming_the_variable(name, variable):
    environment = {name: "x"}
    problems = mod.environment_problems(environment, **WS)
    refused("webui_service", "webui_service_environment", environment, problems, expect=[name, variable])


# --- names that put other code into the service ----------------------------------------------------------------

@pytest.mark.parametrize("name", ["LD_PRELOAD", "LD_LIBRARY_PATH", "LD_AUDIT", "LD_BIND_NOW", "PYTHONPATH",
                                  "PYTHONHOME", "PYTHONPLATLIBDIR", "PYTHONUSERBASE", "PYTHONSTARTUP",
                                  "PYTHONBREAKPOINT", "PATH", "BASH_ENV", "ENV", "GIT", "GIT_PYTHON_GIT_EXECUTABLE",
                                  "GIT_SSH_COMMAND", "GIT_CONFIG_COUNT", "GIT_EXEC_PATH", "LAUNCH_SCRIPT",
                                  "ACCELERATE"])
def test_names_that_inject_code_are_refused(name):
    environment = {name: "/tmp/evil"}
    problems = mod.environment_problems(environment, **WS)
    refused("webui_service", "webui_service_environment", environment, problems,
            expect=[f"sdfleet_environment.{name}", "other code in the service"])


# --- names and values of the wrong shape ---------------------------------------------------------------------

@pytest.mark.parametrize("key", ["MY-VAR", "1ABC", "A B", "", "BASH_FUNC_x%%", 5, "NAME=value", "ÄPFEL"])
def test_names_that_are_not_shell_identifiers_are_refused(key):
    environment = {key: "1"}
    problems = mod.environment_problems(environment, **WS)
    refused("webui_service", "webui_service_environment", environment, problems,
            expect=["not a shell identifier", "Fix: rename it"])


@pytest.mark.parametrize("value,fragment", [
    (True, "a bool, not a string or number"),
    (None, "a null, not a string or number"),
    (["a", "b"], "a list"),
    ({"nested": 1}, "a dict"),
    ("line\nbreak", "line break"),
    ("carriage\rreturn", "line break"),
    ("nul\0byte", "line break"),
])
def test_values_that_are_not_one_line_strings_or_numbers_are_refused(value, fragment):
    environment = {"MY_SETTING": value}
    problems = mod.environment_problems(environment, **WS)
    refused("webui_service", "webui_service_environment", environment, problems,
            expect=["sdfleet_environment.MY_SETTING", fragment])


@pytest.mark.parametrize("value", ["http://alice:s3cret-proxy@proxy.example.org:3128",
                                   "https://token-abc123@hf.example.org/"])
def test_credentials_in_values_are_refused_without_showing_them(value):
    environment = {"https_proxy": value}
    problems = mod.environment_problems(environment, **WS)
    message = refused("webui_service", "webui_service_environment", environment, problems,
                      expect=["credentials in a URL", "***@"])
    assert "s3cret-proxy" not in message and "token-abc123" not in message


@pytest.mark.parametrize("environment", [["COMMANDLINE_ARGS=--share"], "COMMANDLINE_ARGS=--share", True, 3])
def test_an_environment_that_is_not_a_mapping_is_refused(environment):
    problems = mod.environment_problems(environment, **WS)
    refused("webui_service", "webui_service_environment", environment, problems, expect=["not a mapping"])


def test_every_bad_entry_is_reported_once():
    problems = mod.environment_problems({"COMMANDLINE_ARGS": "--share", "LD_PRELOAD": "x", "OK": "1",
                                         "bad-name": "1", "GOOD": ["list"]}, **WS)
    assert len(problems) == 4


# --- the preflight role: the same rule, named for its variable -------------------------------------------------

@pytest.mark.parametrize("environment,fragment", [
    ({"COMMANDLINE_ARGS": "--share --listen --allow-code"}, "sdfleet_extra_args"),
    ({"GRADIO_SERVER_NAME": "0.0.0.0"}, "sdfleet_listen_address"),
    ({"GRADIO_SHARE": "1"}, "sdfleet_share"),
    ({"IGNORE_CMD_ARGS_ERRORS": "1"}, "ignores flags"),
    ({"TORCH_COMMAND": "pip install torch"}, "sdfleet_torch_build"),
    ({"INDEX_URL": "https://pypi.example.org/simple"}, "sdfleet_pip_index_url"),
    ({"CUDA_VISIBLE_DEVICES": "0"}, "sdfleet_gpu"),
    ({"LD_PRELOAD": "/tmp/evil.so"}, "other code"),
    ({"PYTHONPATH": "/tmp"}, "other code"),
    ({"bad-name": "1"}, "not a shell identifier"),
    ({"MY_SETTING": ["a"]}, "a list"),
    ({"MY_SETTING": "a\nb"}, "line break"),
])
def test_preflight_refuses_the_same_entries(environment, fragment):
    problems = mod.environment_problems(environment, **PF)
    message = refused("preflight", "preflight_environment", environment, problems, expect=[fragment])
    assert message.startswith("sdfleet_environment")


def test_preflight_refuses_a_list_environment():
    environment = ["GRADIO_SERVER_NAME=0.0.0.0"]
    refused("preflight", "preflight_environment", environment, mod.environment_problems(environment, **PF),
            expect=["not a mapping"])


def test_filter_module_exports():
    assert mod.FilterModule().filters() == {"environment_problems": mod.environment_problems}


def test_names_come_from_the_real_webui_and_gradio():
    """Each exposure name is read by the webui (v1.9.4, v1.10.1) or gradio 3.41, except GRADIO_SHARE (gradio 4)."""
    assert set(mod.EXPOSURE) == {"COMMANDLINE_ARGS", "IGNORE_CMD_ARGS_ERRORS", "GRADIO_SERVER_NAME",
                                 "GRADIO_SERVER_PORT", "GRADIO_NUM_PORTS", "GRADIO_ROOT_PATH", "GRADIO_SHARE"}
