# -*- coding: utf-8 -*-
"""Build the AUTOMATIC1111 webui command line for one service instance.

Pure functions (testable without Ansible) plus ``FilterModule``:

* ``webui_instances``: the instances a host runs (one per GPU, or one).
* ``webui_plan``: both, i.e. each instance with its ``args``.
* ``webui_args``: the argv tail after ``launch.py`` for one instance.
* ``webui_systemd_argv``: that argv quoted for a systemd ``ExecStart=`` line.
* ``webui_auth_lines``: the ``--gradio-auth-path`` file content.

API logins never reach the webui (``--api-auth`` is readable through ``/sdapi/v1/cmd-flags`` and
``/internal/sysinfo``): the front door (role front_door) enforces them.

Every flag is checked against the real parser of the webui version in use
(``webui_version``; default ``DEFAULT_WEBUI_VERSION``): ``module_utils/webui_flags.py``,
derived from each version's ``modules/cmd_args.py`` and built-in ``preload.py`` files by
``scripts/webui_flags.py``. Flags the role manages through its own variables are refused in
extra args and GPU records, with the name of the variable to use instead; a few real flags are
refused outright (``REFUSED_FLAGS``).
"""
from __future__ import annotations

import difflib
import re
import shlex
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Optional, Union

from ansible.errors import AnsibleFilterError
from ansible_collections.sdfleet.toolkit.plugins.filter.exposure import _Names, is_loopback
from ansible_collections.sdfleet.toolkit.plugins.module_utils import webui_flags as upstream


# Tiers, lowest first. The public names are the contract of nvidia_check.
TIERS: tuple[str, ...] = ("cpu", "lowvram", "medvram", "medvram_sdxl", "full")

# The VRAM flags, lowest tier first: when several arrive (the GPU plan's and extra args), the lowest wins.
# Which flags a tier gets is decided once, by nvidia_check (nvidia_check_tier_table, nvidia_check_cpu_flags):
# the GPU plan's records carry them and the argv builder takes them as given.
VRAM_FLAGS_LOW_FIRST: tuple[str, ...] = ("--lowvram", "--medvram", "--medvram-sdxl")

# Flags that only make sense with a CUDA GPU: dropped on the cpu tier.
CUDA_ONLY_FLAGS: frozenset[str] = frozenset(
    {"--lowvram", "--medvram", "--medvram-sdxl", "--xformers", "--force-enable-xformers",
     "--xformers-flash-attention", "--reinstall-xformers", "--upcast-sampling"})

# The flags of each webui version come from its real parser: module_utils/webui_flags.py, written by
# scripts/webui_flags.py (never edited by hand). Per flag: arity (0: a switch; 1: one value; "+": one
# or more values up to the next flag), and where upstream gives them type, choices, action (append:
# the flag may repeat and its values add up) and alias_of.
Arity = Union[int, str]
FlagSpec = Mapping[str, Any]
WEBUI_VERSIONS: tuple[str, ...] = tuple(upstream.FLAGS)
# The version checked when the caller names none: the release webui_repo installs by default.
DEFAULT_WEBUI_VERSION = "v1.10.1"
# Flags of the default version -> arity (managed and refused flags are checked before this list).
ALLOWED_FLAGS: dict[str, Arity] = {flag: spec["arity"] for flag, spec in upstream.FLAGS[DEFAULT_WEBUI_VERSION].items()}

# Flags the role sets from its own variables: refused in extra args and GPU records.
MANAGED_FLAGS: dict[str, str] = {
    "--port": "sdfleet_port (webui_service_port; instance N listens on base port + N)",
    "--listen": "sdfleet_listen (webui_service_listen)",
    "--server-name": "sdfleet_listen_address (webui_service_listen_address)",
    "--share": "sdfleet_share (webui_service_share)",
    "--gradio-auth": "sdfleet_auth_users (webui_service_auth_users; written to a 0600 --gradio-auth-path file)",
    "--gradio-auth-path": "sdfleet_auth_users (webui_service_auth_users; written to a 0600 --gradio-auth-path file)",
    "--api-auth": "sdfleet_api_auth_users (webui_service_api_auth_users; enforced by the front door, never given "
                  "to the webui)",
    "--api": "sdfleet_api (webui_service_api)",
    "--data-dir": "webui_service_data_root (instance N uses <data_root>/instance-N)",
    "--models-dir": "webui_service_models_dir",
    "--embeddings-dir": "webui_service_embeddings_dir",
    "--freeze-settings": "sdfleet_freeze_settings (webui_service_freeze_settings)",
    "--enable-insecure-extension-access": "sdfleet_insecure_extension_access (webui_service_insecure_extension_access)",
    "--theme": "webui_service_theme",
    "--device-id": "nothing: each instance sees only its GPU through CUDA_VISIBLE_DEVICES",
}

