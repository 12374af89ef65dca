#!/usr/bin/env python3
"""sdfleet's local mirror: a test fixture standing in for GitHub, PyPI, download.pytorch.org and HuggingFace.

Standard library only (it runs under the system python3 of a `sdfleet/webui-host` container, where git is
installed). It serves the tree written by `build_fixture.py`:

    /git/<name>.git/...            git smart HTTP through `git http-backend` (clone, fetch by commit, shallow)
    /<owner>/<name>.git/...        the same, at GitHub's paths, for repositories under git/<owner>/
    /<dir>/...                     any other top-level directory of the root, as static files (GitHub's
                                   /<owner>/<repo>/archive/<commit>.zip paths, for instance)
    /simple/...                    PEP 503 index of the stand-in's wheels
    /torch/cu121/..., /torch/cpu/... PEP 503 indexes of the stub torch/torchvision wheels
    /files/...                     model files (Range, HEAD, ETag, Last-Modified)
    /pins.json                     what the fixture holds (tags, commits, hashes)
    /auth/...                      always 401 + `WWW-Authenticate: Basic` (git must fail fast, not prompt)
    /_ping                         200 "ok" (readiness probe)
    GET /_stats, POST /_reset      body bytes and request counts per path; reset clears counters and rules
    GET/POST /_control             failure rules (cut a body short, answer a status, delay)

An "unreachable primary" is not served here: point it at a port of this host where nothing listens
(e.g. 8081); the kernel refuses the connection at once. See README.md next to this file.
"""

from __future__ import annotations

import argparse
import email.utils
import html
import json
import mimetypes
import os
import re
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

STATIC_PREFIXES = ("/simple/", "/torch/", "/files/")
STATIC_FILES = ("/pins.json",)
CHUNK = 64 * 1024
GIT_TIMEOUT_S = 120
# `git http-backend` settings, passed with GIT_CONFIG_COUNT so no config file has to be written into the
# (read-only) fixture: fetching a pinned commit that no ref points at needs the *InWant switches, and
# `safe.directory` stops git refusing repositories owned by another uid (the bind-mounted fixture).
GIT_CONFIG = (
    ("uploadpack.allowReachableSHA1InWant", "true"),
    ("uploadpack.allowAnySHA1InWant", "true"),
    ("uploadpack.allowFilter", "true"),
    ("http.receivepack", "false"),
    ("safe.directory", "*"),
)
RANGE_RE = re.compile(r"^bytes=(\d*)-(\d*)$")
# GitHub-shaped repository paths: /<owner>/<name>.git[/...]
OWNER_GIT_RE = re.compile(r"^/([^/_][^/]*)/([^/]+\.git)(/.*)?$")
NOT_STATIC_DIRS = frozenset({"git", "bin"})


class CutConnection(Exception):
    """Raised after a control rule cut a body short; the connection must be dropped."""


@dataclass
class Rule:
    """One failure rule from `POST /_control`; `times` < 0 means until `/_reset`."""

    path: str
    times: int = 1
    cut_after: int | None = None
    status: int | None = None
    delay: float = 0.0

    def matches(self, path: str) -> bool:
        """Exact path, or a prefix when the rule's path ends with `*`."""
        if self.path.endswith("*"):
            return path.startswith(self.path[:-1])
        return path == self.path

    def as_dict(self) -> dict[str, Any]:
        """JSON form for `GET /_control`."""
        return {"path": self.path, "times": self.times, "cut_after": self.cut_after,
                "status": self.status, "delay": self.delay}


