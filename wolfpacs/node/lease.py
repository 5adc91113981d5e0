"""The node's lease in the shared store, and the actor that keeps it: several nodes, one queue.

Every node holds a lease (:mod:`wolfpacs.state.leases`): it registers at
its start, before recovery (:meth:`wolfpacs.node.tree.Node.recover`), and
takes a new *epoch*, the fencing token between nodes (as a generation of
:mod:`wolfpacs.node.fence` is between incarnations of one actor). Then
:class:`LeaseActor`, registered as ``lease``, renews it every third of
``lease_seconds`` and, with ``shared_spool``, adopts the queues of nodes
whose lease expired (in the same tick, after a renewal that held), then
wakes the senders of what it took: they deliver those rows from the dead
node's subdirectory of the shared spool. Without ``shared_spool`` a dead
node's queue waits for its return (its files are on its own disk).

A renewal that finds its epoch gone means this node was declared dead and
adopted (or another process started with its ``node_id``): from that moment
it delivers nothing (:meth:`Lease.valid` is False for good: its senders
send no further batch) and it stops its tree (``on_lost``), so that ``wolfpacs
run`` exits 1 with a critical log line and its service manager starts it
again; it then registers afresh with a new epoch, and its recovery touches
only the rows still its own. The store fences it too: a late node's
``delivered`` or ``next_items`` sees nothing of adopted rows.

With ``shared_spool`` a node also fences itself on its own clock: a lease
not renewed for ``lease_seconds`` (measured from before the renewal was
asked, on this process's monotonic clock, so never later than the
database's expiry) may have been adopted, and senders send nothing until
a renewal holds again. Duplicates then arise only from a send already in
flight when the lease lapsed (a C-STORE slower than the lease, or a
process paused between its check and its send): at least once, never lost.

Errors: a renewal or adoption the store cannot answer (the database out of
reach) is logged and tried at the next tick; the lease lapses meanwhile,
and senders wait for it (shared spool only).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from supervisors import Registry, SupervisedActor
from wolfpacs.node.board import Board
from wolfpacs.node.messages import WAKE

if TYPE_CHECKING:
    from wolfpacs.state.store import Store

__all__ = ["NAME", "NODES", "Lease", "LeaseActor", "whence"]

logger = logging.getLogger(__name__)

NAME = "lease"
NODES = "nodes"  # the board's key: the store's nodes(), for the gauges and the status page
_RENEW = "renew"


class Lease:
    """This process's lease: its node, its epoch, and until when it may act (thread-safe).

    ``fencing``: whether a lapse stops delivery (with a shared spool, where
    another node may adopt the queue); without, only a lost epoch does.
    """

    def __init__(self, node_id: str, lease_seconds: float, fencing: bool) -> None:
        self.node_id = node_id
        self.lease_seconds = lease_seconds
        self.fencing = fencing
        self.epoch = 0
        self._lock = threading.Lock()
        self._valid_until = 0.0  # monotonic
        self.lost: str | None = None  # why, once the epoch is gone: for good

    def renewed(self, epoch: int, asked_at: float) -> None:
        """The store holds ``epoch``'s lease from ``asked_at`` (monotonic, before the ask) on."""
        with self._lock:
            self.epoch = epoch
            self._valid_until = asked_at + self.lease_seconds

    def lose(self, why: str) -> None:
        """The epoch is gone: this process may never deliver again."""
        with self._lock:
            self.lost = why
            self._valid_until = 0.0

    def valid(self) -> bool:
        """Whether this node may deliver now: its epoch holds, and (``fencing``) its lease runs."""
        with self._lock:
            if self.lost is not None:
                return False
            return not self.fencing or time.monotonic() < self._valid_until


def whence(lease: Lease, board: Board) -> dict[str, Any]:
    """Which node a view comes from (``node``: its id and epoch) and its peers as the lease
    actor last saw them (``peers``: each ``node_id`` and ``state``; None before its first look).
    """
    seen = board.read(NODES).value
    peers = None if seen is None else [
        {"node_id": n["node_id"], "state": n["state"]} for n in seen
        if n["node_id"] != lease.node_id
    ]  # fmt: skip
    return {"node": {"node_id": lease.node_id, "epoch": lease.epoch}, "peers": peers}


