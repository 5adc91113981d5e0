"""A WolfPACS node: its supervision tree, started from a Config.

::

    wolfpacs (root, one_for_one)
    ├── store             routes, queue rows, worker states (SQLite in data_dir)
    ├── router            decides study → worker; the only writer of routes
    ├── senders           supervisor: sender:<name> for every worker and destination
    ├── receivers         supervisor: receiver:<n>, one per open association (temporary)
    ├── listener:outside  clients' port
    └── listener:inside   workers' port

Children start in that order and stop in reverse: the listeners stop
accepting first, receivers finish their C-STORE in progress, senders stop
between two instances, and the store closes last.
"""

from __future__ import annotations

import fcntl
import logging
import os
import threading
from typing import TYPE_CHECKING, Any

import pykka

from supervisors import ChildSpec, ExitReason, Registry, Supervisor, join, monitor
from wolfpacs.listener import Listener
from wolfpacs.receiver import INSIDE, OUTSIDE
from wolfpacs.router import Router
from wolfpacs.sender import Sender, Target
from wolfpacs.spool import Spool
from wolfpacs.store import DESTINATION, WORKER, SQLiteStore, StoreActor

if TYPE_CHECKING:
    from collections.abc import Callable

    from wolfpacs.config import Config

__all__ = ["DataDirInUseError", "Node"]

logger = logging.getLogger(__name__)

STATE_DB = "state.sqlite3"
LOCK_FILE = "node.lock"
# Ten crashes a minute before a supervisor gives up: a flapping peer must not take
# the node down, a bug that crashes on every message must.
ROOT_INTENSITY = {"max_restarts": 10, "max_seconds": 60.0}
SENDERS_INTENSITY = {"max_restarts": 10, "max_seconds": 60.0}


def _registered(registry: Registry, name: str, start: Callable[[], pykka.ActorRef[Any]]) -> Any:
    """A start function that also registers the started actor (a supervisor) under ``name``."""

    def start_and_register() -> pykka.ActorRef[Any]:
        ref = start()
        registry.register(name, ref)
        return ref

    return start_and_register


class DataDirInUseError(RuntimeError):
    """Another node holds the lock on this data_dir."""


class Node:
    """A running node. :meth:`start` returns once both ports accept associations.

    Errors: :meth:`start` raises ``supervisors.StartError`` if a part of the
    tree cannot start (a port in use, an unwritable ``data_dir``), after
    stopping what had started.
    """

    def __init__(self, config: Config) -> None:
        self.config = config
        self.registry = Registry()
        durable = config.node.durability == "fsync"
        self.spool = Spool(config.node.data_dir, durable=durable)
        self.db_path = self.spool.root / STATE_DB
        self.root: pykka.ActorRef[Supervisor] | None = None
        self.exited = threading.Event()
        self.exit_reason: ExitReason | None = None
        self._lock_fd: int | None = None

    def targets(self) -> list[Target]:
        return [
            *(Target(w.name, WORKER, w.host, w.port, w.ae_title) for w in self.config.workers),
            *(
                Target(d.name, DESTINATION, d.host, d.port, d.ae_title)
                for d in self.config.destinations
            ),
        ]

    def children(self) -> list[ChildSpec]:
        cfg, reg, spool = self.config, self.registry, self.spool
        durable = cfg.node.durability == "fsync"
        senders = [
            ChildSpec(f"sender:{t.name}", lambda t=t: Sender.start(reg, t, cfg.node, spool))
            for t in self.targets()
        ]
        return [
            ChildSpec("store", lambda: StoreActor.start(reg, self.db_path, durable)),
            ChildSpec("router", lambda: Router.start(reg, cfg)),
            ChildSpec(
                "senders",
                _registered(
                    reg,
                    "senders",
                    lambda: Supervisor.start(senders, name="senders", **SENDERS_INTENSITY),
                ),
                type="supervisor",
            ),
            ChildSpec(
                "receivers",
                _registered(reg, "receivers", lambda: Supervisor.start(name="receivers")),
                type="supervisor",
            ),
            ChildSpec("listener:outside", lambda: Listener.start(OUTSIDE, cfg, reg, spool)),
            ChildSpec("listener:inside", lambda: Listener.start(INSIDE, cfg, reg, spool)),
        ]

    def recover(self) -> None:
        """Make the spool and the queue agree before anything runs (replay after a crash).

        A queue row whose file is gone was delivered just before a crash:
        the row goes. A file with no row was never acknowledged: it goes too.
        Must run before the listeners start, never while receivers work.
        """
        self.spool.prepare()
        store = SQLiteStore(self.db_path, durable=self.spool.durable)
        store.open()
        try:
            queued, files = store.queued_paths(), self.spool.queued_files()
            gone = queued - files
            if gone:
                logger.warning(
                    "%d queue rows had no file (delivered before a crash): dropped", len(gone)
                )
                store.drop_missing(gone)
            for orphan in sorted(files - queued):
                logger.info("removing %s: never acknowledged (no queue row)", orphan)
                self.spool.remove(orphan)
            if queued & files:
                logger.info("%d queued instances to deliver", len(queued & files))
        finally:
            store.close()

    def _lock_data_dir(self) -> None:
        """Take ``data_dir`` for this node alone: a second node on it would lose files."""
        self.spool.root.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.spool.root / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 64).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise DataDirInUseError(
                f"{self.spool.root} is in use by another WolfPACS node (pid {holder})"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._lock_fd = fd

    def _unlock_data_dir(self) -> None:
        fd, self._lock_fd = self._lock_fd, None
        if fd is not None:
            os.close(fd)  # closing releases the flock

    def start(self) -> None:
        """Lock data_dir, recover the spool, start the tree.

        Raises:
            DataDirInUseError: another node runs on the same data_dir.
            supervisors.StartError: a part of the tree could not start.
        """
        self._lock_data_dir()
        try:
            self._start_tree()
        except BaseException:
            self._unlock_data_dir()
            raise

    def _start_tree(self) -> None:
        self.recover()
        self.root = Supervisor.start(self.children(), name="wolfpacs", **ROOT_INTENSITY)
        monitor(self.root, self._on_exit)
        logger.info(
            "WolfPACS node %s up: outside port %d, inside port %d, data in %s",
            self.config.node.ae_title, self.config.node.outside_port,
            self.config.node.inside_port, self.spool.root,
        )  # fmt: skip

    def _on_exit(self, reason: ExitReason) -> None:
        self.exit_reason = reason
        self._unlock_data_dir()
        self.exited.set()

    def stop(self, timeout: float = 30.0) -> bool:
        """Stop the tree in reverse order; True if every actor ended within ``timeout``."""
        root = self.root
        if root is None:
            return True
        if root.is_alive():
            root.stop(block=False)
        return join(root, timeout) is not None

    def describe(self) -> dict[str, Any]:
        assert self.root is not None
        return self.root.ask(pykka.messages.ProxyCall(("describe",), (), {}))
