"""Fixtures of the stand-in webui tests (defined in standin_helpers.py)."""

from standin_helpers import fake_pip, mirror, start_server, sub_repos, webui  # noqa: F401 (pytest fixtures)
