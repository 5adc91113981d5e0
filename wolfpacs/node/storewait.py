"""A sender's wait for an unavailable store: not the peer's fault, and not a crash.

While the store's database cannot be reached, every operation a sender asks
for fails with ``supervisors.UnavailableError`` (:mod:`wolfpacs.node.store`).
A told message that raised would crash the sender, and a crash at every
look at the queue would soon exceed restart intensity: :meth:`StoreWait.receive`,
the sender's ``on_receive``, waits instead. It keeps the peer's health
as it is, looks at the queue again every ``RETRY`` seconds (one timer, however
many messages fail meanwhile), and says once when it begins to wait and once
when it ends. A batch whose rows could not be deleted is sent again then (at
least once: the peer may get those instances twice).

When the store is back it tells each sender (:class:`~wolfpacs.node.messages.StoreBack`),
and :meth:`StoreWait.back` gives the files of the sender's queue that lost
their row in the outage their row again (:func:`wolfpacs.node.recovery.requeue`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from supervisors import UnavailableError
from wolfpacs.node.messages import WAKE, StoreBack
from wolfpacs.node.recovery import requeue

if TYPE_CHECKING:
    from wolfpacs.node.messages import Target
    from wolfpacs.state.spool import Spool
    from wolfpacs.state.store import Store

__all__ = ["RETRY", "StoreBack", "StoreWait"]

logger = logging.getLogger(__name__)

RETRY = 1.0  # seconds between two looks at the queue while the store is unavailable
_RETRY = "store-retry"  # the timer's message: look at the queue again


class StoreWait:
    """One sender's wait: ``send_after`` and ``tell`` are its actor's."""

    def __init__(
        self, name: str, send_after: Callable[[float, Any], object], tell: Callable[[Any], None]
    ) -> None:
        self.name = name
        self._send_after = send_after
        self._tell = tell
        self.waiting = False  # the store was unavailable at the last look
        self._due = False  # a look is on its way

    def failed(self, exc: UnavailableError) -> None:
        """An operation found the store unavailable: look again in ``RETRY`` s."""
        if not self.waiting:
            self.waiting = True
            logger.warning("%s: the store is unavailable (%s): deliveries wait for it",
                           self.name, exc)  # fmt: skip
        if not self._due:
            self._due = True
            self._send_after(RETRY, _RETRY)

    def answered(self) -> None:
        """The store answered: the wait, if any, is over."""
        if self.waiting:
            self.waiting = False
            logger.info("%s: the store answers again: delivering", self.name)

    def back(self, message: StoreBack, spool: Spool, store: Store, target: Target) -> None:
        """The store is back: rows of ``target``'s queue it lost, made again; then a look.

        Raises:
            UnavailableError: it is gone again (this message comes again after it).
        """
        try:
            requeue(spool, store, target.name, target.kind, message.since)
        except UnavailableError:
            self._send_after(RETRY, message)
            raise
        self._tell(WAKE)

    def receive(self, handle: Callable[[Any], Any], message: Any) -> Any:
        """The actor's ``on_receive``: ``handle(message)``, what the store's unavailability
        raises waited out (:meth:`failed`), never a crash; the timer's look comes to
        ``handle`` as a ``WAKE``. Any other error is raised, as before."""
        if message == _RETRY:
            self._due = False
            message = WAKE
        try:
            return handle(message)
        except UnavailableError as exc:
            self.failed(exc)
            return None
