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
from wolfpacs.config.live import apply, entry_table, to_toml
from wolfpacs.config.model import SECTIONS, ConfigError
from wolfpacs.node.messages import ACTIVE, DRAINING, WAKE, Target, targets
from wolfpacs.node.recovery import owner_by_route
from wolfpacs.node.router import NotHomeError, Router
from wolfpacs.state.store import DESTINATION, WORKER, QueueItem

if TYPE_CHECKING:
    from collections.abc import Callable

    from wolfpacs.config.live import LiveConfig
    from wolfpacs.node.metrics import Metrics
    from wolfpacs.state.spool import Spool
    from wolfpacs.state.store import Store

__all__ = ["VERBS", "Admin", "AdminError"]

logger = logging.getLogger(__name__)

ASK_TIMEOUT = 2.0  # seconds a busy actor may take to describe itself to the shell

# verb → one line of help; the arguments are the method's (see ``wolfpacs ctl VERB --help``)
VERBS = {
    "tree": "the supervision tree: every actor, restarts, last exit, uptime, mailbox",
    "inspect": "one actor's state: inspect ACTOR",
    "workers": "workers: state, load, queue, health",
    "clients": "clients: AE titles, pool, destination, open studies",
    "destinations": "destinations: queue and health",
    "studies": "recent studies: studies [--worker W] [--client C] [--limit N]",
    "study": "one study: where it went, when, instances both ways: study UID",
    "queues": "per target: queued instances, bytes, oldest age",
    "dead": "dead letters and why",
    "retry-dead": "send dead letters again: retry-dead ID | --all",
    "drain": "no new studies for a worker; its open studies finish: drain WORKER",
    "resume": "a drained worker takes new studies again: resume WORKER",
    "move": "re-route a worker's studies and queue: move WORKER --to OTHER [--studies UID...]",
    "add-client": "add-client NAME --ae-title T --destination D --pool P"
    " [--calling-ae-titles A...] [--allow NET...]",
    "remove-client": "remove-client NAME [--force]",
    "add-worker": "add-worker NAME --host H --port N --ae-title T --pool P [--capacity N]",
    "remove-worker": "remove-worker NAME [--force]",
    "add-destination": "add-destination NAME --host H --port N --ae-title T",
    "remove-destination": "remove-destination NAME [--force]",
    "kill": "crash an actor as if it had raised; its supervisor restarts it: kill ACTOR",
    "stats": "counters since the node started",
    "config": "the effective config (file + runtime changes) as TOML: config --export",
    "names": "actors, workers, clients, destinations (for completion)",
}


# Every argument any verb takes, and its type (list: a list of strings). Checked before
# anything is asked of an actor, so a malformed request reaches no query.
ARGUMENTS: dict[str, type] = {
    **dict.fromkeys(("actor", "worker", "to", "uid", "name", "host", "ae_title", "destination",
                     "pool", "client", "id"), str),
    **dict.fromkeys(("limit", "port", "capacity"), int),
    **dict.fromkeys(("force", "all", "export", "tls"), bool),
    **dict.fromkeys(("studies", "calling_ae_titles", "allow"), list),
}  # fmt: skip
MAX_LIMIT = 1000  # studies a listing returns at most


def _is(value: Any, kind: type) -> bool:
    if kind is list:
        return isinstance(value, list) and all(isinstance(v, str) for v in value)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, kind)


class AdminError(Exception):
    """A verb that cannot be done; its message says why."""


