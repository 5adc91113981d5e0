"""A WolfPACS node: its supervision tree, started from a Config.

::

    wolfpacs (root, one_for_one)
    ├── store             routes, queue rows, worker states, runtime changes (SQLite)
    ├── router            decides study → worker; the only writer of routes
    ├── senders           supervisor: sender:<name> for every worker and destination
    ├── receivers         supervisor: receiver:<n>, one per open association (temporary)
    ├── listener:outside  clients' port
    ├── listener:inside   workers' port
    ├── control           the shell's and ctl's socket
    └── web               metrics, health, the status page (if http_port)

Children start in that order and stop in reverse: the control socket and
the listeners stop accepting first, receivers finish their C-STORE in
progress, senders stop between two instances, and the store closes last.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING, Any

import pykka

from supervisors import ChildSpec, ExitReason, Registry, Supervisor, join, monitor
from wolfpacs.admin import Admin
from wolfpacs.config import ConfigError
from wolfpacs.control import Control
from wolfpacs.listener import Listener
from wolfpacs.metrics import Metrics, NodeCollector
from wolfpacs.peek import PeekError, peek
from wolfpacs.receiver import INSIDE, OUTSIDE
from wolfpacs.router import Router
from wolfpacs.runtime import LiveConfig, apply
from wolfpacs.sender import Sender, Target, targets
from wolfpacs.spool import DataDirInUseError, Spool
from wolfpacs.store import DESTINATION, WORKER, QueueItem, SQLiteStore, StoreActor
from wolfpacs.web import Web

if TYPE_CHECKING:
    from collections.abc import Callable

    from wolfpacs.config import Config

__all__ = ["DataDirInUseError", "Node"]

logger = logging.getLogger(__name__)

STATE_DB = "state.sqlite3"
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


class Node:
    """A running node. :meth:`start` returns once both ports accept associations.

    ``config`` is the file's; the node runs on the *live* config, the file's
    with the runtime changes kept in its store (:mod:`wolfpacs.runtime`).

    Errors: :meth:`start` raises ``supervisors.StartError`` if a part of the
    tree cannot start (a port in use), :class:`DataDirInUseError` if another
    node holds ``data_dir``.
    """

    def __init__(self, config: Config) -> None:
        self.config = config
        self.live = LiveConfig(config)
        self.registry = Registry()
        self.metrics = Metrics()
        node = config.node
        self.spool = Spool(
            node.data_dir, node.durability == "fsync", node.spool_max_bytes, node.min_free_bytes,
            on_dead=self.metrics.dead_letter,
        )  # fmt: skip
        self.db_path = self.spool.root / STATE_DB
        self.admin = Admin(self)
        self.metrics.registry.register(NodeCollector(self.admin))
        self.root: pykka.ActorRef[Supervisor] | None = None
        self.exited = threading.Event()
        self.exit_reason: ExitReason | None = None

    def sender_spec(self, target: Target) -> ChildSpec:
        node, reg, spool, metrics = self.config.node, self.registry, self.spool, self.metrics
        return ChildSpec(
            f"sender:{target.name}", lambda: Sender.start(reg, target, node, spool, metrics)
        )

    def children(self) -> list[ChildSpec]:
        live, reg, spool, metrics = self.live, self.registry, self.spool, self.metrics
        durable = self.spool.durable

        def senders() -> pykka.ActorRef[Any]:  # from the live config, also after a restart
            specs = [self.sender_spec(t) for t in targets(live.get())]
            return Supervisor.start(specs, name="senders", **SENDERS_INTENSITY)

        return [
            ChildSpec("store", lambda: StoreActor.start(reg, self.db_path, durable)),
            ChildSpec("router", lambda: Router.start(reg, live, spool=spool, metrics=metrics)),
            ChildSpec("senders", _registered(reg, "senders", senders), type="supervisor"),
            ChildSpec(
                "receivers",
                _registered(reg, "receivers", lambda: Supervisor.start(name="receivers")),
                type="supervisor",
            ),
            ChildSpec(
                "listener:outside", lambda: Listener.start(OUTSIDE, live, reg, spool, metrics)
            ),
            ChildSpec("listener:inside", lambda: Listener.start(INSIDE, live, reg, spool, metrics)),
            ChildSpec("control", lambda: Control.start(reg, self.admin, live.get().node)),
            *([ChildSpec("web", lambda: Web.start(self))] if self.config.node.http_port else []),
        ]

    def recover(self) -> None:
        """Make the spool and the queue agree, and load the runtime changes (replay).

        A queue row whose file is not where the row says but elsewhere in the
        spool (a crash in the middle of a move) is pointed at it. A row whose
        file is gone was delivered just before a crash, or its instance was
        never acknowledged (its move into the queue had not reached the disk
        when its row was written): the row goes. A file
        with no row gets one again from its own tags: queue rows are not
        fsynced (the file is), so a power loss may take the row of an
        acknowledged instance; one never acknowledged is then sent too (at
        least once). A file that is no DICOM goes to ``dead/``, a copy cut by
        a crash (``.part``) is removed. Runs before the tree starts, never
        while receivers work.

        A runtime change that no longer fits the file (edited since) is skipped
        with an error in the log, so that the node can always start.
        """
        self.spool.prepare()
        store = SQLiteStore(self.db_path, durable=self.spool.durable)
        store.open()
        try:
            files = self.spool.queued_files()
            for path in sorted(store.queued_paths() - files):
                found = self.spool.find(path.rsplit("/", 1)[-1])
                if found is not None and store.repath(path, found):
                    files.discard(found)
                    logger.warning("queue row of %s found its file at %s", path, found)
                else:
                    logger.warning("queue row of %s had no file (delivered, or never "
                                   "acknowledged, before a crash)", path)  # fmt: skip
                    store.drop_missing({path})
            changes = store.runtime_changes()
            config = self._replay(changes)
            kinds = {**{d.name: DESTINATION for d in config.destinations},
                     **{w.name: WORKER for w in config.workers}}  # fmt: skip
            for orphan in sorted(files - store.queued_paths()):
                self._adopt(store, orphan, kinds)
            self.spool.recount()
            queued = store.queued_paths()
            if queued:
                logger.info("%d queued instances to deliver", len(queued))
        finally:
            store.close()
        self.live.set(config)
        if changes:
            logger.info("%d runtime changes applied to %s", len(changes), self.config.source)

    def _replay(self, changes: list[tuple[str, str, dict[str, Any] | None]]) -> Config:
        config = self.config
        for n, change in enumerate(changes, 1):
            try:
                config = apply(config, [change])
            except ConfigError as exc:  # the file was edited since: keep the node startable
                kind, name, table = change
                what = f"{'add' if table else 'remove'} {kind} {name}"
                logger.error("runtime change %d (%s) no longer fits; skipped: %s", n, what, exc)
        return config

    def _adopt(self, store: SQLiteStore, rel: str, kinds: dict[str, str]) -> None:
        """Give a spool file without a queue row its row again, or say why it cannot have one.

        ``kinds``: each configured target's kind (worker or destination).
        """
        path = self.spool.path(rel)
        if path.suffix == ".part":
            logger.info("removing %s: a copy cut short by a crash", rel)
            self.spool.remove(rel)
            return
        target = path.parent.name
        try:
            tags = peek(path)
        except PeekError as exc:
            self.spool.bury(path, {"reason": f"spool file without a queue row, unreadable: {exc}",
                                   "target": target}, kind="refused")  # fmt: skip
            return
        if target not in kinds:
            self.spool.bury(path, {"reason": f"spool file without a queue row for {target}, "
                                   "which is no longer configured", "target": target,
                                   "study_uid": tags.study_uid,
                                   "sop_instance_uid": tags.sop_instance_uid},
                            kind="target_removed")  # fmt: skip
            return
        stat = path.stat()
        store.enqueue(QueueItem(
            target, kinds[target], rel, tags.study_uid, tags.sop_class_uid,
            tags.sop_instance_uid, tags.transfer_syntax, stat.st_size, stat.st_mtime,
        ))  # fmt: skip
        logger.warning("queue row of %s re-created from the file (lost in a power cut?)", rel)

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
        assert self.root is not None
        return self.root.ask(pykka.messages.ProxyCall(("describe",), (), {}))
