"""A WolfPACS node: its supervision tree, started from a Config. The one declaration of the tree.

::

    wolfpacs (root, one_for_one)
    ├── store             routes, queue rows, worker states, runtime changes (SQLite or PostgreSQL)
    ├── lease             renews the node's lease; with a shared spool, adopts dead nodes' queues
    ├── router            decides study → worker; the only writer of routes
    ├── senders           supervisor: sender:<name> for every worker and destination
    ├── changes           applies the runtime changes other nodes sharing the store made
    ├── receivers         supervisor: receiver:<n>, one per open association (temporary)
    ├── listener:outside  clients' port
    ├── listener:inside   workers' port
    ├── control           the shell's and ctl's socket        } the operator's children,
    └── web               metrics, health, the status page    } given by wolfpacs.ops

Children start in that order and stop in reverse: the control socket and
the listeners stop accepting first, receivers finish their C-STORE in
progress, senders stop between two instances, and the store closes last.

The node layer never imports the operator's (:mod:`wolfpacs.ops` sits
above it), so the last children come from whoever starts the node:
``Node(config, operations=Operations)`` (what ``wolfpacs run`` does).
"""

from __future__ import annotations

import functools
import logging
import os
import secrets
import socket
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol, TypedDict

import pykka

from supervisors import ChildSpec, ChildType, ExitReason, Registry, Supervisor, join, monitor
from wolfpacs.config.live import LiveConfig
from wolfpacs.config.model import SQLITE
from wolfpacs.node.changes import Changes
from wolfpacs.node.fence import Fences
from wolfpacs.node.gate import Gate
from wolfpacs.node.identity import node_identity
from wolfpacs.node.lease import Lease, LeaseActor, whence
from wolfpacs.node.listener import Listener
from wolfpacs.node.messages import INSIDE, OUTSIDE, Target, targets
from wolfpacs.node.metrics import Metrics
from wolfpacs.node.outage import wait_open
from wolfpacs.node.recovery import recover
from wolfpacs.node.router import Router
from wolfpacs.node.sender import Sender
from wolfpacs.node.store import StoreActor, StoreClient
from wolfpacs.state.notify import ChangeListener
from wolfpacs.state.postgresql import PostgreSQLStore
from wolfpacs.state.spool import DataDirInUseError, Spool
from wolfpacs.state.sqlite import SQLiteStore

if TYPE_CHECKING:
    from wolfpacs.config.model import Config
    from wolfpacs.state.store import Backend

__all__ = ["DataDirInUseError", "Node", "Operations"]

logger = logging.getLogger(__name__)

STATE_DB = "state.sqlite3"
# Seconds the watcher of other nodes' changes waits for the store: not through a restart of
# the store (its next look tries again), so that it stays free to say how it does.
CHANGES_TIMEOUT = 2.0
PROBE_TIMEOUT = 2.0  # seconds a try to reach a database that was out of reach may take


class Intensity(TypedDict):
    max_restarts: int
    max_seconds: float


# Ten crashes a minute before a supervisor gives up: a flapping peer must not take
# the node down, a bug that crashes on every message must.
ROOT_INTENSITY = Intensity(max_restarts=10, max_seconds=60.0)
SENDERS_INTENSITY = Intensity(max_restarts=10, max_seconds=60.0)


class Operations(Protocol):
    """The operator's side of a node (:class:`wolfpacs.ops.Operations`): its children."""

    def children(self) -> list[ChildSpec]:
        """The tree's last children: they start after the listeners, and stop first."""
        ...


def _registered(registry: Registry, name: str, start: Callable[[], pykka.ActorRef[Any]]) -> Any:
    """A start function that also registers the started actor (a supervisor) under ``name``."""

    def start_and_register() -> pykka.ActorRef[Any]:
        ref = start()
        registry.register(name, ref)
        return ref

    return start_and_register


