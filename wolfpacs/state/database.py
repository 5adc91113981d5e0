"""An SQLite database as the store keeps it: one connection, its transactions, its schema.

:class:`Database` opens the file in WAL mode and migrates its schema
(:mod:`wolfpacs.state.schema`) at :meth:`~Database.open`; its transactions
are ``BEGIN IMMEDIATE``, fsynced at commit when durable. The store's
operations are :class:`~wolfpacs.state.sqlite.SQLiteStore`'s.
"""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path
from typing import TYPE_CHECKING, Any

from wolfpacs.state.schema import migrate

if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = ["Database"]


class Database:
    """One connection to the state database; used by one thread at a time."""

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

    def _rows(self, sql: str, *args: object) -> list[Any]:
        return self._database.execute(sql, args).fetchall()

    def _dicts(self, sql: str, *args: object) -> list[dict[str, Any]]:
        cursor = self._database.execute(sql, args)
        names = [c[0] for c in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
