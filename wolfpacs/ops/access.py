"""Who may see what on the HTTP port: tokens, a session cookie, loopback.

The status page and the JSON views show study and SOP instance UIDs, so:

- with ``[node] http_token`` (or ``WOLFPACS_HTTP_TOKEN``), they need
  ``Authorization: Bearer <token>``, or the session cookie the login form
  (``/login``) sets once it is given the token;
- without one, they are shown to loopback only (a viewer on the node's
  own host), and refused (403, saying how to set a token) elsewhere.

``/metrics`` needs ``Bearer <metrics_token>`` when that token is set, and is
open otherwise (its labels name clients, workers and targets, no patient
data). ``/healthz`` and ``/readyz`` are always open: orchestrators probe them.

A session cookie is ``<expiry>.<HMAC of it, keyed by the token>``: it
holds no secret, lasts :data:`SESSION_SECONDS`, and dies with a new token.
Tokens are compared in constant time and never logged.
"""

from __future__ import annotations

import hashlib
import hmac
import html
import ipaddress
import time
from enum import Enum

__all__ = [
    "COOKIE", "Access", "decide", "is_token", "login_page", "metrics_allowed", "session_cookie",
]  # fmt: skip

COOKIE = "wolfpacs_session"
SESSION_SECONDS = 12 * 3600


class Access(Enum):
    """What a request for a protected view gets."""

    GRANTED = "granted"
    UNAUTHORIZED = "unauthorized"  # 401: a token is set and the request has none that fits
    LOOPBACK_ONLY = "loopback_only"  # 403: no token is set and the viewer is elsewhere


def _bearer(authorization: str) -> str | None:
    scheme, _, credentials = authorization.partition(" ")
    return credentials.strip() if scheme.lower() == "bearer" else None


def is_token(given: str | None, token: str) -> bool:
    """Whether ``given`` is ``token`` (in constant time); never for an empty token."""
    return bool(token) and given is not None and hmac.compare_digest(given.encode(), token.encode())


def session_cookie(token: str, now: float | None = None) -> str:
    """A session cookie's value, good for :data:`SESSION_SECONDS` from ``now``."""
    expiry = str(int((time.time() if now is None else now) + SESSION_SECONDS))
    return f"{expiry}.{_sign(token, expiry)}"


def _sign(token: str, expiry: str) -> str:
    message = f"wolfpacs-session:{expiry}".encode()
    return hmac.new(token.encode(), message, hashlib.sha256).hexdigest()


def _session(cookies: str, token: str, now: float) -> bool:
    """Whether the ``Cookie`` header holds a session of this token that has not expired."""
    for part in cookies.split(";"):
        name, _, value = part.strip().partition("=")
        if name != COOKIE:
            continue
        expiry, _, signature = value.partition(".")
        if expiry.isdigit() and int(expiry) > now and is_token(signature, _sign(token, expiry)):
            return True
    return False


def _loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def decide(
    authorization: str, cookies: str, address: str, token: str, now: float | None = None
) -> Access:
    """Whether a request from ``address`` may see the status page or a JSON view.

    ``authorization`` and ``cookies``: its headers of those names ("" if none).
    """
    if not token:
        return Access.GRANTED if _loopback(address) else Access.LOOPBACK_ONLY
    if is_token(_bearer(authorization), token):
        return Access.GRANTED
    if _session(cookies, token, time.time() if now is None else now):
        return Access.GRANTED
    return Access.UNAUTHORIZED


def metrics_allowed(authorization: str, token: str) -> bool:
    """``/metrics``: open unless ``metrics_token`` is set, then its Bearer token only."""
    return not token or is_token(_bearer(authorization), token)


def login_page(node: str, failed: bool = False) -> str:
    """The form that asks for the HTTP token and posts it to ``/login``."""
    name = html.escape(node)
    note = "<p class=error>That is not the token.</p>" if failed else ""
    return (
        "<!doctype html><html><head><meta charset=utf-8>"
        f"<title>WolfPACS node {name}: sign in</title></head><body>"
        f"<h1>WolfPACS node {name}</h1>{note}"
        "<form method=post action=/login><label>HTTP token "
        "<input id=token type=password name=token autocomplete=off autofocus></label> "
        "<button id=sign-in type=submit>Sign in</button></form></body></html>"
    )
