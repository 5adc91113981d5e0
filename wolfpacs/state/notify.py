"""Notifications of changes from other nodes: PostgreSQL's ``LISTEN``, in a thread.

The PostgreSQL store sends ``NOTIFY`` on :data:`~wolfpacs.state.postgresql.CHANNEL`
when a runtime change, a move or a worker's state commits. A
:class:`ChangeListener` holds a connection of its own (not one of the
store's pool: a listening connection is a session, and the store's must
stay free for instances) and calls ``on_notify(payload)`` for each
notification it gets, and ``on_notify(`` :data:`RECONNECTED` ``)`` each time
it has (re)connected: what was sent while it was away is lost, so whoever
listens must look at the tables then. A notification only says "look now";
the tables stay the truth.

Its :meth:`~ChangeListener.run` is the body of a thread its owner starts
and stops (the watcher actor, :mod:`wolfpacs.node.changes`): it returns
soon after ``stop`` is set. Errors: a connection that cannot be made or
breaks is logged (once per outage) and made again after a backoff that
doubles up to :data:`BACKOFF_MAX`; ``run`` raises only what ``on_notify``
raises.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from wolfpacs.config.secrets import redacted_url
from wolfpacs.state.postgresql import CHANNEL, KEEPALIVES, driver

__all__ = ["BACKOFF_MAX", "RECONNECTED", "ChangeListener"]

logger = logging.getLogger(__name__)

RECONNECTED = "reconnected"  # the payload of the call that follows each (re)connection
WAIT = 0.5  # seconds a wait for notifications lasts: how soon ``stop`` is seen
CONNECT_TIMEOUT = 5  # seconds to connect
BACKOFF_FIRST = 0.5  # seconds before the first attempt to connect again
BACKOFF_MAX = 10.0  # seconds between two attempts, at most


class ChangeListener:
    """``LISTEN`` on the store's channel at ``url``; ``on_notify(payload)`` per notification.

    ``on_notify`` runs in the listening thread: keep it to telling an actor.
    :attr:`connected`, :attr:`notifications` and :attr:`failures` are for
    ``inspect`` (read from any thread).
    """

    def __init__(self, url: str, on_notify: Callable[[str], None]) -> None:
        self.url = url
        self.on_notify = on_notify
        self.connected = False
        self.notifications = 0
        self.failures = 0

    def run(self, stop: threading.Event) -> None:
        """Listen until ``stop`` is set, connecting again after each failure."""
        driver()
        import psycopg  # noqa: PLC0415 -- an optional extra (see wolfpacs.state.postgresql)
        from psycopg.conninfo import make_conninfo  # noqa: PLC0415

        conninfo = make_conninfo(self.url, connect_timeout=CONNECT_TIMEOUT, **KEEPALIVES)

        backoff = BACKOFF_FIRST
        while not stop.is_set():
            try:
                with psycopg.connect(conninfo, autocommit=True) as db:
                    db.execute(f"LISTEN {CHANNEL}")
                    if self.failures:
                        logger.info("listening for other nodes' changes again")
                    self.connected, backoff = True, BACKOFF_FIRST
                    self.on_notify(RECONNECTED)
                    self._listen(db, stop)
            except psycopg.Error as exc:
                self.failures += 1
                if self.connected or self.failures == 1:  # once per outage
                    logger.warning(
                        "no notifications of other nodes' changes from %s (%s); polling until "
                        "it is back", redacted_url(self.url), str(exc).strip() or type(exc),
                    )  # fmt: skip
            finally:
                self.connected = False
            stop.wait(backoff)
            backoff = min(backoff * 2, BACKOFF_MAX)

    def _listen(self, db: Any, stop: threading.Event) -> None:
        while not stop.is_set():
            for notification in db.notifies(timeout=WAIT):
                self.notifications += 1
                self.on_notify(notification.payload)
