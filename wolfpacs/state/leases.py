"""Nodes' leases on their queues: registration, renewal, adoption, and the fence between them.

Several nodes may share one store (PostgreSQL; one day one SQLite file on
one machine). Each holds a *lease* in the table ``nodes``: a row with its
``epoch``, its last heartbeat and the time its lease expires, all on the
database's clock (:data:`~wolfpacs.state.database.Database.NOW`: PostgreSQL's
``clock_timestamp()``, or SQLite's, the one machine's), so that skew between
nodes' clocks cannot make a live node look dead. Every queue row has an
*owner*, the node that delivers it, and a node's operations on the queue
read and change its own rows only (:mod:`wolfpacs.state.operations`).

- :meth:`NodeLeases.register_node`, at a node's start: a new epoch (the
  fencing token), a fresh lease; rows from before owners were kept are its.
- :meth:`NodeLeases.renew_lease`, every third of the lease: extends it if the
  epoch is still the node's. False means the node was declared dead and
  adopted meanwhile: it must stop delivering at once (the lease actor,
  :mod:`wolfpacs.node.lease`, says what it does).
- :meth:`NodeLeases.adopt_expired`, by a live node whose spool is shared: in
  one transaction it locks each node whose lease expired and whose spool
  is shared too (a node's own disk is read by no other) (``FOR UPDATE SKIP
  LOCKED``; SQLite: the write lock of ``BEGIN IMMEDIATE``), bumps its epoch
  (the fence), marks it adopted, and makes its queue rows the adopter's. Of
  two adopters racing on one dead node, one gets it; the other skips it.
  An adopter locks its own row first and adopts nothing if its own epoch
  moved or its own lease lapsed: two nodes cannot adopt each other.
- :meth:`NodeLeases.forget_node`, by the operator: a dead node that owns
  nothing, taken out of service, is no longer listed (nor alerted on).

The fence: a late node (paused, cut off, then back) whose rows were adopted
finds none of them: ``next_items`` does not list them, and ``delivered``,
``failed_attempt``, ``retarget``, ``remove_item`` change nothing and say so
(the sender then leaves the file alone: its new owner delivers it). Its next
renewal fails and it stops. Rows it enqueued after its adoption (it did not
know yet) stay its own: it delivers them when it comes back with a new
epoch, or a live node adopts them later (a dead node is adopted again while
it owns rows).

Delivery stays at least once. An instance may reach its target twice when
(1) a node was mid-send when its queue was adopted (a C-STORE in flight as
its lease lapsed, or a process paused between its last look at its lease
and its send): its adopter sends it again; (2) a node delivered and died
before its ``delivered`` committed (as for one node: its adopter, or its
own restart, sends it again); (3) PostgreSQL lost a ``delivered`` in a
crash (those commits do not wait for the WAL flush). Nothing acknowledged
is lost: a row moves between owners in one transaction, and its file
stays where its node wrote it, in the shared spool.

Durability: a registration and an adoption are synced commits (an epoch
never goes back, an adoption never half happens); a heartbeat is not (a
lost one only makes a lease look older). Queue rows are not synced on
PostgreSQL (``synchronous_commit = off``): a row lost in a PostgreSQL crash
is rebuilt from its spool file by recovery, and only by the node whose
directory holds the file, at its next start. An adopter never rebuilds a
dead node's lost rows: such a file waits in the dead node's directory for
a node of that id to start (``wolfpacs ctl nodes`` shows the node dead).
"""

from __future__ import annotations

import logging
from typing import Any

from wolfpacs.state.database import Database

__all__ = ["NODE_COLUMNS", "NodeLeases"]

logger = logging.getLogger(__name__)

NODE_COLUMNS = (
    "node_id", "epoch", "started_at", "heartbeat_at", "expires_at", "shared_spool", "adopted_by",
    "adopted_at",
)  # fmt: skip


