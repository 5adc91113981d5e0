"""What a store's operations need of a SQL database, whichever it is.

:class:`Database` is the part of a backend that its dialect decides: how
a transaction is opened and made durable, how a statement runs outside
one. The operations (:mod:`wolfpacs.state.operations`,
:mod:`wolfpacs.state.results`) are written once against it, in the SQL
that SQLite and PostgreSQL both speak, with ``?`` for parameters (a
PostgreSQL backend turns them into its own). The backends:
:class:`~wolfpacs.state.sqlite.SQLiteStore`,
:class:`~wolfpacs.state.postgresql.PostgreSQLStore`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, Protocol

__all__ = ["Connection", "Cursor", "Database"]


class Cursor(Protocol):
    """The rows of one statement (what ``sqlite3`` and ``psycopg`` cursors both are)."""

    @property
    def rowcount(self) -> int: ...

    @property
    def description(self) -> Any: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...

    def __iter__(self) -> Iterator[Any]: ...


class Connection(Protocol):
    """A connection inside one of :meth:`Database._transaction`'s transactions."""

    def execute(self, sql: str, parameters: Sequence[object] = (), /) -> Cursor: ...

    def executemany(self, sql: str, parameters: Iterable[Sequence[object]], /) -> Cursor: ...


class Database:
    """A backend's connection to its database, as the operations use it.

    Every operation is one transaction (:meth:`_transaction`), or one
    statement, which is its own (:meth:`_rows`, :meth:`_dicts`). Subclasses
    give both, and the :class:`~wolfpacs.state.store.Backend` methods.

    ``node_id`` is the node whose queue rows the operations read and change
    (its own: see :mod:`wolfpacs.state.leases`); ``""`` for a store no node
    names (a tool's, a test's). :data:`NOW`, :data:`LOCK_ROW` and
    :data:`LOCK_FREE_ROW` are the phrases the dialects say differently: the
    database's clock in seconds since the epoch; what a ``SELECT`` adds to
    lock the rows it reads, waiting for them; and to lock them passing over
    those another transaction holds. SQLite's are empty: its ``BEGIN
    IMMEDIATE`` holds the one write lock of the whole file.
    """

    node_id: str = ""
    NOW = "(julianday('now') - 2440587.5) * 86400.0"
    LOCK_ROW = ""
    LOCK_FREE_ROW = ""

    def _transaction(self, synced: bool = True) -> contextlib.AbstractContextManager[Connection]:
        """One transaction: committed when the block ends, rolled back if it raises.

        ``synced``: on disk at commit if the store is durable. False for what
        the spool can rebuild (a queue row: its file is fsynced, and recovery
        makes the row of a file without one) or what is only done twice if
        lost (a delivery, a purge).
        """
        raise NotImplementedError

    def _lock(self, db: Connection, name: str) -> None:
        """Hold the lock called ``name`` until ``db``'s transaction ends: every other
        transaction that asks for it, from any connection or node, waits till then; the
        statements that follow see what the one before it committed.

        Called first in a transaction, before it reads what the lock guards.
        """
        raise NotImplementedError

    def _rows(self, sql: str, *args: object) -> list[Any]:
        """The rows of one statement, its own transaction (not synced: see above)."""
        raise NotImplementedError

    def _dicts(self, sql: str, *args: object) -> list[dict[str, Any]]:
        """:meth:`_rows` as dicts by column name."""
        raise NotImplementedError

    def _value(self, sql: str, *args: object) -> Any:
        """The first column of the first row of one statement."""
        return self._rows(sql, *args)[0][0]


def as_dicts(cursor: Cursor) -> list[dict[str, Any]]:
    """A cursor's rows as dicts by column name."""
    names = [column[0] for column in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