class Node:
    """A running node. :meth:`start` returns once both ports accept associations.

    ``config`` is the file's; the node runs on the *live* config, the file's
    with the runtime changes kept in its store (:mod:`wolfpacs.config.live`).
    ``operations``, if given, makes the operator's side from the node (it is
    kept as :attr:`operations`) and adds its children to the tree.

    Errors: :meth:`start` raises ``supervisors.StartError`` if a part of the
    tree cannot start (a port in use), :class:`DataDirInUseError` if another
    node holds ``data_dir`` (or, with a shared spool, its ``node_id``),
    ``SchemaError`` for a state database of a newer
    WolfPACS, ``DriverMissingError`` for a PostgreSQL store without psycopg,
    ``psycopg.OperationalError`` for a PostgreSQL out of reach.
    """

    def __init__(
        self,
        config: Config,
        operations: Callable[[Node], Operations] | None = None,
        process: int = 0,
    ) -> None:
        self.config = config
        self.live = LiveConfig(config)
        self.registry = Registry()
        self.metrics = Metrics()
        node = config.node
        durable = node.durability == "fsync"
        self.node_id = node_identity(node.data_dir, node.node_id, durable)
        # A process of a node of several (node.processes): its config is child_config's.
        self.process = process
        shared = node.shared_spool or bool(process)  # siblings share the disk
        self.spool = Spool(
            node.data_dir, durable, node.spool_max_bytes, node.min_free_bytes,
            on_dead=self.metrics.dead_letter, spool_dir=node.spool_path,
            node=self.node_id if shared else "", process=str(process) if process else "",
        )  # fmt: skip
        # The node's lease in the store (node.lease): its epoch is taken at each start.
        self.lease = Lease(self.node_id, node.lease_seconds, fencing=shared)
        # What its lease actor adopts: with a shared spool, any dead node's queue; else its
        # family's on this disk: a process's siblings' (child_config's ids), and the queue of
        # this node before [node] processes changed (of its processes, or of it as one).
        family = self.node_id.rpartition(".")[0] if process else self.node_id
        self.family = "" if node.shared_spool else family
        self.fatal: str | None = None  # why the node stopped itself (its lease was lost)
        self.db_path = self.spool.root / STATE_DB
        self.store = StoreClient(self.registry)
        self.fences = Fences()
        # A port's gate counts its associations; it is the node's, not the listener's, so
        # that a restarted listener and the receivers of the one before share one count.
        self.gates = {
            side: Gate(side, self.live, self.registry, self.spool, self.store, metrics=self.metrics)
            for side in (OUTSIDE, INSIDE)
        }
        self.root: pykka.ActorRef[Supervisor] | None = None
        self.exited = threading.Event()
        self.exit_reason: ExitReason | None = None
        # This process in the store's history of changes (its moves are recorded under it).
        self.origin = f"{socket.gethostname()}/{os.getpid()}/{secrets.token_hex(3)}"
        self.operations = operations(self) if operations is not None else None

    def backend(self, probe: bool = False) -> Backend:
        """A new, unopened backend on the node's state database: ``[node] store``'s.

        ``probe``: one that tries to connect for ``PROBE_TIMEOUT`` s only, to see whether
        the database is back (:mod:`wolfpacs.node.outage`): a try, and a log line, every
        few seconds.
        """
        store = self.config.node.store
        if store == SQLITE:
            return SQLiteStore(self.db_path, durable=self.spool.durable, node_id=self.node_id)
        if probe:
            return PostgreSQLStore(
                store, durable=self.spool.durable, node_id=self.node_id, timeout=PROBE_TIMEOUT
            )
        return PostgreSQLStore(store, durable=self.spool.durable, node_id=self.node_id)

    def listen(self) -> Callable[[Callable[[str], None]], ChangeListener] | None:
        """The watcher's listener of the store's notifications (None: SQLite, which sends
        none: the watcher polls only)."""
        store = self.config.node.store
        if store == SQLITE:
            return None
        return functools.partial(ChangeListener, store)

    def sender_spec(self, target: Target) -> ChildSpec:
        name = f"sender:{target.name}"

        def start() -> pykka.ActorRef[Any]:  # each incarnation fenced: see node.fence
            fence = self.fences.issue(name)
            return Sender.start(
                self.registry, target, self.config.node, self.spool, self.store.fenced(fence),
                metrics=self.metrics, fence=fence, lease=self.lease,
            )  # fmt: skip

        return ChildSpec(name, start)

    def children(self) -> list[ChildSpec]:
        live, reg, spool, store, metrics, gates = (
            self.live, self.registry, self.spool, self.store, self.metrics, self.gates
        )  # fmt: skip

        def senders() -> pykka.ActorRef[Any]:  # from the live config, also after a restart
            specs = [self.sender_spec(t) for t in targets(live.get())]
            return Supervisor.start(specs, name="senders", **SENDERS_INTENSITY)

        def listener(side: str) -> ChildSpec:
            return ChildSpec(f"listener:{side}", functools.partial(Listener.start, gates[side]))

        return [
            ChildSpec(
                "store",
                lambda: StoreActor.start(
                    reg,
                    self.backend,
                    lambda: live.get().node.retention_days,
                    board=metrics.board,
                    config=live.get,
                    probe_backend=functools.partial(self.backend, probe=True),
                ),
            ),
            ChildSpec(
                "lease",
                lambda: LeaseActor.start(
                    reg,
                    store,
                    self.lease,
                    adopt=True,
                    family=self.family,
                    on_lost=self._fenced,
                    board=metrics.board,
                ),
            ),
            ChildSpec(
                "router",
                lambda: Router.start(
                    reg, live, store, spool=spool, metrics=metrics, origin=self.origin
                ),
            ),
            ChildSpec("senders", _registered(reg, "senders", senders), type=ChildType.SUPERVISOR),
            ChildSpec(
                "changes",
                lambda: Changes.start(
                    reg,
                    live,
                    self.config,
                    StoreClient(reg, timeout=CHANGES_TIMEOUT),
                    self.sender_spec,
                    origin=self.origin,
                    listen=self.listen(),
                ),
            ),
            ChildSpec(
                "receivers",
                _registered(reg, "receivers", lambda: Supervisor.start(name="receivers")),
                type=ChildType.SUPERVISOR,
            ),
            listener(OUTSIDE),
            listener(INSIDE),
            *(self.operations.children() if self.operations is not None else []),
        ]

    def recover(self) -> None:
        """Make the spool and the queue agree, and load the runtime changes (replay).

        See :func:`wolfpacs.node.recovery.recover`; runs before the tree starts.
        """
        self.spool.prepare()
        store = self.backend()
        store.open()
        node = self.config.node
        try:  # registered shared only if other nodes may adopt it (its siblings always may)
            asked_at = time.monotonic()
            epoch = store.register_node(self.lease.lease_seconds, node.shared_spool)
            self.lease.renewed(epoch, asked_at)
            logger.info("node %s registered: epoch %d, lease %g s%s", self.node_id,
                        self.lease.epoch, self.lease.lease_seconds,
                        ", shared spool" if self.spool.shared else "")  # fmt: skip
            config = recover(self.spool, store, self.config)
        finally:
            store.close()
        self.live.set(config)

    def wait_for_store(
        self, stop: threading.Event, failed: Callable[[str], None] | None = None
    ) -> bool:
        """Wait until the store can be opened (a database that starts with the node); False if
        ``stop`` came first. Logs every few seconds (:func:`wolfpacs.node.outage.wait_open`);
        ``failed`` is told each failed try. A node on SQLite does not wait: its file is local,
        and what fails there does not pass by waiting (:meth:`start` says what it is).

        Raises:
            Exception: an error of ``open`` that waiting does not cure (``SchemaError``,
                ``DriverMissingError``), unchanged.
        """
        if self.config.node.store == SQLITE:
            return True
        backend = wait_open(functools.partial(self.backend, probe=True), stop, "start", failed)
        if backend is None:
            return False
        backend.close()  # start() opens its own: recovery, then the store actor
        return True

    def start(self) -> None:
        """Lock data_dir, recover the spool, start the tree."""
        self.spool.lock()
        try:
            self.recover()
            self.root = Supervisor.start(self.children(), name="wolfpacs", **ROOT_INTENSITY)
        except BaseException:
            self.spool.unlock()
            raise
        monitor(self.root, self._on_exit)
        node = self.config.node
        logger.info(
            "WolfPACS node %s up: outside port %d, inside port %d, data in %s",
            node.ae_title, node.outside_port, node.inside_port, self.spool.root,
        )  # fmt: skip

    def _fenced(self, why: str) -> None:
        """The lease actor found the node's epoch gone: stop the tree (it delivers nothing
        more already: see node.lease); ``wolfpacs run`` then exits 1."""
        self.fatal = why
        root = self.root
        if root is not None and root.is_alive():
            root.stop(block=False)

    def _on_exit(self, reason: ExitReason) -> None:
        self.exit_reason = reason
        self.spool.unlock()
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
        """The whole tree as plain data (``Supervisor.describe``), with the node it is
        (``node``: its id and epoch) and its peers as its lease actor last saw them
        (``peers``: each ``node_id`` and ``state``; None before the first look)."""
        assert self.root is not None
        description: dict[str, Any] = self.root.proxy().describe().get()
        return {**description, **whence(self.lease, self.metrics.board)}
