"""A node's queue on PostgreSQL: a delivery in one statement, one round trip.

:class:`PostgreSQLQueue` overrides :class:`~wolfpacs.state.queue.NodeQueue`'s
``delivered`` and ``delivered_next`` with PostgreSQL's own SQL; the other
operations of the queue, and SQLite's path, are the portable ones. Why: the
store actor's one thread runs every statement of a node, and on PostgreSQL
each statement is a round trip to the server and the client's CPU to send
it and read its answer. The portable delivery of a batch is ``BEGIN``, a
``DELETE`` and an ``UPDATE`` per row, ``COMMIT``, then ``next_items``'
``SELECT``: five statements or more per batch. Here it is one:
:data:`DELIVER`, a data-modifying ``WITH``:

- ``gone``: ``DELETE … WHERE id = ANY(ids) AND owner = node RETURNING``:
  this node's rows only (the fence of :mod:`wolfpacs.state.leases`: a row
  another node adopted is not deleted, and its id is not among those
  returned, so its file is not the caller's to remove);
- ``counted``: one ``UPDATE studies … FROM`` the rows gone, grouped by study
  (a study is updated once per statement): instances and derived instances
  delivered, those delivered to a worker the study has left
  (``delivered_elsewhere``, against the route's worker as the row is
  updated), ``delivered_at``/``delivered_to`` (the last row delivered to a
  worker, by id, as the portable loop leaves them) and the study's last
  activity, moved at most once a second as :data:`~wolfpacs.state.queries.TOUCH_STUDY` does;
- and the answer: the ids gone (``ARRAY_AGG``) beside, for
  ``delivered_next``, the next rows owed to the target, on one row at
  least (a ``LEFT JOIN`` of them to one row).

One statement is one transaction (the connections are in autocommit):
the rows go and are counted together, or not at all, as in the portable
transaction; it commits without waiting for the WAL flush, as the
portable ``_transaction(synced=False)`` does (a lost delivery only sends
an instance twice). Every part of a statement reads one snapshot, taken
as it starts: the next rows are read as they were before this statement
deleted any, so the ids it deletes are left out by name; a row adopted
by another node while the statement runs may still be listed, as it may
by a ``next_items`` that ran a moment earlier (its ``delivered`` then
finds it gone: see :mod:`wolfpacs.state.leases`).
"""

from __future__ import annotations

import time

from wolfpacs.state.queries import ITEM, STUDY
from wolfpacs.state.queue import NodeQueue
from wolfpacs.state.store import WORKER, QueueItem

__all__ = ["DELIVER", "PostgreSQLQueue"]

# Parameters: ids, owner, kind WORKER (x4), now (x3). See the module.
DELIVER = (
    "WITH gone AS (DELETE FROM queue WHERE id = ANY(?) AND owner = ? "
    "RETURNING id, kind, client, study_uid, target, pool), "
    "counted AS (UPDATE studies AS s SET "
    "instances_delivered = s.instances_delivered + d.instances, "
    "derived_delivered = s.derived_delivered + d.derived, "
    "delivered_elsewhere = s.delivered_elsewhere + (SELECT COUNT(*) FROM gone g "
    "WHERE g.kind = ? AND g.client = s.client AND g.study_uid = s.study_uid "
    "AND g.pool = s.pool AND g.target <> s.worker), "
    "delivered_at = CASE WHEN d.instances > 0 THEN ? ELSE s.delivered_at END, "
    "delivered_to = COALESCE(d.last_target, s.delivered_to), "
    "last_activity_at = CASE WHEN s.last_activity_at < ? - 1 THEN ? "
    "ELSE s.last_activity_at END "
    "FROM (SELECT client, study_uid, pool, COUNT(*) FILTER (WHERE kind = ?) AS instances, "
    "COUNT(*) FILTER (WHERE kind <> ?) AS derived, "
    "(ARRAY_AGG(target ORDER BY id DESC) FILTER (WHERE kind = ?))[1] AS last_target "
    "FROM gone GROUP BY client, study_uid, pool) AS d "
    f"WHERE {STUDY.replace('q.', 'd.')}) "
)
# The next rows owed to a target, as NodeQueue.next_items reads them, but those just deleted.
# Parameters: owner, target, ids, kind WORKER, limit.
NEXT = (
    f"SELECT {ITEM} FROM queue q LEFT JOIN studies s ON {STUDY} "
    "WHERE q.owner = ? AND q.target = ? AND q.id <> ALL(?) "
    "AND (q.kind <> ? OR s.worker IS NULL OR s.worker = q.target) "
    "ORDER BY q.id LIMIT ?"
)


class PostgreSQLQueue(NodeQueue):
    """A node's queue whose deliveries are one statement each (see the module)."""

    def delivered(self, item_id: int, at: float | None = None) -> bool:
        """The target answered success: drop the row, count the delivery (once).

        False: no row of this node's has that id (counted already, or adopted
        by another node, whose row and file it now are: leave the file).
        """
        rows = self._rows(
            f"{DELIVER}SELECT id FROM gone", *self._deliver_args([item_id], at or time.time())
        )
        return bool(rows)

    def delivered_next(
        self, item_ids: list[int], target: str, limit: int = 32
    ) -> tuple[list[int], list[QueueItem]]:
        """:meth:`delivered` for each of ``item_ids``, then the next items: one statement.

        Returns the ids whose rows went, in the order given (the others:
        counted already, or adopted by another node: their files are not the
        caller's to remove), and the next items, as ``next_items`` lists them.
        """
        rows = self._rows(
            f"{DELIVER}SELECT (SELECT ARRAY_AGG(id) FROM gone), n.* FROM (SELECT 1) AS one "
            f"LEFT JOIN ({NEXT}) AS n ON TRUE ORDER BY n.id",
            *self._deliver_args(item_ids, time.time()),
            self.node_id, target, list(item_ids), WORKER, limit,
        )  # fmt: skip
        deleted = set(rows[0][0] or ())
        gone = [item_id for item_id in dict.fromkeys(item_ids) if item_id in deleted]
        return gone, [QueueItem(*row[1:]) for row in rows if row[1] is not None]

    def _deliver_args(self, item_ids: list[int], now: float) -> tuple[object, ...]:
        return (list(item_ids), self.node_id, WORKER, now, now, now, WORKER, WORKER, WORKER)
