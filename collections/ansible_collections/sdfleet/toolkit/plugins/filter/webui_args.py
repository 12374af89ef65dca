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
from ansible_collections.sdfleet.toolkit.plugins.module_utils import webui_flags as upstream

DOCUMENTATION = r"""
name: webui_args
short_description: Argument list of one AUTOMATIC1111 webui instance
description:
  - Builds the argument list (after C(launch.py)) of one webui instance from the GPU record
    (C(sdfleet_gpu.gpus[i]), its tier and flags), the exposure variables and extra args.
  - Deduplicates and resolves contradictions (the lowest VRAM tier wins; C(--no-half) drops C(--upcast-sampling)).
  - Always adds C(--no-download-sd-model). Refuses flags the real parser of the webui version in use does not know
    (the flag lists of v1.9.4, v1.10.1 and dev are derived from upstream's C(modules/cmd_args.py) and built-in
    C(preload.py) files by C(scripts/webui_flags.py)), values outside a flag's C(choices) and non-integer values of
    integer flags; refuses flags the role manages (naming the variable to set) and a few dangerous ones.
positional: _input
options:
  _input:
    description: The GPU record (C(index), C(tier), C(flags)); an empty dict means a CPU host.
    type: dict
    required: true
  port:
    description: TCP port of this instance.
    type: int
    required: true
  webui_version:
    description:
      - The webui version whose flags apply (C(v1.9.4), C(v1.10.1), C(dev)), or the commit of one of them.
      - Empty means C(v1.10.1). Another ref is checked against the flags of all known versions together.
    type: str
    default: ""
"""

EXAMPLES = r"""
- name: Arguments of instance 0
  ansible.builtin.debug:
    msg: "{{ sdfleet_gpu.gpus[0] | sdfleet.toolkit.webui_args(port=7860, listen=false, api=true) }}"
"""

RETURN = r"""
_value:
  description: The argument list, one token per item.
  type: list
  elements: str
"""

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
    "--port": "webui_service_port (instance N listens on base port + N)",
    "--listen": "webui_service_listen",
    "--server-name": "webui_service_listen_address",
    "--share": "webui_service_share",
    "--gradio-auth": "webui_service_auth_users (written to a 0600 --gradio-auth-path file)",
    "--gradio-auth-path": "webui_service_auth_users (written to a 0600 --gradio-auth-path file)",
    "--api-auth": "webui_service_api_auth_users (enforced by the front door, never given to the webui)",
    "--api": "webui_service_api",
    "--data-dir": "webui_service_data_root (instance N uses <data_root>/instance-N)",
    "--models-dir": "webui_service_models_dir",
    "--embeddings-dir": "webui_service_embeddings_dir",
    "--freeze-settings": "webui_service_freeze_settings",
    "--enable-insecure-extension-access": "webui_service_insecure_extension_access",
    "--theme": "webui_service_theme",
    "--device-id": "nothing: each instance sees only its GPU through CUDA_VISIBLE_DEVICES",
}

# Real flags that the role refuses outright, with the reason.
REFUSED_FLAGS: dict[str, str] = {
    "--nowebui": "the API-only server has no /internal/ping, so the health gate cannot work",
    "--ngrok": "a public tunnel the exposure checks do not cover; use webui_service_share or a reverse proxy",
    "--allow-code": "it runs arbitrary Python sent by any UI user",
    "--api-server-stop": "it lets any API user stop or kill the server (/sdapi/v1/server-kill)",
    "--dump-sysinfo": "it writes a sysinfo file and exits, so the service would restart in a loop",
    "--update-all-extensions": "it updates every extension at each start, undoing the pinned versions",
    "--disable-safe-unpickle": "it loads pickled checkpoints without the safety check",
}

THEMES: frozenset[str] = frozenset({"light", "dark"})


def _fail(msg: str) -> AnsibleFilterError:
    return AnsibleFilterError(msg)


