"""PostgreSQL for the bench's nodes: one server per bench run, a new database per node run.

The server is :func:`wolfpacs.testing.postgres.server` (the tests' too),
with PostgreSQL's defaults (``fsync``, ``synchronous_commit`` and
``full_page_writes`` on: a fair match for a SQLite node in ``fsync``
durability) and ``pg_stat_statements`` loaded, which counts every
statement a node sends (``track=top``: not those a trigger runs), BEGIN
and COMMIT included: each is one round trip between the node and the
server. It starts at the first database asked
for and stops when the bench's ``ExitStack`` closes.
"""

from __future__ import annotations

import contextlib
import itertools
import os
from pathlib import Path
from typing import Any

from wolfpacs.testing import postgres
from wolfpacs.testing.postgres import PostgreSQLServer, ServerMissingError

__all__ = ["Databases", "ServerMissingError", "available"]

_TICKS = os.sysconf("SC_CLK_TCK")
SETTINGS = ("shared_preload_libraries=pg_stat_statements", "pg_stat_statements.track=top",
            "pg_stat_statements.max=1000")  # fmt: skip


def available() -> bool:
    """Whether the bench can run a PostgreSQL node here: the server's binaries and psycopg."""
    try:
        import psycopg  # noqa: F401, PLC0415 -- the postgresql extra
        import psycopg_pool  # noqa: F401, PLC0415
    except ImportError:
        return False
    return postgres.binaries() is not None


class Databases:
    """A new database per node run, on one server started at the first (see the module)."""

    def __init__(self, stack: contextlib.ExitStack) -> None:
        self._stack = stack
        self._server: PostgreSQLServer | None = None
        self._names = itertools.count()

    @property
    def server(self) -> PostgreSQLServer:
        """The running server, started now if need be.

        Raises:
            ServerMissingError: PostgreSQL cannot run here.
        """
        if self._server is None:
            self._server = self._stack.enter_context(
                postgres.server(SETTINGS, prefix="wolfpacs-bench-pg-")
            )
            self._admin("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        return self._server

    def new(self) -> str:
        """The URL of a new, empty database (the node makes its schema at start)."""
        name = f"bench_{next(self._names)}"
        self._admin(f"CREATE DATABASE {name}")
        return self.server.url(name)

    def drop(self, url: str) -> None:
        self._admin(f"DROP DATABASE IF EXISTS {url.rsplit('/', 1)[1]} WITH (FORCE)")

    def statements(self, url: str) -> dict[str, int]:
        """Statements run so far in the database of ``url``, by their text (normalised: one
        entry per statement, whatever its values), most called first."""
        rows = self._query(
            "SELECT query, SUM(calls)::bigint FROM pg_stat_statements s JOIN pg_database d "
            "ON d.oid = s.dbid WHERE d.datname = %s GROUP BY query ORDER BY 2 DESC",
            url.rsplit("/", 1)[1],
        )
        return {" ".join(query.split()): int(calls) for query, calls in rows}

    def version(self) -> str:
        """The server's version, as it says it (``server_version``)."""
        return str(self._query("SHOW server_version")[0][0])

    def cpu_seconds(self) -> float:
        """User + system CPU seconds the server's processes have used so far (the postmaster
        and its children alive now: the node's connections live as long as its store)."""
        postmaster = int((self.server.root / "data" / "postmaster.pid").read_text().split()[0])
        total = 0.0
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue  # ended meanwhile
            if int(entry.name) == postmaster or int(fields[1]) == postmaster:
                total += (int(fields[11]) + int(fields[12])) / _TICKS
        return total

    def _admin(self, sql: str) -> None:
        import psycopg  # noqa: PLC0415 -- available() said it is there

        with psycopg.connect(self.server.url("postgres"), autocommit=True) as db:
            db.execute(sql)  # type: ignore[arg-type]

    def _query(self, sql: str, *args: object) -> list[Any]:
        import psycopg  # noqa: PLC0415

        with psycopg.connect(self.server.url("postgres"), autocommit=True) as db:
            return db.execute(sql, args).fetchall()  # type: ignore[arg-type]

    def describe(self) -> dict[str, Any]:
        """The server and the driver the PostgreSQL scenarios ran with (the node's is the
        bench's: it inherits its environment)."""
        import psycopg  # noqa: PLC0415 -- only where a server runs: it is installed

        return {"server": self.version(), "psycopg": psycopg.__version__,
                "psycopg_impl": psycopg.pq.__impl__}  # fmt: skip
