"""The store on PostgreSQL: the backend that several nodes can share.

:class:`PostgreSQLStore` runs the portable operations of
:mod:`wolfpacs.state.operations` over a small psycopg 3 connection pool,
but for a delivery, which is one statement of its own
(:mod:`wolfpacs.state.pgqueue`: each statement is a round trip, and the
store actor's one thread waits out every one); its schema is
:mod:`wolfpacs.state.pgschema`'s. psycopg is an optional
extra (``pip install 'wolfpacs[postgresql]'``): it is imported at
:meth:`~PostgreSQLStore.open`, and its absence is :class:`DriverMissingError`.

Transactions: every connection is in autocommit mode, so a statement
outside :meth:`~PostgreSQLStore._transaction` is its own transaction, as
in SQLite; isolation is PostgreSQL's default, READ COMMITTED. An
insert-if-absent (a study's route, a series' decision) is
``INSERT … ON CONFLICT DO NOTHING`` and then a read in a new statement: a
second transaction racing on the same key waits for the first to commit,
inserts nothing, and reads the row that stands, so both get one answer.
A new route is chosen and written under its pool's advisory lock
(:meth:`~PostgreSQLStore._lock`, :func:`lock_key`): each statement after
the lock sees what the transaction before it committed, so the loads a
choice reads include every choice made before it, by any node.

Durability, as in SQLite: what the spool can rebuild (a queue row) or
what is only done twice if lost (a delivery) commits without waiting for
the WAL flush (``synchronous_commit = off``, the connections' setting);
a synced transaction when ``durable`` (a route, a move, a worker's state,
a runtime change) commits as the server is configured to
(``SET LOCAL synchronous_commit TO DEFAULT``: on, or what the operator's
replication asks).

Other nodes: a runtime change, a recorded move or a worker's state sends
``NOTIFY`` on :data:`CHANNEL` as it commits (``pg_notify`` in its
transaction), so that the nodes that listen look at once
(:mod:`wolfpacs.state.notify`); runtime changes take an advisory lock for
the rest of their transaction, so that they commit in ``seq`` order.

Errors: ``psycopg.OperationalError`` (the server gone, a connection
broken, no connection within the pool's timeout) means the store must be
opened afresh (:meth:`~PostgreSQLStore.is_broken`); any other
``psycopg.Error`` is the caller's (a bad query or value). The pool does
not test a connection before lending it (``check``: a round trip more per
operation, on the path of every instance): a connection the server ended
fails the one operation that finds it, and the store actor reopens.

Speed: psycopg prepares a statement on a connection at its sixth
execution (``prepare_threshold``, left at 5), and the statements of every
instance (the enqueue, the delivery, the next rows) each have one text
whatever their values (a batch's ids are one array parameter, not a list
of marks), so they are planned once per connection: PostgreSQL takes
about 2 ms to plan the delivery, 0.1 ms to run it. psycopg's C
implementation (the ``binary`` of the extra) halves the client's CPU of
a statement; :meth:`~PostgreSQLStore.describe` says which runs.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
from typing import TYPE_CHECKING, Any, LiteralString

from wolfpacs.config.secrets import redacted_url
from wolfpacs.state.database import as_dicts
from wolfpacs.state.operations import SQLStore
from wolfpacs.state.pgqueue import PostgreSQLQueue
from wolfpacs.state.pgschema import migrate

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator, Sequence

    import psycopg
    import psycopg_pool

    from wolfpacs.state.database import Connection, Cursor

__all__ = [
    "CHANNEL", "INSTALL", "DriverMissingError", "PostgreSQLStore", "dialect", "implementation",
    "lock_key",
]  # fmt: skip

INSTALL = "pip install 'wolfpacs[postgresql]'"
POOL_SIZE = 4  # connections at most: the store actor uses one at a time; the rest are spare
TIMEOUT = 10.0  # seconds to connect, or to wait for a free connection
# A server or a network gone silent must not hold the store actor for ever: libpq's TCP
# keepalives find a dead peer in about 25 s, and no statement runs longer than 30 s (its
# QueryCanceled is an OperationalError: the store reopens). Migrations are exempt.
KEEPALIVES = {"keepalives": 1, "keepalives_idle": 10, "keepalives_interval": 5,
              "keepalives_count": 3}  # fmt: skip
STATEMENT_TIMEOUT = "30s"  # (SET takes no parameter: _configure says it as a literal)
CHANNEL = "wolfpacs_changes"  # what nodes LISTEN on: a payload says what changed, no more
# The key of the advisory lock runtime changes take (pgschema's MIGRATION_LOCK, plus one).
CHANGES_LOCK = 0x574F4C47
# The first key of the two-key advisory locks of WolfPACS (a space apart from the one-key
# locks above): "WPLB". See lock_key.
LOCKS = 0x57504C42


class DriverMissingError(ImportError):
    """psycopg (the ``postgresql`` extra) is not installed."""


def driver() -> None:
    """Import psycopg and its pool, or say how to install them.

    Raises:
        DriverMissingError: either is missing.
    """
    try:
        import psycopg  # noqa: F401, PLC0415 -- an optional extra: only a PostgreSQL store needs it
        import psycopg_pool  # noqa: F401, PLC0415
    except ImportError as exc:
        raise DriverMissingError(
            f"a PostgreSQL store needs psycopg, psycopg-pool and libpq ({exc}): {INSTALL}"
        ) from exc


def implementation() -> str:
    """psycopg's implementation that runs: ``binary`` (psycopg-binary, the extra's), ``c``
    (built here), ``python`` (pure Python over the system's libpq: twice the client's CPU
    per statement), or ``missing``."""
    try:
        import psycopg  # noqa: PLC0415 -- see driver()
    except ImportError:
        return "missing"
    return str(psycopg.pq.__impl__)


@functools.lru_cache(maxsize=512)
def dialect(sql: str) -> LiteralString:
    """The operations' SQL with psycopg's parameters: ``?`` → ``%s``, ``%`` → ``%%``.

    The operations' SQL is made of constants and of ``?`` marks only (every
    value is a parameter), so no ``?`` stands in a string literal.
    """
    return sql.replace("%", "%%").replace("?", "%s")


class _Connection:
    """A psycopg connection in a transaction, as the operations use one (``?`` parameters)."""

    def __init__(self, db: psycopg.Connection[Any]) -> None:
        self._db = db

    def execute(self, sql: str, parameters: Sequence[object] = (), /) -> Cursor:
        return self._db.execute(dialect(sql), parameters)

    def executemany(self, sql: str, parameters: Iterable[Sequence[object]], /) -> Cursor:
        cursor = self._db.cursor()
        cursor.executemany(dialect(sql), parameters)
        return cursor


class PostgreSQLStore(PostgreSQLQueue, SQLStore):
    """The store on a PostgreSQL database, given by a libpq URL (``postgresql://…``).

    Thread-safe as its pool is, though the store actor uses it from one
    thread. ``open`` connects and migrates; ``close`` closes the pool.
    ``node_id``: the node whose queue it serves (see :mod:`wolfpacs.state.leases`).
    """

    # The server's clock, not the transaction's start nor any node's: leases are measured on
    # one clock, so that skew between nodes' clocks cannot make a live node look dead.
    NOW = "EXTRACT(EPOCH FROM clock_timestamp())::DOUBLE PRECISION"
    LOCK_ROW = "FOR UPDATE"
    LOCK_FREE_ROW = "FOR UPDATE SKIP LOCKED"

    def __init__(
        self,
        url: str,
        durable: bool = True,
        pool_size: int = POOL_SIZE,
        timeout: float = TIMEOUT,
        node_id: str = "",
    ) -> None:
        self.url = url
        self.node_id = node_id
        self.durable = durable
        self.pool_size = pool_size
        self.timeout = timeout
        self._pool: psycopg_pool.ConnectionPool[Any] | None = None

    @property
    def where(self) -> str:
        """The database's URL without its password: for logs and errors."""
        return redacted_url(self.url)

    def open(self) -> None:
        """Connect (at least one connection of the pool) and migrate the schema.

        Raises:
            DriverMissingError: psycopg is not installed.
            SchemaError: a database of a newer WolfPACS.
            psycopg.OperationalError: the server cannot be reached in ``timeout``
                (``psycopg_pool.PoolTimeout`` is one).
        """
        driver()
        import psycopg_pool  # noqa: PLC0415 -- see driver()

        pool: psycopg_pool.ConnectionPool[Any] = psycopg_pool.ConnectionPool(
            self.url, min_size=1, max_size=self.pool_size, open=False, timeout=self.timeout,
            kwargs={"autocommit": True, "connect_timeout": max(int(self.timeout), 1), **KEEPALIVES},
            configure=_configure, name="wolfpacs-store",
        )  # fmt: skip
        try:
            pool.open(wait=True, timeout=self.timeout)
            with pool.connection() as db:
                migrate(db, self.where)
        except BaseException:
            pool.close()
            raise
        self._pool = pool

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()
            self._pool = None

    def is_broken(self, exc: BaseException) -> bool:
        # The server or a connection gone (or none to be had): reopen. A bad query or value
        # (ProgrammingError, DataError, IntegrityError) is the caller's.
        import psycopg  # noqa: PLC0415 -- see driver(); open() has imported it

        return isinstance(exc, (psycopg.OperationalError, psycopg.InterfaceError))

    def describe(self) -> dict[str, Any]:
        described: dict[str, Any] = {
            "backend": "postgresql", "url": self.where, "durable": self.durable,
            "psycopg": implementation(),
        }  # fmt: skip
        if self._pool is not None:
            stats = self._pool.get_stats()
            described["pool"] = {
                "size": stats.get("pool_size", 0), "available": stats.get("pool_available", 0),
                "max": self.pool_size,
            }  # fmt: skip
        return described

    @property
    def _connections(self) -> psycopg_pool.ConnectionPool[Any]:
        if self._pool is None:
            raise RuntimeError("the store is not open")
        return self._pool

    @contextlib.contextmanager
    def _transaction(self, synced: bool = True) -> Iterator[Connection]:
        with self._connections.connection() as db, db.transaction():
            if synced and self.durable:  # this commit waits for the WAL flush (see the module)
                db.execute("SET LOCAL synchronous_commit TO DEFAULT")
            yield _Connection(db)

    def _lock(self, db: Connection, name: str) -> None:
        # A transaction-level advisory lock: released at commit or rollback, even by a
        # connection the server ends (see lock_key).
        db.execute("SELECT pg_advisory_xact_lock(?, ?)", lock_key(name))

    def _serialize_changes(self, db: Connection) -> None:
        # Held to the end of the transaction: the next change takes its seq after this commit.
        db.execute("SELECT pg_advisory_xact_lock(?)", (CHANGES_LOCK,))

    def _notify(self, db: Connection, what: str) -> None:
        db.execute("SELECT pg_notify(?, ?)", (CHANNEL, what))

    def _rows(self, sql: str, *args: object) -> list[Any]:
        with self._connections.connection() as db:
            rows: list[Any] = db.execute(dialect(sql), args).fetchall()
        return rows

    def _dicts(self, sql: str, *args: object) -> list[dict[str, Any]]:
        with self._connections.connection() as db:
            return as_dicts(db.execute(dialect(sql), args))


def lock_key(name: str) -> tuple[int, int]:
    """The advisory lock of ``name``: (:data:`LOCKS`, the first four bytes of the SHA-256 of
    ``name`` as a signed 32-bit integer).

    PostgreSQL's two-key advisory locks are a space apart from its one-key
    (bigint) ones, and :data:`LOCKS` sets WolfPACS's apart from another
    program's on the same database. Two names whose hashes collide (about one
    pair in 2**32) share one lock: their transactions wait for each other, and
    each still holds the lock it asked for, so a collision costs time, never
    correctness. Python's ``hash`` would not do: it differs between processes.
    """
    digest = hashlib.sha256(name.encode()).digest()
    return LOCKS, int.from_bytes(digest[:4], "big", signed=True)


def _configure(db: psycopg.Connection[Any]) -> None:
    """A new connection of the pool: commits without waiting for the WAL flush, unless a
    synced transaction asks (see the module); no statement longer than STATEMENT_TIMEOUT."""
    db.execute("SET synchronous_commit TO off")
    db.execute("SET statement_timeout TO '30s'")  # STATEMENT_TIMEOUT