@dataclass(kw_only=True, eq=False, repr=False)
class Admin:
    """The verbs of one node; thread-safe (changes are serialised by a lock).

    It holds what the verbs use of the node: its registry (the actors by
    name), its live config, spool, metrics and store; ``root()``, the tree's
    root while it runs; ``sender_spec(target)``, the child spec of a new
    target's sender.
    """

    registry: Registry
    live: LiveConfig
    spool: Spool
    metrics: Metrics
    store: Store
    root: Callable[[], pykka.ActorRef[Supervisor] | None]
    sender_spec: Callable[[Target], ChildSpec]
    _changing: threading.Lock = field(default_factory=threading.Lock, init=False)

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
            if not _is(value, kind):
                raise AdminError(f"{verb}: {name} must be {kind.__name__}, not {value!r}")
        method = getattr(self, verb.replace("-", "_"))
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
        return description

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
        }

    def _cutoff(self) -> float:
        return time.time() - self.live.get().node.study_idle_timeout

    def _sender(self, name: str) -> dict[str, Any]:
        ref = self.registry.whereis(f"sender:{name}")
        return (self._ask(ref) if ref is not None else None) or {}

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
            })  # fmt: skip
        return rows

    def clients(self) -> list[dict[str, Any]]:
        return [
            {
                **entry_table(c),
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

    def queues(self) -> list[dict[str, Any]]:
        now = time.time()
        return [
            {"target": target, **q, "oldest_age_s": now - q["oldest"] if q["oldest"] else None}
            for target, q in sorted(self.store.queue_stats().items())
        ]

    def dead(self) -> list[dict[str, Any]]:
        return [
            {**record, "id": str(record.get("file", "")).removesuffix(".dcm")}
            for record in self.spool.dead_letters()
        ]

    def stats(self) -> dict[str, Any]:
        snapshot = self.metrics.snapshot()
        snapshot["restarts"] = _restarts(self.tree())
        return snapshot

    def config(self, export: bool = True) -> str:
        del export  # the only form there is
        return to_toml(self.live.get())

    # -- changing ----------------------------------------------------------------------

    def drain(self, worker: str) -> dict[str, Any]:
        self.registry.call("router", Router.set_worker_state, worker, DRAINING)
        return {"worker": worker, "state": DRAINING}

    def resume(self, worker: str) -> dict[str, Any]:
        self.registry.call("router", Router.set_worker_state, worker, ACTIVE)
        return {"worker": worker, "state": ACTIVE}

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
        if actor == "wolfpacs":
            raise AdminError("the root has no supervisor: killing it would stop the node")
        ref = self._actor(actor)
        if actor == "control":  # let this very reply leave before its connection goes
            threading.Timer(0.2, kill, (ref, "killed by an operator")).start()
        else:
            kill(ref, "killed by an operator")
        return {"killed": actor}

    def _change(self, kind: str, name: str, table: dict[str, Any] | None) -> None:
        """Persist a runtime change, then make it live (in that order)."""
        config = apply(self.live.get(), [(kind, name, table)])
        self.store.add_runtime_change(kind, name, table)
        self.live.set(config)
        logger.warning(
            "%s %s %s at runtime", "added" if table else "removed", kind, name,
            extra={"event": "admin"},
        )  # fmt: skip

    def _add(
        self, kind: str, table: dict[str, Any], target: Target | None = None
    ) -> dict[str, Any]:
        """Add an entry (and start its sender): persisted, live, then running; or nothing."""
        name = str(table.get("name", ""))
        with self._changing:
            config = self.live.get()
            if any(e.name == name for e in getattr(config, SECTIONS[kind])):
                raise AdminError(f"a {kind} named {name!r} exists; remove it first")
            self._change(kind, name, {k: v for k, v in table.items() if v not in (None, [])})
            if target is not None:
                try:
                    self.registry.call("senders", Supervisor.start_child, self.sender_spec(target))
                except Exception as exc:
                    self._change(kind, name, None)  # undone, as if never added
                    raise AdminError(f"{kind} {name} not added: its sender failed: {exc}") from None
        return {"added": kind, "name": name}

    def add_client(
        self, name: str, ae_title: str, destination: str, pool: str, **optional: Any
    ) -> dict[str, Any]:
        """``optional``: ``calling_ae_titles`` and ``allow``, lists."""
        return self._add("client", {
            "name": name, "ae_title": ae_title, "destination": destination, "pool": pool,
            **_only(optional, "calling_ae_titles", "allow"),
        })  # fmt: skip

    def add_worker(
        self, name: str, host: str, port: int, ae_title: str, pool: str, **optional: Any
    ) -> dict[str, Any]:
        """``optional``: ``capacity`` (int), ``allow`` (a list of networks), ``tls`` (bool)."""
        table = {
            "name": name, "host": host, "port": port, "ae_title": ae_title, "pool": pool,
            **_only(optional, "capacity", "allow", "tls"),
        }  # fmt: skip
        target = Target(name, WORKER, host, port, ae_title, optional.get("tls", False))
        return self._add("worker", table, target)

    def add_destination(
        self, name: str, host: str, port: int, ae_title: str, tls: bool = False
    ) -> dict[str, Any]:
        table = {"name": name, "host": host, "port": port, "ae_title": ae_title, "tls": tls}
        target = Target(name, DESTINATION, host, port, ae_title, tls)
        return self._add("destination", table, target)

    def remove_client(self, name: str, force: bool = False) -> dict[str, Any]:
        with self._changing:
            if self.live.get().client(name) is None:
                raise AdminError(f"no client {name!r}")
            open_studies = self.store.open_studies_of("client", name, self._cutoff())
            if open_studies and not force:
                raise AdminError(
                    f"client {name} has {open_studies} open studies whose derived series would "
                    "have nowhere to go; wait, or --force"
                )
            self._change("client", name, None)
        return {"removed": "client", "name": name}

    def remove_worker(self, name: str, force: bool = False) -> dict[str, Any]:
        return self._remove_target("worker", name, force)

    def remove_destination(self, name: str, force: bool = False) -> dict[str, Any]:
        return self._remove_target("destination", name, force)

    def _remove_target(self, kind: str, name: str, force: bool) -> dict[str, Any]:
        """Remove a worker or destination; what it still had queued is seen to by the router.

        A removed worker's queued instances are routed anew to the rest of its
        pool (their studies recorded as moved); a removed destination's go to
        ``dead/``. Without ``--force`` a target with work is refused.
        """
        with self._changing:
            config = self.live.get()
            if getattr(config, kind)(name) is None:
                raise AdminError(f"no {kind} {name!r}")
            users = [c.name for c in config.clients if c.destination == name]
            if users:  # even --force: a client without a destination is no valid config
                raise AdminError(f"destination {name} is named by clients {', '.join(users)}: "
                                 "remove them first")  # fmt: skip
            busy = []
            queued = len(self.store.items_of(name))
            if queued:
                busy.append(f"{queued} queued instances")
            if kind == "worker":
                open_studies = self.store.open_studies_of("worker", name, self._cutoff())
                if open_studies:
                    busy.append(f"{open_studies} open studies")
            if busy and not force:
                where = "routed anew" if kind == "worker" else "sent to dead/"
                raise AdminError(
                    f"{kind} {name} has {' and '.join(busy)}; drain or move it first, "
                    f"or --force (its queued instances are then {where})"
                )
            self._change(kind, name, None)
            self.registry.call("senders", Supervisor.terminate_child, f"sender:{name}")
            self.registry.call("senders", Supervisor.delete_child, f"sender:{name}")
            if kind == "worker":
                self.store.delete_worker_state(name)  # a worker added again starts active
        swept = self.registry.call("router", Router.sweep_orphans)  # nobody sends those any more
        return {"removed": kind, "name": name, **swept}

    def retry_dead(self, id: str | None = None, all: bool = False) -> dict[str, Any]:
        """Queue dead letters again for their target (a derived one: its study's destination)."""
        letters = [d for d in self.dead() if all or d["id"] == id]
        if not letters:
            raise AdminError("no such dead letter (see 'dead')" if id else "give ID or --all")
        retried, failed = [], {}
        for letter in letters:
            try:
                self._requeue(letter)
                retried.append(letter["id"])
            except AdminError as exc:
                failed[letter["id"]] = str(exc)
            except Exception as exc:  # one unreadable letter must not stop the others
                logger.exception("retry-dead %s failed", letter.get("id"))
                failed[letter["id"]] = f"{type(exc).__name__}: {exc}"
        return {"retried": retried, "not_retried": failed}

    def _requeue(self, letter: dict[str, Any]) -> None:
        spool = self.spool
        dead_file = spool.dead / letter["file"]
        target, kind = letter.get("target"), letter.get("target_kind", WORKER)
        owner = letter.get("client")
        if target is None:  # refused on the inside port: it may have a home now
            worker = letter.get("worker", "")
            try:
                home = self.registry.call(
                    "router", Router.return_route, letter["study_uid"], worker
                )
            except NotHomeError as exc:
                raise AdminError(f"still refused: {exc}") from None
            target, kind, owner = home.destination, DESTINATION, home.client
        if not any(t.name == target for t in targets(self.live.get())):
            raise AdminError(f"{target} is no longer configured")
        if owner is None:  # a letter from before letters named their client
            owner = owner_by_route(self.store, self.live.get(), letter["study_uid"], target, kind)
            if owner is None:
                raise AdminError(f"whose study {letter['study_uid']} is cannot be told")
        size = dead_file.stat().st_size
        # A link, not a move: until its row is committed, the dead letter stays whole.
        rel = spool.adopt(dead_file, target, letter.get("sop_instance_uid", "instance"), owner)
        try:
            self.store.enqueue(QueueItem(
                target, kind, rel, owner, letter["study_uid"], letter["sop_class_uid"],
                letter["sop_instance_uid"], letter["transfer_syntax"], size, time.time(),
            ))  # fmt: skip
        except Exception:
            spool.remove(rel)
            raise
        dead_file.unlink(missing_ok=True)
        (spool.dead / f"{letter['id']}.json").unlink(missing_ok=True)
        self.registry.tell(f"sender:{target}", WAKE)


def _only(optional: dict[str, Any], *known: str) -> dict[str, Any]:
    unknown = set(optional) - set(known)
    if unknown:
        raise AdminError(f"unknown arguments: {', '.join(sorted(unknown))}")
    return optional


def _restarts(tree: dict[str, Any]) -> dict[str, int]:
    """Restarts per actor id, over the whole tree."""
    counts: dict[str, int] = {}
    for child in tree.get("children") or []:
        if child.get("restarts"):
            counts[child["id"]] = child["restarts"]
        counts.update(_restarts(child))
    return counts
