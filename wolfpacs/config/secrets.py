"""Secrets in the config, and how they are shown: never in full.

A client's AE title is its shared secret (it calls the node by it); the
control, HTTP and metrics tokens are secrets too, and so is the password
in a PostgreSQL store's URL (:func:`redacted_url`). Logs, the audit log,
metrics, pages, error messages and ``config --export`` show a secret
masked, as :func:`masked` gives it: enough to tell two apart, not to use one.
"""

from __future__ import annotations

import re

__all__ = ["TOKENS", "has_password", "masked", "redacted_url"]

ELLIPSIS = "\u2026"
# [node] keys whose values are secrets: never written or shown unless asked for.
TOKENS = ("control_token", "http_token", "metrics_token")


def masked(secret: str) -> str:
    """``ST…ET`` for ``STHLM_SECRET``: at most the first and last two characters.

    Under six characters (which two and two would nearly give away), only ``…``.
    """
    secret = secret.strip()
    return f"{secret[:2]}{ELLIPSIS}{secret[-2:]}" if len(secret) >= 6 else ELLIPSIS


# A password in a URL: before its host (user:PASSWORD@), or in its query (libpq's ?password=).
_NETLOC_PASSWORD = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*://[^:/?#@]*):[^@/?#]*@")
_QUERY_PASSWORD = re.compile(r"([?&]password=)[^&#]*", re.IGNORECASE)


def redacted_url(url: str) -> str:
    """``url`` with its password (``user:PASSWORD@`` or ``?password=``) as ``…``.

    What is not a URL comes back as it is (``"sqlite"``).
    """
    url = _NETLOC_PASSWORD.sub(rf"\1:{ELLIPSIS}@", url, count=1)
    return _QUERY_PASSWORD.sub(rf"\1{ELLIPSIS}", url)


def has_password(url: str) -> bool:
    """Whether ``url`` holds a password (which :func:`redacted_url` hides)."""
    return redacted_url(url) != url