class LeaseActor(SupervisedActor):
    """Registered as ``lease``: renews the node's lease, adopts dead nodes' queues.

    ``lease`` is the node's, registered already (its epoch taken); ``adopt``:
    whether to adopt (``shared_spool``, or a process of a node of several);
    ``family``: adopt only that node and its processes (see ``adopt_expired``);
    ``on_lost(why)`` stops the node
    (called once, from this actor's thread, when the epoch is found gone).
    It publishes ``nodes()`` on the board at each tick (:data:`NODES`).
    """

    def __init__(
        self,
        registry: Registry,
        store: Store,
        lease: Lease,
        *,
        adopt: bool,
        family: str = "",
        on_lost: Callable[[str], None],
        board: Board | None = None,
    ) -> None:
        super().__init__()
        self.registry = registry
        self.store = store
        self.lease = lease
        self.adopt = adopt
        self.family = family
        self.on_lost = on_lost
        self.board = board or Board()
        self.renewals = 0
        self.failures = 0  # consecutive renewals the store did not answer
        self.adopted: list[dict[str, Any]] = []  # the last few adoptions, for inspect

    @property
    def every(self) -> float:
        return self.lease.lease_seconds / 3

    def on_start(self) -> None:
        self.registry.register(NAME, self.actor_ref)
        self.actor_ref.tell(_RENEW)

    def on_receive(self, message: Any) -> Any:
        if message == _RENEW:
            self._tick()
            if self.lease.lost is None:
                self.send_after(self.every, _RENEW)
            return None
        return super().on_receive(message)

    def _tick(self) -> None:
        lease = self.lease
        if lease.lost is not None:
            return
        asked_at = time.monotonic()
        try:
            held = self.store.renew_lease(lease.epoch, lease.lease_seconds)
        except Exception as exc:  # the database out of reach: the lease lapses meanwhile
            self.failures += 1
            logger.warning("node %s: lease not renewed (%s); trying again in %.1f s",
                           lease.node_id, exc, self.every)  # fmt: skip
            return
        if not held:
            self._lost()
            return
        self.failures = 0
        self.renewals += 1
        lease.renewed(lease.epoch, asked_at)
        try:
            if self.adopt:
                self._adopt()
            self.board.publish(NODES, self.store.nodes())
        except Exception as exc:
            logger.warning("node %s: looking for dead nodes failed: %s", lease.node_id, exc)

    def _lost(self) -> None:
        lease = self.lease
        why = (
            f"node {lease.node_id}: its lease of epoch {lease.epoch} is no longer its own: it "
            "was declared dead and its queue adopted by another node (or another process "
            "runs with the same node_id); it delivers nothing more and stops, to be started "
            "again with a new epoch"
        )
        lease.lose(why)
        logger.critical(why, extra={"event": "fenced", "node": lease.node_id})
        self.on_lost(why)

    def _adopt(self) -> None:
        for taken in self.store.adopt_expired(self.lease.epoch, self.family):
            logger.warning(
                "node %s: adopted the queue of node %s, whose lease expired: %d queued "
                "instances for %s", self.lease.node_id, taken["node_id"], taken["rows"],
                ", ".join(taken["targets"]) or "nobody",
                extra={"event": "adopted", "node": self.lease.node_id,
                       "adopted_from": taken["node_id"], "rows": taken["rows"]},
            )  # fmt: skip
            self.adopted = [*self.adopted[-9:], {**taken, "at": time.time()}]
            for target in taken["targets"]:
                self.registry.tell(f"sender:{target}", WAKE)

    def inspect(self) -> dict[str, Any]:
        lease = self.lease
        return {
            "node_id": lease.node_id, "epoch": lease.epoch, "valid": lease.valid(),
            "lease_seconds": lease.lease_seconds, "adopts": self.adopt,
            "renewals": self.renewals, "failures": self.failures, "adopted": self.adopted,
            "lost": lease.lost,
        }  # fmt: skip
