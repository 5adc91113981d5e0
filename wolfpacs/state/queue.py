"""A node's delivery queue in the store: rows of spooled instances, each owed to a target.

Every row has an owner, the node that delivers it (see
:mod:`wolfpacs.state.leases`): each operation here reads and changes the
rows of ``self.node_id`` only, so that a row another node adopted is none
of a late node's business. Its ``delivered``, ``remove_item``,
``retarget`` and ``failed_attempt`` say whether the row was still its own;
only then is its file the caller's to remove or move. In the SQL both
backends speak, as :mod:`wolfpacs.state.operations` is; PostgreSQL says
``delivered`` and ``delivered_next`` in one statement of its own
(:mod:`wolfpacs.state.pgqueue`), with the same answers and guarantees.
"""

from __future__ import annotations

import time
from typing import Any

from wolfpacs.state.database import Database
from wolfpacs.state.queries import ENQUEUE, ITEM, STUDY, TOUCH_STUDY, enqueue_args
from wolfpacs.state.store import WORKER, QueueItem

__all__ = ["NodeQueue"]


class NodeQueue(Database):
    """The operations on a node's queue (see the module)."""

    def enqueue(self, item: QueueItem) -> int:
        """Add a queue row and count the instance in; its row id.

        Idempotent by path: a retried call finds the row and counts nothing.
        """
        return self._enqueue(item)[0]

    def enqueue_received(self, item: QueueItem) -> str | None:
        """:meth:`enqueue` a received instance; the worker its study moved to meanwhile, if any.

        A move between the router's answer and this row leaves the row with
        the worker the study left: its sender must hand it on (tell it so).
        """
        _, worker = self._enqueue(item)
        return worker if item.kind == WORKER and worker not in (None, item.target) else None

    def _enqueue(self, item: QueueItem) -> tuple[int, str | None]:
        """:meth:`enqueue`; the row id and the worker the study's route names now.

        One statement, its own transaction: the triggers of the queue count
        the instance in. This runs once an instance in the store's one
        thread, and each statement lets go of the interpreter and must wait
        to have it back; four statements here made every receiver wait.
        """
        rows = self._rows(ENQUEUE, *enqueue_args(item, owner=self.node_id))
        if rows:
            return int(rows[0][0]), rows[0][1]
        # a retried call: the row is there, counted already
        row_id = self._value("SELECT id FROM queue WHERE path = ?", item.path)
        route = self._rows(  # its route, as get_route finds it
            "SELECT worker FROM studies WHERE client = ? AND study_uid = ? AND pool IN (?, '') "
            "ORDER BY pool DESC LIMIT 1",
            item.client, item.study_uid, item.pool,
        )  # fmt: skip
        return int(row_id), route[0][0] if route else None

    def next_items(self, target: str, limit: int = 32, after_id: int = 0) -> list[QueueItem]:
        """The oldest rows owed to ``target``, leaving out those of studies moved away.

        A moved study's rows wait for their sender to hand them on; they are
        never sent to the worker the study has left. This node's rows only.
        """
        rows = self._rows(
            f"SELECT {ITEM} FROM queue q LEFT JOIN studies s ON {STUDY} "
            "WHERE q.owner = ? AND q.target = ? AND q.id > ? "
            "AND (q.kind <> ? OR s.worker IS NULL OR s.worker = q.target) "
            "ORDER BY q.id LIMIT ?",
            self.node_id, target, after_id, WORKER, limit,
        )  # fmt: skip
        return [QueueItem(*row) for row in rows]

    def delivered(self, item_id: int, at: float | None = None) -> bool:
        """The target answered success: drop the row, count the delivery (once).

        False: no row of this node's has that id (counted already, or adopted
        by another node, whose row and file it now are: leave the file).
        """
        return bool(self._delivered([item_id], at or time.time()))

    def delivered_next(
        self, item_ids: list[int], target: str, limit: int = 32
    ) -> tuple[list[int], list[QueueItem]]:
        """:meth:`delivered` for each of ``item_ids`` (one commit), then :meth:`next_items`.

        Returns the ids whose rows went (the others: counted already, or
        adopted by another node: their files are not the caller's to remove),
        and the next items.
        """
        gone = self._delivered(item_ids, time.time())
        return gone, self.next_items(target, limit)

    def _delivered(self, item_ids: list[int], now: float) -> list[int]:
        gone: list[int] = []
        with self._transaction(synced=False) as db:
            for item_id in item_ids:
                row = db.execute(
                    "DELETE FROM queue WHERE id = ? AND owner = ? "
                    "RETURNING kind, client, study_uid, target, pool",
                    (item_id, self.node_id),
                ).fetchone()
                if row is None:
                    continue  # counted already, or another node's now
                gone.append(item_id)
                kind, client, study_uid, target, pool = row
                if kind == WORKER:  # count, too, what reached a worker the study has left
                    # delivered_at/_to: a result is awaited from the last delivery on, from
                    # the worker it reached (see ResultTracking)
                    counted = db.execute(
                        "UPDATE studies SET instances_delivered = instances_delivered + 1, "
                        "delivered_elsewhere = delivered_elsewhere + "
                        "CASE WHEN worker <> ? THEN 1 ELSE 0 END, delivered_at = ?, "
                        "delivered_to = ? WHERE client = ? AND study_uid = ? AND pool = ? "
                        "RETURNING last_activity_at",
                        (target, now, target, client, study_uid, pool),
                    ).fetchone()
                else:
                    counted = db.execute(
                        "UPDATE studies SET derived_delivered = derived_delivered + 1 "
                        "WHERE client = ? AND study_uid = ? AND pool = ? "
                        "RETURNING last_activity_at",
                        (client, study_uid, pool),
                    ).fetchone()
                # TOUCH_STUDY's own test, asked here: a statement (a round trip to a server)
                # once a second per study, not one per instance delivered
                if counted is not None and counted[0] < now - 1:
                    db.execute(TOUCH_STUDY, (now, client, study_uid, pool, now))
        return gone

    def moved_items(self, target: str, limit: int = 256) -> list[tuple[QueueItem, str]]:
        """Queued rows of ``target`` whose study now routes elsewhere, with that worker."""
        rows = self._rows(
            f"SELECT {ITEM}, s.worker FROM queue q JOIN studies s ON {STUDY} "
            "WHERE q.owner = ? AND q.target = ? AND q.kind = ? AND s.worker <> q.target "
            "ORDER BY q.id LIMIT ?",
            self.node_id, target, WORKER, limit,
        )  # fmt: skip
        return [(QueueItem(*row[:-1]), row[-1]) for row in rows]

    def retarget(self, item_id: int, target: str, path: str) -> bool:
        """Point this node's row at another target and its file; False: no such row of its own."""
        with self._transaction(synced=False) as db:
            return bool(db.execute(
                "UPDATE queue SET target = ?, path = ? WHERE id = ? AND owner = ?",
                (target, path, item_id, self.node_id),
            ).rowcount)  # fmt: skip

    def repath(self, old: str, new: str) -> bool:
        """Point this node's row of spool file ``old`` at ``new``; whether there was one."""
        with self._transaction(synced=False) as db:
            return bool(db.execute(
                "UPDATE queue SET path = ? WHERE path = ? AND owner = ?", (new, old, self.node_id)
            ).rowcount)  # fmt: skip

    def remove_item(self, item_id: int) -> bool:
        """Drop a row of this node's whose file goes to ``dead/``; False: none (adopted)."""
        with self._transaction(synced=False) as db:
            return bool(db.execute(
                "DELETE FROM queue WHERE id = ? AND owner = ?", (item_id, self.node_id)
            ).rowcount)  # fmt: skip

    def failed_attempt(self, item_id: int, error: str) -> int:
        """Count a failure answer for one instance; the attempts so far (0: not this node's)."""
        with self._transaction(synced=False) as db:
            row = db.execute(
                "UPDATE queue SET attempts = attempts + 1, last_error = ? WHERE id = ? "
                "AND owner = ? RETURNING attempts",
                (error, item_id, self.node_id),
            ).fetchone()
        return int(row[0]) if row else 0

    def items_of(self, target: str) -> list[QueueItem]:
        rows = self._rows(
            f"SELECT {ITEM} FROM queue q WHERE q.owner = ? AND q.target = ? ORDER BY q.id",
            self.node_id, target,
        )  # fmt: skip
        return [QueueItem(*row) for row in rows]

    def queue_stats(self) -> dict[str, dict[str, Any]]:
        """Per target: this node's queued instances, bytes, oldest enqueue time."""
        rows = self._rows(
            "SELECT target, kind, COUNT(*), SUM(size), MIN(enqueued_at) FROM queue "
            "WHERE owner = ? GROUP BY target, kind",
            self.node_id,
        )
        return {
            # int(): PostgreSQL's SUM of a BIGINT is a NUMERIC (a Decimal)
            target: {"kind": kind, "instances": n, "bytes": int(size or 0), "oldest": oldest}
            for target, kind, n, size, oldest in rows
        }

    def queued_paths(self, all_nodes: bool = False) -> set[str]:
        """The paths of this node's rows (``all_nodes``: of every node's)."""
        if all_nodes:
            return {row[0] for row in self._rows("SELECT path FROM queue")}
        return {row[0] for row in self._rows("SELECT path FROM queue WHERE owner = ?",
                                             self.node_id)}  # fmt: skip

    def drop_missing(self, paths: set[str]) -> int:
        """Remove this node's rows whose files are gone (delivered before a crash); how many."""
        with self._transaction() as db:
            for path in sorted(paths):
                db.execute("DELETE FROM queue WHERE path = ? AND owner = ?", (path, self.node_id))
        return len(paths)
