# -*- coding: utf-8 -*-
"""Filters that hide credentials in URLs; the rule itself is ``module_utils/redact.py``."""
from __future__ import annotations

from typing import Any

from ansible_collections.sdfleet.toolkit.plugins.module_utils import redact


class FilterModule:
    """sdfleet credential redaction filters."""

    def filters(self) -> dict[str, Any]:
        return {
            "redact_urls": redact.redact_urls,
            "redact_value": redact.redact_value,
            "url_has_credentials": redact.has_credentials,
            "url_strip_credentials": redact.strip_credentials,
        }
