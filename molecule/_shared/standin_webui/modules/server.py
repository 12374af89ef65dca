"""HTTP server of the stand-in: the Gradio and /sdapi/v1 routes a provisioning tool probes (webui.md section 8).

Gradio 3.41 behaviour mirrored: /internal/ping never protected; with gradio auth, `/` is a login page, /config is
401 until POST /login sets the `access-token` cookie. The webui's own /internal/sysinfo routes are added to the app
outside gradio's login, so they answer without it (and without --api-auth), as in the real one. A1111 API behaviour
mirrored: /sdapi/v1/* only with --api (or --nowebui), HTTP Basic when --api-auth is set (on every route, cmd-flags
included; nothing else protects them), errors as `{"error": ..., "detail": ..., ...}`.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import http.cookies
import json
import os
import secrets
import socket
import threading
import time
import struct
import urllib.parse
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from modules import cmd_args, devices, launch_utils, sysinfo

CHECKPOINT_SUFFIXES = (".ckpt", ".safetensors")
COOKIE_NAME = "access-token"


# -- credentials ---------------------------------------------------------------------------------------------
def gradio_credentials(args: argparse.Namespace) -> dict[str, str]:
    """--gradio-auth plus --gradio-auth-path lines: comma-separated `user:pass`, split on the FIRST ':'."""
    entries: list[str] = []
    if args.gradio_auth:
        entries += args.gradio_auth.strip('"').replace("\n", "").split(",")
    if args.gradio_auth_path:
        with open(args.gradio_auth_path, encoding="utf8") as handle:
            for line in handle:
                entries += line.strip().split(",")
    credentials: dict[str, str] = {}
    for entry in entries:
        entry = entry.strip()
        if not entry:
            continue
        user, password = entry.split(":", 1)
        credentials[user] = password
    return credentials


def api_credentials(args: argparse.Namespace) -> dict[str, str]:
    """--api-auth `u1:p1,u2:p2`, split on EVERY ':' as the real Api class does (a ':' in a password -> ValueError)."""
    credentials: dict[str, str] = {}
    if args.api_auth:
        for auth in args.api_auth.split(","):
            user, password = auth.split(":")
            credentials[user] = password
    return credentials


# -- checkpoints ---------------------------------------------------------------------------------------------
class CheckpointIndex:
    """Checkpoint scan with full-file SHA-256, cached in memory by (path, mtime, size)."""

    def __init__(self, model_path: str, ckpt_dir: str | None) -> None:
        self.model_path = model_path
        self.ckpt_dir = ckpt_dir
        self._hashes: dict[tuple[str, int, int], str] = {}
        self._lock = threading.Lock()
        self.models: list[dict[str, Any]] = []

    def _sha256(self, filename: str) -> str:
        stat = os.stat(filename)
        key = (filename, stat.st_mtime_ns, stat.st_size)
        with self._lock:
            cached = self._hashes.get(key)
        if cached:
            return cached
        digest = hashlib.sha256()
        with open(filename, "rb") as handle:
            for block in iter(lambda: handle.read(1024 * 1024), b""):
                digest.update(block)
        with self._lock:
            self._hashes[key] = digest.hexdigest()
        return digest.hexdigest()

    def _files(self) -> list[str]:
        """Checkpoint files: the models dir first, then --ckpt-dir; sorted by name within each directory."""
        found: list[str] = []
        for root in (self.model_path, self.ckpt_dir):
            if not root or not os.path.isdir(root):
                continue
            for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
                dirnames.sort(key=str.lower)
                for filename in sorted(filenames, key=str.lower):
                    lower = filename.lower()
                    path = os.path.abspath(os.path.join(dirpath, filename))
                    if (lower.endswith(CHECKPOINT_SUFFIXES) and not lower.endswith((".vae.ckpt", ".vae.safetensors"))
                            and path not in found):
                        found.append(path)
        return found

    def _name(self, filename: str) -> str:
        for root in (self.model_path, self.ckpt_dir):
            if root and filename.startswith(os.path.abspath(root) + os.sep):
                return os.path.relpath(filename, root)
        return os.path.basename(filename)

    def refresh(self) -> list[dict[str, Any]]:
        """Rescan; the result is what GET /sdapi/v1/sd-models returns."""
        models = []
        for filename in self._files():
            name = self._name(filename)
            sha256 = self._sha256(filename)
            config = os.path.splitext(filename)[0] + ".yaml"
            models.append({
                "title": f"{name} [{sha256[:10]}]",
                "model_name": os.path.splitext(name.replace("/", "_").replace("\\", "_"))[0],
                "hash": sha256[:10],
                "sha256": sha256,
                "filename": filename,
                "config": config if os.path.exists(config) else None,
            })
        self.models = models
        return models


# -- the app ----------------------------------------------------------------------------------------------
class App:
    """State shared by request handlers."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.gradio_auth = gradio_credentials(args)
        self.api_auth = api_credentials(args)
        self.tokens: dict[str, str] = {}
        self.checkpoints = CheckpointIndex(os.path.join(cmd_args.models_path(args), "Stable-diffusion"),
                                           args.ckpt_dir)
        self.options_lock = threading.Lock()
        self.started = time.monotonic()

    @property
    def webui(self) -> bool:
        """Gradio routes exist (not --nowebui)."""
        return not self.args.nowebui

    @property
    def api(self) -> bool:
        """/sdapi/v1 routes exist."""
        return bool(self.args.api or self.args.nowebui)

    def read_options(self) -> dict[str, Any]:
        """config.json (the settings file), or {} when absent or unreadable."""
        try:
            with open(self.args.ui_settings_file, encoding="utf8") as handle:
                data = json.load(handle)
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def write_options(self, changes: dict[str, Any]) -> None:
        """Merge keys into config.json (atomic replace)."""
        with self.options_lock:
            data = self.read_options()
            data.update(changes)
            tmp = self.args.ui_settings_file + ".tmp"
            with open(tmp, "w", encoding="utf8") as handle:
                json.dump(data, handle, indent=4)
            os.replace(tmp, self.args.ui_settings_file)


