"""A new route, made atomically: the choice of its worker and its row in one transaction.

:meth:`RoutePlacement.create_route` is how a study gets its worker in a
pool when several nodes share the store: under the pool's lock (a
PostgreSQL advisory lock; SQLite's one write lock), it reads the route
that stands, and only if there is none (or its worker was removed) reads
every node's loads, applies the choice rule
(:func:`~wolfpacs.state.choice.least_loaded`) and writes the route, then
commits (synced: a route is durable) and lets the lock go. So two nodes
racing on the same new study get one answer, and two racing on two new
studies of one pool see each other's choice: the second counts the
first's study as open. In the SQL both backends speak, as
:mod:`wolfpacs.state.operations` is.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from wolfpacs.state.choice import least_loaded
from wolfpacs.state.database import Database
from wolfpacs.state.queries import ASSIGN, REROUTE, ROUTE, count_open
from wolfpacs.state.store import Placement, Route

if TYPE_CHECKING:
    from wolfpacs.state.choice import Choice
    from wolfpacs.state.database import Connection

__all__ = ["RoutePlacement"]


class RoutePlacement(Database):
    """The store's atomic creation of routes (see the module)."""

    def create_route(self, client: str, study_uid: str, pool: str, choice: Choice) -> Placement:
        """The route of ``client``'s study in ``pool``: the one that stands, else a new one
        to the least-loaded of ``choice.candidates``, chosen and written in one transaction.

        Load is every node's open studies of each candidate: routed to it and
        active since ``choice.cutoff``, or with an instance queued for it. A
        worker that holds a study of this UID for another client is avoided if
        another can take it. A new route is made at ``choice.at``.

        ``choice.removed``: the worker the caller found on the study's route
        (in ``pool``, else its route from before pools), no longer configured.
        If that route still names it, the route is moved to a worker chosen
        as above (recorded as a move, as ``move_studies`` does); if another
        call moved it first, that route stands.

        Raises:
            ValueError: no candidate, and a choice is needed.
            whatever the backend raises (see :class:`~wolfpacs.state.store.Backend`).
        """
        removed = choice.removed
        with self._transaction() as db:
            self._lock(db, f"route:{pool}")
            standing = _standing(db, client, study_uid, pool, removed)
            if standing is not None and standing.worker != removed:
                return Placement(standing, chosen=False)
            if not choice.candidates:
                raise ValueError(f"no candidate worker in pool {pool!r}")
            avoid = {
                worker for (worker,) in db.execute(
                    "SELECT worker FROM studies WHERE study_uid = ? AND client <> ?",
                    (study_uid, client),
                )
            }  # fmt: skip
            names = [c.name for c in choice.candidates]
            sql, args = count_open(names, choice.cutoff)
            loads = dict.fromkeys(names, 0) | dict(db.execute(sql, args).fetchall())
            worker = least_loaded(choice.candidates, loads, avoid).name
            if standing is None:
                route = _insert(db, Route(client, study_uid, worker, choice.at, pool))
            elif (moved := _reroute(db, standing, worker)) is not None:
                route = moved
            else:  # a route from before pools, moved meanwhile under another pool's lock
                again = _standing(db, client, study_uid, pool, removed)
                assert again is not None  # a route is never deleted but by a purge of idle ones
                return Placement(again, chosen=False)
        return Placement(route, chosen=True, open_studies=loads)


def _standing(
    db: Connection, client: str, study_uid: str, pool: str, removed: str | None
) -> Route | None:
    """The route that stands in ``pool``; with ``removed``, as ``get_route`` finds it (else
    the route from before pools), since that is the one the caller saw."""
    if removed is None:
        row = db.execute(
            f"{ROUTE} WHERE client = ? AND study_uid = ? AND pool = ?", (client, study_uid, pool)
        ).fetchone()
    else:
        row = db.execute(
            f"{ROUTE} WHERE client = ? AND study_uid = ? AND pool IN (?, '') "
            "ORDER BY pool DESC LIMIT 1",
            (client, study_uid, pool),
        ).fetchone()
    return Route(*row) if row else None


def _insert(db: Connection, route: Route) -> Route:
    """``route``, new, and its assignment; if ``insert_route`` made one meanwhile, that one."""
    key = (route.client, route.study_uid, route.pool)
    row = db.execute(
        "INSERT INTO studies (client, study_uid, pool, worker, routed_at, last_activity_at) "
        "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (client, study_uid, pool) DO NOTHING "
        "RETURNING client, study_uid, worker, routed_at, pool",
        (*key, route.worker, route.routed_at, route.routed_at),
    ).fetchone()
    if row is None:
        row = db.execute(f"{ROUTE} WHERE client = ? AND study_uid = ? AND pool = ?", key).fetchone()
    db.execute(ASSIGN, (*key, row[2]))
    return Route(*row)


def _reroute(db: Connection, route: Route, worker: str) -> Route | None:
    """``route`` moved from its removed worker to ``worker``, as a move is recorded; None if
    it no longer names that worker (moved by a transaction this one's lock did not hold off)."""
    moved = db.execute(
        REROUTE.format(where="s.client = ? AND s.study_uid = ? AND s.pool = ? AND s.worker = ?"),
        (worker, route.worker, route.client, route.study_uid, route.pool, route.worker),
    ).fetchall()
    if not moved:
        return None
    db.execute(ASSIGN, (route.client, route.study_uid, route.pool, worker))
    return Route(route.client, route.study_uid, worker, route.routed_at, route.pool)