def _tokens(extra_args: Union[str, Sequence[Any], None]) -> list[str]:
    """Split extra args (a list of strings, each shell-split) into tokens; ``--f=v`` -> ``--f v``."""
    if extra_args is None:
        return []
    items: Iterable[Any] = [extra_args] if isinstance(extra_args, str) else extra_args
    out: list[str] = []
    for item in items:
        if not isinstance(item, (str, int, float)) or isinstance(item, bool):
            raise _fail(f"webui_service_extra_args: {item!r} is not a string; "
                        "give a list of strings such as ['--xformers', '--precision full']")
        for tok in shlex.split(str(item)):
            if tok.startswith("--") and "=" in tok:
                flag, value = tok.split("=", 1)
                out.extend([flag, value])
            else:
                out.append(tok)
    return out


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


def webui_flag_specs(webui_version: str = "") -> tuple[str, dict[str, FlagSpec]]:
    """``(label, {flag: spec})`` of the real parser of ``webui_version``.

    ``webui_version`` is a version of ``WEBUI_VERSIONS`` or the commit (7+ hex digits) of one; empty means
    ``DEFAULT_WEBUI_VERSION``. Another ref (a branch, another tag or commit) gets the flags of all known
    versions together: typos are still caught, and the health gate catches a flag that version lacks.
    """
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


def _unknown_flag(source: str, flag: str, label: str, specs: Mapping[str, FlagSpec]) -> AnsibleFilterError:
    """The refusal of a flag the parser of ``label`` does not know, saying which versions have it."""
    if any(flag in upstream.FLAGS[v] for v in WEBUI_VERSIONS):
        return _fail(f"{source}: {flag} is not a flag of AUTOMATIC1111 webui {label} (the webui exits on unknown "
                     f"flags); {_versions_with(flag)}: remove it or pin such a webui version")
    close = difflib.get_close_matches(flag, list(specs), n=3, cutoff=0.8)
    hint = f" (did you mean {' or '.join(close)}?)" if close else ""
    return _fail(f"{source}: {flag} is not a known AUTOMATIC1111 webui {label} flag{hint}; the webui exits on "
                 "unknown flags: fix the spelling or remove it. The flags of each version are listed in "
                 "plugins/module_utils/webui_flags.py of the sdfleet.toolkit collection")


def _check_values(source: str, flag: str, spec: FlagSpec, values: Sequence[str], label: str) -> None:
    """Refuse values the webui's parser refuses: outside ``choices``, or not a number for ``type=int``."""
    kind = spec.get("type")
    for value in values:
        if kind in ("int", "float"):
            try:
                int(value) if kind == "int" else float(value)
            except ValueError:
                raise _fail(f"{source}: {flag} takes a number ({kind}), not {value!r}") from None
        choices = spec.get("choices")
        if choices and (value.lower() if kind == "str.lower" else value) not in choices:
            raise _fail(f"{source}: '{flag} {value}' is refused by webui {label}; use one of {', '.join(choices)}")


def parse_flags(tokens: Sequence[str], source: str,
                webui_version: str = "") -> list[tuple[str, tuple[str, ...]]]:
    """Parse tokens into ``(flag, values)`` pairs, checked against the parser of ``webui_version``.

    ``source`` names where the tokens came from, for the error message. An alias is returned as the
    flag it stands for.
    """
    label, specs = webui_flag_specs(webui_version)
    parsed: list[tuple[str, tuple[str, ...]]] = []
    i = 0
    while i < len(tokens):
        given = tokens[i]
        if not given.startswith("--"):
            raise _fail(f"{source}: {given!r} is not a flag (values must follow their flag, "
                        f"e.g. '--precision full'); check the quoting of {list(tokens)!r}")
        flag = str(specs.get(given, {}).get("alias_of", given))
        shown = given if flag == given else f"{given} (an alias of {flag})"
        if flag in MANAGED_FLAGS:
            raise _fail(f"{source}: {shown} is managed by the role; set {MANAGED_FLAGS[flag]} instead")
        if flag in REFUSED_FLAGS:
            raise _fail(f"{source}: {shown} is refused: {REFUSED_FLAGS[flag]}; remove it")
        if given not in specs:
            raise _unknown_flag(source, given, label, specs)
        arity = specs[given]["arity"]
        i += 1
        values: list[str] = []
        if arity == "+":
            while i < len(tokens) and not tokens[i].startswith("--"):
                values.append(tokens[i])
                i += 1
            if not values:
                raise _fail(f"{source}: {given} needs at least one value")
        else:
            for _ in range(int(arity)):
                if i >= len(tokens) or tokens[i].startswith("--"):
                    raise _fail(f"{source}: {given} needs a value, e.g. '{given} VALUE'")
                values.append(tokens[i])
                i += 1
        _check_values(source, given, specs[given], values, label)
        parsed.append((flag, tuple(values)))
    return parsed


