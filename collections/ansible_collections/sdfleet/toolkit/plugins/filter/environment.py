# -*- coding: utf-8 -*-
"""The launcher environment a fleet may add (``sdfleet_environment``): which names and values to refuse.

One rule, used by the ``preflight`` role (before any change on a host) and by ``webui_service``'s preflight
(the role's own variable ``webui_service_environment``). The environment lands in the unit's EnvironmentFile
(which overrides the unit's own ``Environment=`` lines) and in ``webui-user.sh`` (sourced by ``webui.sh``, 0644),
so a name there can undo what the roles decide: the exposure checks, the pinned sources, the GPU of each
instance, or which code the service runs. Pure function, unit-tested without Ansible.
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from ansible_collections.sdfleet.toolkit.plugins.filter.exposure import _Names, _show
from ansible_collections.sdfleet.toolkit.plugins.module_utils.redact import has_credentials, redact_urls

DOCUMENTATION = r"""
name: environment_problems
short_description: List what is refused in the extra launcher environment of the webui
description:
  - Takes the extra environment (C(sdfleet_environment), a dict of NAME to value) and returns one problem per refused
    name or value, naming the variable, the bad entry (never a credential) and the fix; empty when it is safe.
  - Refuses names that change the webui's exposure or argument parsing (C(COMMANDLINE_ARGS), C(IGNORE_CMD_ARGS_ERRORS),
    gradio's C(GRADIO_SERVER_NAME), C(GRADIO_SERVER_PORT), C(GRADIO_NUM_PORTS), C(GRADIO_ROOT_PATH), C(GRADIO_SHARE)),
    names the roles set themselves (naming the variable to use instead), names that make the service load or run other
    code (C(LD_PRELOAD), C(PYTHONPATH), C(PATH), C(GIT_*), ...), names that are not shell identifiers, and values
    that are not strings or numbers, hold a line break or carry credentials in a URL.
positional: environment
options:
  environment:
    description: The extra environment, NAME to value.
    type: dict
    required: true
  prefix:
    description: Prefix of the variable name in the messages (the inventory name by default).
    type: str
    default: sdfleet_
  role_prefix:
    description: When set, each message also names the role variable, e.g. C(sdfleet_environment (preflight_environment)).
    type: str
    default: ""
"""

EXAMPLES = r"""
- name: Refuse a bad launcher environment
  ansible.builtin.assert:
    that: problems | length == 0
    fail_msg: "{{ problems | join(' | ') }}"
  vars:
    problems: "{{ sdfleet_environment | sdfleet.toolkit.environment_problems(role_prefix='preflight_') }}"
"""

RETURN = r"""
_value:
  description: The problems, empty when the environment is accepted.
  type: list
  elements: str
