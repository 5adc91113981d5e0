"""A throwaway PostgreSQL server on loopback, for the tests and the benchmarks.

:func:`server` runs ``initdb`` into a new temp dir and ``pg_ctl start`` on
a free loopback port with its socket in that dir, as the ``postgres`` user
when the caller is root (PostgreSQL refuses to run as root); it is stopped
(``immediate``) and its dir removed when the block ends. The binaries are
Debian's newest (``/usr/lib/postgresql/*/bin``), else PATH's. Everything
about it is local: trust authentication for one superuser, on 127.0.0.1.

Errors: :class:`ServerMissingError` when it cannot run here (no binaries,
no ``postgres`` user to run them as root), with what to install;
``RuntimeError`` with the server's log when ``initdb`` or ``pg_ctl`` fails.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shlex
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from wolfpacs.testing.peers import free_port

__all__ = [
    "INSTALL_SERVER", "PostgreSQLServer", "ServerMissingError", "binaries", "restart_command",
    "server",
]  # fmt: skip

INSTALL_SERVER = "apt-get install postgresql (Debian)"
SUPERUSER = "wolfpacs"


class ServerMissingError(RuntimeError):
    """PostgreSQL cannot be run here; ``what`` is missing, ``install`` says how to get it."""

    def __init__(self, what: str, install: str = INSTALL_SERVER) -> None:
        super().__init__(f"{what} is missing ({install})")
        self.what = what
        self.install = install


@dataclass(frozen=True)
class PostgreSQLServer:
    """A running server: its port, its dir (data, log, socket), its superuser; it can be
    stopped and started again on the same port (an outage, a restart)."""

    port: int
    root: Path
    options: str  # pg_ctl -o: the port, the socket's dir, the settings
    bin_dir: Path
    superuser: str = SUPERUSER

    @property
    def log(self) -> Path:
        return self.root / "server.log"

    def url(self, database: str) -> str:
        """The libpq URL of ``database`` on this server, as its superuser."""
        return f"postgresql://{self.superuser}@127.0.0.1:{self.port}/{database}"

    def start(self) -> None:
        """Start it (again); returns once it accepts connections.

        Raises:
            RuntimeError: pg_ctl failed (the log's tail is in the message).
        """
        pg_ctl = str(self.bin_dir / "pg_ctl")
        data = str(self.root / "data")
        _run(self.root, [pg_ctl, "start", "-w", "-t", "60", "-D", data, "-l", str(self.log),
                         "-o", self.options])  # fmt: skip

    def stop(self, mode: str = "immediate") -> None:
        """Stop it: ``immediate`` as a crash does (what was committed without waiting for
        the WAL flush may be lost), ``fast`` as a restart for maintenance does.

        Raises:
            RuntimeError: pg_ctl failed (it was not running, say).
        """
        _run(self.root, [str(self.bin_dir / "pg_ctl"), "stop", "-m", mode, "-w", "-D",
                         str(self.root / "data")])  # fmt: skip

    def restart_command(self) -> str:
        """See :func:`restart_command`."""
        return restart_command(self.root)


def restart_command(root: Path) -> str:
    """A shell command that restarts the server of ``root`` (a :func:`server`'s dir), cutting
    every connection (fast shutdown), with the options it was started with."""
    bin_dir = binaries()
    assert bin_dir is not None  # the server runs: its binaries are there
    return shlex.join(_as_postgres([
        str(bin_dir / "pg_ctl"), "restart", "-w", "-t", "60", "-m", "fast",
        "-D", str(root / "data"), "-l", str(root / "server.log"),
    ]))  # fmt: skip


def binaries() -> Path | None:
    """The directory of initdb and pg_ctl: Debian's newest, else PATH's; None if neither."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=_version)
    if found:
        return Path(found[-1]).parent
    pg_ctl = shutil.which("pg_ctl")
    return Path(pg_ctl).resolve().parent if pg_ctl else None


def _version(path: str) -> tuple[int, ...]:
    digits = Path(path).parent.parent.name
    return tuple(int(n) for n in digits.split(".") if n.isdigit())


@contextlib.contextmanager
def server(
    settings: Sequence[str] = (), prefix: str = "wolfpacs-pg-"
) -> Iterator[PostgreSQLServer]:
    """A new PostgreSQL server, running for the block; stopped and removed after.

    ``settings``: server settings as ``name=value`` (``-c`` options), after
    the ones that keep it on loopback. PostgreSQL's defaults otherwise (so
    ``fsync`` and ``synchronous_commit`` are on).

    Raises:
        ServerMissingError: no binaries, or no ``postgres`` user to run them as.
        RuntimeError: initdb or pg_ctl failed (the log's tail is in the message).
    """
    bin_dir = binaries()
    if bin_dir is None or not (bin_dir / "initdb").exists():
        raise ServerMissingError("PostgreSQL (initdb, pg_ctl)")
    root = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        if os.geteuid() == 0:
            try:
                user = pwd.getpwnam("postgres")
            except KeyError:
                raise ServerMissingError("the postgres user") from None
            os.chown(root, user.pw_uid, user.pw_gid)
        port = free_port()
        options = " ".join(
            [f"-k {root} -p {port} -c listen_addresses=127.0.0.1"]
            + [f"-c {setting}" for setting in settings]
        )
        _run(root, [str(bin_dir / "initdb"), "-D", str(root / "data"), "-U", SUPERUSER,
                    "--auth=trust", "-E", "UTF8", "--locale=C"])  # fmt: skip
        running = PostgreSQLServer(port, root, options, bin_dir)
        try:
            running.start()
            yield running
        finally:
            with contextlib.suppress(RuntimeError):  # (stopped already, by its user)
                running.stop()
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _as_postgres(argv: list[str]) -> list[str]:
    """``argv`` run as the postgres user when we are root (PostgreSQL refuses root)."""
    return ["runuser", "-u", "postgres", "--", *argv] if os.geteuid() == 0 else argv


def _run(root: Path, argv: list[str]) -> None:
    done = subprocess.run(_as_postgres(argv), cwd=root, capture_output=True, text=True,
                          timeout=120, check=False)  # fmt: skip
    if done.returncode != 0:
        log = root / "server.log"
        tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
        raise RuntimeError(f"{argv[0]} failed: {done.stderr.strip()}\n{tail}")
