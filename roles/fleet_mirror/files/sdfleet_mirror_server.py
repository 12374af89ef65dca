#!/usr/bin/python3
# Managed by sdfleet (role fleet_mirror); local changes are overwritten.
"""The fleet mirror's HTTP server: Python's http.server over the mirror's tree, minus the git repositories' own
files. A dumb-HTTP git client needs only HEAD, info/refs, objects/info/packs, objects/... and refs/...; a bare
repository's config (its remote URL), FETCH_HEAD, hooks/, logs/ and the rest are answered 404, and so is every
directory listing inside a repository. Standard library only (the mirror host's /usr/bin/python3)."""
from __future__ import annotations

import argparse
import functools
import http.server
import posixpath
import re
import urllib.parse

# What git's dumb HTTP transport fetches from /git/<repo>/ (and nothing else there is served).
GIT_ALLOWED = re.compile(r"^(HEAD|packed-refs|info/refs|info/packs|objects/info/(packs|alternates|http-alternates)"
                         r"|objects/[0-9a-f]{2}/[0-9a-f]{38,62}|objects/pack/pack-[0-9a-f]{40,64}\.(pack|idx)"
                         r"|refs/.+)$")


def allowed(raw_path: str) -> bool:
    """Whether the request path may be served: anything outside git/, or a git transport file of a repository
    there (git/<repo>/ or, for the pinned webui extensions, git/extensions/<name>/)."""
    path = urllib.parse.unquote(urllib.parse.urlsplit(raw_path).path)
    path = posixpath.normpath("/" + re.sub(r"/+", "/", path)).lstrip("/")
    parts = path.split("/")
    if not parts or parts[0] != "git" or len(parts) < 2:
        return True
    depth = 3 if parts[1] == "extensions" else 2  # how many segments name the repository
    if len(parts) <= depth:  # git/, a repository or git/extensions itself: no directory listing
        return False
    return bool(GIT_ALLOWED.match("/".join(parts[depth:]))) and ".." not in parts


class Handler(http.server.SimpleHTTPRequestHandler):
    """http.server's handler with the git repositories' private files refused."""

    def send_head(self):  # noqa: D102 (http.server's hook for GET and HEAD)
        if not allowed(self.path):
            self.send_error(404, "Not found")
            return None
        return super().send_head()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bind", default="0.0.0.0")
    parser.add_argument("--directory", required=True)
    parser.add_argument("port", type=int)
    args = parser.parse_args()
    handler = functools.partial(Handler, directory=args.directory)
    with http.server.ThreadingHTTPServer((args.bind, args.port), handler) as server:
        server.serve_forever()


if __name__ == "__main__":
    main()