# Before v1.10.0 there is no --models-dir (v1.9.4's models path is <data dir>/models): the shared models dir is
# then given kind by kind, through the per-directory flags of that parser (modules/cmd_args.py and the built-in
# Lora preload.py), for the kinds webui_models places (model_paths.KINDS; ControlNet has no such flag there).
MODELS_SUBDIR_FLAGS: tuple[tuple[str, str], ...] = (
    ("--ckpt-dir", "Stable-diffusion"), ("--vae-dir", "VAE"), ("--lora-dir", "Lora"),
    ("--hypernetwork-dir", "hypernetworks"), ("--gfpgan-models-path", "GFPGAN"),
    ("--codeformer-models-path", "Codeformer"), ("--esrgan-models-path", "ESRGAN"),
)

# Real flags that the role refuses outright, with the reason.
REFUSED_FLAGS: dict[str, str] = {
    "--nowebui": "the API-only server has no /internal/ping, so the health gate cannot work",
    "--ngrok": "a public tunnel the exposure checks do not cover; use sdfleet_share or the front door",
    "--allow-code": "it runs arbitrary Python sent by any UI user",
    "--api-server-stop": "it lets any API user stop or kill the server (/sdapi/v1/server-kill)",
    "--dump-sysinfo": "it writes a sysinfo file and exits, so the service would restart in a loop",
    "--update-all-extensions": "it updates every extension at each start, undoing the pinned versions",
    "--disable-safe-unpickle": "it loads pickled checkpoints without the safety check",
}

THEMES: frozenset[str] = frozenset({"light", "dark"})


# CORS options of the webui (modules/initialize_util.py): a list split on ",", or a regex that starlette fullmatches.
CORS_FLAGS: tuple[str, ...] = ("--cors-allow-origins", "--cors-allow-origins-regex")
# Origins no fleet would allow on purpose: a regex that accepts one of them accepts (about) every origin.
# "null" is what sandboxed iframes and file:// pages send, so any web page can produce it.
CORS_PROBES: tuple[str, ...] = ("https://sdfleet-cors-probe.invalid", "http://sdfleet-cors-probe.invalid:8080",
                                "null")

# The variables behind each option of webui_args / webui_instances, for the messages (inventory name first).
OPTION_NAMES: dict[str, str] = {
    "port": "sdfleet_port (webui_service_port)",
    "base_port": "sdfleet_port (webui_service_port, or webui_service_backend_port behind the front door)",
    "public_base_port": "sdfleet_port (webui_service_port)",
    "listen": "sdfleet_listen (webui_service_listen)",
    "listen_address": "sdfleet_listen_address (webui_service_listen_address)",
    "share": "sdfleet_share (webui_service_share)",
    "api": "sdfleet_api (webui_service_api)",
    "auth_path": "webui_service_config_dir (the --gradio-auth-path file)",
    "data_dir": "webui_service_data_root",
    "data_root": "webui_service_data_root",
    "models_dir": "webui_service_models_dir",
    "embeddings_dir": "webui_service_embeddings_dir",
    "freeze_settings": "sdfleet_freeze_settings (webui_service_freeze_settings)",
    "insecure_extension_access": "sdfleet_insecure_extension_access (webui_service_insecure_extension_access)",
    "theme": "webui_service_theme",
    "extra_args": "sdfleet_extra_args (webui_service_extra_args)",
    "webui_version": "sdfleet_webui_version (sdfleet_webui.version)",
    "exposed": "exposed (webui_service computes it from sdfleet_listen, sdfleet_listen_address, sdfleet_share)",
    "single_instance": "webui_service_single_instance",
    "skip_install": "webui_service_skip_install (sdfleet_webui.installed: webui_repo installed at provision time)",
    "gpu": "sdfleet_gpu (the nvidia_check plan)",
}
_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0", ""}


def _fail(msg: str) -> AnsibleFilterError:
    return AnsibleFilterError(msg)


