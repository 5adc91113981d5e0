"""The store's workers' states and history of runtime changes: what every node watches.

A worker's state (drain, resume) is one row of ``worker_states``; a
runtime change (a client, worker or destination added or removed, a
client's rules; a move, recorded by :meth:`SQLStore.move_studies
<wolfpacs.state.operations.SQLStore.move_studies>`) is a row appended to
``runtime_changes``, numbered by ``seq``. A node's live config is its
file's with that history replayed; the nodes sharing the database read it
by ``seq`` (:meth:`ChangeHistory.changes_since`, a poll asks
:meth:`ChangeHistory.last_change` first) to make the others' changes
their own (:mod:`wolfpacs.node.changes`).

Every write here calls two hooks in its transaction:
:meth:`ChangeHistory._serialize_changes` before a runtime change takes its
``seq`` (so that changes commit in ``seq`` order, and a reader that has
seen ``seq`` n never finds a lower one later), and
:meth:`ChangeHistory._notify` (a ``NOTIFY`` sent at commit). Both are
no-ops here, where one writer at a time holds the database (SQLite); the
PostgreSQL backend gives them their body. In the SQL both backends speak,
as :mod:`wolfpacs.state.operations` is.
"""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any

from wolfpacs.state.database import Database

if TYPE_CHECKING:
    from wolfpacs.state.database import Connection

__all__ = ["CHANGES", "STATES", "ChangeHistory"]

# What a notification says changed (its payload): the history of runtime changes, or the
# workers' states. Only a hint to look now: the tables are the truth.
CHANGES = "changes"
STATES = "states"


class ChangeHistory(Database):
    """The operations on workers' states and runtime changes of the store (see the module)."""

    def compact_runtime_changes(self, dry_run: bool = False) -> int:
        """Drop each runtime change a later one of the same entry overrides; how many."""
        overridden = (
            "FROM runtime_changes AS r WHERE EXISTS (SELECT 1 FROM runtime_changes later "
            "WHERE later.kind = r.kind AND later.name = r.name AND later.seq > r.seq)"
        )
        if dry_run:
            return int(self._value(f"SELECT COUNT(*) {overridden}"))
        with self._transaction() as db:
            return int(db.execute(f"DELETE {overridden}").rowcount)

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
            self._notify(db, STATES)

    def delete_worker_state(self, name: str) -> None:
        with self._transaction() as db:
            db.execute("DELETE FROM worker_states WHERE name = ?", (name,))
            self._notify(db, STATES)

    def runtime_changes(self) -> list[tuple[str, str, dict[str, Any] | None]]:
        rows = self._rows("SELECT kind, name, body FROM runtime_changes ORDER BY seq")
        return [(kind, name, json.loads(body) if body else None) for kind, name, body in rows]

    def changes_since(self, seq: int) -> list[tuple[int, str, str, dict[str, Any] | None]]:
        """The runtime changes after ``seq``, in order, each with its own ``seq`` first."""
        rows = self._rows(
            "SELECT seq, kind, name, body FROM runtime_changes WHERE seq > ? ORDER BY seq", seq
        )
        return [
            (int(n), kind, name, json.loads(body) if body else None) for n, kind, name, body in rows
        ]

    def last_change(self) -> int:
        """The ``seq`` of the latest runtime change (0: none): one index look."""
        return int(self._value("SELECT COALESCE(MAX(seq), 0) FROM runtime_changes"))

    def add_runtime_change(self, kind: str, name: str, table: dict[str, Any] | None) -> None:
        with self._transaction() as db:
            self._record_change(db, kind, name, table)

    def _record_change(
        self, db: Connection, kind: str, name: str, table: dict[str, Any] | None
    ) -> None:
        """Append a runtime change in the caller's transaction; its ``seq`` is taken after
        :meth:`_serialize_changes`, so changes commit in ``seq`` order."""
        self._serialize_changes(db)
        db.execute(
            "INSERT INTO runtime_changes (kind, name, body, changed_at) VALUES (?, ?, ?, ?)",
            (kind, name, None if table is None else json.dumps(table), time.time()),
        )
        self._notify(db, CHANGES)

    def _serialize_changes(self, db: Connection) -> None:
        """Hook: make the transaction's runtime change wait for any other in progress.

        Without it, two transactions could take ``seq`` 10 and 11 and commit
        11 first: a node that read up to 11 would never read 10. SQLite has
        one writer at a time already (``BEGIN IMMEDIATE``): nothing to do.
        """
        del db

    def _notify(self, db: Connection, what: str) -> None:
        """Hook: tell the nodes listening that ``what`` (:data:`CHANGES`, :data:`STATES`)
        changed, when the transaction commits (never before; not if it rolls back).
        Nothing listens to SQLite: other processes on one file find it by polling."""
        del db, what
