"""The store on SQLite: the embedded default, a file in ``data_dir`` in WAL mode.

Its queries keep to what PostgreSQL also speaks (``ON CONFLICT``,
``RETURNING``, ``DOUBLE PRECISION``), so that a second backend shared by
several nodes is a new class, not a rewrite; only the schema's row ids
(``INTEGER PRIMARY KEY``), its triggers and the transaction opening
(``BEGIN IMMEDIATE``) are SQLite's own. The schema is
:mod:`wolfpacs.state.schema`'s; the contract every backend keeps,
:mod:`wolfpacs.state.store`'s. Every view the operator has (a worker's open
studies, recent studies, a purge) reads an index, never the whole history.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from wolfpacs.state.database import Database
from wolfpacs.state.store import WORKER, QueueItem, Route

__all__ = ["ENQUEUE", "SQLiteStore"]

logger = logging.getLogger(__name__)

# One statement per received instance (see SQLiteStore._enqueue): a trigger counts it in.
ENQUEUE = (
    "INSERT INTO queue (target, kind, path, client, study_uid, sop_class_uid, sop_instance_uid, "
    "transfer_syntax, size, enqueued_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (path) DO NOTHING "
    "RETURNING id, (SELECT worker FROM studies WHERE client = ? AND study_uid = ?)"
)
_ITEM_COLUMNS = (
    "target", "kind", "path", "client", "study_uid", "sop_class_uid", "sop_instance_uid",
    "transfer_syntax", "size", "enqueued_at", "id", "attempts", "last_error",
)  # fmt: skip
_ITEM = ", ".join(f"q.{column}" for column in _ITEM_COLUMNS)
_ROUTE = "SELECT client, study_uid, worker, routed_at FROM studies"
_STUDY = "s.client = q.client AND s.study_uid = q.study_uid"  # a queue row's study
# A study's last activity, moved at most once a second (it is in three indexes: see schema).
_ACTIVE = (
    "UPDATE studies SET last_activity_at = ? WHERE client = ? AND study_uid = ? "
    "AND last_activity_at < ? - 1"
)
# A study is open while active since the cutoff or while any instance of it is queued.
_QUEUED = "EXISTS (SELECT 1 FROM queue q WHERE q.client = s.client AND q.study_uid = s.study_uid)"


class SQLiteStore(Database):
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

    # -- routes ------------------------------------------------------------------

    def get_route(self, client: str, study_uid: str) -> Route | None:
        row = self._database.execute(
            f"{_ROUTE} WHERE client = ? AND study_uid = ?", (client, study_uid)
        ).fetchone()
        return Route(*row) if row else None

    def routes_of(self, study_uid: str) -> list[Route]:
        rows = self._rows(f"{_ROUTE} WHERE study_uid = ? ORDER BY client", study_uid)
        return [Route(*row) for row in rows]

    def insert_route(self, client: str, study_uid: str, worker: str, at: float) -> Route:
        """Record a new study's route unless it has one; return the route that stands."""
        with self._transaction() as db:
            db.execute(
                "INSERT INTO studies (client, study_uid, worker, routed_at, last_activity_at) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT (client, study_uid) DO NOTHING",
                (client, study_uid, worker, at, at),
            )
            db.execute(
                "INSERT INTO assignments (client, study_uid, worker) SELECT client, study_uid, "
                "worker FROM studies WHERE client = ? AND study_uid = ? ON CONFLICT DO NOTHING",
                (client, study_uid),
            )
        route = self.get_route(client, study_uid)
        assert route is not None
        return route

    def owners(self, study_uid: str, worker: str) -> list[str]:
        """The clients whose study ``study_uid`` was given to ``worker``, now or before a move."""
        rows = self._rows(
            "SELECT s.client FROM studies s WHERE s.study_uid = ? AND (s.worker = ? OR EXISTS "
            "(SELECT 1 FROM assignments a WHERE a.client = s.client AND "
            "a.study_uid = s.study_uid AND a.worker = ?)) ORDER BY s.client",
            study_uid, worker, worker,
        )  # fmt: skip
        return [client for (client,) in rows]

    def open_studies(self, workers: list[str], cutoff: float) -> dict[str, int]:
        """How many studies each worker has open: active since ``cutoff`` or still queued to it."""
        if not workers:
            return {}
        marks = ", ".join("?" for _ in workers)
        recent = self._rows(
            f"SELECT client, study_uid, worker FROM studies "
            f"WHERE worker IN ({marks}) AND last_activity_at >= ?",
            *workers, cutoff,
        )  # fmt: skip
        queued = self._rows(
            f"SELECT DISTINCT client, study_uid, target FROM queue "
            f"WHERE kind = ? AND target IN ({marks})",
            WORKER, *workers,
        )  # fmt: skip
        counts = dict.fromkeys(workers, 0)
        for _client, _study, worker in set(recent) | set(queued):
            counts[worker] += 1
        return counts

    def move_studies(
        self,
        worker: str,
        to: str,
        studies: list[str] | None = None,
        cutoff: float = 0.0,
        client: str | None = None,
    ) -> list[dict[str, Any]]:
        """Re-route ``worker``'s studies to ``to``; what moved.

        The studies given (by UID, of ``client`` only if given), or else those
        open: active since ``cutoff`` or with instances queued (a closed study
        stays where it was done). Each moved study: its client and UID, the
        instances already delivered to ``worker`` (now a split study) and
        those still queued for it (its sender hands them on).
        """
        where, args = "s.worker = ?", list[object]([worker])
        if client is not None:
            where += " AND s.client = ?"
            args.append(client)
        if studies is not None:
            where += f" AND s.study_uid IN ({', '.join('?' for _ in studies)})"
            args += studies
        else:
            where += f" AND (s.last_activity_at >= ? OR {_QUEUED})"
            args.append(cutoff)
        with self._transaction() as db:
            moved = db.execute(
                f"UPDATE studies AS s SET worker = ?, moved_from = ?, "
                f"delivered_before_move = instances_delivered WHERE {where} "
                "RETURNING client, study_uid, instances_delivered",
                (to, worker, *args),
            ).fetchall()
            db.executemany(
                "INSERT INTO assignments (client, study_uid, worker) VALUES (?, ?, ?) "
                "ON CONFLICT DO NOTHING",
                [(owner, uid, to) for owner, uid, _ in moved],
            )
            queued = {
                (owner, uid): n
                for owner, uid, n in db.execute(
                    "SELECT client, study_uid, COUNT(*) FROM queue WHERE target = ? AND kind = ? "
                    "GROUP BY client, study_uid",
                    (worker, WORKER),
                )
            }
        return [
            {"client": owner, "study_uid": uid, "delivered": delivered,
             "queued": queued.get((owner, uid), 0)}
            for owner, uid, delivered in sorted(moved)
        ]  # fmt: skip

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

        One statement, its own transaction: the triggers of the queue count
        the instance in. This runs once an instance in the store's one
        thread, and each statement lets go of the interpreter and must wait
        to have it back; four statements here made every receiver wait.
        """
        rows = self._database.execute(
            ENQUEUE,
            (item.target, item.kind, item.path, item.client, item.study_uid, item.sop_class_uid,
             item.sop_instance_uid, item.transfer_syntax, item.size,
             item.enqueued_at or time.time(), item.client, item.study_uid),
        ).fetchall()  # to the end: the statement's transaction commits there  # fmt: skip
        if rows:
            return int(rows[0][0]), rows[0][1]
        # a retried call: the row is there, counted already
        (row_id,) = self._database.execute(
            "SELECT id FROM queue WHERE path = ?", (item.path,)
        ).fetchone()
        route = self.get_route(item.client, item.study_uid)
        return int(row_id), route.worker if route else None

    def next_items(self, target: str, limit: int = 32, after_id: int = 0) -> list[QueueItem]:
        """The oldest rows owed to ``target``, leaving out those of studies moved away.

        A moved study's rows wait for their sender to hand them on; they are
        never sent to the worker the study has left.
        """
        rows = self._rows(
            f"SELECT {_ITEM} FROM queue q LEFT JOIN studies s ON {_STUDY} "
            "WHERE q.target = ? AND q.id > ? "
            "AND (q.kind <> ? OR s.worker IS NULL OR s.worker = q.target) "
            "ORDER BY q.id LIMIT ?",
            target, after_id, WORKER, limit,
        )  # fmt: skip
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
                    "DELETE FROM queue WHERE id = ? RETURNING kind, client, study_uid, target",
                    (item_id,),
                ).fetchone()
                if row is None:
                    continue  # counted already
                kind, client, study_uid, target = row
                if kind == WORKER:  # count, too, what reached a worker the study has left
                    db.execute(
                        "UPDATE studies SET instances_delivered = instances_delivered + 1, "
                        "delivered_elsewhere = delivered_elsewhere + "
                        "CASE WHEN worker <> ? THEN 1 ELSE 0 END "
                        "WHERE client = ? AND study_uid = ?",
                        (target, client, study_uid),
                    )
                else:
                    db.execute(
                        "UPDATE studies SET derived_delivered = derived_delivered + 1 "
                        "WHERE client = ? AND study_uid = ?",
                        (client, study_uid),
                    )
                db.execute(_ACTIVE, (now, client, study_uid, now))

    def moved_items(self, target: str, limit: int = 256) -> list[tuple[QueueItem, str]]:
        """Queued rows of ``target`` whose study now routes elsewhere, with that worker."""
        rows = self._rows(
            f"SELECT {_ITEM}, s.worker FROM queue q JOIN studies s ON {_STUDY} "
            "WHERE q.target = ? AND q.kind = ? AND s.worker <> q.target ORDER BY q.id LIMIT ?",
            target, WORKER, limit,
        )  # fmt: skip
        return [(QueueItem(*row[:-1]), row[-1]) for row in rows]

    def retarget(self, item_id: int, target: str, path: str) -> None:
        with self._transaction(synced=False) as db:
            db.execute(
                "UPDATE queue SET target = ?, path = ? WHERE id = ?", (target, path, item_id)
            )

    def repath(self, old: str, new: str) -> bool:
        """Point the row of spool file ``old`` at ``new``; whether there was one."""
        with self._transaction(synced=False) as db:
            return bool(db.execute("UPDATE queue SET path = ? WHERE path = ?", (new, old)).rowcount)

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

    def items_of(self, target: str) -> list[QueueItem]:
        rows = self._rows(f"SELECT {_ITEM} FROM queue q WHERE q.target = ? ORDER BY q.id", target)
        return [QueueItem(*row) for row in rows]

    def queue_stats(self) -> dict[str, dict[str, Any]]:
        """Per target: queued instances, bytes, oldest enqueue time."""
        rows = self._rows(
            "SELECT target, kind, COUNT(*), SUM(size), MIN(enqueued_at) FROM queue "
            "GROUP BY target, kind"
        )
        return {
            target: {"kind": kind, "instances": n, "bytes": size or 0, "oldest": oldest}
            for target, kind, n, size, oldest in rows
        }

    def queued_paths(self) -> set[str]:
        return {row[0] for row in self._rows("SELECT path FROM queue")}

    def drop_missing(self, paths: set[str]) -> int:
        """Remove rows whose files are gone (delivered just before a crash); how many."""
        with self._transaction() as db:
            for path in sorted(paths):
                db.execute("DELETE FROM queue WHERE path = ?", (path,))
        return len(paths)

    # -- studies, for the operator ---------------------------------------------------

    def study(self, study_uid: str) -> list[dict[str, Any]]:
        """Every client's study with this UID, with what each still has queued, by target."""
        found = self._dicts("SELECT * FROM studies WHERE study_uid = ? ORDER BY client", study_uid)
        queued = self._rows(
            "SELECT client, target, COUNT(*) FROM queue WHERE study_uid = ? "
            "GROUP BY client, target",
            study_uid,
        )
        for study in found:
            study["queued"] = {t: n for c, t, n in queued if c == study["client"]}
        return found

    def studies(
        self, worker: str | None = None, client: str | None = None, limit: int = 50
    ) -> list[dict[str, Any]]:
        """The most recently routed studies, of a worker or a client if given (an index each)."""
        where, args = [], list[object]()
        for column, value in (("worker", worker), ("client", client)):
            if value is not None:
                where.append(f"{column} = ?")
                args.append(value)
        return self._dicts(
            "SELECT * FROM studies "
            + (f"WHERE {' AND '.join(where)} " if where else "")
            + "ORDER BY routed_at DESC LIMIT ?",
            *args, limit,
        )  # fmt: skip

    def open_studies_of(self, column: str, name: str, cutoff: float) -> int:
        """Studies of a client or worker active since ``cutoff`` or with instances queued.

        The recent ones by an index, the queued ones from the queue: never
        every study the client or worker ever had.
        """
        assert column in ("client", "worker")
        row = self._database.execute(
            f"SELECT COUNT(*) FROM (SELECT client, study_uid FROM studies "
            f"WHERE {column} = ? AND last_activity_at >= ? UNION SELECT s.client, s.study_uid "
            f"FROM (SELECT DISTINCT client, study_uid FROM queue) q JOIN studies s ON {_STUDY} "
            f"WHERE s.{column} = ?)",
            (name, cutoff, name),
        ).fetchone()
        return int(row[0])

    def count_studies(self) -> int:
        return int(self._database.execute("SELECT COUNT(*) FROM studies").fetchone()[0])

    # -- retention -------------------------------------------------------------------

    def purge(self, cutoff: float, limit: int = 500, dry_run: bool = False) -> int:
        """Forget up to ``limit`` studies idle since before ``cutoff``; how many (would) go.

        A study with an instance still queued is never forgotten, however
        old. One short transaction: the caller repeats while it returns
        ``limit``, and acknowledgements get their turn between.
        """
        idle = self._rows(
            f"SELECT client, study_uid FROM studies s WHERE last_activity_at < ? "
            f"AND NOT {_QUEUED} LIMIT ?",
            cutoff, limit,
        )  # fmt: skip
        if dry_run or not idle:
            return len(idle)
        with self._transaction(synced=False) as db:  # a purge lost in a crash is done again
            for table in ("studies", "assignments"):
                db.executemany(f"DELETE FROM {table} WHERE client = ? AND study_uid = ?", idle)
        return len(idle)

    def compact_runtime_changes(self, dry_run: bool = False) -> int:
        """Drop each runtime change a later one of the same entry overrides; how many."""
        overridden = (
            "FROM runtime_changes AS r WHERE EXISTS (SELECT 1 FROM runtime_changes later "
            "WHERE later.kind = r.kind AND later.name = r.name AND later.seq > r.seq)"
        )
        if dry_run:
            return int(self._database.execute(f"SELECT COUNT(*) {overridden}").fetchone()[0])
        with self._transaction() as db:
            return int(db.execute(f"DELETE {overridden}").rowcount)

    # -- workers and runtime changes ---------------------------------------------------

    def worker_states(self) -> dict[str, str]:
        return dict(self._rows("SELECT name, state FROM worker_states"))

    def set_worker_state(self, name: str, state: str, at: float | None = None) -> None:
        with self._transaction() as db:
            db.execute(
                "INSERT INTO worker_states (name, state, changed_at) VALUES (?, ?, ?) "
                "ON CONFLICT (name) DO UPDATE SET state = excluded.state, "
                "changed_at = excluded.changed_at",
                (name, state, at or time.time()),
            )

    def delete_worker_state(self, name: str) -> None:
        with self._transaction() as db:
            db.execute("DELETE FROM worker_states WHERE name = ?", (name,))

    def runtime_changes(self) -> list[tuple[str, str, dict[str, Any] | None]]:
        rows = self._rows("SELECT kind, name, body FROM runtime_changes ORDER BY seq")
        return [(kind, name, json.loads(body) if body else None) for kind, name, body in rows]

    def add_runtime_change(self, kind: str, name: str, table: dict[str, Any] | None) -> None:
        with self._transaction() as db:
            db.execute(
                "INSERT INTO runtime_changes (kind, name, body, changed_at) VALUES (?, ?, ?, ?)",
                (kind, name, None if table is None else json.dumps(table), time.time()),
            )

    def ping(self) -> bool:
        """Take the write lock and let it go: the database can be written to now."""
        with self._transaction():
            pass
        return True