def effective_tier(gpu: Optional[Mapping[str, Any]]) -> str:
    """The tier of an instance: its GPU record's (cpu when there is no record)."""
    rec_tier = (gpu or {}).get("tier") or "cpu"
    if rec_tier not in TIERS:
        raise _fail(f"sdfleet_gpu: GPU record tier {rec_tier!r} is not one of {', '.join(TIERS)}; "
                    "rerun the nvidia_check role (nvidia_check_tier pins a tier)")
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
            raise _fail("webui_service_extra_args: '--precision half' contradicts '--no-half' "
                        f"(tier {tier} or extra args); remove one of them")
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
               extra_args: Union[str, Sequence[Any], None] = None, webui_version: str = "") -> list[str]:
    """Return the argument list (after ``launch.py``) of one instance.

    ``gpu`` is one record of ``sdfleet_gpu.gpus``, or for a CPU instance ``{"tier": "cpu", "flags":
    sdfleet_gpu.flags}``: its ``flags`` are the tier's, decided by nvidia_check, and are taken as given (only
    checked against the parser). Secrets never appear here: UI users go through the file at ``auth_path``; API
    users are the front door's. Every flag must be one of ``webui_version``'s parser (see ``webui_flag_specs``).
    """
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise _fail(f"webui_service_port: port {port!r} is out of range; use 1-65535")
    if theme and theme not in THEMES:
        raise _fail(f"webui_service_theme: {theme!r} is not a webui theme; use '', 'light' or 'dark'")
    tier_name = effective_tier(gpu)
    record_flags = (gpu or {}).get("flags") or []
    if not isinstance(record_flags, (list, tuple)):
        raise _fail(f"sdfleet_gpu: the flags of GPU record {(gpu or {}).get('index', 0)} are "
                    f"{type(record_flags).__name__}, not a list; rerun the nvidia_check role")
    tier_pairs = parse_flags(_tokens(list(record_flags)), f"sdfleet_gpu flags (tier {tier_name})", webui_version)
    extra_pairs = parse_flags(_tokens(extra_args), "webui_service_extra_args", webui_version)

    managed: list[tuple[str, tuple[str, ...]]] = [("--no-download-sd-model", ())]
    for flag, value in (("--data-dir", data_dir), ("--models-dir", models_dir),
                        ("--embeddings-dir", embeddings_dir)):
        if value:
            managed.append((flag, (str(value),)))
    managed.append(("--port", (str(port),)))
    if listen_address:
        managed.append(("--server-name", (str(listen_address),)))  # wins over --listen upstream
    elif listen:
        managed.append(("--listen", ()))
    if share:
        managed.append(("--share", ()))
    if auth_path:
        managed.append(("--gradio-auth-path", (str(auth_path),)))
    if api:
        managed.append(("--api", ()))
    if freeze_settings:
        managed.append(("--freeze-settings", ()))
    if insecure_extension_access:
        managed.append(("--enable-insecure-extension-access", ()))
    if theme:
        managed.append(("--theme", (theme,)))

    label, specs = webui_flag_specs(webui_version)
    for flag, _values in managed:  # the role's own flags: the parser must know them too
        if flag not in specs:
            raise _fail(f"{MANAGED_FLAGS[flag]}: the role would pass {flag}, which AUTOMATIC1111 webui {label} does "
                        f"not know ({_versions_with(flag)}); unset that variable or pin such a webui version")

    out: list[str] = []
    for flag, values in _merge(tier_pairs + extra_pairs + managed, tier_name, specs):
        out.append(flag)
        out.extend(values)
    return out


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
    if isinstance(base_port, bool) or not isinstance(base_port, int):
        raise _fail(f"webui_service_port: {base_port!r} is not an integer port")
    public_base = base_port if public_base_port is None else int(public_base_port)
    facts = gpu_facts or {}
    if not isinstance(facts, Mapping):
        raise _fail(f"sdfleet_gpu: expected the nvidia_check plan (a dict), got a {type(facts).__name__}")
    gpus = [g for g in (facts.get("gpus") or []) if isinstance(g, Mapping)]
    if facts.get("tier") == "cpu" or not gpus:
        records: list[Mapping[str, Any]] = [{"index": 0, "tier": "cpu", "flags": list(facts.get("flags") or [])}]
        cpu = True
    else:
        records = sorted(gpus, key=lambda g: int(g.get("index", 0)))
        cpu = False
        if single_instance:
            records = records[:1]
    out: list[dict[str, Any]] = []
    for n, rec in enumerate(records):
        port = base_port + n
        if not 1 <= port <= 65535:
            raise _fail(f"webui_service_port: instance {n} would listen on port {port}, out of 1-65535; "
                        "lower webui_service_port")
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
    parts: list[str] = []
    for arg in args:
        text = str(arg)
        if "\n" in text:
            raise _fail(f"webui_systemd_argv: argument {text!r} holds a newline")
        text = text.replace("%", "%%").replace("$", "$$")
        if not _SYSTEMD_SAFE.match(text):
            text = '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
        parts.append(text)
    return " ".join(parts)