class NodeLeases(Database):
    """The operations on nodes' leases (see the module); ``self.node_id`` is the caller's node."""

    def register_node(self, lease_seconds: float, shared_spool: bool = False) -> int:
        """Start this node's lease with a new epoch; that epoch.

        ``shared_spool``: its files are where every node finds them, so a live
        node may adopt its queue when its lease expires; never a node's
        whose spool is its own (its files are on its disk alone).

        A node that comes back takes a new epoch; whatever was adopted from it
        is no longer its own, and its old incarnation (if one still runs
        somewhere) is fenced. The queue rows from before owners were kept
        (owner ``""``) become this node's: a single node's, upgraded. Synced
        (durable): an epoch must never go back.
        """
        with self._transaction() as db:
            row = db.execute(
                "INSERT INTO nodes (node_id, epoch, started_at, heartbeat_at, expires_at, "
                f"shared_spool) VALUES (?, 1, {self.NOW}, {self.NOW}, {self.NOW} + ?, ?) "
                "ON CONFLICT (node_id) DO UPDATE SET epoch = nodes.epoch + 1, "
                "started_at = excluded.started_at, heartbeat_at = excluded.heartbeat_at, "
                "expires_at = excluded.expires_at, shared_spool = excluded.shared_spool, "
                "adopted_by = NULL, adopted_at = NULL RETURNING epoch",
                (self.node_id, lease_seconds, 1 if shared_spool else 0),
            ).fetchone()
            if self.node_id:
                claimed = db.execute(
                    "UPDATE queue SET owner = ? WHERE owner = ''", (self.node_id,)
                ).rowcount
                if claimed > 0:
                    logger.info("node %s: %d queue rows from before nodes were kept are its own",
                                self.node_id, claimed)  # fmt: skip
        return int(row[0])

    def renew_lease(self, epoch: int, lease_seconds: float) -> bool:
        """Extend this node's lease to ``lease_seconds`` from now if ``epoch`` is still its own.

        False: the node was adopted (or started again elsewhere) since it took
        ``epoch``; nothing was changed. A lease that lapsed without anyone
        adopting it is simply renewed: the epoch is the fence, not the clock.
        """
        with self._transaction(synced=False) as db:  # a heartbeat lost in a crash: no matter
            renewed = db.execute(
                f"UPDATE nodes SET heartbeat_at = {self.NOW}, expires_at = {self.NOW} + ? "
                "WHERE node_id = ? AND epoch = ?",
                (lease_seconds, self.node_id, epoch),
            ).rowcount
        return renewed == 1

    def adopt_expired(self, epoch: int, family: str = "") -> list[dict[str, Any]]:
        """Make this node the owner of the queues of nodes whose lease expired; what it took.

        Each adopted node: ``node_id``, its new ``epoch`` (the fence), ``rows``
        taken, and ``targets``: the targets those rows are owed to, whose
        senders must be woken. Nothing if ``epoch`` is no longer this node's,
        or its own lease has lapsed. Only nodes registered with a shared
        spool are adopted, and only a node with a shared spool should adopt:
        the rows' files stay where their node wrote them. ``family``: adopt
        only the node of that id and its processes (``<family>.<n>``), shared
        spool or not: they share a disk (the processes of one node adopt each
        other's queues, and those of the node before ``[node] processes``
        changed). One transaction (synced): the fence and the rows together.
        """
        adopted: list[dict[str, Any]] = []
        with self._transaction() as db:
            me = db.execute(
                f"SELECT epoch, expires_at > {self.NOW} FROM nodes WHERE node_id = ? "
                f"{self.LOCK_ROW}",
                (self.node_id,),
            ).fetchone()
            if me is None or int(me[0]) != epoch or not me[1]:
                return []
            dead = db.execute(
                f"SELECT node_id FROM nodes n WHERE node_id <> ? AND expires_at < {self.NOW} "
                "AND (? = '' AND shared_spool = 1 OR node_id = ? OR substr(node_id, 1, ?) = ?) "
                "AND (adopted_by IS NULL OR EXISTS (SELECT 1 FROM queue q "
                f"WHERE q.owner = n.node_id)) ORDER BY node_id {self.LOCK_FREE_ROW}",
                (self.node_id, family, family, len(family) + 1, f"{family}."),
            ).fetchall()
            for (node_id,) in dead:
                fenced = db.execute(
                    f"UPDATE nodes SET epoch = epoch + 1, adopted_by = ?, adopted_at = {self.NOW} "
                    "WHERE node_id = ? RETURNING epoch",
                    (self.node_id, node_id),
                ).fetchone()
                targets = db.execute(
                    "SELECT target, COUNT(*) FROM queue WHERE owner = ? GROUP BY target "
                    "ORDER BY target",
                    (node_id,),
                ).fetchall()
                db.execute("UPDATE queue SET owner = ? WHERE owner = ?", (self.node_id, node_id))
                adopted.append({
                    "node_id": node_id, "epoch": int(fenced[0]),
                    "rows": sum(int(n) for _, n in targets),
                    "targets": [target for target, _ in targets],
                })  # fmt: skip
        return adopted

    def forget_node(self, node_id: str) -> dict[str, Any]:
        """Forget ``node_id``, a node taken out of service: it is no longer listed, nor
        counted dead. ``{"forgot": node_id}``.

        Raises ``ValueError`` (nothing changed) for a node the store does not
        know, one whose lease still runs, and one that still owns queue rows
        (they would have no one to deliver them: start it again, or let a
        node with a shared spool adopt them). A node later started with that
        id registers afresh; so forget only a node that is gone for good.
        """
        with self._transaction() as db:
            row = db.execute(
                f"SELECT expires_at > {self.NOW} FROM nodes WHERE node_id = ? {self.LOCK_ROW}",
                (node_id,),
            ).fetchone()
            if row is None:
                raise ValueError(f"no node {node_id!r} shares this store")
            if row[0]:
                raise ValueError(f"node {node_id} is alive (its lease runs): stop it, and "
                                 "forget it once its lease has expired")  # fmt: skip
            owned = int(db.execute(
                "SELECT COUNT(*) FROM queue WHERE owner = ?", (node_id,)
            ).fetchone()[0])  # fmt: skip
            if owned:
                raise ValueError(
                    f"node {node_id} still owns {owned} queued instances: start it again to "
                    "deliver them, or let a node with a shared spool adopt them"
                )
            db.execute("DELETE FROM nodes WHERE node_id = ?", (node_id,))
        logger.info("node %s forgotten: taken out of service", node_id)
        return {"forgot": node_id}

    def nodes(self) -> list[dict[str, Any]]:
        """Every node that ever registered, by id, as the database's clock sees it now.

        Each: ``node_id``, ``state`` (``alive`` while its lease runs, else
        ``dead``), ``epoch``, ``started_at``, ``last_heartbeat``,
        ``expires_at``, ``queued`` (rows it owns), ``adopted_by`` and
        ``adopted_at`` (the live node that took its queue, if one did since
        it last started), ``adopted_from`` (the nodes whose queue it took).
        """
        now = float(self._value(f"SELECT {self.NOW}"))
        found = self._dicts(f"SELECT {', '.join(NODE_COLUMNS)} FROM nodes ORDER BY node_id")
        queued = dict(self._rows("SELECT owner, COUNT(*) FROM queue GROUP BY owner"))
        described = []
        for node in found:
            heartbeat = node.pop("heartbeat_at")
            described.append({
                "node_id": node["node_id"],
                "state": "alive" if node["expires_at"] > now else "dead",
                **node, "last_heartbeat": heartbeat, "shared_spool": bool(node["shared_spool"]),
                "queued": int(queued.get(node["node_id"], 0)),
                "adopted_from": [n["node_id"] for n in found if n["adopted_by"] == node["node_id"]],
            })  # fmt: skip
        return described