@dataclass
class State:
    """Counters and rules shared by all request threads."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    stats: dict[str, dict[str, int]] = field(default_factory=dict)
    rules: list[Rule] = field(default_factory=list)

    def count(self, path: str, nbytes: int, request: bool) -> None:
        """Add body bytes (and one request when `request`) to `path`'s counters."""
        with self.lock:
            entry = self.stats.setdefault(path, {"requests": 0, "bytes": 0})
            entry["bytes"] += nbytes
            if request:
                entry["requests"] += 1

    def take_rule(self, path: str) -> Rule | None:
        """Consume one use of the first rule matching `path`, if any."""
        with self.lock:
            for rule in self.rules:
                if rule.matches(path):
                    if rule.times > 0:
                        rule.times -= 1
                        if rule.times == 0:
                            self.rules.remove(rule)
                    return Rule(rule.path, 1, rule.cut_after, rule.status, rule.delay)
        return None

    def snapshot(self) -> dict[str, dict[str, int]]:
        """A copy of the counters."""
        with self.lock:
            return {path: dict(entry) for path, entry in sorted(self.stats.items())}

    def reset(self) -> None:
        """Clear counters and rules."""
        with self.lock:
            self.stats.clear()
            self.rules.clear()


def parse_rule(data: Any) -> Rule:
    """Validate a `/_control` JSON body; raises ValueError with a readable message."""
    if not isinstance(data, dict):
        raise ValueError("body must be a JSON object")
    path = data.get("path")
    if not isinstance(path, str) or not path.startswith("/"):
        raise ValueError(f"'path' must be an absolute URL path, got {path!r}")
    unknown = set(data) - {"path", "times", "cut_after", "status", "delay"}
    if unknown:
        raise ValueError(f"unknown keys {sorted(unknown)}; allowed: path, times, cut_after, status, delay")
    times = data.get("times", 1)
    cut_after = data.get("cut_after")
    status = data.get("status")
    delay = data.get("delay", 0)
    if not isinstance(times, int) or times == 0:
        raise ValueError(f"'times' must be a non-zero integer (negative: until /_reset), got {times!r}")
    if cut_after is not None and (not isinstance(cut_after, int) or cut_after < 0):
        raise ValueError(f"'cut_after' must be an integer >= 0, got {cut_after!r}")
    if status is not None and (not isinstance(status, int) or not 100 <= status <= 599):
        raise ValueError(f"'status' must be an HTTP status code, got {status!r}")
    if not isinstance(delay, (int, float)) or delay < 0:
        raise ValueError(f"'delay' must be a number of seconds >= 0, got {delay!r}")
    if cut_after is None and status is None and not delay:
        raise ValueError("a rule needs at least one of 'cut_after', 'status', 'delay'")
    return Rule(path, times, cut_after, status, float(delay))


def parse_range(header: str, size: int) -> tuple[int, int] | None:
    """(first, last) inclusive for a single `bytes=` range; None when unsatisfiable or unsupported."""
    match = RANGE_RE.match(header.strip())
    if not match or match.groups() == ("", ""):
        return None
    first_s, last_s = match.groups()
    if first_s == "":  # suffix range: the last N bytes
        length = int(last_s)
        if length == 0 or size == 0:
            return None
        return max(0, size - length), size - 1
    first = int(first_s)
    last = int(last_s) if last_s else size - 1
    if first >= size or last < first:
        return None
    return first, min(last, size - 1)


def split_cgi(output: bytes) -> tuple[int, list[tuple[str, str]], bytes]:
    """Split CGI output into (status, headers, body); `Status:` sets the code, default 200."""
    for sep in (b"\r\n\r\n", b"\n\n"):
        head, found, body = output.partition(sep)
        if found:
            break
    else:
        return 502, [("Content-Type", "text/plain")], b"bad CGI output from git http-backend\n"
    status = 200
    headers: list[tuple[str, str]] = []
    for line in head.decode("latin-1").splitlines():
        name, _, value = line.partition(":")
        name, value = name.strip(), value.strip()
        if name.lower() == "status":
            status = int(value.split()[0])
        elif name:
            headers.append((name, value))
    return status, headers, body