def _users(users: Any, variable: str) -> list[tuple[str, str]]:
    if not users:
        return []
    if not isinstance(users, Sequence) or isinstance(users, str):
        raise _fail(f"{variable}: expected a list of {{username, password}}, got a {type(users).__name__}")
    out: list[tuple[str, str]] = []
    for i, user in enumerate(users):
        if not isinstance(user, Mapping) or not user.get("username") or not user.get("password"):
            raise _fail(f"{variable}[{i}]: each entry needs a non-empty username and password")
        name, pw = str(user["username"]), str(user["password"])
        if any(c in name + pw for c in "\n\r"):
            raise _fail(f"{variable}[{i}] ({name!r}): newlines are not allowed in usernames or passwords")
        out.append((name, pw))
    return out


def webui_auth_lines(users: Any) -> str:
    """Content of the ``--gradio-auth-path`` file: one ``user:password`` per line.

    The webui splits each entry on its first ``:`` and entries on ``,``: usernames with ``:`` or ``,``
    and passwords with ``,`` are refused.
    """
    lines: list[str] = []
    for i, (name, pw) in enumerate(_users(users, "webui_service_auth_users")):
        if ":" in name or "," in name or "," in pw or name != name.strip() or pw != pw.strip():
            raise _fail(f"webui_service_auth_users[{i}] ({name!r}): usernames may not hold ':' or ',', "
                        "passwords may not hold ',' and neither may start or end with spaces; choose another")
        lines.append(f"{name}:{pw}")
    return "".join(line + "\n" for line in lines)


def _env_double_quote(value: str) -> str:
    """Quote for a systemd EnvironmentFile and POSIX sh alike: ``"..."`` escaping ``\\ " $ `` ``."""
    return '"' + re.sub(r'([\\"$`])', r"\\\1", value) + '"'


def webui_env_line(name: str, value: Any) -> str:
    """One ``NAME="value"`` line valid for a systemd EnvironmentFile and for ``sh``."""
    if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", str(name)):
        raise _fail(f"environment variable name {name!r} is not valid; use letters, digits and _")
    text = str(value)
    if "\n" in text:
        raise _fail(f"environment variable {name}: the value holds a newline")
    return f"{name}={_env_double_quote(text)}"


def webui_summary(plan: Sequence[Mapping[str, Any]], host: str = "127.0.0.1",
                  scheme: str = "http") -> list[dict[str, Any]]:
    """The published ``sdfleet_instances``: ``[{index, port, backend_port, url, tier, flags}]`` from a ``webui_plan``.

    ``port`` is where users arrive (the front door's public port when there is one), ``backend_port`` where the
    instance itself listens; ``url`` is ``<scheme>://<host>:<port>/``.
    """
    shown = f"[{host}]" if ":" in host and not host.startswith("[") else host
    out = []
    for p in plan:
        public = int(p.get("public_port", p["port"]))
        out.append({"index": p["index"], "port": public, "backend_port": p["port"],
                    "url": f"{scheme}://{shown}:{public}/", "tier": p["tier"], "flags": list(p.get("args", []))})
    return out


def webui_redact(text: Any, secrets: Sequence[Any] = ()) -> str:
    """Replace every secret (and any ``--api-auth`` value) in ``text`` with ``********``."""
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
        }