"""

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_SUBREPOS = ("ASSETS", "STABLE_DIFFUSION", "STABLE_DIFFUSION_XL", "K_DIFFUSION", "BLIP")

# Names that change where or how the webui serves, or how it reads its arguments: every exposure rule and flag
# check of sdfleet would be skipped. Where each name is read:
EXPOSURE: dict[str, str] = {
    # webui modules/paths_internal.py and modules/shared_cmd_options.py (v1.9.4, v1.10.1): extra argv.
    "COMMANDLINE_ARGS": "the webui reads it as more command-line flags, past every exposure rule and flag check. "
                        "Fix: put webui flags in sdfleet_extra_args (checked against the webui's parser) and set "
                        "exposure with sdfleet_listen, sdfleet_listen_address, sdfleet_share",
    # webui modules/shared_cmd_options.py (v1.9.4, v1.10.1): unknown flags are then ignored silently.
    "IGNORE_CMD_ARGS_ERRORS": "the webui then ignores flags it does not know instead of exiting. Fix: remove it "
                              "(sdfleet_extra_args is checked against the webui's parser already)",
    # gradio 3.41 networking.py (the webui's gradio): the bind address when no --listen/--server-name is given.
    "GRADIO_SERVER_NAME": "gradio binds this address, past the exposure rules (and the webui then keeps "
                          "extension installs open). Fix: set sdfleet_listen or sdfleet_listen_address",
    # gradio 3.41 networking.py: the first port gradio tries, and how many after it.
    "GRADIO_SERVER_PORT": "gradio's port outside the role's port plan. Fix: set sdfleet_port",
    "GRADIO_NUM_PORTS": "gradio would take another free port than the one planned. Fix: set sdfleet_port",
    # gradio 3.41 blocks.py: the URL root the UI serves under (the front door and health gate expect /).
    "GRADIO_ROOT_PATH": "it moves the UI under another URL root, which the front door and the health gate do not "
                        "follow. Fix: remove it",
    # Not read by gradio 3.41 (absent from its code); gradio 4's launch() reads it as share=True.
    "GRADIO_SHARE": "gradio 4 opens a public gradio.live tunnel with it, past the exposure rules. Fix: set "
                    "sdfleet_share (checked by the exposure rules)",
}

# Names the roles set themselves (webui_repo publishes them in sdfleet_webui.env; webui_service adds the caches;
# each unit names its GPU): the variable to set instead.
MANAGED: dict[str, str] = {
    "TORCH_COMMAND": "sdfleet_torch_build (the torch table) or webui_service_torch_command",
    "TORCH_INDEX_URL": "sdfleet_torch_index_url_cuda / sdfleet_torch_index_url_cpu",
    "INDEX_URL": "sdfleet_pip_index_url",
    "XFORMERS_PACKAGE": "sdfleet_torch_build (xformers comes with the torch build)",
    "CLIP_PACKAGE": "sdfleet_webui_package_sources.CLIP_PACKAGE",
    "OPENCLIP_PACKAGE": "sdfleet_webui_package_sources.OPENCLIP_PACKAGE",
    "REQS_FILE": "nothing: webui_repo installs the checkout's own requirements under its constraints",
    "REQS_FILE_FOR_NPU": "nothing: webui_repo installs the checkout's own requirements under its constraints",
    "HF_HOME": "webui_service_data_root (the caches live in <data_root>/cache, writable by the unit)",
    "XDG_CACHE_HOME": "webui_service_data_root (the caches live in <data_root>/cache, writable by the unit)",
    "MPLCONFIGDIR": "webui_service_data_root (the caches live in <data_root>/cache, writable by the unit)",
    "CUDA_VISIBLE_DEVICES": "nothing: each instance gets its own GPU from sdfleet_gpu (sdfleet_gpu_tier, "
                            "webui_service_single_instance)",
    "CUDA_DEVICE_ORDER": "nothing: each instance gets its own GPU from sdfleet_gpu (named by UUID)",
    # webui.sh reads these from webui-user.sh (sourced): the role writes python_cmd and venv_dir there itself.
    "python_cmd": "webui_service_python_cmd",
    "venv_dir": "webui_service_venv_dir",
    "VIRTUAL_ENV": "webui_service_venv_dir",
    "install_dir": "webui_service_install_dir",
    "clone_dir": "webui_service_install_dir",
    **{f"{name}_REPO": f"sdfleet_webui_subrepo_sources.{name}" for name in _SUBREPOS},
    **{f"{name}_COMMIT_HASH": f"sdfleet_webui_subrepo_commits.{name}" for name in _SUBREPOS},
}
# Prefixes the roles own: pip's own settings (webui_repo sets PIP_INDEX_URL, PIP_TRUSTED_HOST, PIP_CONSTRAINT).
MANAGED_PREFIXES: dict[str, str] = {
    "PIP_": "sdfleet_pip_index_url / sdfleet_pip_trusted_hosts (pip's settings come from webui_repo, with the "
            "constraints that pin every package)",
}

# Names that make the service load or run other code than the checkout and its venv.
INJECTION: dict[str, str] = {
    "LD_PRELOAD": "the dynamic loader loads these libraries into every process of the service",
    "LD_LIBRARY_PATH": "the dynamic loader takes libraries (libcuda, libpython) from these dirs first",
    "LD_AUDIT": "the dynamic loader runs these audit libraries in every process",
    "PYTHONPATH": "Python imports modules from these dirs before the venv's",
    "PYTHONHOME": "Python takes its standard library from there",
    "PYTHONPLATLIBDIR": "Python takes its standard library from another dir",
    "PYTHONUSERBASE": "Python adds that user site-packages, whose .pth files run code at start",
    "PYTHONSTARTUP": "interactive Python sessions run that file",
    "PYTHONBREAKPOINT": "breakpoint() imports and calls what it names",
    "PATH": "it decides which python, git and pip the launcher runs",
    "BASH_ENV": "every non-interactive bash (webui.sh, sd-webui-ctl) runs that file first",
    "ENV": "sh runs that file at start",
    # webui modules/launch_utils.py (v1.9.4, v1.10.1) runs $GIT; webui.sh exports GIT_PYTHON_GIT_EXECUTABLE from it.
    "GIT": "the launcher runs that program as git",
    "GIT_PYTHON_GIT_EXECUTABLE": "GitPython runs that program as git",
    # webui.sh (v1.9.4, v1.10.1): another launch script, or `accelerate launch` found on PATH.
    "LAUNCH_SCRIPT": "webui.sh runs that script instead of launch.py",
    "ACCELERATE": "webui.sh then runs `accelerate launch` from PATH instead of the venv's python",
}
# git reads GIT_SSH_COMMAND, GIT_CONFIG_COUNT/KEY/VALUE, GIT_EXEC_PATH, GIT_ASKPASS...: each can run a program.
INJECTION_PREFIXES: dict[str, str] = {
    "GIT_": "git (run by the launcher and by extensions) reads GIT_* settings such as GIT_SSH_COMMAND, "
            "GIT_CONFIG_* and GIT_EXEC_PATH, which run other programs",
    "LD_": "the dynamic loader reads LD_* settings that load other libraries",
}


def _name_problem(key: str, where: str) -> str | None:
    if key in EXPOSURE:
        return f"{where}: refused, {EXPOSURE[key]}."
    if key in MANAGED:
        return (f"{where}: refused, the roles set {key} themselves. Fix: remove it and set {MANAGED[key]} "
                "instead.")
    for prefix, variable in MANAGED_PREFIXES.items():
        if key.startswith(prefix):
            return f"{where}: refused, the roles own {prefix}*. Fix: remove it and set {variable} instead."
    if key in INJECTION:
        return f"{where}: refused, {INJECTION[key]}, i.e. other code in the service. Fix: remove it."
    for prefix, reason in INJECTION_PREFIXES.items():
        if key.startswith(prefix):
            return f"{where}: refused, {reason}, i.e. other code in the service. Fix: remove it."
    return None


def _value_problem(value: Any, where: str) -> str | None:
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        kind = "null" if value is None else type(value).__name__
        return (f"{where} = {_show(redact_urls(value)) if isinstance(value, str) else kind}: a {kind}, not a string or "
                "number. Fix: quote the value (e.g. \"1\" or \"true\").")
    if isinstance(value, str):
        if any(char in value for char in "\n\r\0"):
            return (f"{where}: the value holds a line break (or NUL), which would split the environment file. "
                    "Fix: write it on one line.")
        if has_credentials(value):
            return (f"{where} = {_show(redact_urls(value))}: holds credentials in a URL, and the environment is "
                    "written to webui-user.sh (world-readable) and shown to the webui. Fix: drop the user:password "
                    "part (use a netrc file or a proxy without a login).")
    return None


def environment_problems(environment: Any, prefix: str = "sdfleet_", role_prefix: str = "") -> list[str]:
    """Every problem with the extra launcher ``environment`` (empty when accepted); see DOCUMENTATION."""
    name = _Names(prefix, role_prefix)
    if environment is None:
        return []
    if not isinstance(environment, Mapping):
        return [f"{name('environment')} is a {type(environment).__name__}, not a mapping. Fix: write it as "
                "NAME: value pairs, e.g. {PYTORCH_CUDA_ALLOC_CONF: 'expandable_segments:True'}, or {}."]
    problems: list[str] = []
    for key, value in environment.items():
        if not isinstance(key, str) or not _IDENTIFIER.match(key):
            problems.append(f"{name('environment')} key {_show(key)}: not a shell identifier (letters, digits and _, "
                            "not starting with a digit), so no shell or EnvironmentFile can set it. Fix: rename it.")
            continue
        where = name("environment", f".{key}")
        problem = _name_problem(key, where) or _value_problem(value, where)
        if problem:
            problems.append(problem)
    return problems


class FilterModule:
    """sdfleet.toolkit.environment_problems."""

    def filters(self) -> dict[str, Any]:
        """Filter name -> function."""
        return {"environment_problems": environment_problems}
