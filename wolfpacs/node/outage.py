"""A store that cannot be reached: how long to wait between two tries, and what to log.

A PostgreSQL server restarted, failed over or cut off by the network is
an event the node rides out, not a fault to crash on: a crash would only
try again at once, and a restart count would turn a long outage into the
node's exit (restart intensity). So the store actor, and the node at its
start, keep trying to open the backend with :func:`wait_open`: a capped
exponential backoff (``FIRST`` s doubling to ``MOST`` s) and a log line
every ``LOG_EVERY`` s at most, until it opens or they are told to stop.

Which errors mean "cannot be reached" is the backend's to say
(:meth:`~wolfpacs.state.store.Backend.is_broken`: a lost server or
connection, no connection in time); any other error of ``open`` (a
database of a newer WolfPACS, a driver that is not installed) will not
pass by waiting, and is raised at once.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable

    from wolfpacs.state.store import Backend

__all__ = ["FIRST", "LOG_EVERY", "MOST", "describe", "unreachable", "wait_open"]

logger = logging.getLogger(__name__)

FIRST = 0.5  # seconds before the second try
MOST = 5.0  # seconds between two tries at most: a store back is used within this
LOG_EVERY = 5.0  # seconds between two log lines of one outage at least


def unreachable(backend: Backend, exc: BaseException) -> bool:
    """Whether ``exc``, raised by ``backend``, may pass by waiting (the backend says so)."""
    try:
        return backend.is_broken(exc)
    except ImportError:  # its driver is missing (open said so): that does not pass
        return False


def describe(backend: Backend) -> str:
    """Where ``backend`` keeps its data, without secrets: for a log line."""
    try:
        where = backend.describe()
    except Exception:  # a log line's detail: never the reason it fails
        return type(backend).__name__
    return str(where.get("url") or where.get("path") or where.get("backend", "the store"))


def wait_open(
    open_backend: Callable[[], Backend],
    stop: threading.Event,
    what: str = "the store",
    failed: Callable[[str], None] | None = None,
) -> Backend | None:
    """A new backend from ``open_backend()``, open; tried again while it cannot be reached.

    Returns None if ``stop`` is set first. Logs at WARNING the first failure
    and then one line every ``LOG_EVERY`` s (``what`` says who waits), and at
    INFO when it opens after a failure; ``failed``, if given, is told each
    failure as one line. Blocks: run it in a thread of its own, or before
    the tree starts.

    Raises:
        Exception: what ``open`` raised that does not pass by waiting
            (:func:`unreachable` says no), unchanged.
    """
    delay, began, logged, failures = FIRST, time.monotonic(), -LOG_EVERY, 0
    while not stop.is_set():
        backend = open_backend()
        try:
            backend.open()
        except Exception as exc:
            if not unreachable(backend, exc):
                raise
            failures += 1
            if failed is not None:
                failed(f"the store at {describe(backend)} cannot be reached: {_one_line(exc)}")
            now = time.monotonic()
            if now - logged >= LOG_EVERY:
                logged = now
                logger.warning(
                    "%s: the store at %s cannot be reached (%s); /readyz is 503 until it can; "
                    "trying again every %g s at most (for %.0f s now)",
                    what, describe(backend), _one_line(exc), MOST, now - began,
                    extra={"event": "store_unavailable"},
                )  # fmt: skip
            stop.wait(delay)
            delay = min(delay * 2, MOST)
            continue
        if failures:
            logger.info("%s: the store at %s is back after %.1f s", what, describe(backend),
                        time.monotonic() - began, extra={"event": "store_available"})  # fmt: skip
        return backend
    return None


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text or type(exc).__name__
