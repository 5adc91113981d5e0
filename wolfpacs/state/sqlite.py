"""The store on SQLite: the embedded default, a file in ``data_dir`` in WAL mode.

:class:`SQLiteStore` opens the file and migrates its schema
(:mod:`wolfpacs.state.schema`) at :meth:`~SQLiteStore.open`; its
transactions are ``BEGIN IMMEDIATE``, fsynced at commit when durable. Its
operations are the portable ones of :mod:`wolfpacs.state.operations`; only
the schema's row ids (``INTEGER PRIMARY KEY``), its triggers and the
transaction opening are SQLite's own.
"""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path
from typing import TYPE_CHECKING, Any

from wolfpacs.state.database import as_dicts
from wolfpacs.state.operations import SQLStore
from wolfpacs.state.queries import ENQUEUE
from wolfpacs.state.schema import migrate

if TYPE_CHECKING:
    from collections.abc import Iterator

    from wolfpacs.state.database import Connection

__all__ = ["ENQUEUE", "SQLiteStore"]

SQLITE_BUSY, SQLITE_LOCKED = 5, 6  # primary result codes: another connection holds the lock


class SQLiteStore(SQLStore):
    """The store on SQLite. Not thread-safe: one thread uses it (the store actor's).

    ``durable=True`` commits routes, moves, worker states and runtime
    changes with ``synchronous=FULL`` (an fsync per commit); queue rows, and
    everything when ``False``, with ``NORMAL``, which in WAL mode survives a
    crash of the process but may lose the last commits on a power loss. A
    queue row needs no fsync of its own: its file is fsynced in the spool,
    and recovery re-creates the row of a spool file that has none
    (:func:`wolfpacs.node.recovery.recover`); a lost ``delivered`` only sends an
    instance twice.

    ``node_id``: the node whose queue it serves (see :mod:`wolfpacs.state.leases`).
    Its clock (:data:`NOW`) is SQLite's, the machine's: the nodes that share a
    SQLite file share one machine, so one clock; ``BEGIN IMMEDIATE`` is the
    lock an adoption holds (SQLite has no row locks: :data:`LOCK_ROW` is empty).

    Errors: ``sqlite3.Error`` from any method means the database is unusable
    (disk full, corrupt); the caller answers with a failure status and the
    actor crashes to reopen it.
    """

    # Seconds a transaction waits for another connection's write lock (the processes of a
    # node share the file): a busy database waits, then says so; it is not a broken one.
    BUSY_TIMEOUT = 30.0

    def __init__(self, path: Path, durable: bool = True, node_id: str = "") -> None:
        self.path = Path(path)
        self.node_id = node_id
        self.durable = durable
        self._db: sqlite3.Connection | None = None

    def open(self) -> None:
        """Open the file (created if need be) and migrate its schema.

        Raises:
            SchemaError: a database of a newer WolfPACS.
            sqlite3.Error: the file cannot be opened as a database.
        """
        self.path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.path, isolation_level=None, timeout=self.BUSY_TIMEOUT)
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
        # A broken file or connection is; a bad query (a caller's bug) is the caller's; so is
        # a lock another process held past BUSY_TIMEOUT (reopening would not make it go).
        if getattr(exc, "sqlite_errorcode", 0) & 0xFF in (SQLITE_BUSY, SQLITE_LOCKED):
            return False
        return isinstance(exc, sqlite3.DatabaseError) and not isinstance(
            exc, (sqlite3.ProgrammingError, sqlite3.IntegrityError, sqlite3.DataError,
                  sqlite3.InterfaceError)
        )  # fmt: skip

    def describe(self) -> dict[str, Any]:
        return {"backend": "sqlite", "path": str(self.path), "durable": self.durable}

    @property
    def _database(self) -> sqlite3.Connection:
        if self._db is None:
            raise RuntimeError("the store is not open")
        return self._db

    @contextlib.contextmanager
    def _transaction(self, synced: bool = True) -> Iterator[Connection]:
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

    def _lock(self, db: Connection, name: str) -> None:
        # Nothing to take: BEGIN IMMEDIATE took the database's write lock, which every
        # writer (any connection, any process) asks for first and holds till it commits.
        pass

    def _rows(self, sql: str, *args: object) -> list[Any]:
        return self._database.execute(sql, args).fetchall()

    def _dicts(self, sql: str, *args: object) -> list[dict[str, Any]]:
        return as_dicts(self._database.execute(sql, args))
