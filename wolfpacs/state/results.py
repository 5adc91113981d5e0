"""The store's timing of results: which routes await one, and the first that came.

A route (a client's study in one pool, :class:`~wolfpacs.state.store.Route`)
*awaits a result* from its last delivery to a worker (``delivered_at``, to
``delivered_to``, set at each delivery: the clock restarts) until its first
result: a derived instance of that (client, study) sent by the worker the
last delivery reached, or by the route's worker now (a result can overtake
the commit of the delivery it answers). A derived instance from any other
worker the study was given (one it was moved away from mid-stream) is taken
home, but is no result of what the route awaits. Once a result came, the
route awaits none again, whatever is delivered later (``result_at`` stays).

Whether a pool tracks results, and when one is overdue, is the config's
(``[[pools]] result_timeout``), asked by the caller: the store keeps the
times, lists the routes awaiting a result by pool through a partial index
(the routes awaiting one, never every study), and remembers when a route was
first seen overdue (``overdue_at``) so that it is logged once, across
restarts and nodes. In the SQL both backends speak, as
:mod:`wolfpacs.state.operations` is.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from wolfpacs.state.database import Database
from wolfpacs.state.queries import ENQUEUE, enqueue_args

if TYPE_CHECKING:
    from wolfpacs.state.store import QueueItem

__all__ = ["AWAITING", "ResultTracking"]

# The columns of a route awaiting a result, as awaiting_results() names them.
AWAITING = ("client", "study_uid", "pool", "worker", "delivered_at", "overdue_at")


class ResultTracking(Database):
    """The operations on results of the store (see the module)."""

    def enqueue_result(self, item: QueueItem, worker: str) -> float | None:
        """Enqueue a derived instance ``worker`` sent (as ``enqueue``); if it is the first
        result of its route, the seconds from the delivery it answers to it.

        None: not the first result, a retried call (the row is there: counted
        and timed already), or the first whose delivery is not committed yet
        (it overtook it). One transaction, the row and its route's result
        together.
        """
        at = item.enqueued_at or time.time()
        with self._transaction(synced=False) as db:
            if not db.execute(ENQUEUE, enqueue_args(item, at, self.node_id)).fetchall():
                return None
            row = db.execute(
                "UPDATE studies SET result_at = ? WHERE client = ? AND study_uid = ? "
                "AND pool = ? AND result_at IS NULL AND (delivered_to = ? OR worker = ?) "
                "RETURNING delivered_at",
                (at, item.client, item.study_uid, item.pool, worker, worker),
            ).fetchone()
        if row is None or row[0] is None:
            return None
        return max(at - float(row[0]), 0.0)

    def awaiting_results(self, pools: list[str]) -> list[dict[str, Any]]:
        """The routes of ``pools`` awaiting a result, oldest delivery first; none if no pool.

        Each: :data:`AWAITING`, ``worker`` being the one the last delivery
        reached. The routes from before pools were kept (pool ``""``) come
        too, whatever ``pools``: their pool is their worker's, the caller's
        to tell (the config knows it).
        """
        if not pools:
            return []
        keys = sorted({*pools, ""})
        marks = ", ".join("?" for _ in keys)
        return self._dicts(
            "SELECT client, study_uid, pool, delivered_to AS worker, delivered_at, overdue_at "
            "FROM studies WHERE result_at IS NULL AND delivered_at IS NOT NULL "
            f"AND pool IN ({marks}) ORDER BY delivered_at",
            *keys,
        )

    def mark_overdue(
        self, routes: list[tuple[str, str, str]], at: float
    ) -> list[tuple[str, str, str]]:
        """Note (client, study_uid, pool) routes as seen overdue at ``at``; those noted now.

        A route is noted once (insert-if-absent), and only while it awaits a
        result: of several callers (nodes), one gets each route back.
        """
        noted = []
        with self._transaction(synced=False) as db:  # a note lost in a crash: logged again
            for route in routes:
                changed = db.execute(
                    "UPDATE studies SET overdue_at = ? WHERE client = ? AND study_uid = ? "
                    "AND pool = ? AND overdue_at IS NULL AND result_at IS NULL",
                    (at, *route),
                ).rowcount
                if changed:
                    noted.append(route)
        return noted
