"""The SQL that several operations of the store share.

In one place, so that what a queue row's study is (:data:`STUDY`: its
route in its pool) or when a study is open (:data:`QUEUED`) is said once.
In the SQL both backends speak, as :mod:`wolfpacs.state.operations` is.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from wolfpacs.state.store import WORKER

if TYPE_CHECKING:
    from collections.abc import Sequence

    from wolfpacs.state.store import QueueItem

__all__ = [
    "ASSIGN", "ENQUEUE", "ITEM", "ITEM_COLUMNS", "QUEUED", "REROUTE", "ROUTE", "SERIES", "STUDY",
    "TOUCH_STUDY", "count_open", "enqueue_args",
]  # fmt: skip

# One statement per received instance (see SQLStore._enqueue): a trigger counts it in.
ENQUEUE = (
    "INSERT INTO queue (target, kind, path, client, study_uid, sop_class_uid, sop_instance_uid, "
    "transfer_syntax, size, enqueued_at, pool, owner) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (path) DO NOTHING RETURNING id, "
    "(SELECT worker FROM studies WHERE client = ? AND study_uid = ? AND pool = ?)"
)
ITEM_COLUMNS = (
    "target", "kind", "path", "client", "study_uid", "sop_class_uid", "sop_instance_uid",
    "transfer_syntax", "size", "enqueued_at", "id", "attempts", "last_error", "pool",
)  # fmt: skip
ITEM = ", ".join(f"q.{column}" for column in ITEM_COLUMNS)
ROUTE = "SELECT client, study_uid, worker, routed_at, pool FROM studies"
# A queue row's study (its route in its pool: see Route).
STUDY = "s.client = q.client AND s.study_uid = q.study_uid AND s.pool = q.pool"
# A study's last activity, moved at most once a second (it is in three indexes: see schema).
TOUCH_STUDY = (
    "UPDATE studies SET last_activity_at = ? WHERE client = ? AND study_uid = ? AND pool = ? "
    "AND last_activity_at < ? - 1"
)
# A study is open while active since the cutoff or while any instance of it is queued.
QUEUED = f"EXISTS (SELECT 1 FROM queue q WHERE {STUDY})"
SERIES = "SELECT pool, action, rule, decided_at FROM series"
# Give routes to a worker (``{where}``: which, of ``studies AS s``), keeping where they were
# and what had reached it; then ASSIGN each to its new worker, for its results.
REROUTE = (
    "UPDATE studies AS s SET worker = ?, moved_from = ?, "
    "delivered_before_move = instances_delivered WHERE {where} "
    "RETURNING client, study_uid, pool, instances_delivered"
)
ASSIGN = (
    "INSERT INTO assignments (client, study_uid, pool, worker) VALUES (?, ?, ?, ?) "
    "ON CONFLICT DO NOTHING"
)


def count_open(workers: Sequence[str], cutoff: float) -> tuple[str, tuple[object, ...]]:
    """One statement, and its parameters, that counts each worker's open studies: routed
    to it and active since ``cutoff``, or with an instance still queued for it (a study
    both is counted once). Rows (worker, count); a worker with none has no row."""
    marks = ", ".join("?" for _ in workers)
    sql = (
        f"SELECT worker, COUNT(*) FROM (SELECT client, study_uid, pool, worker FROM studies "
        f"WHERE worker IN ({marks}) AND last_activity_at >= ? UNION SELECT client, study_uid, "
        f"pool, target FROM queue WHERE kind = ? AND target IN ({marks})) AS opened "
        f"GROUP BY worker"
    )
    return sql, (*workers, cutoff, WORKER, *workers)


def enqueue_args(item: QueueItem, at: float | None = None, owner: str = "") -> tuple[object, ...]:
    """:data:`ENQUEUE`'s parameters for ``item``, enqueued at ``at`` (default: its own
    ``enqueued_at``, else now), owned by node ``owner`` (see wolfpacs.state.leases)."""
    return (
        item.target, item.kind, item.path, item.client, item.study_uid, item.sop_class_uid,
        item.sop_instance_uid, item.transfer_syntax, item.size,
        at or item.enqueued_at or time.time(), item.pool, owner, item.client, item.study_uid,
        item.pool,
    )  # fmt: skip
