"""The stand-in's flags, bind address, ports, auth and HTTP routes (webui.md sections 7 and 8)."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import time
import urllib.error
import urllib.parse
import urllib.request
from email.message import Message
from pathlib import Path
from typing import Any

import pytest

from standin_helpers import clean_env, free_port, run_launch

Response = tuple[int, Message, bytes]


def request(url: str, method: str = "GET", data: bytes | None = None, headers: dict[str, str] | None = None,
            ) -> Response:
    """One HTTP request on loopback without following redirects; (status, headers, body)."""

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: Any, **kwargs: Any) -> None:
            return None

    opener = urllib.request.build_opener(NoRedirect, urllib.request.ProxyHandler({}))
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    try:
        with opener.open(req, timeout=10) as resp:
            return resp.status, resp.headers, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.headers, err.read()


def basic(user: str, password: str) -> dict[str, str]:
    """An HTTP Basic Authorization header."""
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def listening_addresses(port: int) -> set[str]:
    """IPv4 addresses (dotted) with a LISTEN socket on `port`, from /proc/net/tcp."""
    found = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        address, hex_port = fields[1].split(":")
        if int(hex_port, 16) == port and fields[3] == "0A":
            found.add(socket.inet_ntoa(bytes.fromhex(address)[::-1]))
    return found


def parsed(output: str) -> dict[str, Any]:
    """The `sdfleet-standin: parsed {...}` settings line."""
    for line in output.splitlines():
        if line.startswith("sdfleet-standin: parsed "):
            return json.loads(line.split(" ", 2)[2])
    raise AssertionError(f"no parsed line in:\n{output}")


def test_unknown_flag_exits_2_naming_the_flag(webui: Path) -> None:
    result = run_launch(webui, "--skip-prepare-environment", "--listne")
    assert result.returncode == 2
    assert "unrecognized arguments: --listne" in result.stderr


def test_unknown_flag_in_commandline_args_is_rejected_too(webui: Path) -> None:
    result = run_launch(webui, "--skip-prepare-environment", env=clean_env(COMMANDLINE_ARGS="--medvram --xformerz"))
    assert result.returncode == 2
    assert "unrecognized arguments: --xformerz" in result.stderr


def test_bad_choice_exits_2(webui: Path) -> None:
    result = run_launch(webui, "--skip-prepare-environment", "--precision", "fp8")
    assert result.returncode == 2
    assert "--precision" in result.stderr and "fp8" in result.stderr


def test_ignore_cmd_args_errors_lets_unknown_flags_through(start_server) -> None:
    server = start_server("--no-such-flag", env=clean_env(IGNORE_CMD_ARGS_ERRORS="1"))
    assert request(server.url("/internal/ping"))[0] == 200


def test_commandline_args_are_appended_to_argv(start_server) -> None:
    env = clean_env(COMMANDLINE_ARGS="--medvram --device-id 1 --precision full --no-half --use-cpu interrogate")
    server = start_server("--xformers", env=env)
    out = server.output()
    settings = parsed(out)
    assert (settings["medvram"], settings["device_id"], settings["precision"], settings["no_half"]) == (
        True, "1", "full", True)
    assert settings["xformers"] is True and settings["use_cpu"] == ["interrogate"]
    assert (f"Launching Web UI with arguments: --skip-prepare-environment --port {server.port} --xformers "
            "--medvram --device-id 1 --precision full --no-half --use-cpu interrogate") in out


def test_default_bind_is_loopback_only(start_server) -> None:
    server = start_server()
    assert listening_addresses(server.port) == {"127.0.0.1"}
    assert f"Running on local URL:  http://127.0.0.1:{server.port}" in server.output()


def test_server_name_wins_over_listen(start_server) -> None:
    server = start_server("--listen", "--server-name", "127.0.0.2")
    assert listening_addresses(server.port) == {"127.0.0.2"}


def test_exposed_server_with_gradio_and_api_auth(start_server, webui: Path, tmp_path: Path) -> None:
    auth_file = tmp_path / "gradio-auth"
    auth_file.write_text("alice:pa:ss, bob:pw\n\ncarol:c3\n")
    ckpt_dir = webui / "models" / "Stable-diffusion" / "sub"
    ckpt_dir.mkdir(parents=True)
    payload = b"not a real model " * 5000
    (ckpt_dir / "tiny.safetensors").write_bytes(payload)
    server = start_server("--listen", "--gradio-auth-path", str(auth_file), "--api", "--api-auth", "u:p")
    assert listening_addresses(server.port) == {"0.0.0.0"}
    settings = parsed(server.output())
    assert settings["gradio_auth_enabled"] and settings["api_auth_enabled"] and settings["listen"]
    assert "pa:ss" not in json.dumps(settings)

    assert request(server.url("/internal/ping"))[:3:2] == (200, b"{}")
    status, _headers, body = request(server.url("/config"))
    assert (status, json.loads(body)) == (401, {"detail": "Not authenticated"})
    status, _headers, body = request(server.url("/"))
    assert status == 200 and b"Login" in body

    form = urllib.parse.urlencode({"username": "alice", "password": "wrong"}).encode()
    status, _headers, body = request(server.url("/login"), "POST", form)
    assert (status, json.loads(body)) == (400, {"detail": "Incorrect credentials."})
    form = urllib.parse.urlencode({"username": "alice", "password": "pa:ss"}).encode()  # split on the first ':'
    status, headers, body = request(server.url("/login"), "POST", form)
    assert (status, json.loads(body)) == (200, {"success": True})
    cookies = [value.split(";", 1)[0] for value in headers.get_all("Set-Cookie")]
    cookie = next(c for c in cookies if c.startswith("access-token="))
    assert request(server.url("/config"), headers={"Cookie": cookie})[0] == 200
    assert request(server.url("/config"), headers={"Cookie": "access-token=forged"})[0] == 401
    # gradio's session check, which the front door's auth_request asks: 200 null for a live session only
    assert request(server.url("/login_check"))[:3:2] == (401, b'{"detail": "Not authenticated"}')
    assert request(server.url("/login_check"), headers={"Cookie": "access-token=forged"})[0] == 401
    assert request(server.url("/login_check"), headers={"Cookie": cookie})[:3:2] == (200, b"null")
    status, _headers, body = request(server.url("/"), headers={"Cookie": cookie})
    assert status == 200 and b"Login" not in body

    status, _headers, body = request(server.url("/sdapi/v1/sd-models"))
    assert status == 401 and json.loads(body)["error"] == "HTTPException"
    status, _headers, body = request(server.url("/sdapi/v1/sd-models"), headers=basic("u", "nope"))
    assert (status, json.loads(body)["detail"]) == (401, "Incorrect username or password")
    status, _headers, body = request(server.url("/sdapi/v1/sd-models"), headers=basic("u", "p"))
    assert status == 200
    sha256 = hashlib.sha256(payload).hexdigest()
    assert json.loads(body) == [{
        "title": f"sub/tiny.safetensors [{sha256[:10]}]", "model_name": "sub_tiny", "hash": sha256[:10],
        "sha256": sha256, "filename": str(ckpt_dir / "tiny.safetensors"), "config": None}]
    # The gradio session does not open the API, and the API credentials do not open gradio.
    assert request(server.url("/sdapi/v1/sd-models"), headers={"Cookie": cookie})[0] == 401
    assert request(server.url("/config"), headers=basic("u", "p"))[0] == 401


@pytest.mark.parametrize("path", ["/sdapi/v1/sd-models", "/sdapi/v1/cmd-flags", "/sdapi/v1/options"])
def test_api_routes_are_404_without_api_flag(start_server, path: str) -> None:
    server = start_server()
    assert request(server.url(path))[0] == 404
    assert request(server.url("/config"))[0] == 200
    assert request(server.url("/login_check"))[:3:2] == (200, b"null")  # no UI login configured


def test_cmd_flags_leaks_gradio_auth_like_the_real_one(start_server) -> None:
    server = start_server("--api", "--gradio-auth", "admin:hunter2", "--medvram-sdxl")
    status, _headers, body = request(server.url("/sdapi/v1/cmd-flags"))
    flags = json.loads(body)
    assert status == 200
    assert flags["gradio_auth"] == "admin:hunter2" and flags["medvram_sdxl"] is True
    # The real response model types a flag by its default: --port defaults to None, so a str field.
    assert flags["port"] == str(server.port)


def test_gradio_auth_flag_and_file_combine(start_server, tmp_path: Path) -> None:
    auth_file = tmp_path / "auth"
    auth_file.write_text("filer:fp\n")
    server = start_server("--gradio-auth", "flagger:x:y", "--gradio-auth-path", str(auth_file))
    for user, password in (("flagger", "x:y"), ("filer", "fp")):
        form = urllib.parse.urlencode({"username": user, "password": password}).encode()
        assert request(server.url("/login"), "POST", form)[0] == 200, user


def test_api_auth_password_with_colon_crashes_startup(start_server) -> None:
    server = start_server("--api", "--api-auth", "u:p:q", wait=False)
    assert server.proc.wait(timeout=15) != 0
    assert "ValueError" in server.output()


def test_sd_models_scan_rules_and_refresh(start_server, webui: Path, tmp_path: Path) -> None:
    models = webui / "models" / "Stable-diffusion"
    extra = tmp_path / "extra-ckpts"
    extra.mkdir()
    (models / "A.CKPT").write_bytes(b"a")
    (models / "skip.vae.safetensors").write_bytes(b"v")
    (models / "notes.txt").write_bytes(b"t")
    (models / "withcfg.safetensors").write_bytes(b"w")
    (models / "withcfg.yaml").write_text("model: {}\n")
    (extra / "b.safetensors").write_bytes(b"b")
    server = start_server("--api", "--ckpt-dir", str(extra))
    body = json.loads(request(server.url("/sdapi/v1/sd-models"))[2])
    by_name = {m["title"].split(" ")[0]: m for m in body}
    assert sorted(by_name) == ["A.CKPT", "b.safetensors", "withcfg.safetensors"]
    assert by_name["withcfg.safetensors"]["config"] == str(models / "withcfg.yaml")
    assert by_name["A.CKPT"]["config"] is None
    assert by_name["b.safetensors"]["hash"] == hashlib.sha256(b"b").hexdigest()[:10]

    (models / "new.safetensors").write_bytes(b"n")
    assert len(json.loads(request(server.url("/sdapi/v1/sd-models"))[2])) == 3  # listed at scan time only
    assert request(server.url("/sdapi/v1/refresh-checkpoints"), "POST", b"")[0] == 200
    body = json.loads(request(server.url("/sdapi/v1/sd-models"))[2])
    assert "new.safetensors" in [m["model_name"] + ".safetensors" for m in body]

    (extra / "b.safetensors").write_bytes(b"changed")  # new size: the cache must not serve the old hash
    request(server.url("/sdapi/v1/refresh-checkpoints"), "POST", b"")
    body = json.loads(request(server.url("/sdapi/v1/sd-models"))[2])
    assert [m["sha256"] for m in body if m["model_name"] == "b"] == [hashlib.sha256(b"changed").hexdigest()]


def test_models_dir_and_data_dir_are_honoured(start_server, tmp_path: Path) -> None:
    data = tmp_path / "data"
    models = tmp_path / "shared-models"
    data.mkdir()
    server = start_server("--api", "--data-dir", str(data), "--models-dir", str(models))
    assert (models / "Stable-diffusion").is_dir()
    (models / "Stable-diffusion" / "m.safetensors").write_bytes(b"m")
    request(server.url("/sdapi/v1/refresh-checkpoints"), "POST", b"")
    body = json.loads(request(server.url("/sdapi/v1/sd-models"))[2])
    assert [m["filename"] for m in body] == [str(models / "Stable-diffusion" / "m.safetensors")]
    status, _headers, _body = request(server.url("/sdapi/v1/options"), "POST", b'{"sd_model_checkpoint": "m"}')
    assert status == 200
    assert json.loads((data / "config.json").read_text()) == {"sd_model_checkpoint": "m"}
    assert json.loads(request(server.url("/sdapi/v1/options"))[2]) == {"sd_model_checkpoint": "m"}


def test_freeze_settings_refuses_option_writes(start_server, webui: Path) -> None:
    server = start_server("--api", "--freeze-settings")
    status, _headers, body = request(server.url("/sdapi/v1/options"), "POST", b'{"x": 1}')
    assert status == 500 and "changing settings is disabled" in body.decode()
    assert not (webui / "config.json").exists()


def test_taken_port_is_a_hard_failure(webui: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        result = run_launch(webui, "--skip-prepare-environment", "--port", str(port), timeout=30)
    assert result.returncode != 0
    assert f"OSError: Cannot find empty port in range: {port}-{port}" in result.stderr


def test_share_is_refused(webui: Path) -> None:
    result = run_launch(webui, "--skip-prepare-environment", "--share", "--port", str(free_port()), timeout=30)
    assert result.returncode == 1
    assert "--share needs internet" in result.stderr
    assert "Running on" not in result.stdout


def test_sigterm_stops_with_exit_0(start_server) -> None:
    server = start_server()
    server.proc.send_signal(signal.SIGTERM)
    assert server.proc.wait(timeout=10) == 0


def test_nowebui_serves_api_without_internal_routes(start_server) -> None:
    server = start_server("--nowebui", "--server-name", "127.0.0.1")
    assert request(server.url("/internal/ping"))[0] == 404
    assert request(server.url("/sdapi/v1/sd-models"))[0] == 200


@pytest.mark.parametrize("python", ["python3.11", "python3.13"])
def test_serves_under_the_container_pythons(python: str, webui: Path) -> None:
    """Debian bookworm ships 3.11 and trixie 3.13: the server path must work on both (stdlib only)."""
    candidates = [shutil.which(python), *sorted(Path.home().glob(f".pyenv/versions/{python[6:]}*/bin/{python}"))]
    working = [str(c) for c in candidates
               if c and subprocess.run([c, "-c", ""], capture_output=True, check=False).returncode == 0]
    if not working:
        pytest.skip(f"no working {python} on PATH or under ~/.pyenv here")
    interpreter = working[0]
    port = free_port()
    proc = subprocess.Popen([interpreter, "launch.py", "--skip-prepare-environment", "--port", str(port), "--api"],
                            cwd=webui, env=clean_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                if request(f"http://127.0.0.1:{port}/internal/ping")[0] == 200:
                    break
            except OSError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, proc.stdout and proc.stdout.read()
            time.sleep(0.1)
        assert request(f"http://127.0.0.1:{port}/sdapi/v1/sd-models")[0] == 200
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)


# -- what the real one writes into its checkout at start ---------------------------------------------------------
def test_start_creates_config_states_in_the_checkout_even_with_a_data_dir(start_server, webui: Path,
                                                                          tmp_path: Path) -> None:
    data = tmp_path / "instance-0"
    start_server("--data-dir", str(data))
    assert (webui / "config_states").is_dir()  # the real UI lists its config states there at every start
    assert (data / "extensions").is_dir() and not (data / "config_states").exists()


def test_nowebui_creates_no_config_states(start_server, webui: Path, tmp_path: Path) -> None:
    start_server("--nowebui", "--server-name", "127.0.0.1", "--data-dir", str(tmp_path / "data"))
    assert not (webui / "config_states").exists()
    assert (tmp_path / "data" / "extensions").is_dir()


def read_only_run(checkout: Path, *argv: str, timeout: float = 30) -> subprocess.CompletedProcess[str] | None:
    """Run argv with `checkout` bind-mounted read-only in a private mount namespace (None where that is not
    possible: no unshare, no user namespaces)."""
    if not shutil.which("unshare"):
        return None
    script = 'mount --bind "$0" "$0" && mount -o remount,bind,ro "$0" && cd "$0" && exec "$@"'
    probe = subprocess.run(["unshare", "-rm", "sh", "-c", script, str(checkout), "true"], capture_output=True,
                           check=False)
    if probe.returncode != 0:
        return None
    return subprocess.run(["unshare", "-rm", "sh", "-c", script, str(checkout), *argv], capture_output=True,
                          text=True, timeout=timeout, env=clean_env(), check=False)


def test_a_read_only_checkout_fails_at_start_like_the_real_one(webui: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    args = [sys.executable, "launch.py", "--skip-prepare-environment", "--data-dir", str(data),
            "--port", str(free_port())]
    result = read_only_run(webui, *args)
    if result is None:
        pytest.skip("no private read-only bind mount here (unshare -rm)")
    assert result.returncode == 1
    assert f"OSError: [Errno 30] Read-only file system: '{webui}/config_states'" in result.stderr
    assert "Running on" not in result.stdout
    (webui / "config_states").mkdir()  # once it exists (a unit would also make it writable), the start goes on
    result = read_only_run(webui, "timeout", "-s", "TERM", "5", *args)
    assert result is not None and "Running on local URL" in result.stdout, result.stdout + result.stderr


# -- /internal/sysinfo ---------------------------------------------------------------------------------------------
def sysinfo(server: Any, path: str = "/internal/sysinfo") -> tuple[int, Message, dict[str, Any]]:
    """GET the sysinfo route without any credentials; (status, headers, decoded JSON)."""
    status, headers, body = request(server.url(path))
    return status, headers, json.loads(body) if status == 200 else {}


def test_sysinfo_answers_without_any_login_and_shows_commandline_args(start_server, tmp_path: Path) -> None:
    auth_file = tmp_path / "gradio-auth"
    auth_file.write_text("alice:wonderland\n")
    env = clean_env(COMMANDLINE_ARGS="--api --api-auth robot:Api-Secret-9902", INDEX_URL="http://mirror.test/simple/",
                    SDFLEET_SECRET_NOT_LISTED="x", CLIP_PACKAGE="http://mirror.test/clip.zip")
    server = start_server("--listen", "--gradio-auth", "bob:builder", "--gradio-auth-path", str(auth_file), env=env)
    assert request(server.url("/config"))[0] == 401  # the UI is behind its login ...
    status, headers, info = sysinfo(server)  # ... the webui's own route is not, nor behind --api-auth
    assert status == 200
    assert headers["Content-Type"] == "text/plain; charset=utf-8"
    assert headers["Content-Disposition"].startswith('inline; filename="sysinfo-')
    assert info["Environment"] == {"CLIP_PACKAGE": "http://mirror.test/clip.zip",
                                   "COMMANDLINE_ARGS": "--api --api-auth robot:Api-Secret-9902",
                                   "GRADIO_ANALYTICS_ENABLED": "False", "INDEX_URL": "http://mirror.test/simple/"}
    # argv: an item equal to an auth value is hidden; the env var above is not
    assert "bob:builder" not in info["Commandline"] and "robot:Api-Secret-9902" not in info["Commandline"]
    assert info["Commandline"].count("<hidden>") == 2 and str(auth_file) in info["Commandline"]
    assert re.fullmatch(r"[0-9a-f]{64}", info["Checksum"])
    assert {"Platform", "Python", "Version", "Commit", "Script path", "Data path", "Extensions dir", "Config",
            "Packages", "Extensions", "Inactive extensions", "CPU", "RAM", "Torch env info"} <= set(info)
    status, headers, _info = sysinfo(server, "/internal/sysinfo-download")
    assert status == 200 and headers["Content-Disposition"].startswith('attachment; filename="sysinfo-')


def test_sysinfo_lists_extensions_and_config(start_server, webui: Path) -> None:
    (webui / "extensions" / "on").mkdir()
    (webui / "extensions" / "off").mkdir()
    (webui / "config.json").write_text(json.dumps({"disabled_extensions": ["off"], "CLIP_stop_at_last_layers": 2}))
    _status, _headers, info = sysinfo(start_server())
    assert [ext["name"] for ext in info["Extensions"]] == ["on"]
    assert [ext["name"] for ext in info["Inactive extensions"]] == ["off"]
    assert info["Config"]["CLIP_stop_at_last_layers"] == 2
    assert info["Data path"] == str(webui) and info["Extensions dir"] == str(webui / "extensions")


def test_sysinfo_is_a_ui_route_absent_with_nowebui(start_server) -> None:
    server = start_server("--nowebui", "--server-name", "127.0.0.1")
    assert request(server.url("/internal/sysinfo"))[0] == 404


# -- /sdapi/v1/cmd-flags -------------------------------------------------------------------------------------------
UPSTREAM = Path(__file__).resolve().parents[3] / "shared" / "upstream" / "stable-diffusion-webui-v1.10.1.tar.gz"
PRELOAD_FLAGS = {"lora_dir", "lyco_dir_backcompat", "ldsr_models_path", "scunet_models_path", "swinir_models_path"}


def real_parser_defaults(tmp_path: Path, *argv: str) -> dict[str, Any]:
    """dest -> default of the real v1.10.1 parser (its cmd_args.py and paths_internal.py, run from tmp)."""
    if not UPSTREAM.is_file():
        pytest.skip(f"the real webui tree is not here ({UPSTREAM})")
    root = tmp_path / "real"
    with tarfile.open(UPSTREAM) as archive:
        for name in ("modules/cmd_args.py", "modules/paths_internal.py"):
            member = archive.getmember(name)
            extracted = archive.extractfile(member)
            assert extracted is not None
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            (root / name).write_bytes(extracted.read())
    (root / "modules" / "__init__.py").write_text("")
    code = ("import json, sys; sys.argv[1:] = json.loads(sys.argv[1]); from modules import cmd_args; "
            "print(json.dumps(vars(cmd_args.parser.parse_args(sys.argv[1:]))))")
    out = subprocess.run([sys.executable, "-c", code, json.dumps(list(argv))], cwd=root, env=clean_env(),
                         capture_output=True, text=True, check=True)
    return {key: (value.replace(str(root), "<checkout>") if isinstance(value, str) else
                  [v.replace(str(root), "<checkout>") for v in value] if isinstance(value, list) else value)
            for key, value in json.loads(out.stdout).items()}


def test_cmd_flags_has_the_real_parsers_keys_and_defaults(start_server, webui: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    server = start_server("--api", "--data-dir", str(data))
    status, _headers, body = request(server.url("/sdapi/v1/cmd-flags"))
    assert status == 200
    flags = json.loads(body)
    real = real_parser_defaults(tmp_path, "--api", "--data-dir", str(data), "--skip-prepare-environment",
                                "--port", str(server.port))
    assert set(flags) - PRELOAD_FLAGS == set(real)  # nothing set after parsing (e.g. webui_is_non_local) shows
    ours = {key: (value.replace(str(webui), "<checkout>") if isinstance(value, str) else value)
            for key, value in flags.items() if key in real}
    real["port"] = str(real["port"])  # the response model's str field (default None)
    assert ours == real
    assert flags["lora_dir"] == str(data / "models" / "Lora")


def test_cmd_flags_is_behind_api_auth_only(start_server) -> None:
    server = start_server("--api", "--api-auth", "robot:Api-Secret-9902", "--gradio-auth", "alice:wonderland")
    status, _headers, body = request(server.url("/sdapi/v1/cmd-flags"))
    assert (status, json.loads(body)["detail"]) == (401, "Not authenticated")
    form = urllib.parse.urlencode({"username": "alice", "password": "wonderland"}).encode()
    _status, headers, _body = request(server.url("/login"), "POST", form)
    cookie = next(value.split(";", 1)[0] for value in headers.get_all("Set-Cookie"))
    assert request(server.url("/sdapi/v1/cmd-flags"), headers={"Cookie": cookie})[0] == 401
    status, _headers, body = request(server.url("/sdapi/v1/cmd-flags"), headers=basic("robot", "Api-Secret-9902"))
    flags = json.loads(body)
    assert status == 200 and flags["api_auth"] == "robot:Api-Secret-9902" and flags["gradio_auth"] == "alice:wonderland"
