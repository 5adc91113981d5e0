"""A real PostgreSQL for the tests, and the store fixtures that run a test on both backends.

:func:`postgres` starts one server for the session: ``initdb`` into a
temp dir, ``pg_ctl start`` on a free loopback port with its socket in that
dir, as the ``postgres`` user when the tests run as root (PostgreSQL
refuses root). ``fsync=off``: a test's database need not survive a power
cut, and every test gets a new one (``CREATE DATABASE … TEMPLATE``). The
binaries are found in ``/usr/lib/postgresql/*/bin`` (Debian's), else on
PATH; without them, or without psycopg, a PostgreSQL test is
:func:`~tests.conftest.missing` (skipped, failed under CI=true).

:func:`own_postgres` is a server of one test's own, which it may stop and
start again (a database outage).

:func:`stores` is parametrized over ``sqlite`` and ``postgresql``: a test
that takes it (or ``store``, which is one of its stores, open) runs on both.
A test only SQLite can run (its query plans, its file's versions) says so
with ``@pytest.mark.sqlite_only``; it is skipped on ``postgresql``.
"""

from __future__ import annotations

import contextlib
import glob
import itertools
import os
import pwd
import shlex
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import missing
from wolfpacs.state.postgresql import INSTALL, PostgreSQLStore
from wolfpacs.state.sqlite import SQLiteStore

BACKENDS = ("sqlite", "postgresql")
INSTALL_SERVER = "apt-get install postgresql (Debian)"
TEMPLATE = "wolfpacs_template"
SUPERUSER = "wolfpacs"


def _binaries() -> Path | None:
    """The directory of initdb and pg_ctl: Debian's newest, else PATH's."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=_version)
    if found:
        return Path(found[-1]).parent
    pg_ctl = shutil.which("pg_ctl")
    return Path(pg_ctl).resolve().parent if pg_ctl else None


def _version(path: str) -> tuple[int, ...]:
    digits = Path(path).parent.parent.name
    return tuple(int(n) for n in digits.split(".") if n.isdigit())


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


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
        bin_dir = _binaries()
        assert bin_dir is not None
        return shlex.join(_as_postgres([
            str(bin_dir / "pg_ctl"), "restart", "-w", "-t", "60", "-m", "fast",
            "-D", str(self.sockets / "data"), "-l", str(self.sockets / "server.log"),
        ]))  # fmt: skip

    def drop(self, url: str) -> None:
        """Drop the database of ``url`` at the next :meth:`create`: a test's fixtures end in
        no set order, and a node still running on it must stop first, not lose it."""
        self.done.append(url.rsplit("/", 1)[1])


def _as_postgres(argv: list[str]) -> list[str]:
    """``argv`` run as the postgres user when we are root (PostgreSQL refuses root)."""
    return ["runuser", "-u", "postgres", "--", *argv] if os.geteuid() == 0 else argv


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
    """A new PostgreSQL (initdb, pg_ctl) on a free loopback port; stopped and removed after."""
    try:
        import psycopg  # noqa: F401
        import psycopg_pool  # noqa: F401
    except ImportError:
        missing("psycopg and psycopg-pool (the postgresql extra)", INSTALL)
    bin_dir = _binaries()
    if bin_dir is None or not (bin_dir / "initdb").exists():
        missing("PostgreSQL (initdb, pg_ctl)", INSTALL_SERVER)
    assert bin_dir is not None
    root = Path(tempfile.mkdtemp(prefix="wolfpacs-pg-"))
    if os.geteuid() == 0:
        try:
            user = pwd.getpwnam("postgres")
        except KeyError:
            missing("the postgres user", INSTALL_SERVER)
        os.chown(root, user.pw_uid, user.pw_gid)
    data, log = root / "data", root / "server.log"
    port = _free_port()
    options = (
        f"-k {root} -p {port} -c listen_addresses=127.0.0.1 -c fsync=off "
        "-c full_page_writes=off -c max_connections=200"
    )
    run = _runner(root)
    run([str(bin_dir / "initdb"), "-D", str(data), "-U", SUPERUSER, "--auth=trust",
         "-E", "UTF8", "--locale=C"])  # fmt: skip
    pg_ctl = {
        "start": [str(bin_dir / "pg_ctl"), "start", "-w", "-t", "60", "-D", str(data),
                  "-l", str(log), "-o", options],
        **{f"stop-{mode}": [str(bin_dir / "pg_ctl"), "stop", "-m", mode, "-w", "-D", str(data)]
           for mode in ("immediate", "fast")},
    }  # fmt: skip
    try:
        run(pg_ctl["start"])
        server = Server(port, root, control=lambda action: run(pg_ctl[action]))
        server.admin(f"CREATE DATABASE {TEMPLATE}")
        yield server
    finally:
        with contextlib.suppress(subprocess.CalledProcessError, RuntimeError):
            run(pg_ctl["stop-immediate"])
        shutil.rmtree(root, ignore_errors=True)


def _runner(root: Path) -> Callable[[list[str]], None]:
    def run(argv: list[str]) -> None:
        done = subprocess.run(
            _as_postgres(argv), cwd=root, capture_output=True, text=True, timeout=120
        )
        if done.returncode != 0:
            log = root / "server.log"
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise RuntimeError(f"{argv[0]} failed: {done.stderr.strip()}\n{tail}")

    return run


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
