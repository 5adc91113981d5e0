"""The store on SQLite: the embedded default, a file in ``data_dir`` in WAL mode.

Its queries keep to what PostgreSQL also speaks (``ON CONFLICT``,
``RETURNING``, ``DOUBLE PRECISION``), so that a second backend shared by
several nodes is a new class, not a rewrite; only the schema's row ids
(``INTEGER PRIMARY KEY``), its trigger and the transaction opening
(``BEGIN IMMEDIATE``) are SQLite's own. The schema is
:mod:`wolfpacs.state.schema`'s; the contract every backend keeps,
:mod:`wolfpacs.state.store`'s.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sqlite3
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from wolfpacs.state.schema import migrate
from wolfpacs.state.store import WORKER, QueueItem, Route

if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = ["ENQUEUE", "SQLiteStore"]

logger = logging.getLogger(__name__)

# One statement per received instance (see SQLiteStore._enqueue). The study is given
# twice: with queue.study_uid in its subquery SQLite scans every study instead.
ENQUEUE = (
    "INSERT INTO queue (target, kind, path, study_uid, sop_class_uid, sop_instance_uid, "
    "transfer_syntax, size, enqueued_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (path) DO NOTHING RETURNING id, (SELECT worker FROM studies WHERE study_uid = ?)"
)


_ITEM_COLUMNS = (
    "target, kind, path, study_uid, sop_class_uid, sop_instance_uid, transfer_syntax, size, "
    "enqueued_at, id, attempts, last_error"
)


class SQLiteStore:
    """The store on SQLite. Not thread-safe: one thread uses it (the store actor's).

    ``durable=True`` commits routes, moves, worker states and runtime
    changes with ``synchronous=FULL`` (an fsync per commit); queue rows, and
    everything when ``False``, with ``NORMAL``, which in WAL mode survives a
    crash of the process but may lose the last commits on a power loss. A
    queue row needs no fsync of its own: its file is fsynced in the spool,
    and recovery re-creates the row of a spool file that has none
    (:func:`wolfpacs.node.recovery.recover`); a lost ``delivered`` only sends an
    instance twice.

    Errors: ``sqlite3.Error`` from any method means the database is unusable
    (disk full, corrupt); the caller answers with a failure status and the
    actor crashes to reopen it.
    """

    def __init__(self, path: Path, durable: bool = True) -> None:
        self.path = Path(path)
        self.durable = durable
        self._db: sqlite3.Connection | None = None

    def open(self) -> None:
        """Open the file (created if need be) and migrate its schema.

        Raises:
            SchemaError: a database of a newer WolfPACS.
            sqlite3.Error: the file cannot be opened as a database.
        """
        self.path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.path, isolation_level=None, timeout=30)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        try:
            migrate(db, self.path)
        except BaseException:
            db.close()
            raise
        self._db = db

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    def is_broken(self, exc: BaseException) -> bool:
        # A broken file or connection is; a bad query (a caller's bug) is the caller's.
        return isinstance(exc, sqlite3.DatabaseError) and not isinstance(
            exc, (sqlite3.ProgrammingError, sqlite3.IntegrityError, sqlite3.DataError,
                  sqlite3.InterfaceError)
        )  # fmt: skip

    def describe(self) -> dict[str, Any]:
        return {"path": str(self.path), "durable": self.durable}

    @property
    def _database(self) -> sqlite3.Connection:
        if self._db is None:
            raise RuntimeError("the store is not open")
        return self._db

    @contextlib.contextmanager
    def _transaction(self, synced: bool = True) -> Iterator[sqlite3.Connection]:
        """One transaction: committed if the block ends, rolled back if it raises.

        ``synced``: on disk at commit if the store is ``durable`` (a queue row
        says False: see the class).
        """
        db = self._database
        full = synced and self.durable
        if full:
            db.execute("PRAGMA synchronous=FULL")  # this commit's WAL write is fsynced
        try:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
        finally:
            if full:
                db.execute("PRAGMA synchronous=NORMAL")

    # -- routes ------------------------------------------------------------------

    def get_route(self, study_uid: str) -> Route | None:
        row = self._database.execute(
            "SELECT study_uid, client, worker, routed_at FROM studies WHERE study_uid = ?",
            (study_uid,),
        ).fetchone()
        return Route(*row) if row else None

    def insert_route(self, study_uid: str, client: str, worker: str, at: float) -> Route:
        """Record a new study's route unless it has one; return the route that stands."""
        with self._transaction() as db:
            db.execute(
                "INSERT INTO studies (study_uid, client, worker, routed_at, last_activity_at) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT (study_uid) DO NOTHING",
                (study_uid, client, worker, at, at),
            )
        route = self.get_route(study_uid)
        assert route is not None
        return route

    def open_studies(self, workers: list[str], cutoff: float) -> dict[str, int]:
        """How many studies each worker has open: active since ``cutoff`` or still queued to it."""
        if not workers:
            return {}
        marks = ", ".join("?" for _ in workers)
        recent = self._database.execute(
            f"SELECT study_uid, worker FROM studies "
            f"WHERE last_activity_at >= ? AND worker IN ({marks})",
            (cutoff, *workers),
        ).fetchall()
        queued = self._database.execute(
            f"SELECT DISTINCT study_uid, target FROM queue WHERE kind = ? AND target IN ({marks})",
            (WORKER, *workers),
        ).fetchall()
        counts = dict.fromkeys(workers, 0)
        for _study, worker in set(recent) | set(queued):
            counts[worker] += 1
        return counts

    # -- the queue -----------------------------------------------------------------

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

        One statement, its own transaction: the trigger ``queue_counted_in``
        counts the instance in. This runs once an instance in the store's one
        thread, and each statement lets go of the interpreter and must wait
        to have it back; four statements here made every receiver wait.
        """
        rows = self._database.execute(
            ENQUEUE,
            (item.target, item.kind, item.path, item.study_uid, item.sop_class_uid,
             item.sop_instance_uid, item.transfer_syntax, item.size,
             item.enqueued_at or time.time(), item.study_uid),
        ).fetchall()  # to the end: the statement's transaction commits there  # fmt: skip
        if rows:
            return int(rows[0][0]), rows[0][1]
        # a retried call: the row is there, counted already
        (row_id,) = self._database.execute(
            "SELECT id FROM queue WHERE path = ?", (item.path,)
        ).fetchone()
        route = self.get_route(item.study_uid)
        return int(row_id), route.worker if route else None

    def next_items(self, target: str, limit: int = 32, after_id: int = 0) -> list[QueueItem]:
        """The oldest rows owed to ``target``, leaving out those of studies moved away.

        A moved study's rows wait for their sender to hand them on; they are
        never sent to the worker the study has left.
        """
        columns = ", ".join(f"q.{c.strip()}" for c in _ITEM_COLUMNS.split(","))
        rows = self._database.execute(
            f"SELECT {columns} FROM queue q LEFT JOIN studies s ON s.study_uid = q.study_uid "
            "WHERE q.target = ? AND q.id > ? "
            "AND (q.kind <> ? OR s.worker IS NULL OR s.worker = q.target) "
            "ORDER BY q.id LIMIT ?",
            (target, after_id, WORKER, limit),
        ).fetchall()
        return [QueueItem(*row) for row in rows]

    def delivered(self, item_id: int, at: float | None = None) -> None:
        """The target answered success: drop the row, count the delivery (once)."""
        self._delivered([item_id], at or time.time())

    def delivered_next(self, item_ids: list[int], target: str, limit: int = 32) -> list[QueueItem]:
        """:meth:`delivered` for each of ``item_ids`` (one commit), then :meth:`next_items`."""
        self._delivered(item_ids, time.time())
        return self.next_items(target, limit)

    def _delivered(self, item_ids: list[int], now: float) -> None:
        with self._transaction(synced=False) as db:
            for item_id in item_ids:
                row = db.execute(
                    "DELETE FROM queue WHERE id = ? RETURNING kind, study_uid, target", (item_id,)
                ).fetchone()
                if row is None:
                    continue  # counted already
                kind, study_uid, target = row
                if kind == WORKER:  # count, too, what reached a worker the study has left
                    db.execute(
                        "UPDATE studies SET instances_delivered = instances_delivered + 1, "
                        "last_activity_at = ?, delivered_elsewhere = delivered_elsewhere + "
                        "CASE WHEN worker <> ? THEN 1 ELSE 0 END WHERE study_uid = ?",
                        (now, target, study_uid),
                    )
                else:
                    db.execute(
                        "UPDATE studies SET derived_delivered = derived_delivered + 1, "
                        "last_activity_at = ? WHERE study_uid = ?",
                        (now, study_uid),
                    )

    def remove_item(self, item_id: int) -> None:
        """Drop a row whose file went to ``dead/``."""
        with self._transaction(synced=False) as db:
            db.execute("DELETE FROM queue WHERE id = ?", (item_id,))

    def failed_attempt(self, item_id: int, error: str) -> int:
        """Count a failure answer for one instance; the attempts so far."""
        with self._transaction(synced=False) as db:
            row = db.execute(
                "UPDATE queue SET attempts = attempts + 1, last_error = ? WHERE id = ? "
                "RETURNING attempts",
                (error, item_id),
            ).fetchone()
        return int(row[0]) if row else 0

    def queue_stats(self) -> dict[str, dict[str, Any]]:
        """Per target: queued instances, bytes, oldest enqueue time."""
        rows = self._database.execute(
            "SELECT target, kind, COUNT(*), SUM(size), MIN(enqueued_at) FROM queue "
            "GROUP BY target, kind"
        ).fetchall()
        return {
            target: {"kind": kind, "instances": n, "bytes": size or 0, "oldest": oldest}
            for target, kind, n, size, oldest in rows
        }

    def queued_paths(self) -> set[str]:
        return {row[0] for row in self._database.execute("SELECT path FROM queue")}

    def drop_missing(self, paths: set[str]) -> int:
        """Remove rows whose files are gone (delivered just before a crash); how many."""
        with self._transaction() as db:
            for path in sorted(paths):
                db.execute("DELETE FROM queue WHERE path = ?", (path,))
        return len(paths)

    # -- studies and workers, for the router and the shell ---------------------------

    def study(self, study_uid: str) -> dict[str, Any] | None:
        cursor = self._database.execute("SELECT * FROM studies WHERE study_uid = ?", (study_uid,))
        row = cursor.fetchone()
        if row is None:
            return None
        return dict(zip([c[0] for c in cursor.description], row, strict=True))

    def count_studies(self) -> int:
        return int(self._database.execute("SELECT COUNT(*) FROM studies").fetchone()[0])

    def ping(self) -> bool:
        """Take the write lock and let it go: the database can be written to now."""
        with self._transaction():
            pass
        return True

    def delete_worker_state(self, name: str) -> None:
        with self._transaction() as db:
            db.execute("DELETE FROM worker_states WHERE name = ?", (name,))

    def worker_states(self) -> dict[str, str]:
        return dict(self._database.execute("SELECT name, state FROM worker_states").fetchall())

    def set_worker_state(self, name: str, state: str, at: float | None = None) -> None:
        with self._transaction() as db:
            db.execute(
                "INSERT INTO worker_states (name, state, changed_at) VALUES (?, ?, ?) "
                "ON CONFLICT (name) DO UPDATE SET state = excluded.state, "
                "changed_at = excluded.changed_at",
                (name, state, at or time.time()),
            )

    # -- moves, listings and runtime changes, for the operator ----------------------

    def move_studies(
        self, worker: str, to: str, studies: list[str] | None = None, cutoff: float = 0.0
    ) -> list[dict[str, Any]]:
        """Re-route ``worker``'s studies to ``to``; what moved.

        The studies given, or else those open: active since ``cutoff`` or with
        instances queued (a closed study stays where it was done). Each moved
        study: its UID, the instances already delivered to ``worker`` (now a
        split study) and those still queued for it (its sender hands them on).
        """
        with self._transaction() as db:
            where, args = "worker = ?", list[object]([worker])
            if studies is not None:
                where += f" AND study_uid IN ({', '.join('?' for _ in studies)})"
                args += studies
            else:
                where += (
                    " AND (last_activity_at >= ? OR EXISTS "
                    "(SELECT 1 FROM queue q WHERE q.study_uid = studies.study_uid))"
                )
                args.append(cutoff)
            moved = db.execute(
                f"UPDATE studies SET worker = ?, moved_from = ?, "
                f"delivered_before_move = instances_delivered WHERE {where} "
                "RETURNING study_uid, instances_delivered",
                (to, worker, *args),
            ).fetchall()
            queued = dict(
                db.execute(
                    "SELECT study_uid, COUNT(*) FROM queue WHERE target = ? AND kind = ? "
                    "GROUP BY study_uid",
                    (worker, WORKER),
                ).fetchall()
            )
        return [
            {"study_uid": uid, "delivered": delivered, "queued": queued.get(uid, 0)}
            for uid, delivered in sorted(moved)
        ]

    def moved_items(self, target: str, limit: int = 256) -> list[tuple[QueueItem, str]]:
        """Queued rows of ``target`` whose study now routes elsewhere, with that worker."""
        columns = ", ".join(f"q.{c.strip()}" for c in _ITEM_COLUMNS.split(","))
        rows = self._database.execute(
            f"SELECT {columns}, s.worker FROM queue q JOIN studies s "
            "ON s.study_uid = q.study_uid WHERE q.target = ? AND q.kind = ? "
            "AND s.worker <> q.target ORDER BY q.id LIMIT ?",
            (target, WORKER, limit),
        ).fetchall()
        return [(QueueItem(*row[:-1]), row[-1]) for row in rows]

    def repath(self, old: str, new: str) -> bool:
        """Point the row of spool file ``old`` at ``new``; whether there was one."""
        with self._transaction(synced=False) as db:
            return bool(db.execute("UPDATE queue SET path = ? WHERE path = ?", (new, old)).rowcount)

    def retarget(self, item_id: int, target: str, path: str) -> None:
        with self._transaction(synced=False) as db:
            db.execute(
                "UPDATE queue SET target = ?, path = ? WHERE id = ?", (target, path, item_id)
            )

    def items_of(self, target: str) -> list[QueueItem]:
        rows = self._database.execute(
            f"SELECT {_ITEM_COLUMNS} FROM queue WHERE target = ? ORDER BY id", (target,)
        ).fetchall()
        return [QueueItem(*row) for row in rows]

    def studies(
        self, worker: str | None = None, client: str | None = None, limit: int = 50
    ) -> list[dict[str, Any]]:
        """The most recently routed studies, of a worker or a client if given."""
        where, args = [], []
        for column, value in (("worker", worker), ("client", client)):
            if value is not None:
                where.append(f"{column} = ?")
                args.append(value)
        cursor = self._database.execute(
            "SELECT * FROM studies "
            + (f"WHERE {' AND '.join(where)} " if where else "")
            + "ORDER BY routed_at DESC LIMIT ?",
            (*args, limit),
        )
        names = [c[0] for c in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]

    def queued_for_study(self, study_uid: str) -> dict[str, int]:
        return dict(
            self._database.execute(
                "SELECT target, COUNT(*) FROM queue WHERE study_uid = ? GROUP BY target",
                (study_uid,),
            ).fetchall()
        )

    def open_studies_of(self, column: str, name: str, cutoff: float) -> int:
        """Studies of a client or worker active since ``cutoff`` or with instances queued."""
        assert column in ("client", "worker")
        row = self._database.execute(
            f"SELECT COUNT(*) FROM studies s WHERE s.{column} = ? AND (s.last_activity_at >= ? "
            "OR EXISTS (SELECT 1 FROM queue q WHERE q.study_uid = s.study_uid))",
            (name, cutoff),
        ).fetchone()
        return int(row[0])

    def runtime_changes(self) -> list[tuple[str, str, dict[str, Any] | None]]:
        rows = self._database.execute(
            "SELECT kind, name, body FROM runtime_changes ORDER BY seq"
        ).fetchall()
        return [(kind, name, json.loads(body) if body else None) for kind, name, body in rows]

    def add_runtime_change(self, kind: str, name: str, table: dict[str, Any] | None) -> None:
        with self._transaction() as db:
            db.execute(
                "INSERT INTO runtime_changes (kind, name, body, changed_at) VALUES (?, ?, ?, ?)",
                (kind, name, None if table is None else json.dumps(table), time.time()),
            )