LOGIN_PAGE = """<!doctype html>
<html><head><title>Stable Diffusion (stand-in): login</title></head>
<body><h1>Login</h1>
<form method="post" action="login"><input name="username"><input name="password" type="password">
<button type="submit">Login</button></form></body></html>
"""
UI_PAGE = """<!doctype html>
<html><head><title>Stable Diffusion</title></head>
<body><h1>Stable Diffusion (sdfleet stand-in, a test fixture)</h1></body></html>
"""


class Handler(BaseHTTPRequestHandler):
    """Routes of the stand-in."""

    server_version = "uvicorn"
    sys_version = ""
    protocol_version = "HTTP/1.1"
    app: App  # set on the subclass made by make_server

    # -- helpers
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (stdlib signature)
        """Access log on stderr, uvicorn style."""
        print(f"INFO: {self.client_address[0]}:{self.client_address[1]} - {format % args}", flush=True)

    def send_json(self, status: int, body: Any, cookies: list[str] | None = None) -> None:
        """Send a JSON response."""
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for cookie in cookies or []:
            self.send_header("Set-Cookie", cookie)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def send_html(self, status: int, html: str) -> None:
        """Send an HTML response."""
        data = html.encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def api_error(self, status: int, error: str, detail: str, errors: str = "") -> None:
        """A1111's API exception handler body."""
        self.send_json(status, {"error": error, "detail": detail, "body": "", "errors": errors or detail})

    def read_body(self) -> bytes:
        """The request body (Content-Length only)."""
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def gradio_user(self) -> str | None:
        """The user of a valid session cookie, or None."""
        cookie = http.cookies.SimpleCookie(self.headers.get("Cookie", ""))
        for name in (COOKIE_NAME, COOKIE_NAME + "-unsecure"):
            if name in cookie and cookie[name].value in self.app.tokens:
                return self.app.tokens[cookie[name].value]
        return None

    def api_authorized(self) -> bool:
        """HTTP Basic check when --api-auth is set; sends the 401 itself when it fails."""
        if not self.app.api_auth:
            return True
        header = self.headers.get("Authorization", "")
        scheme, _, encoded = header.partition(" ")
        if scheme.lower() != "basic" or not encoded:
            self.api_error(401, "HTTPException", "Not authenticated")
            return False
        try:
            user, _, password = base64.b64decode(encoded).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            self.api_error(401, "HTTPException", "Invalid authentication credentials")
            return False
        expected = self.app.api_auth.get(user)
        if expected is None or not hmac.compare_digest(password.encode(), expected.encode()):
            self.api_error(401, "HTTPException", "Incorrect username or password")
            return False
        return True

    # -- routing
    def route(self) -> None:
        """Dispatch one request; an unexpected error is a 500 in the A1111 API's error layout."""
        try:
            self.dispatch()
        except Exception as exc:  # noqa: BLE001 (report any handler failure to the client, as the real one does)
            self.api_error(500, type(exc).__name__, "", str(exc))

    def dispatch(self) -> None:
        """Route one request."""
        path = urllib.parse.urlsplit(self.path).path
        app = self.app
        if app.webui and path == "/internal/ping" and self.command in ("GET", "HEAD"):
            self.send_json(200, {})
        elif app.webui and path == "/" and self.command in ("GET", "HEAD"):
            logged_in = not app.gradio_auth or self.gradio_user() is not None
            self.send_html(200, UI_PAGE if logged_in else LOGIN_PAGE)
        elif app.webui and path == "/config" and self.command in ("GET", "HEAD"):
            if app.gradio_auth and self.gradio_user() is None:
                self.send_json(401, {"detail": "Not authenticated"})
            else:
                self.send_json(200, {"version": "3.41.2", "mode": "blocks", "auth_required": bool(app.gradio_auth),
                                     "components": [], "title": "Stable Diffusion"})
        elif app.webui and path in ("/login_check", "/login_check/") and self.command in ("GET", "HEAD"):
            # gradio 3.41: null when no login is configured or the cookie is a live session, else 401.
            if app.gradio_auth and self.gradio_user() is None:
                self.send_json(401, {"detail": "Not authenticated"})
            else:
                self.send_json(200, None)
        elif app.webui and path == "/login" and self.command == "POST":
            self.login()
        elif app.webui and path in ("/internal/sysinfo", "/internal/sysinfo-download") and self.command in ("GET",
                                                                                                           "HEAD"):
            self.sysinfo(attachment=path.endswith("-download"))
        elif app.api and path.startswith("/sdapi/v1/"):
            self.sdapi(path[len("/sdapi/v1/"):])
        else:
            self.send_json(404, {"detail": "Not Found"})

    def sysinfo(self, attachment: bool) -> None:
        """The real route: plain text (JSON inside), `Content-Disposition: inline|attachment; filename=...`; no login
        of any kind."""
        text = sysinfo.get(self.app.args, self.app.read_options(), round(time.monotonic() - self.app.started, 1))
        data = text.encode("utf8")
        filename = time.strftime("sysinfo-%Y-%m-%d-%H-%M.json", time.gmtime())
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Content-Disposition", f'{"attachment" if attachment else "inline"}; filename="{filename}"')
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def login(self) -> None:
        """Gradio's POST /login (form fields username and password)."""
        if not self.app.gradio_auth:
            self.send_response(302)
            self.send_header("Location", "/")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        form = urllib.parse.parse_qs(self.read_body().decode(errors="replace"))
        if "username" not in form or "password" not in form:
            self.send_json(422, {"detail": [{"loc": ["body", "username"], "msg": "field required"}]})
            return
        username, password = form["username"][0], form["password"][0]
        expected = self.app.gradio_auth.get(username)
        if expected is None or not hmac.compare_digest(password.encode(), expected.encode()):
            self.send_json(400, {"detail": "Incorrect credentials."})
            return
        token = secrets.token_urlsafe(16)
        self.app.tokens[token] = username
        self.send_json(200, {"success": True}, cookies=[
            f"{COOKIE_NAME}={token}; HttpOnly; Path=/; SameSite=none; Secure",
            f"{COOKIE_NAME}-unsecure={token}; HttpOnly; Path=/",
        ])

    def sdapi(self, route: str) -> None:
        """The /sdapi/v1 routes the stand-in implements."""
        known = {("GET", "sd-models"), ("GET", "cmd-flags"), ("POST", "refresh-checkpoints"),
                 ("GET", "options"), ("POST", "options"), ("GET", "memory"), ("POST", "txt2img")}
        if (self.command, route) not in known:
            if route in {r for _m, r in known}:
                self.send_json(405, {"detail": "Method Not Allowed"})
            else:
                self.send_json(404, {"detail": "Not Found"})
            return
        if not self.api_authorized():
            return
        app = self.app
        if route == "sd-models":
            self.send_json(200, app.checkpoints.models)
        elif route == "refresh-checkpoints":
            app.checkpoints.refresh()
            self.send_json(200, None)
        elif route == "cmd-flags":
            self.send_json(200, cmd_args.flags_response(app.args))
        elif route == "memory":
            self.send_json(200, memory_response(devices.current_device(launch_utils.gpu_available())))
        elif route == "txt2img":
            self.txt2img()
        elif self.command == "GET":
            self.send_json(200, app.read_options())
        else:
            self.post_options()

    def txt2img(self) -> None:
        """POST /sdapi/v1/txt2img: a blank PNG of the asked size, or the real errors (no checkpoint, or a CUDA device
        the installed torch has no kernels for: the first kernel of a generation fails)."""
        try:
            body = json.loads(self.read_body() or b"{}")
            width, height = int(body.get("width", 512)), int(body.get("height", 512))
        except (ValueError, TypeError, AttributeError) as exc:
            self.send_json(422, {"detail": f"invalid request: {exc}"})
            return
        if not self.app.checkpoints.models:
            self.api_error(500, "FileNotFoundError", "", "No checkpoints found. When searching for checkpoints, "
                                                           "looked at: models/Stable-diffusion")
            return
        device = devices.current_device(launch_utils.gpu_available())
        on_cpu = "all" in (self.app.args.use_cpu or [])
        if device is not None and not on_cpu and not devices.has_kernels(devices.torch_arch_flags(),
                                                                         device["compute_cap"]):
            self.api_error(500, "RuntimeError", "", devices.NO_KERNEL)
            return
        image = base64.b64encode(blank_png(max(1, min(width, 2048)), max(1, min(height, 2048)))).decode()
        self.send_json(200, {"images": [image], "parameters": body,
                             "info": json.dumps({"prompt": body.get("prompt", ""), "steps": body.get("steps", 20),
                                                 "width": width, "height": height,
                                                 "device": device["name"] if device and not on_cpu else "cpu"})})

    def post_options(self) -> None:
        """POST /sdapi/v1/options: merge keys into config.json, refused with --freeze-settings."""
        try:
            changes = json.loads(self.read_body() or b"{}")
        except ValueError as exc:
            self.send_json(422, {"detail": f"invalid JSON: {exc}"})
            return
        if not isinstance(changes, dict):
            self.send_json(422, {"detail": "expected a JSON object"})
            return
        if self.app.args.freeze_settings:
            self.api_error(500, "AssertionError", "", "changing settings is disabled")
            return
        self.app.write_options(changes)
        self.send_json(200, None)

    def do_GET(self) -> None:  # noqa: N802 (stdlib name)
        """GET."""
        self.route()

    def do_HEAD(self) -> None:  # noqa: N802 (stdlib name)
        """HEAD."""
        self.route()

    def do_POST(self) -> None:  # noqa: N802 (stdlib name)
        """POST."""
        self.route()