def _kind(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _bool(value: Any, option: str) -> bool:
    """A boolean option: a bool, 0/1, or a string such as 'true'/'no' (extra-vars arrive as strings)."""
    if value is None or isinstance(value, bool):
        return bool(value)
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    raise _fail(f"{OPTION_NAMES.get(option, option)} = {value!r}: a {_kind(value)}, not a boolean. "
                "Fix: set it to true or false.")


def _text(value: Any, option: str) -> str:
    """A string option (None counts as empty); numbers are accepted as their text."""
    if value is None:
        return ""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise _fail(f"{OPTION_NAMES.get(option, option)} = {value!r}: a {_kind(value)}, not a string. "
                    "Fix: set it to a string (quote it in YAML).")
    text = str(value)
    if any(char in text for char in "\n\r\0"):
        raise _fail(f"{OPTION_NAMES.get(option, option)}: the value holds a line break. Fix: write it on one line.")
    return text


def _port(value: Any, option: str) -> int:
    """A port option: an int, or a string of digits (extra-vars arrive as strings), in 1..65535."""
    port = value
    if isinstance(value, str) and value.strip().isdigit():
        port = int(value.strip())
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise _fail(f"{OPTION_NAMES.get(option, option)} = {value!r}: not a port number in 1..65535. "
                    "Fix: set a free port, e.g. 7860.")
    return port


def _split(extra_args: Any, source: str) -> tuple[list[str], list[str]]:
    """Split extra args (a list of strings, each shell-split) into tokens (``--f=v`` -> ``--f v``), and the
    problems of items that are not strings or cannot be split. A single string counts as a one-item list."""
    if extra_args is None:
        return [], []
    if isinstance(extra_args, str):
        items: list[Any] = [extra_args]
    elif isinstance(extra_args, (list, tuple)):
        items = list(extra_args)
    else:
        return [], [f"{source} is a {_kind(extra_args)}, not a list. Fix: write it as a list of strings such as "
                    "['--xformers', '--precision full'], or []."]
    tokens: list[str] = []
    problems: list[str] = []
    for index, item in enumerate(items):
        if isinstance(item, bool) or not isinstance(item, (str, int, float)):
            problems.append(f"{source}[{index}] is a {_kind(item)}, not a string. Fix: write each item as a string "
                            "such as '--precision full' (quote it in YAML).")
            continue
        try:
            split = shlex.split(str(item))
        except ValueError as err:  # unbalanced quotes; the item is not shown (it may hold a token)
            problems.append(f"{source}[{index}] cannot be split like a shell line ({err}). Fix: balance its quotes.")
            continue
        for tok in split:
            if tok.startswith("--") and "=" in tok:
                flag, value = tok.split("=", 1)
                tokens.extend([flag, value])
            else:
                tokens.append(tok)
    return tokens, problems


def _tokens(extra_args: Union[str, Sequence[Any], None], source: str = OPTION_NAMES["extra_args"]) -> list[str]:
    """The tokens of ``extra_args`` (see ``_split``); raises on the first item that is not a string."""
    tokens, problems = _split(extra_args, source)
    if problems:
        raise _fail(" | ".join(problems))
    return tokens


def listed_webui_version(webui_version: str = "") -> Optional[str]:
    """The version of ``WEBUI_VERSIONS`` that ``webui_version`` names: itself, or the one whose commit it is
    (7+ hex digits); empty means ``DEFAULT_WEBUI_VERSION``; None for any other ref (a branch, another tag)."""
    ref = str(webui_version or "").strip() or DEFAULT_WEBUI_VERSION
    if ref in upstream.FLAGS:
        return ref
    if re.fullmatch(r"[0-9a-fA-F]{7,40}", ref):
        for version, source in upstream.SOURCES.items():
            if source.get("commit", "").startswith(ref.lower()):
                return version
    return None


def _version_text(webui_version: Any) -> str:
    """``webui_version`` as text, refusing what is not a ref (a list, a mapping, a bool)."""
    if webui_version is None:
        return ""
    if isinstance(webui_version, bool) or not isinstance(webui_version, (str, int, float)):
        raise _fail(f"{OPTION_NAMES['webui_version']} = {webui_version!r}: a {_kind(webui_version)}, not a git ref. "
                    f"Fix: set a tag, branch or commit, e.g. {DEFAULT_WEBUI_VERSION}.")
    return str(webui_version)


def webui_flag_specs(webui_version: str = "") -> tuple[str, dict[str, FlagSpec]]:
    """``(label, {flag: spec})`` of the real parser of ``webui_version``.

    ``webui_version`` is a version of ``WEBUI_VERSIONS`` or the commit (7+ hex digits) of one; empty means
    ``DEFAULT_WEBUI_VERSION``. Another ref (a branch, another tag or commit) gets the flags of all known
    versions together: typos are still caught, and the health gate catches a flag that version lacks.
    """
    webui_version = _version_text(webui_version)
    version = listed_webui_version(webui_version)
    if version is not None:
        return version, dict(upstream.FLAGS[version])
    ref = str(webui_version or "").strip()
    union: dict[str, FlagSpec] = {}
    for version in WEBUI_VERSIONS:  # oldest first: the newest spec of a flag wins
        union.update(upstream.FLAGS[version])
    return f"{ref} (not a listed version; checked against {', '.join(WEBUI_VERSIONS)} together)", union


def _versions_with(flag: str) -> str:
    """``"only v1.10.1, dev have it"``: the versions whose parser knows ``flag``."""
    have = [v for v in WEBUI_VERSIONS if flag in upstream.FLAGS[v]]
    if not have:
        return "no listed version has it"
    return f"only {', '.join(have)} {'has' if len(have) == 1 else 'have'} it"


def _unknown_flag(source: str, flag: str, label: str, specs: Mapping[str, FlagSpec]) -> str:
    """The refusal of a flag the parser of ``label`` does not know, saying which versions have it."""
    if any(flag in upstream.FLAGS[v] for v in WEBUI_VERSIONS):
        return (f"{source}: {flag} is not a flag of AUTOMATIC1111 webui {label} (the webui exits on unknown flags); "
                f"{_versions_with(flag)}. Fix: remove it, or pin such a webui version (sdfleet_webui_version).")
    close = difflib.get_close_matches(flag, list(specs), n=3, cutoff=0.8)
    hint = f" (did you mean {' or '.join(close)}?)" if close else ""
    return (f"{source}: {flag} is not a known AUTOMATIC1111 webui {label} flag{hint}; the webui exits on unknown "
            "flags. Fix: correct the spelling or remove it (the flags of each version are listed in "
            "plugins/module_utils/webui_flags.py of the sdfleet.toolkit collection).")


def _value_problems(source: str, flag: str, spec: FlagSpec, values: Sequence[str], label: str) -> list[str]:
    """Values the webui's parser refuses: outside ``choices``, or not a number for ``type=int``/``float``."""
    kind = spec.get("type")
    problems: list[str] = []
    for value in values:
        if kind in ("int", "float"):
            try:
                int(value) if kind == "int" else float(value)
            except ValueError:
                problems.append(f"{source}: {flag} takes a number ({kind}), not {value!r}. "
                                f"Fix: give a number, e.g. '{flag} 30'.")
                continue
        choices = spec.get("choices")
        if choices and (value.lower() if kind == "str.lower" else value) not in choices:
            problems.append(f"{source}: '{flag} {value}' is refused by webui {label}. "
                            f"Fix: use one of {', '.join(choices)}.")
    return problems


def _cors_problems(source: str, flag: str, values: Sequence[str]) -> list[str]:
    """CORS settings that let (about) any web site call the webui with its users' sessions: refused while exposed."""
    fix = ("Fix: list the exact origins that may call the webui, e.g. '--cors-allow-origins https://app.example.org', "
           "or keep the UI on loopback.")
    problems: list[str] = []
    for value in values:
        if flag == "--cors-allow-origins":
            wild = [origin for origin in value.split(",") if origin.strip() in ("*", "null")]
            if wild:
                problems.append(f"{source}: '{flag} {value}' allows {' and '.join(repr(o) for o in wild)} on an "
                                "exposed server: any web page its users open could drive the UI and API with "
                                f"their login (credentials are allowed). {fix}")
            continue
        try:
            pattern = re.compile(value)
        except re.error as err:
            problems.append(f"{source}: '{flag} {value}' is not a valid regex ({err}); the webui fails at start. "
                            "Fix: correct it.")
            continue
        matched = [probe for probe in CORS_PROBES if pattern.fullmatch(probe)]
        if matched:
            problems.append(f"{source}: '{flag} {value}' matches any origin (it accepts {matched[0]!r}) on an exposed "
                            f"server: any web page its users open could drive the UI and API with their login. {fix}")
    return problems


def flag_problems(tokens: Sequence[str], source: str, webui_version: str = "",
                  exposed: bool = False) -> tuple[list[tuple[str, tuple[str, ...]]], list[str]]:
    """Parse tokens into ``(flag, values)`` pairs, checked against the parser of ``webui_version``, and list every
    problem: not a flag, managed by the role, refused, unknown to that version, a missing or bad value, and (when
    ``exposed``) a CORS setting that matches every origin. The one owner of the flag rules: ``parse_flags``
    (raising, webui_service's argv) and ``webui_extra_args_problems`` (preflight) both use it.

    ``source`` names where the tokens came from (the variable), for the messages. An alias is returned as the
    flag it stands for.
    """
    label, specs = webui_flag_specs(webui_version)
    parsed: list[tuple[str, tuple[str, ...]]] = []
    problems: list[str] = []
    i = 0
    while i < len(tokens):
        given = tokens[i]
        i += 1
        if not given.startswith("--"):
            problems.append(f"{source}: {given!r} is not a flag (values must follow their flag). Fix: write "
                            "'--flag value' in one item, e.g. '--precision full', or remove it.")
            continue
        flag = str(specs.get(given, {}).get("alias_of", given))
        shown = given if flag == given else f"{given} (an alias of {flag})"
        arity = specs.get(given, {}).get("arity", "+")  # an unknown flag: skip the values that follow it
        values: list[str] = []
        missing = False
        if arity == "+":
            while i < len(tokens) and not tokens[i].startswith("--"):
                values.append(tokens[i])
                i += 1
            missing = not values
        else:
            for _ in range(int(arity)):
                if i >= len(tokens) or tokens[i].startswith("--"):
                    missing = True
                    break
                values.append(tokens[i])
                i += 1
        if flag in MANAGED_FLAGS:
            use = MANAGED_FLAGS[flag]
            fix = f"remove it ({use})" if use.startswith("nothing") else f"remove it and set {use} instead"
            problems.append(f"{source}: {shown} is managed by the role. Fix: {fix}.")
        elif flag in REFUSED_FLAGS:
            problems.append(f"{source}: {shown} is refused: {REFUSED_FLAGS[flag]}. Fix: remove it.")
        elif given not in specs:
            problems.append(_unknown_flag(source, given, label, specs))
        elif missing:
            example = f"'{given} VALUE'" if arity != "+" else f"'{given} VALUE [VALUE ...]'"
            problems.append(f"{source}: {given} needs {'a value' if arity != '+' else 'at least one value'}. "
                            f"Fix: write {example}.")
        else:
            found = _value_problems(source, given, specs[given], values, label)
            if exposed and flag in CORS_FLAGS:
                found += _cors_problems(source, flag, values)
            if found:
                problems.extend(found)
            else:
                parsed.append((flag, tuple(values)))
    return parsed, problems


def parse_flags(tokens: Sequence[str], source: str, webui_version: str = "",
                exposed: bool = False) -> list[tuple[str, tuple[str, ...]]]:
    """``flag_problems``' pairs; raises AnsibleFilterError with every problem when there are any."""
    parsed, problems = flag_problems(tokens, source, webui_version, exposed)
    if problems:
        raise _fail(" | ".join(problems))
    return parsed


def webui_extra_args_problems(extra_args: Any, webui_version: Any = "", exposed: Any = False,
                              prefix: str = "sdfleet_", role_prefix: str = "") -> list[str]:
    """Every problem with the extra webui flags (empty when accepted), named ``<prefix>extra_args
    (<role_prefix>extra_args)``: the rules of ``webui_args`` (``flag_problems``), as a list for preflight."""
    names = _Names(prefix, role_prefix)
    source = names("extra_args")
    try:
        version = _version_text(webui_version)
        is_exposed = _bool(exposed, "exposed")
    except AnsibleFilterError as err:
        return [str(err).replace(OPTION_NAMES["webui_version"], names("webui_version"))]
    tokens, problems = _split(extra_args, source)
    return problems + flag_problems(tokens, source, version, is_exposed)[1]


def effective_tier(gpu: Optional[Mapping[str, Any]]) -> str:
    """The tier of an instance: its GPU record's (cpu when there is no record)."""
    if gpu is not None and not isinstance(gpu, Mapping):
        raise _fail(f"sdfleet_gpu: a GPU record is a {_kind(gpu)}, not a mapping. Fix: rerun the nvidia_check role "
                    "(it writes sdfleet_gpu); do not set sdfleet_gpu by hand.")
    rec_tier = (gpu or {}).get("tier") or "cpu"
    if not isinstance(rec_tier, str) or rec_tier not in TIERS:
        raise _fail(f"sdfleet_gpu: GPU record tier {rec_tier!r} is not one of {', '.join(TIERS)}. "
                    "Fix: rerun the nvidia_check role (nvidia_check_tier, sdfleet_gpu_tier pins a tier).")
    return str(rec_tier)


def _merge(pairs: Iterable[tuple[str, tuple[str, ...]]], tier: str,
           specs: Mapping[str, FlagSpec]) -> list[tuple[str, tuple[str, ...]]]:
    """Deduplicate (a later value of a valued flag replaces an earlier one, the values of a repeatable
    flag add up) and resolve contradictions. ``specs``: the flags of the webui version in use."""
    def repeats(flag: str) -> bool:
        return specs.get(flag, {}).get("action") == "append"

    merged: dict[str, tuple[str, ...]] = {}
    for flag, values in pairs:
        if repeats(flag):
            merged[flag] = merged.get(flag, ()) + tuple(v for v in values if v not in merged.get(flag, ()))
        elif flag in merged and specs.get(flag, {}).get("arity", 0) != 0:
            merged[flag] = values  # later source wins, keeps first position
        else:
            merged.setdefault(flag, values)
    if tier == "cpu":
        for flag in CUDA_ONLY_FLAGS:
            merged.pop(flag, None)
    # The lowest VRAM tier present wins (--lowvram beats --medvram beats --medvram-sdxl).
    present = [f for f in VRAM_FLAGS_LOW_FIRST if f in merged]
    for flag in present[1:]:
        merged.pop(flag)
    if "--no-half" in merged:
        merged.pop("--upcast-sampling", None)  # no effect together with --no-half
        if merged.get("--precision") == ("half",):
            raise _fail(f"{OPTION_NAMES['extra_args']}: '--precision half' contradicts '--no-half' "
                        f"(tier {tier} or extra args). Fix: remove one of them.")
    out: list[tuple[str, tuple[str, ...]]] = []
    for flag, values in merged.items():
        if repeats(flag):
            out.extend((flag, (v,)) for v in values)
        else:
            out.append((flag, values))
    return out


def webui_args(gpu: Optional[Mapping[str, Any]], port: int, *, listen: bool = False,
               listen_address: str = "", share: bool = False, auth_path: str = "", api: bool = False,
               data_dir: str = "", models_dir: str = "", embeddings_dir: str = "",
               freeze_settings: bool = False, insecure_extension_access: bool = False, theme: str = "",
               extra_args: Union[str, Sequence[Any], None] = None, webui_version: str = "",
               exposed: Optional[bool] = None, skip_install: bool = False) -> list[str]:
    """Return the argument list (after ``launch.py``) of one instance.

    ``gpu`` is one record of ``sdfleet_gpu.gpus``, or for a CPU instance ``{"tier": "cpu", "flags":
    sdfleet_gpu.flags}``: its ``flags`` are the tier's, decided by nvidia_check, and are taken as given (only
    checked against the parser). Secrets never appear here: UI users go through the file at ``auth_path``; API
    users are the front door's. Every flag must be one of ``webui_version``'s parser (see ``webui_flag_specs``).
    ``exposed``: whether users reach the UI from other machines (behind the front door the instance itself binds
    loopback, so the caller says); None derives it from ``listen``, ``listen_address`` and ``share``.
    ``skip_install``: the dependencies (extensions' installers included) were installed at provision time, so the
    launcher gets ``--skip-install`` and no start runs pip.
    """
    if not isinstance(port, int) or isinstance(port, bool) or not 1 <= port <= 65535:
        raise _fail(f"{OPTION_NAMES['port']}: port {port!r} is out of range. Fix: use a port in 1-65535.")
    listen, share, api = _bool(listen, "listen"), _bool(share, "share"), _bool(api, "api")
    freeze_settings, skip_install = _bool(freeze_settings, "freeze_settings"), _bool(skip_install, "skip_install")
    insecure_extension_access = _bool(insecure_extension_access, "insecure_extension_access")
    listen_address, auth_path, theme = (_text(listen_address, "listen_address"), _text(auth_path, "auth_path"),
                                        _text(theme, "theme"))
    data_dir, models_dir, embeddings_dir = (_text(data_dir, "data_dir"), _text(models_dir, "models_dir"),
                                            _text(embeddings_dir, "embeddings_dir"))
    webui_version = _version_text(webui_version)
    if exposed is None:
        exposed = listen or share or bool(listen_address.strip() and not is_loopback(listen_address))
    exposed = _bool(exposed, "exposed")
    if theme and theme not in THEMES:
        raise _fail(f"webui_service_theme: {theme!r} is not a webui theme. Fix: use '', 'light' or 'dark'.")
    tier_name = effective_tier(gpu)
    record_flags = (gpu or {}).get("flags") or []
    if not isinstance(record_flags, (list, tuple)):
        raise _fail(f"sdfleet_gpu: the flags of GPU record {(gpu or {}).get('index', 0)} are "
                    f"{type(record_flags).__name__}, not a list. Fix: rerun the nvidia_check role.")
    record_source = f"sdfleet_gpu flags (tier {tier_name}; nvidia_check_tier_table, nvidia_check_quirks)"
    tier_pairs = parse_flags(_tokens(list(record_flags), record_source), record_source, webui_version)
    extra_pairs = parse_flags(_tokens(extra_args), OPTION_NAMES["extra_args"], webui_version, exposed)

    label, specs = webui_flag_specs(webui_version)
    managed: list[tuple[str, tuple[str, ...]]] = [("--no-download-sd-model", ())]
    for flag, value in (("--data-dir", data_dir), ("--models-dir", models_dir),
                        ("--embeddings-dir", embeddings_dir)):
        if value and flag == "--models-dir" and flag not in specs:
            managed.extend((sub_flag, (f"{value.rstrip('/')}/{sub}",)) for sub_flag, sub in MODELS_SUBDIR_FLAGS
                           if sub_flag in specs)
        elif value:
            managed.append((flag, (value,)))
    managed.append(("--port", (str(port),)))
    if listen_address:
        managed.append(("--server-name", (listen_address,)))  # wins over --listen upstream
    elif listen:
        managed.append(("--listen", ()))
    if share:
        managed.append(("--share", ()))
    if auth_path:
        managed.append(("--gradio-auth-path", (auth_path,)))
    if api:
        managed.append(("--api", ()))
    if freeze_settings:
        managed.append(("--freeze-settings", ()))
    if insecure_extension_access:
        managed.append(("--enable-insecure-extension-access", ()))
    if theme:
        managed.append(("--theme", (theme,)))
    if skip_install:
        managed.append(("--skip-install", ()))

    for flag, _values in managed:  # the role's own flags: the parser must know them too
        if flag not in specs:
            raise _fail(f"{MANAGED_FLAGS.get(flag, OPTION_NAMES.get(flag.strip('-').replace('-', '_'), flag))}: "
                        f"the role would pass {flag}, which AUTOMATIC1111 webui {label} does "
                        f"not know ({_versions_with(flag)}). Fix: unset that variable or pin such a webui version.")

    out: list[str] = []
    for flag, values in _merge(tier_pairs + extra_pairs + managed, tier_name, specs):
        out.append(flag)
        out.extend(values)
    return out


def _index_of(record: Mapping[str, Any], default: int) -> int:
    value = record.get("index", default)
    if isinstance(value, bool) or not isinstance(value, (int, str)) or not str(value).strip().isdigit():
        raise _fail(f"sdfleet_gpu: GPU record index {value!r} is not a number. Fix: rerun the nvidia_check role.")
    return int(value)


def webui_instances(gpu_facts: Optional[Mapping[str, Any]], base_port: int = 7860, single_instance: bool = False,
                    data_root: str = "/var/lib/sd-webui",
                    public_base_port: Optional[int] = None) -> list[dict[str, Any]]:
    """The instances of a host: one per GPU in ``sdfleet_gpu.gpus``; one when asked, on cpu, or without GPUs.

    Each item: ``{index, port, public_port, data_dir, cuda_visible_devices, tier, gpu}``: the instance binds
    ``port`` (``base_port + N``); users reach it on ``public_port`` (``public_base_port + N``: the front door's,
    or ``port`` itself without one). ``cuda_visible_devices`` names the instance's GPU by its UUID (CUDA numbers
    devices fastest first, nvidia-smi by PCI bus, so an index can name another card), or by its nvidia-smi index
    when no UUID is known (the unit then sets ``CUDA_DEVICE_ORDER=PCI_BUS_ID`` so that CUDA counts the same way);
    ``""`` for a CPU instance (nothing exported). A CPU instance's record carries the plan's host ``flags``.
    """
    base_port = _port(base_port, "base_port")
    public_base = base_port if public_base_port is None else _port(public_base_port, "public_base_port")
    single_instance = _bool(single_instance, "single_instance")
    data_root = _text(data_root, "data_root")
    if not data_root.startswith("/"):
        raise _fail(f"webui_service_data_root = {data_root!r}: not an absolute path. Fix: use e.g. /var/lib/sd-webui.")
    facts = gpu_facts or {}
    if not isinstance(facts, Mapping):
        raise _fail(f"sdfleet_gpu: expected the nvidia_check plan (a dict), got a {_kind(facts)}. "
                    "Fix: run the nvidia_check role first (it writes sdfleet_gpu); do not set it by hand.")
    raw_gpus = facts.get("gpus") or []
    if not isinstance(raw_gpus, (list, tuple)):
        raise _fail(f"sdfleet_gpu.gpus is a {_kind(raw_gpus)}, not a list. Fix: rerun the nvidia_check role.")
    host_flags = facts.get("flags") or []
    if not isinstance(host_flags, (list, tuple)):
        raise _fail(f"sdfleet_gpu.flags is a {_kind(host_flags)}, not a list. Fix: rerun the nvidia_check role "
                    "(nvidia_check_cpu_flags is a list).")
    gpus = [g for g in raw_gpus if isinstance(g, Mapping)]
    if facts.get("tier") == "cpu" or not gpus:
        records: list[Mapping[str, Any]] = [{"index": 0, "tier": "cpu", "flags": list(host_flags)}]
        cpu = True
    else:
        records = sorted(gpus, key=lambda g: _index_of(g, 0))
        cpu = False
        if single_instance:
            records = records[:1]
    out: list[dict[str, Any]] = []
    for n, rec in enumerate(records):
        port = base_port + n
        if not 1 <= port <= 65535:
            raise _fail(f"{OPTION_NAMES['port']}: instance {n} would listen on port {port}, out of 1-65535. "
                        "Fix: lower the base port.")
        uuid = str(rec.get("uuid") or "")
        out.append({
            "index": n,
            "port": port,
            "public_port": public_base + n,
            "data_dir": f"{data_root.rstrip('/')}/instance-{n}",
            "cuda_visible_devices": "" if cpu else (uuid if uuid.startswith(("GPU-", "MIG-")) else
                                                    str(rec.get("index", n))),
            "tier": effective_tier(rec),
            "gpu": dict(rec),
        })
    return out


def webui_plan(gpu_facts: Optional[Mapping[str, Any]], base_port: int = 7860, single_instance: bool = False,
               data_root: str = "/var/lib/sd-webui", public_base_port: Optional[int] = None,
               **options: Any) -> list[dict[str, Any]]:
    """``webui_instances`` with each instance's ``args`` (``webui_args`` with ``options``) added."""
    plan = webui_instances(gpu_facts, base_port, single_instance, data_root, public_base_port)
    for inst in plan:
        inst["args"] = webui_args(inst["gpu"], inst["port"], data_dir=inst["data_dir"], **options)
    return plan


_SYSTEMD_SAFE = re.compile(r"^[A-Za-z0-9_@+=:,./-]+$")


def webui_systemd_argv(args: Sequence[Any]) -> str:
    """Quote an argv for a systemd ``ExecStart=`` line (``%`` and ``$`` escaped, quotes where needed)."""
    if not isinstance(args, (list, tuple)):
        raise _fail(f"webui_systemd_argv: the argv is a {_kind(args)}, not a list. Fix: pass the args of a "
                    "webui_plan instance (a list of strings).")
    parts: list[str] = []
    for arg in args:
        if isinstance(arg, bool) or not isinstance(arg, (str, int, float)):
            raise _fail(f"webui_systemd_argv: argument {arg!r} is a {_kind(arg)}, not a string. "
                        "Fix: pass a list of strings.")
        text = str(arg)
        if "\n" in text or "\r" in text:
            raise _fail(f"webui_systemd_argv: argument {text!r} holds a newline. Fix: remove the line break.")
        text = text.replace("%", "%%").replace("$", "$$")
        if not _SYSTEMD_SAFE.match(text):
            text = '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
        parts.append(text)
    return " ".join(parts)


def _users(users: Any, variable: str) -> list[tuple[str, str]]:
    if not users:
        return []
    if not isinstance(users, (list, tuple)):
        raise _fail(f"{variable}: expected a list of {{username, password}}, got a {_kind(users)}. "
                    "Fix: write it as a list of {username: ..., password: ...} entries.")
    out: list[tuple[str, str]] = []
    for i, user in enumerate(users):
        if not isinstance(user, Mapping) or not user.get("username") or not user.get("password"):
            raise _fail(f"{variable}[{i}]: each entry needs a non-empty username and password. "
                        "Fix: write it as {username: ..., password: ...} (password from ansible-vault).")
        if not all(isinstance(user[key], (str, int)) and not isinstance(user[key], bool)
                   for key in ("username", "password")):
            raise _fail(f"{variable}[{i}]: the username and password must be strings. Fix: quote them.")
        name, pw = str(user["username"]), str(user["password"])
        if any(c in name + pw for c in "\n\r"):
            raise _fail(f"{variable}[{i}] ({name!r}): newlines are not allowed in usernames or passwords. "
                        "Fix: remove the line break.")
        out.append((name, pw))
    return out


def webui_auth_lines(users: Any) -> str:
    """Content of the ``--gradio-auth-path`` file: one ``user:password`` per line.

    The webui splits each entry on its first ``:`` and entries on ``,``: usernames with ``:`` or ``,``
    and passwords with ``,`` are refused.
    """
    variable = "sdfleet_auth_users (webui_service_auth_users)"
    lines: list[str] = []
    for i, (name, pw) in enumerate(_users(users, variable)):
        if ":" in name or "," in name or "," in pw or name != name.strip() or pw != pw.strip():
            raise _fail(f"{variable}[{i}] ({name!r}): usernames may not hold ':' or ',', passwords may not hold "
                        "',' and neither may start or end with spaces. Fix: choose another.")
        lines.append(f"{name}:{pw}")
    return "".join(line + "\n" for line in lines)


def _env_double_quote(value: str) -> str:
    """Quote for a systemd EnvironmentFile and POSIX sh alike: ``"..."`` escaping ``\\ " $ `` ``."""
    return '"' + re.sub(r'([\\"$`])', r"\\\1", value) + '"'


def webui_env_line(name: str, value: Any) -> str:
    """One ``NAME="value"`` line valid for a systemd EnvironmentFile and for ``sh``."""
    if not isinstance(name, str) or not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", name):
        raise _fail(f"webui_service_environment: the name {name!r} is not a shell identifier. "
                    "Fix: use letters, digits and _ (not starting with a digit).")
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise _fail(f"webui_service_environment.{name} is a {_kind(value)}, not a string or number. "
                    "Fix: quote the value.")
    text = str(value)
    if "\n" in text or "\r" in text:
        raise _fail(f"webui_service_environment.{name}: the value holds a newline. Fix: write it on one line.")
    return f"{name}={_env_double_quote(text)}"


def webui_summary(plan: Sequence[Mapping[str, Any]], host: str = "127.0.0.1",
                  scheme: str = "http") -> list[dict[str, Any]]:
    """The published ``sdfleet_instances``: ``[{index, port, backend_port, url, tier, flags}]`` from a ``webui_plan``.

    ``port`` is where users arrive (the front door's public port when there is one), ``backend_port`` where the
    instance itself listens; ``url`` is ``<scheme>://<host>:<port>/``.
    """
    if not isinstance(plan, (list, tuple)) or not all(isinstance(p, Mapping) and "port" in p and "index" in p
                                                       for p in plan):
        raise _fail("webui_summary: expected the instances of webui_plan (a list of {index, port, ...}). "
                    "Fix: pass __webui_service_instances.")
    host = _text(host, "host") or "127.0.0.1"
    if scheme not in ("http", "https"):
        raise _fail(f"webui_summary: scheme {scheme!r} is not http or https. Fix: pass 'http' or 'https'.")
    shown = f"[{host}]" if ":" in host and not host.startswith("[") else host
    out = []
    for p in plan:
        public = int(p.get("public_port", p["port"]))
        out.append({"index": p["index"], "port": public, "backend_port": p["port"],
                    "url": f"{scheme}://{shown}:{public}/", "tier": p["tier"], "flags": list(p.get("args", []))})
    return out


def webui_redact(text: Any, secrets: Sequence[Any] = ()) -> str:
    """Replace every secret (and any ``--api-auth`` value) in ``text`` with ``********``."""
    if isinstance(secrets, (str, int)) and not isinstance(secrets, bool):
        secrets = [secrets]  # one secret given bare
    if secrets is None:
        secrets = ()
    if not isinstance(secrets, (list, tuple, set)):
        raise _fail(f"webui_redact: the secrets are a {_kind(secrets)}, not a list. Fix: pass a list of strings.")
    out = str(text)
    for secret in sorted({str(x) for x in secrets if x}, key=len, reverse=True):
        out = out.replace(secret, "********")
    return re.sub(r"(--(?:api-auth|gradio-auth)[= ])\S+", r"\1********", out)


class FilterModule:
    """sdfleet webui service filters."""

    def filters(self) -> dict[str, Any]:
        return {
            "webui_args": webui_args,
            "webui_instances": webui_instances,
            "webui_plan": webui_plan,
            "webui_systemd_argv": webui_systemd_argv,
            "webui_auth_lines": webui_auth_lines,
            "webui_env_line": webui_env_line,
            "webui_redact": webui_redact,
            "webui_summary": webui_summary,
            "webui_extra_args_problems": webui_extra_args_problems,
        }
