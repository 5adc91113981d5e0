"""The operator's verbs: what ``wolfpacs shell`` and ``wolfpacs ctl`` can ask and change.

Every verb takes and returns plain data (it crosses the control socket as
msgpack). Reading verbs ask the actors and the store; changing verbs go
through the actor that owns what they change (the router for routes and
worker states, the senders supervisor for senders) and are persisted in
the store before they take effect, so they survive a restart.

Error contract: a request that cannot be done raises :class:`AdminError`
with a sentence saying why, and changes nothing.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pykka

from supervisors import ChildSpec, Registry, Supervisor, UnavailableError, kill
from wolfpacs.config.environment import ENV_FAULT_INJECTION
from wolfpacs.config.live import entry_table, to_toml
from wolfpacs.config.model import ConfigError
from wolfpacs.config.secrets import masked
from wolfpacs.node.lease import Lease, whence
from wolfpacs.node.messages import ACTIVE, DRAINING, RETRY_NOW, Target, targets
from wolfpacs.node.results import overdue, tracked_pools
from wolfpacs.node.router import Router
from wolfpacs.ops.entries import Entries
from wolfpacs.ops.housekeeping import Housekeeping
from wolfpacs.ops.rules import ClientRules
from wolfpacs.ops.verbs import ARGUMENTS, VERBS, AdminError, conforms

if TYPE_CHECKING:
    from collections.abc import Callable

    from wolfpacs.config.live import LiveConfig
    from wolfpacs.node.metrics import Metrics
    from wolfpacs.state.spool import Spool
    from wolfpacs.state.store import Store

__all__ = ["VERBS", "Admin", "AdminError"]

logger = logging.getLogger(__name__)

ASK_TIMEOUT = 2.0  # seconds a busy actor may take to describe itself to the shell
MAX_LIMIT = 1000  # studies a listing returns at most


@dataclass(kw_only=True, eq=False, repr=False)
class Admin:
    """The verbs of one node; thread-safe (changes are serialised by a lock).

    It holds what the verbs use of the node: its registry (the actors by
    name), its live config, spool, metrics and store; ``root()``, the tree's
    root while it runs; ``sender_spec(target)``, the child spec of a new
    target's sender; ``lease``, the node's (which node it is, among several).
    """

    registry: Registry
    live: LiveConfig
    spool: Spool
    metrics: Metrics
    store: Store
    root: Callable[[], pykka.ActorRef[Supervisor] | None]
    sender_spec: Callable[[Target], ChildSpec]
    lease: Lease | None = None
    entries: Entries = field(init=False)
    housekeeping: Housekeeping = field(init=False)
    # Not "rules": a verb's method is looked up by name on each part, the Admin's first.
    client_rules: ClientRules = field(init=False)

    def __post_init__(self) -> None:
        self.entries = Entries(registry=self.registry, live=self.live, store=self.store,
                               sender_spec=self.sender_spec)  # fmt: skip
        self.housekeeping = Housekeeping(registry=self.registry, live=self.live,
                                         spool=self.spool, store=self.store)  # fmt: skip
        self.client_rules = ClientRules(live=self.live, entries=self.entries)

    def call(self, verb: str, args: dict[str, Any] | None = None) -> Any:
        """Run ``verb`` with keyword ``args``; its result as plain data.

        Raises:
            AdminError: unknown verb, bad arguments, or a refusal.
        """
        if verb not in VERBS:
            raise AdminError(f"unknown verb {verb!r}; known: {', '.join(VERBS)}")
        args = args or {}
        for name, value in args.items():
            kind = ARGUMENTS.get(name)
            if kind is None:
                raise AdminError(f"{verb}: unknown argument {name!r}")
            if not conforms(value, kind):
                raise AdminError(f"{verb}: {name} must be {kind.__name__}, not {value!r}")
        name = verb.replace("-", "_")
        parts = (self, self.entries, self.housekeeping, self.client_rules)
        method = next(getattr(part, name) for part in parts if hasattr(part, name))
        try:
            return method(**args)
        except TypeError as exc:
            raise AdminError(f"{verb}: bad arguments: {exc}") from None
        except (ConfigError, ValueError) as exc:
            raise AdminError(f"{verb}: {exc}") from None
        except (UnavailableError, pykka.ActorDeadError) as exc:
            raise AdminError(f"{verb}: the node is busy or restarting that part: {exc}") from None

    # -- looking ---------------------------------------------------------------------

    def _ask(self, ref: pykka.ActorRef[Any], describe: bool = False) -> Any:
        """An actor's ``inspect()`` (a supervisor's ``describe()``); what a busy one says."""
        try:
            proxy = ref.proxy()
            future = proxy.describe() if describe else proxy.inspect()
            return future.get(timeout=ASK_TIMEOUT)
        except pykka.Timeout:
            return {"busy": f"did not answer within {ASK_TIMEOUT} s"}
        except (pykka.ActorDeadError, AttributeError):
            return None

    def _receivers(self) -> list[tuple[str, pykka.ActorRef[Any] | None, str]]:
        return self.registry.call("receivers", Supervisor.which_children)

    def _actor(self, name: str) -> pykka.ActorRef[Any]:
        root = self.root()
        if name == "wolfpacs" and root is not None:
            return root
        ref = self.registry.whereis(name)
        if ref is None and name.startswith("receiver:"):
            ref = next((r for cid, r, _ in self._receivers() if cid == name), None)
        if ref is None:
            raise AdminError(f"no actor {name!r} (see 'tree')")
        return ref

    def tree(self) -> dict[str, Any]:
        root = self.root()
        if root is None:
            raise AdminError("the node is not running")
        description: dict[str, Any] = root.proxy().describe().get()
        if self.lease is not None:  # the node it comes from, and its peers
            description.update(whence(self.lease, self.metrics.board))
        return description

    def nodes(self) -> list[dict[str, Any]]:
        """Every node sharing the store, by id (see ``Store.nodes``); ``this``: the node that
        answers. A node is ``dead`` once its lease expired; with a shared spool, a live node
        adopts its queue (``adopted_by``), else its queue waits for its return."""
        me = self.lease.node_id if self.lease is not None else None
        return [{**node, "this": node["node_id"] == me} for node in self.store.nodes()]

    def forget_node(self, name: str) -> dict[str, Any]:
        """A dead node that owns nothing, taken out of service: no longer listed by ``nodes``
        nor counted in ``wolfpacs_nodes{state="dead"}`` (see ``Store.forget_node``)."""
        return self.store.forget_node(name)

    def inspect(self, actor: str) -> dict[str, Any]:
        ref = self._actor(actor)
        state = self._ask(ref, describe=actor in ("wolfpacs", "senders", "receivers"))
        return {"actor": actor, "class": ref.actor_class.__name__, "state": state}

    def names(self) -> dict[str, list[str]]:
        config = self.live.get()
        receivers = [cid for cid, _, _ in self._receivers()]
        return {
            "verbs": list(VERBS),
            "actors": sorted(["wolfpacs", *self.registry.names(), *receivers]),
            "workers": [w.name for w in config.workers],
            "clients": [c.name for c in config.clients],
            "destinations": [d.name for d in config.destinations],
            "pools": sorted({w.pool for w in config.workers}),
        }

    def _cutoff(self) -> float:
        return time.time() - self.live.get().node.study_idle_timeout

    def _sender(self, name: str) -> dict[str, Any]:
        ref = self.registry.whereis(f"sender:{name}")
        return (self._ask(ref) if ref is not None else None) or {}

    def _up(self, target: str) -> bool | None:
        """Whether ``target`` answered its sender's last association or C-ECHO (None: not
        known yet), as the sender published it: a busy sender never reads as down."""
        up = self.metrics.board.read(f"sender:{target}").value
        return up if isinstance(up, bool) else None

    def workers(self) -> list[dict[str, Any]]:
        config = self.live.get()
        queues = self.store.queue_stats()
        rows = []
        for w in config.workers:
            state = self.registry.call("router", Router.worker_state, w.name)
            open_studies = self.store.open_studies_of("worker", w.name, self._cutoff())
            queue = queues.get(w.name, {})
            sender = self._sender(w.name)
            if state == DRAINING:
                shown = "drained" if not open_studies and not queue.get("instances") else state
            else:
                shown = "down" if sender.get("up") is False else state
            rows.append({
                "name": w.name, "pool": w.pool, "capacity": w.capacity, "state": shown,
                "open_studies": open_studies, "queued": queue.get("instances", 0),
                "queued_bytes": queue.get("bytes", 0), "peer": f"{w.ae_title}@{w.host}:{w.port}",
                "last_success": sender.get("last_success"), "last_error": sender.get("last_error"),
                "up": self._up(w.name),
            })  # fmt: skip
        return rows

    def clients(self) -> list[dict[str, Any]]:
        """The clients, each AE title masked: it is the client's secret. ``pool`` is None
        for a client without one (unmatched series refused; its rules: ``rules CLIENT``)."""
        return [
            {
                **entry_table(c),
                "ae_title": masked(c.ae_title),
                "pool": c.pool,
                "open_studies": self.store.open_studies_of("client", c.name, self._cutoff()),
            }
            for c in self.live.get().clients
        ]

    def destinations(self) -> list[dict[str, Any]]:
        queues = self.store.queue_stats()
        return [
            {
                **entry_table(d),
                "queued": queues.get(d.name, {}).get("instances", 0),
                "up": self._sender(d.name).get("up"),
                "last_success": self._sender(d.name).get("last_success"),
            }
            for d in self.live.get().destinations
        ]

    def studies(
        self, worker: str | None = None, client: str | None = None, limit: int = 50
    ) -> list[dict[str, Any]]:
        return self.store.studies(worker, client, min(max(limit, 1), MAX_LIMIT))

    def study(self, uid: str) -> list[dict[str, Any]]:
        """Every client's study with this UID (each client's is a study of its own)."""
        found = self.store.study(uid)
        if not found:
            raise AdminError(f"no study {uid!r} was routed by this node")
        return found

    def overdue(self) -> list[dict[str, Any]]:
        """The studies past their pool's ``result_timeout`` without a result, now (asked of
        the store at this moment: no sweep), the longest waiting first; each exactly
        ``study``, ``client``, ``pool``, ``worker``, ``delivered_at``, ``waiting_s``."""
        config = self.live.get()
        awaiting = self.store.awaiting_results(tracked_pools(config))
        return [route.shown() for route in overdue(awaiting, config, time.time())]

    def queues(self) -> list[dict[str, Any]]:
        now = time.time()
        return [
            {"target": target, **q, "oldest_age_s": now - q["oldest"] if q["oldest"] else None}
            for target, q in sorted(self.store.queue_stats().items())
        ]

    def stats(self) -> dict[str, Any]:
        snapshot = self.metrics.snapshot()
        snapshot["restarts"] = _restarts(self.tree())
        return snapshot

    def config(self, export: bool = True, show_secrets: bool = False) -> str:
        """The effective config as TOML; the secrets only if ``show_secrets``."""
        del export  # the only form there is
        return to_toml(self.live.get(), secrets=show_secrets)

    # -- changing ----------------------------------------------------------------------

    def drain(self, worker: str) -> dict[str, Any]:
        self.registry.call("router", Router.set_worker_state, worker, DRAINING)
        return {"worker": worker, "state": DRAINING}

    def resume(self, worker: str) -> dict[str, Any]:
        """Take new studies again; and try the worker now, whatever its backoff says."""
        self.registry.call("router", Router.set_worker_state, worker, ACTIVE)
        self.registry.tell(f"sender:{worker}", RETRY_NOW)
        return {"worker": worker, "state": ACTIVE}

    def retry(self, target: str) -> dict[str, Any]:
        """Tell ``target``'s sender to end its backoff and deliver now (it answers at once;
        ``workers``/``destinations`` show how the attempt went)."""
        found = next((t for t in targets(self.live.get()) if t.name == target), None)
        if found is None:
            raise AdminError(f"no worker or destination {target!r} (see 'workers')")
        if not self.registry.tell(f"sender:{target}", RETRY_NOW):
            raise AdminError(f"the sender of {target!r} is restarting: it tries at its start")
        queued = self.store.queue_stats().get(target, {}).get("instances", 0)
        return {"target": target, "kind": found.kind, "queued": queued, "retrying": True}

    def move(self, worker: str, to: str, studies: list[str] | None = None) -> dict[str, Any]:
        moved = self.registry.call("router", Router.move, worker, to, studies or None)
        split = {m["study_uid"]: m["delivered"] for m in moved if m["delivered"]}
        return {
            "from": worker, "to": to, "studies": len(moved),
            "moved_studies": [m["study_uid"] for m in moved],
            "queued_moved": sum(m["queued"] for m in moved),
            "already_delivered": split, "split_studies": len(split),
        }  # fmt: skip

    def kill(self, actor: str) -> dict[str, Any]:
        """Crash an actor (fault injection): refused unless the node allows fault injection."""
        if not self.live.get().node.fault_injection:
            raise AdminError(
                "fault injection is disabled: set [node] fault_injection = true, or "
                f"{ENV_FAULT_INJECTION}=1 in the node's environment"
            )
        if actor == "wolfpacs":
            raise AdminError("the root has no supervisor: killing it would stop the node")
        ref = self._actor(actor)
        if actor == "control":  # let this very reply leave before its connection goes
            threading.Timer(0.2, kill, (ref, "killed by an operator")).start()
        else:
            kill(ref, "killed by an operator")
        return {"killed": actor}


def _restarts(tree: dict[str, Any]) -> dict[str, int]:
    """Restarts per actor id, over the whole tree."""
    counts: dict[str, int] = {}
    for child in tree.get("children") or []:
        if child.get("restarts"):
            counts[child["id"]] = child["restarts"]
        counts.update(_restarts(child))
    return counts