def memory_response(device: dict[str, Any] | None) -> dict[str, Any]:
    """/sdapi/v1/memory as the real one answers it: RAM, and CUDA memory of the process's device 0 (torch's
    mem_get_info is the whole device: total = the GPU's memory) or {'error': 'unavailable'}."""
    with open("/proc/meminfo", encoding="ascii") as handle:
        info = {line.split(":")[0]: int(line.split()[1]) * 1024 for line in handle if line.split()[1:2]}
    ram = {"free": info.get("MemAvailable", 0), "used": info.get("MemTotal", 0) - info.get("MemAvailable", 0),
           "total": info.get("MemTotal", 0)}
    if device is None:
        return {"ram": ram, "cuda": {"error": "unavailable"}}
    total = device["memory_mib"] * 1024 * 1024
    zero = {"current": 0, "peak": 0}
    return {"ram": ram, "cuda": {"system": {"free": total, "used": 0, "total": total}, "active": zero,
                                 "allocated": zero, "reserved": zero, "inactive": zero,
                                 "events": {"retries": 0, "oom": 0}}}


def blank_png(width: int, height: int) -> bytes:
    """A grey RGB PNG of ``width`` x ``height`` (the stand-in generates no images)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    rows = b"".join(b"\x00" + b"\x80" * (3 * width) for _ in range(height))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


class Server(ThreadingHTTPServer):
    """ThreadingHTTPServer that also binds IPv6 hosts."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler]) -> None:
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, handler)


class PortTaken(OSError):
    """No free port in the range (Gradio's message)."""


def make_server(args: argparse.Namespace, host: str, ports: range) -> Server:
    """Bind the first free port of `ports` (Gradio 3.41's scan); PortTaken when none is free."""
    app = App(args)
    Path(cmd_args.models_path(args), "Stable-diffusion").mkdir(parents=True, exist_ok=True)
    app.checkpoints.refresh()
    handler = type("BoundHandler", (Handler,), {"app": app})
    for port in ports:
        try:
            return Server((host, port), handler)
        except OSError:
            continue
    raise PortTaken(f"Cannot find empty port in range: {ports[0]}-{ports[-1]}. You can specify a different port by "
                    "setting the GRADIO_SERVER_PORT environment variable or passing the `server_port` parameter "
                    "to `launch()`.")
