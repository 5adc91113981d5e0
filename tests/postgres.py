"""A real PostgreSQL for the tests, and the store fixtures that run a test on both backends.

:func:`postgres` starts one server for the session
(:func:`wolfpacs.testing.postgres.server`, which the benchmarks use too:
``initdb`` into a temp dir, ``pg_ctl start`` on a free loopback port, as
the ``postgres`` user when the tests run as root). ``fsync=off``: a test's
database need not survive a power cut, and every test gets a new one
(``CREATE DATABASE … TEMPLATE``). Without the server's binaries, or
without psycopg, a PostgreSQL test is :func:`~tests.conftest.missing`
(skipped, failed under CI=true).

:func:`own_postgres` is a server of one test's own, which it may stop and
start again (a database outage).

:func:`stores` is parametrized over ``sqlite`` and ``postgresql``: a test
that takes it (or ``store``, which is one of its stores, open) runs on both.
A test only SQLite can run (its query plans, its file's versions) says so
with ``@pytest.mark.sqlite_only``; it is skipped on ``postgresql``.
"""

from __future__ import annotations

import contextlib
import itertools
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import missing
from wolfpacs.state.postgresql import INSTALL, PostgreSQLStore
from wolfpacs.state.sqlite import SQLiteStore
from wolfpacs.testing import postgres as postgresql

BACKENDS = ("sqlite", "postgresql")
TEMPLATE = "wolfpacs_template"
SUPERUSER = "wolfpacs"


@dataclass
class Server:
    """A running PostgreSQL of the test session: its URLs, a database per call."""

    port: int
    sockets: Path
    names: Iterator[int] = field(default_factory=itertools.count)
    done: list[str] = field(default_factory=list)  # databases to drop at the next create()
    control: Callable[[str], None] | None = None  # pg_ctl ACTION on this server

    def stop(self, mode: str = "immediate") -> None:
        """Stop the server: ``immediate`` as a crash does (what was committed without
        waiting for the WAL flush may be lost), ``fast`` as a restart for maintenance does."""
        assert self.control is not None
        self.control(f"stop-{mode}")

    def start(self) -> None:
        """Start it again, on the same port; returns once it accepts connections."""
        assert self.control is not None
        self.control("start")

    def url(self, database: str) -> str:
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def admin(self, sql: str) -> None:
        """Run ``sql`` in the maintenance database (CREATE/DROP DATABASE)."""
        import psycopg

        with psycopg.connect(self.url("postgres"), autocommit=True) as db:
            db.execute(sql)  # type: ignore[arg-type]

    def create(self) -> str:
        """A new, empty database; its URL. The last tests' databases are dropped first."""
        while self.done:
            self.admin(f"DROP DATABASE IF EXISTS {self.done.pop()} WITH (FORCE)")
        name = f"test_{os.getpid()}_{next(self.names)}"
        self.admin(f"CREATE DATABASE {name} TEMPLATE {TEMPLATE} STRATEGY FILE_COPY")
        return self.url(name)

    def restart_command(self) -> str:
        """A shell command that restarts this server, cutting every connection (fast shutdown):
        what ``wolfpacs chaos --store-restart`` runs."""
        return postgresql.restart_command(self.sockets)

    def drop(self, url: str) -> None:
        """Drop the database of ``url`` at the next :meth:`create`: a test's fixtures end in
        no set order, and a node still running on it must stop first, not lose it."""
        self.done.append(url.rsplit("/", 1)[1])


@pytest.fixture(scope="session")
def postgres() -> Iterator[Server]:
    """One PostgreSQL for the session, on a free loopback port; stopped and removed at its end."""
    with serve() as server:
        yield server


@pytest.fixture
def own_postgres() -> Iterator[Server]:
    """A PostgreSQL of the test's own, which it may :meth:`~Server.stop` and start again."""
    with serve() as server:
        yield server


@contextlib.contextmanager
def serve() -> Iterator[Server]:
    """A new PostgreSQL (:func:`wolfpacs.testing.postgres.server`) on a free loopback port;
    stopped and removed after."""
    try:
        import psycopg  # noqa: F401
        import psycopg_pool  # noqa: F401
    except ImportError:
        missing("psycopg and psycopg-pool (the postgresql extra)", INSTALL)
    settings = ("fsync=off", "full_page_writes=off", "max_connections=200")
    try:
        server = contextlib.ExitStack()
        running = server.enter_context(postgresql.server(settings))
    except postgresql.ServerMissingError as exc:
        missing(exc.what, exc.install)
    with server:
        control = {"start": running.start, "stop-immediate": running.stop,
                   "stop-fast": lambda: running.stop("fast")}  # fmt: skip
        made = Server(running.port, running.root, control=lambda action: control[action]())
        made.admin(f"CREATE DATABASE {TEMPLATE}")
        yield made


@pytest.fixture
def postgres_url(postgres: Server) -> Iterator[str]:
    """The URL of a new database of the session's PostgreSQL, dropped after the test."""
    url = postgres.create()
    yield url
    postgres.drop(url)


class Stores:
    """The stores of one test on one backend: :meth:`new` ones on the test's database."""

    def __init__(self, backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
        self.backend = backend
        self._tmp_path = tmp_path
        self._request = request
        self._databases = itertools.count()
        self._opened: list[Any] = []
        self.where = self._database()

    def _database(self) -> str:
        if self.backend == "sqlite":
            return str(self._tmp_path / f"state{next(self._databases)}.sqlite3")
        server: Server = self._request.getfixturevalue("postgres")
        url = server.create()
        self._request.addfinalizer(lambda: server.drop(url))
        return url

    @property
    def setting(self) -> str:
        """``[node] store`` for a node on this backend (SQLite: its data_dir's file)."""
        return "sqlite" if self.backend == "sqlite" else self.where

    def new(self, durable: bool = False) -> Any:
        """A new, unopened store on the test's database (the same one each call)."""
        return self._store(self.where, durable)

    def fresh(self, durable: bool = False) -> Callable[[], Any]:
        """A factory of new, unopened stores on a new, empty database (a node's own)."""
        self.where = where = self._database()
        return lambda: self._store(where, durable)

    def _store(self, where: str, durable: bool) -> Any:
        if self.backend == "sqlite":
            return SQLiteStore(Path(where), durable=durable)
        return PostgreSQLStore(where, durable=durable)

    def opened(self, durable: bool = False, fresh: bool = False) -> Any:
        """A store, open, closed after the test; ``fresh``: on a new, empty database."""
        if fresh:
            self.where = self._database()
        store = self.new(durable)
        store.open()
        self._opened.append(store)
        return store

    def close(self) -> None:
        for store in self._opened:
            store.close()


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """A test that takes ``stores`` (or ``store``) runs on each backend; one marked
    ``sqlite_only`` on SQLite alone (not a skip: there is nothing to run elsewhere)."""
    if "stores" in metafunc.fixturenames:
        only = metafunc.definition.get_closest_marker("sqlite_only")
        metafunc.parametrize("stores", ["sqlite"] if only else BACKENDS, indirect=True)


@pytest.fixture
def stores(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Stores]:
    """The stores of a test on one backend (see :func:`pytest_generate_tests`)."""
    made = Stores(request.param, tmp_path, request)
    yield made
    made.close()


@pytest.fixture
def store(stores: Stores) -> Any:
    """An open store on a new database, of each backend in turn; closed after the test."""
    return stores.opened()
