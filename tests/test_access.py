"""Who may see what on the HTTP port (wolfpacs.ops.access), without a node."""

from __future__ import annotations

from wolfpacs.ops.access import COOKIE, SESSION_SECONDS, Access, decide, metrics_allowed
from wolfpacs.ops.access import session_cookie as cookie

TOKEN = "0123456789abcdef-page"


def test_without_a_token_the_views_are_for_loopback_only():
    assert decide("", "", "127.0.0.1", "") is Access.GRANTED
    assert decide("", "", "::1", "") is Access.GRANTED
    assert decide("", "", "10.1.2.3", "") is Access.LOOPBACK_ONLY
    assert decide(f"Bearer {TOKEN}", "", "10.1.2.3", "") is Access.LOOPBACK_ONLY


def test_with_a_token_everyone_needs_it_loopback_too():
    for address in ("127.0.0.1", "10.1.2.3"):
        assert decide("", "", address, TOKEN) is Access.UNAUTHORIZED
        assert decide(f"Bearer {TOKEN}", "", address, TOKEN) is Access.GRANTED
        assert decide(f"bearer {TOKEN}", "", address, TOKEN) is Access.GRANTED
        assert decide("Bearer nope", "", address, TOKEN) is Access.UNAUTHORIZED
        assert decide(f"Basic {TOKEN}", "", address, TOKEN) is Access.UNAUTHORIZED


def test_a_session_cookie_holds_no_token_lasts_and_dies_with_a_new_token():
    value = cookie(TOKEN, now=1000.0)
    assert TOKEN not in value
    jar = f"other=1; {COOKIE}={value}"
    assert decide("", jar, "10.1.2.3", TOKEN, now=1000.0 + SESSION_SECONDS - 1) is Access.GRANTED
    assert decide("", jar, "10.1.2.3", TOKEN, now=1000.0 + SESSION_SECONDS) is Access.UNAUTHORIZED
    assert decide("", jar, "10.1.2.3", TOKEN + "-new", now=1000.0) is Access.UNAUTHORIZED
    forged = f"{COOKIE}={int(1e10)}.{value.split('.', 1)[1]}"  # a later expiry, the old MAC
    assert decide("", forged, "10.1.2.3", TOKEN, now=1000.0) is Access.UNAUTHORIZED


def test_metrics_are_open_unless_their_token_is_set():
    assert metrics_allowed("", "")
    assert not metrics_allowed("", "m" * 16)
    assert metrics_allowed(f"Bearer {'m' * 16}", "m" * 16)
    assert not metrics_allowed(f"Bearer {TOKEN}", "m" * 16)