class MirrorHandler(BaseHTTPRequestHandler):
    """One request: dispatch on the path prefix, count the body bytes, log one line."""

    protocol_version = "HTTP/1.1"
    server_version = "sdfleet-mirror/1"
    server: MirrorServer

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._status = 0
        self._sent = 0
        self._counted_path: str | None = None
        self._rule: Rule | None = None
        super().__init__(*args, **kwargs)

    # -- plumbing -------------------------------------------------------------------------------------
    @property
    def root(self) -> Path:
        """The fixture directory."""
        return self.server.root

    @property
    def url_path(self) -> str:
        """The request path, percent-decoded, without the query."""
        return urllib.parse.unquote(urllib.parse.urlsplit(self.path).path)

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        """Silenced: `_dispatch` logs one line per request after the body went out."""
        self._status = int(code) if isinstance(code, int) else 0  # HTTPStatus is an int too

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (BaseHTTPRequestHandler's name)
        """One line to stderr, flushed (the container log is read live)."""
        sys.stderr.write(f"{self.address_string()} [{self.log_date_time_string()}] {format % args}\n")
        sys.stderr.flush()

    def _dispatch(self) -> None:
        """Apply control rules, route, then count and log."""
        started = time.monotonic()
        self._sent = 0  # per request: one handler serves every request of a keep-alive connection
        path = self.url_path
        counted = not path.startswith("/_")
        self._counted_path = path if counted else None
        if counted:  # counted up front (bytes as they go out): a client that has the answer sees it in /_stats
            self.server.state.count(path, 0, request=True)
        self._rule = self.server.state.take_rule(path) if self.command in ("GET", "POST") and counted else None
        try:
            if self._rule and self._rule.delay:
                time.sleep(self._rule.delay)
            if self._rule and self._rule.status is not None:
                self._drain_body()
                self._simple(self._rule.status, f"status {self._rule.status} by /_control rule\n")
            else:
                self._route(path)
        except CutConnection:
            self.close_connection = True
            try:
                self.wfile.flush()
                self.connection.shutdown(socket.SHUT_WR)
            except OSError:
                pass
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        finally:
            cut = " CUT" if self._rule and self._rule.cut_after is not None else ""
            self.log_message('"%s %s" %s %d %.0fms%s', self.command, self.path, self._status or "-",
                             self._sent, (time.monotonic() - started) * 1000, cut)

    do_GET = do_POST = do_HEAD = _dispatch  # noqa: N815 (BaseHTTPRequestHandler's names)

    def _route(self, path: str) -> None:
        if path == "/_ping":
            self._simple(200, "ok\n")
        elif path == "/_stats":
            self._json(200, self.server.state.snapshot())
        elif path == "/_reset":
            if self._only("POST"):
                self._reset()
        elif path == "/_control":
            self._control()
        elif path.startswith("/auth/") or path == "/auth":
            self._drain_body()
            self._simple(401, "authentication required (sdfleet mirror: /auth/ always refuses)\n",
                         [("WWW-Authenticate", 'Basic realm="sdfleet-mirror"')])
        elif path.startswith("/git/"):
            self._git(path[len("/git"):])
        elif self._owner_repo(path):
            self._git(path)
        elif (path.startswith(STATIC_PREFIXES) or path in STATIC_FILES or path + "/" in STATIC_PREFIXES
              or self._top_dir(path)):
            if self._only("GET", "HEAD"):
                self._static(path)
        else:
            self._simple(404, f"not served by the sdfleet mirror: {path}\n")

    def _owner_repo(self, path: str) -> bool:
        """Whether `path` names a repository at GitHub's path (/<owner>/<name>.git) that git/<owner>/ holds."""
        match = OWNER_GIT_RE.match(path)
        return bool(match) and (self.root / "git" / match.group(1) / match.group(2)).is_dir()

    def _top_dir(self, path: str) -> bool:
        """Whether `path` lies under a top-level directory of the root served as static files."""
        top = path.lstrip("/").split("/", 1)[0]
        return bool(top) and top not in NOT_STATIC_DIRS and not top.startswith(("_", ".")) \
            and (self.root / top).is_dir()

    def _only(self, *methods: str) -> bool:
        if self.command in methods:
            return True
        self._drain_body()
        self._simple(405, f"{self.command} not allowed here\n", [("Allow", ", ".join(methods))])
        return False

    def _read_body(self) -> bytes:
        """The request body, de-chunked when sent with `Transfer-Encoding: chunked` (git does for big POSTs)."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            parts: list[bytes] = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(parts)
                parts.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _drain_body(self) -> None:
        if self.command == "POST":
            self._read_body()

    def _send_head(self, status: int, headers: list[tuple[str, str]]) -> None:
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()

    def _write(self, data: bytes) -> None:
        """Write body bytes, honouring a cut rule; the counters get them before the socket does."""
        if self.command == "HEAD" or not data:
            return
        rule = self._rule
        if rule is not None and rule.cut_after is not None:
            room = max(0, rule.cut_after - self._sent)
            if len(data) >= room:
                self._send_counted(data[:room])
                raise CutConnection
        self._send_counted(data)

    def _send_counted(self, data: bytes) -> None:
        if self._counted_path is not None:
            self.server.state.count(self._counted_path, len(data), request=False)
        self._sent += len(data)
        self.wfile.write(data)

    def _finish_cut(self) -> None:
        """A cut rule with `cut_after` >= the body still drops the connection (the rule was consumed)."""
        if self.command != "HEAD" and self._rule is not None and self._rule.cut_after is not None:
            raise CutConnection

    def _simple(self, status: int, text: str, headers: list[tuple[str, str]] | None = None) -> None:
        body = text.encode()
        self._send_head(status, [("Content-Type", "text/plain; charset=utf-8"),
                                 ("Content-Length", str(len(body))), *(headers or [])])
        self._write(body)

    def _json(self, status: int, data: Any) -> None:
        body = (json.dumps(data, indent=1, sort_keys=True) + "\n").encode()
        self._send_head(status, [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
        self._write(body)

    # -- control API ----------------------------------------------------------------------------------
    def _reset(self) -> None:
        self._drain_body()
        self.server.state.reset()
        self._json(200, {"reset": True})

    def _control(self) -> None:
        state = self.server.state
        if self.command == "GET":
            with state.lock:
                self._json(200, [rule.as_dict() for rule in state.rules])
            return
        if not self._only("POST"):
            return
        try:
            rule = parse_rule(json.loads(self._read_body() or b"null"))
        except ValueError as exc:  # json.JSONDecodeError is a ValueError
            self._json(400, {"error": str(exc)})
            return
        with state.lock:
            state.rules.append(rule)
        self._json(200, rule.as_dict())

    # -- git smart HTTP -------------------------------------------------------------------------------
    def _git(self, path_info: str) -> None:
        body = self._read_body() if self.command == "POST" else b""
        query = urllib.parse.urlsplit(self.path).query
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": os.environ.get("HOME", "/"),
            "GIT_PROJECT_ROOT": str(self.root / "git"),
            "GIT_HTTP_EXPORT_ALL": "1",
            "GATEWAY_INTERFACE": "CGI/1.1",
            "SERVER_PROTOCOL": "HTTP/1.1",
            "REQUEST_METHOD": self.command,
            "PATH_INFO": path_info,
            "QUERY_STRING": query,
            "REMOTE_ADDR": self.client_address[0],
            "CONTENT_TYPE": self.headers.get("Content-Type", ""),
            "CONTENT_LENGTH": str(len(body)),
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_CONFIG_GLOBAL": "/dev/null",
            "GIT_CONFIG_COUNT": str(len(GIT_CONFIG)),
        }
        for index, (key, value) in enumerate(GIT_CONFIG):
            env[f"GIT_CONFIG_KEY_{index}"] = key
            env[f"GIT_CONFIG_VALUE_{index}"] = value
        # git sends gzip bodies with `Content-Encoding: gzip`; http-backend inflates them itself when told.
        if self.headers.get("Content-Encoding"):
            env["HTTP_CONTENT_ENCODING"] = self.headers["Content-Encoding"]
        # Protocol v2 is negotiated through this header (Apache's docs map it onto GIT_PROTOCOL the same way).
        if self.headers.get("Git-Protocol"):
            env["GIT_PROTOCOL"] = self.headers["Git-Protocol"]
        try:
            proc = subprocess.run(["git", "http-backend"], input=body, env=env, capture_output=True,
                                  timeout=GIT_TIMEOUT_S, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            self._simple(502, f"git http-backend failed: {exc}\n")
            return
        if proc.stderr.strip():
            sys.stderr.write(f"git http-backend: {proc.stderr.decode(errors='replace').strip()}\n")
        status, headers, out = split_cgi(proc.stdout)
        headers = [(k, v) for k, v in headers if k.lower() not in ("content-length", "transfer-encoding")]
        self._send_head(status, [*headers, ("Content-Length", str(len(out)))])
        for offset in range(0, len(out), CHUNK):
            self._write(out[offset:offset + CHUNK])
        self._finish_cut()

    # -- static files ---------------------------------------------------------------------------------
    def _static(self, path: str) -> None:
        target = (self.root / path.lstrip("/")).resolve()
        root = self.root.resolve()
        if target != root and root not in target.parents:
            self._simple(404, "outside the fixture\n")
            return
        if target.is_dir():
            if not path.endswith("/"):
                location = urllib.parse.quote(path) + "/"
                self._simple(301, f"see {location}\n", [("Location", location)])
                return
            index = target / "index.html"
            if not index.is_file():
                self._listing(path, target)
                return
            target = index
        if not target.is_file():
            self._simple(404, f"no such file in the fixture: {path}\n")
            return
        self._file(target)

    def _listing(self, path: str, directory: Path) -> None:
        names = sorted(p.name + ("/" if p.is_dir() else "") for p in directory.iterdir())
        links = "\n".join(f'<a href="{html.escape(urllib.parse.quote(n))}">{html.escape(n)}</a><br/>' for n in names)
        body = f"<!DOCTYPE html>\n<html><body><h1>{html.escape(path)}</h1>\n{links}\n</body></html>\n".encode()
        self._send_head(200, [("Content-Type", "text/html; charset=utf-8"), ("Content-Length", str(len(body)))])
        self._write(body)
        self._finish_cut()

    def _file(self, target: Path) -> None:
        stat = target.stat()
        size = stat.st_size
        etag = f'"{stat.st_mtime_ns:x}-{size:x}"'
        last_modified = email.utils.formatdate(stat.st_mtime, usegmt=True)
        ctype = mimetypes.guess_type(target.name)[0] or "application/octet-stream"
        headers = [("Content-Type", ctype), ("Accept-Ranges", "bytes"), ("ETag", etag),
                   ("Last-Modified", last_modified)]
        first, last, status = 0, size - 1, 200
        range_header = self.headers.get("Range")
        if_range = self.headers.get("If-Range")
        if range_header and (not if_range or if_range in (etag, last_modified)):
            span = parse_range(range_header, size)
            if span is None:
                self._simple(416, f"range {range_header!r} not satisfiable for {size} bytes\n",
                             [("Content-Range", f"bytes */{size}")])
                return
            first, last = span
            status = 206
            headers.append(("Content-Range", f"bytes {first}-{last}/{size}"))
        length = max(0, last - first + 1)
        self._send_head(status, [*headers, ("Content-Length", str(length))])
        if self.command == "HEAD":
            return
        with target.open("rb") as handle:
            handle.seek(first)
            left = length
            while left > 0:
                data = handle.read(min(CHUNK, left))
                if not data:
                    break
                self._write(data)
                left -= len(data)
        self._finish_cut()


class MirrorServer(ThreadingHTTPServer):
    """ThreadingHTTPServer that knows the fixture root and holds the shared state."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], root: Path) -> None:
        self.root = root
        self.state = State()
        super().__init__(address, MirrorHandler)


def main(argv: list[str] | None = None) -> int:
    """Parse arguments and serve until interrupted."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, required=True, help="the fixture built by build_fixture.py")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--bind", default="0.0.0.0", help="address to listen on (default 0.0.0.0)")
    args = parser.parse_args(argv)
    if not (args.root / "git").is_dir():
        parser.error(f"--root {args.root}: no git/ directory; build it with build_fixture.py --out {args.root}")
    server = MirrorServer((args.bind, args.port), args.root)
    print(f"sdfleet mirror serving {args.root} on http://{args.bind}:{server.server_address[1]}/",
          file=sys.stderr, flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
