"""Secrets in the config, and how they are shown: never in full.

A client's AE title is its shared secret (it calls the node by it); the
control, HTTP and metrics tokens are secrets too. Logs, the audit log,
metrics, pages, error messages and ``config --export`` show a secret
masked, as :func:`masked` gives it: enough to tell two apart, not to use one.
"""

from __future__ import annotations

__all__ = ["TOKENS", "masked"]

ELLIPSIS = "\u2026"
# [node] keys whose values are secrets: never written or shown unless asked for.
TOKENS = ("control_token", "http_token", "metrics_token")


def masked(secret: str) -> str:
    """``ST…ET`` for ``STHLM_SECRET``: at most the first and last two characters.

    Under six characters (which two and two would nearly give away), only ``…``.
    """
    secret = secret.strip()
    return f"{secret[:2]}{ELLIPSIS}{secret[-2:]}" if len(secret) >= 6 else ELLIPSIS
