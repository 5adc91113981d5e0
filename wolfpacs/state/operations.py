"""The store's operations, in the SQL that SQLite and PostgreSQL both speak.

One place per query: :class:`SQLStore` is every operation of
:class:`~wolfpacs.state.store.Store` (the timing of results is
:mod:`wolfpacs.state.results`', the atomic creation of a route
:mod:`wolfpacs.state.placement`'), written against
:class:`~wolfpacs.state.database.Database` with ``?`` parameters,
``ON CONFLICT``, ``RETURNING`` and ``DOUBLE PRECISION``; each backend
(:mod:`wolfpacs.state.sqlite`, :mod:`wolfpacs.state.postgresql`) gives its
connection, its transactions and its schema, whose tables and triggers
are the same in both dialects. Every view the operator has (a worker's
open studies, recent studies, a purge) reads an index, never the whole
history.

The workers' states and the history of runtime changes, which every node
sharing the database watches, are :mod:`wolfpacs.state.changes`'; a move
is recorded there too, in its own transaction.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from wolfpacs.config.model import MOVE
from wolfpacs.state.changes import ChangeHistory
from wolfpacs.state.leases import NodeLeases
from wolfpacs.state.placement import RoutePlacement
from wolfpacs.state.queries import (
    ASSIGN,
    QUEUED,
    REROUTE,
    ROUTE,
    SERIES,
    STUDY,
    count_open,
)
from wolfpacs.state.queue import NodeQueue
from wolfpacs.state.results import ResultTracking
from wolfpacs.state.store import WORKER, Route

__all__ = ["SQLStore"]

logger = logging.getLogger(__name__)


class SQLStore(RoutePlacement, ResultTracking, NodeLeases, NodeQueue, ChangeHistory):
    """The store's operations on a :class:`~wolfpacs.state.database.Database`.

    The queue's operations are :mod:`wolfpacs.state.queue`'s: a node's own
    rows only (``node_id``: see :mod:`wolfpacs.state.leases`). What the
    operator and the router see of studies here (load, open studies, a
    study's queue) counts every node's rows.

    Not thread-safe: one thread uses a store (the store actor's). Which
    writes are synced at commit (``_transaction(synced=...)``) is said here,
    what that costs is the backend's. Errors: whatever the backend's driver
    raises; :meth:`~wolfpacs.state.store.Backend.is_broken` tells which mean
    the store must be opened afresh.
    """

    # -- routes ------------------------------------------------------------------

    def get_route(self, client: str, study_uid: str, pool: str = "") -> Route | None:
        """The route in ``pool``, else the one from before pools (``""`` sorts last)."""
        rows = self._rows(
            f"{ROUTE} WHERE client = ? AND study_uid = ? AND pool IN (?, '') "
            "ORDER BY pool DESC LIMIT 1",
            client, study_uid, pool,
        )  # fmt: skip
        return Route(*rows[0]) if rows else None

    def routes_of(self, study_uid: str) -> list[Route]:
        rows = self._rows(f"{ROUTE} WHERE study_uid = ? ORDER BY client", study_uid)
        return [Route(*row) for row in rows]

    def insert_route(
        self, client: str, study_uid: str, worker: str, at: float, pool: str = ""
    ) -> Route:
        """Record a new route of a study in ``pool`` unless it has one; the one that stands."""
        with self._transaction() as db:
            db.execute(
                "INSERT INTO studies (client, study_uid, pool, worker, routed_at, "
                "last_activity_at) VALUES (?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (client, study_uid, pool) DO NOTHING",
                (client, study_uid, pool, worker, at, at),
            )
            db.execute(
                "INSERT INTO assignments (client, study_uid, pool, worker) SELECT client, "
                "study_uid, pool, worker FROM studies WHERE client = ? AND study_uid = ? "
                "AND pool = ? ON CONFLICT DO NOTHING",
                (client, study_uid, pool),
            )
            row = db.execute(
                f"{ROUTE} WHERE client = ? AND study_uid = ? AND pool = ?",
                (client, study_uid, pool),
            ).fetchone()
        return Route(*row)

    def owners(self, study_uid: str, worker: str) -> list[str]:
        """The clients whose study ``study_uid`` was given to ``worker``, now or before a move."""
        return sorted({client for client, _ in self.holders(study_uid, worker)})

    def holders(self, study_uid: str, worker: str) -> list[tuple[str, str]]:
        """(client, pool) of each route of ``study_uid`` given to ``worker``, now or before."""
        rows = self._rows(
            "SELECT s.client, s.pool FROM studies s WHERE s.study_uid = ? AND (s.worker = ? "
            "OR EXISTS (SELECT 1 FROM assignments a WHERE a.client = s.client AND "
            "a.study_uid = s.study_uid AND a.pool = s.pool AND a.worker = ?)) "
            "ORDER BY s.client, s.pool",
            study_uid, worker, worker,
        )  # fmt: skip
        return [(client, pool) for client, pool in rows]

    def get_series(self, client: str, study_uid: str, series_uid: str) -> dict[str, Any] | None:
        """The decision kept for a series: ``pool``, ``action``, ``rule``, ``decided_at``."""
        found = self._dicts(
            f"{SERIES} WHERE client = ? AND study_uid = ? AND series_uid = ?",
            client, study_uid, series_uid,
        )  # fmt: skip
        return found[0] if found else None

    def decide_series(
        self, client: str, study_uid: str, series_uid: str, decision: dict[str, Any]
    ) -> dict[str, Any]:
        """Keep a series' decision unless it has one; the one that stands."""
        with self._transaction() as db:
            db.execute(
                "INSERT INTO series (client, study_uid, series_uid, pool, action, rule, "
                "decided_at) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                (client, study_uid, series_uid, decision.get("pool", ""),
                 decision.get("action", ""), decision.get("rule"),
                 decision.get("decided_at") or time.time()),
            )  # fmt: skip
        found = self.get_series(client, study_uid, series_uid)
        assert found is not None
        return found

    def open_studies(self, workers: list[str], cutoff: float) -> dict[str, int]:
        """How many studies each worker has open: active since ``cutoff`` or still queued to it."""
        if not workers:
            return {}
        sql, args = count_open(workers, cutoff)
        return {**dict.fromkeys(workers, 0), **dict(self._rows(sql, *args))}

    def move_studies(  # noqa: PLR0917 -- positional: the store actor's requests carry no keywords
        self,
        worker: str,
        to: str,
        studies: list[str] | None = None,
        cutoff: float = 0.0,
        client: str | None = None,
        origin: str | None = None,
    ) -> list[dict[str, Any]]:
        """Re-route ``worker``'s studies to ``to``; what moved.

        The studies given (by UID, of ``client`` only if given), or else those
        open: active since ``cutoff`` or with instances queued (a closed study
        stays where it was done). Each moved study: its client and UID, the
        instances already delivered to ``worker`` (now a split study) and
        those still queued for it (its sender hands them on).

        With ``origin`` (who moves: an operator on some node), a move of at
        least one study is also recorded, in the same transaction, as a
        runtime change of kind ``MOVE`` (``{"to": to, "origin": origin}``):
        the other nodes sharing the store read there that their routes to
        ``worker`` are stale and their queue for it must be handed on.
        """
        where, args = "s.worker = ?", list[object]([worker])
        if client is not None:
            where += " AND s.client = ?"
            args.append(client)
        if studies is not None:
            where += f" AND s.study_uid IN ({', '.join('?' for _ in studies)})"
            args += studies
        else:
            where += f" AND (s.last_activity_at >= ? OR {QUEUED})"
            args.append(cutoff)
        with self._transaction() as db:
            moved = db.execute(REROUTE.format(where=where), (to, worker, *args)).fetchall()
            db.executemany(ASSIGN, [(owner, uid, pool, to) for owner, uid, pool, _ in moved])
            if moved and origin is not None:
                self._record_change(db, MOVE, worker, {"to": to, "origin": origin})
            queued = {
                (owner, uid, pool): n
                for owner, uid, pool, n in db.execute(
                    "SELECT client, study_uid, pool, COUNT(*) FROM queue WHERE target = ? "
                    "AND kind = ? GROUP BY client, study_uid, pool",
                    (worker, WORKER),
                )
            }
        return [
            {"client": owner, "study_uid": uid, "pool": pool, "delivered": delivered,
             "queued": queued.get((owner, uid, pool), 0)}
            for owner, uid, pool, delivered in sorted(moved)
        ]  # fmt: skip

    # -- studies, for the operator ---------------------------------------------------

    def study(self, study_uid: str) -> list[dict[str, Any]]:
        """Every client's study with this UID, with what each still has queued, by target."""
        found = self._dicts(
            "SELECT * FROM studies WHERE study_uid = ? ORDER BY client, pool", study_uid
        )
        queued = self._rows(
            "SELECT client, pool, target, COUNT(*) FROM queue WHERE study_uid = ? "
            "GROUP BY client, pool, target",
            study_uid,
        )
        series = self._dicts(
            "SELECT client, series_uid, pool, action, rule, decided_at FROM series "
            "WHERE study_uid = ? ORDER BY decided_at",
            study_uid,
        )
        for study in found:
            key = (study["client"], study["pool"])
            study["queued"] = {t: n for c, p, t, n in queued if (c, p) == key}
            study["series"] = [
                {k: v for k, v in s.items() if k != "client"}
                for s in series
                if s["client"] == study["client"] and s["pool"] == study["pool"]
            ]
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
        # (PostgreSQL before 16 wants a name for a subquery in FROM: "opened")
        return int(self._value(
            f"SELECT COUNT(*) FROM (SELECT client, study_uid FROM studies "
            f"WHERE {column} = ? AND last_activity_at >= ? UNION SELECT s.client, s.study_uid "
            f"FROM (SELECT DISTINCT client, study_uid, pool FROM queue) q JOIN studies s "
            f"ON {STUDY} "
            f"WHERE s.{column} = ?) AS opened",
            name, cutoff, name,
        ))  # fmt: skip

    def count_studies(self) -> int:
        return int(self._value("SELECT COUNT(*) FROM studies"))

    # -- retention -------------------------------------------------------------------

    def purge(self, cutoff: float, limit: int = 500, dry_run: bool = False) -> int:
        """Forget up to ``limit`` studies idle since before ``cutoff``; how many (would) go.

        A study with an instance still queued is never forgotten, however
        old. One short transaction: the caller repeats while it returns
        ``limit``, and acknowledgements get their turn between.
        """
        idle = self._rows(
            f"SELECT client, study_uid, pool FROM studies s WHERE last_activity_at < ? "
            f"AND NOT {QUEUED} LIMIT ?",
            cutoff, limit,
        )  # fmt: skip
        if dry_run or not idle:
            return len(idle)
        with self._transaction(synced=False) as db:  # a purge lost in a crash is done again
            for table in ("studies", "assignments"):
                db.executemany(
                    f"DELETE FROM {table} WHERE client = ? AND study_uid = ? AND pool = ?", idle
                )
            # The series' decisions go with the study's last route.
            db.executemany(
                "DELETE FROM series WHERE client = ? AND study_uid = ? AND NOT EXISTS "
                "(SELECT 1 FROM studies s WHERE s.client = series.client "
                "AND s.study_uid = series.study_uid)",
                [(client, uid) for client, uid, _ in idle],
            )
        return len(idle)

    def ping(self) -> bool:
        """Take the write lock and let it go: the database can be written to now."""
        with self._transaction():
            pass
        return True
