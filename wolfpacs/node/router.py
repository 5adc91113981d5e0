"""The router: the one actor that decides which worker a study goes to.

It is the only writer of the study → worker table (in the store). A study
is its client's: (client, StudyInstanceUID) is the key, and the same UID
from another client is another study. A known study goes where it went
before; a new one to the least-loaded active worker of its client's pool,
away from a worker that holds the same UID for another client if it can.
The return path takes a derived instance only from a worker its study was
given, home to the destination of the client that owns the study.

Load (see README, "Routing"): a study is *open* on its worker from its
routing until ``study_idle_timeout`` seconds have passed with none of its
instances received or delivered, and none still queued for the worker. A
worker's load is its open studies divided by its ``capacity``; ties go to
the worker with fewer open studies, then to the first by name.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from supervisors import Registry, SupervisedActor, UnavailableError
from wolfpacs.node.board import PUBLISH_EVERY, WORKERS, Board
from wolfpacs.node.messages import (
    ACTIVE,
    DRAINING,
    HAND_OVER,
    REPORT,
    WAKE,
    TargetHealth,
    targets,
)
from wolfpacs.state.store import WORKER

if TYPE_CHECKING:
    from wolfpacs.config.live import LiveConfig
    from wolfpacs.config.model import Config, Worker
    from wolfpacs.node.metrics import Metrics
    from wolfpacs.state.spool import Spool
    from wolfpacs.state.store import Route, Store

__all__ = ["Home", "NoWorkerError", "NotHomeError", "Router", "choose_worker"]

logger = logging.getLogger(__name__)

CACHE_SIZE = 100_000  # routes kept in memory; older ones are read back from the store
# Seconds a cached route is used without a look in the store: far below the shortest
# retention (a day), so that a route the store has purged is never used from memory.
CACHE_FRESH = 3600.0
SWEEP_INTERVAL = 60.0  # seconds between two looks for rows of removed targets
_SWEEP = "sweep"
_LOAD = "load"  # the worker states from the store: the first message of each life
_PUBLISH = "publish"


class NoWorkerError(RuntimeError):
    """The client's pool has no active worker: the instance cannot be taken now."""


UNKNOWN_STUDY = "unknown_study"
NOT_YOUR_STUDY = "not_your_study"
AMBIGUOUS_STUDY = "ambiguous_study"


class NotHomeError(RuntimeError):
    """A derived instance the node will not take home; ``reason`` says why in one word."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class Home:
    """Where a derived instance goes: the client that owns its study, and its destination."""

    client: str
    destination: str


def choose_worker(candidates: list[Worker], open_studies: dict[str, int], down: set[str]) -> Worker:
    """The least-loaded worker: open studies per unit of capacity, healthy ones first.

    A worker known to be down is chosen only if every candidate is down (its
    queue keeps the study until it comes back).
    """
    healthy = [w for w in candidates if w.name not in down] or candidates
    return min(
        healthy,
        key=lambda w: (
            open_studies.get(w.name, 0) / w.capacity,
            open_studies.get(w.name, 0),
            w.name,
        ),
    )


class Router(SupervisedActor):
    """Registered as ``router``; called as ``registry.call("router", Router.route, ...)``:

    - :meth:`route` ``(client, study_uid) -> worker``: raises :class:`NoWorkerError`.
    - :meth:`return_route` ``(study_uid, worker) -> destination | None``.
    - :meth:`set_worker_state`, :meth:`move`: the operator's drain, resume
      and move (``ValueError`` for unknown names).

    Told: a sender's :class:`~wolfpacs.node.messages.TargetHealth`.

    A restarted router starts with an empty cache and reads routes back from
    the store as they are asked for; nothing it knows lives only in memory.
    The config it routes by is the node's live one, read at each decision.

    Its start asks nothing of the store (its supervisor's thread waits for
    ``on_start``: a slow store would hold the whole tree): the worker states
    are loaded by the first message in its inbox (OTP's ``handle_continue``),
    so every call waits behind the load and none sees an unloaded table. A
    store that does not answer the load crashes the router, and its
    supervisor restarts it.

    Every ``PUBLISH_EVERY`` seconds it publishes the workers' states and open
    studies on the metrics' board (:mod:`wolfpacs.node.board`), for the
    gauges, which never ask it.
    """

    def __init__(
        self,
        registry: Registry,
        live: LiveConfig,
        store: Store,
        *,
        clock: Callable[[], float] = time.time,
        spool: Spool | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        super().__init__()
        self.registry = registry
        self.live = live
        self.store = store
        self.clock = clock
        self.spool = spool
        self.metrics = metrics
        self.board = metrics.board if metrics is not None else Board()
        self._cache: OrderedDict[tuple[str, str], tuple[Route, float]] = OrderedDict()
        self._states: dict[str, str] = {}
        self._down: set[str] = set()
        self.decisions = 0

    @property
    def config(self) -> Config:
        return self.live.get()

    def on_start(self) -> None:
        self.actor_ref.tell(_LOAD)  # told before the name is known: first in the inbox
        self.registry.register("router", self.actor_ref)
        for name in self.registry.names():  # a restarted router must relearn who is down
            if name.startswith("sender:"):
                self.registry.tell(name, REPORT)
        # Rows of targets removed (also while the node was down, or just now by a race
        # with a receiver that had routed to it): at start, then now and then.
        self.actor_ref.tell(_SWEEP)

    def _lookup(self, client: str, study_uid: str) -> Route | None:
        """The route of ``client``'s study, from the cache while it is fresh, else the store."""
        key = (client, study_uid)
        cached = self._cache.get(key)
        now = time.monotonic()
        if cached is not None and now - cached[1] < CACHE_FRESH:
            self._cache[key] = (cached[0], now)
            self._cache.move_to_end(key)
            return cached[0]
        route = self.store.get_route(client, study_uid)
        if route is None:
            self._cache.pop(key, None)
        else:
            self._remember(route)
        return route

    def _remember(self, route: Route) -> None:
        self._cache[(route.client, route.study_uid)] = (route, time.monotonic())
        self._cache.move_to_end((route.client, route.study_uid))
        if len(self._cache) > CACHE_SIZE:
            self._cache.popitem(last=False)

    def route(self, client: str, study_uid: str) -> str:
        """The worker for ``client``'s study: the one it already has, or a new choice.

        A study is its client's: the same UID from another client is another
        study, routed in that client's pool. A study whose worker has been
        removed is routed anew (and recorded as moved). Raises
        :class:`NoWorkerError` if a new choice finds no worker.
        """
        route = self._lookup(client, study_uid)
        if route is not None and self.config.worker(route.worker) is not None:
            return route.worker
        worker, loads = self._choose(client, study_uid)
        if route is None:
            route = self.store.insert_route(client, study_uid, worker, self.clock())
        else:
            logger.warning("study %s of client %s: its worker %s was removed",
                           study_uid, client, route.worker)  # fmt: skip
            self.store.move_studies(route.worker, worker, [study_uid], client=client)
            route = replace(route, worker=worker)
        self._remember(route)
        self.decisions += 1
        if self.metrics is not None:
            self.metrics.routed(client, route.worker)
        logger.info(
            "route: study %s from client %s -> worker %s (open studies %s)",
            study_uid, client, route.worker, loads,
            extra={"event": "route", "study": study_uid, "client": client, "worker": route.worker},
        )  # fmt: skip
        return route.worker

    def _choose(self, client: str, study_uid: str) -> tuple[str, str]:
        """The least-loaded active worker of the client's pool, and the loads it saw.

        A worker that holds a study of this UID for another client is taken
        only if no other is active: its results would be ambiguous.
        """
        settings = self.config.client(client)
        if settings is None:
            raise NoWorkerError(f"unknown client {client!r}")
        if settings.pool is None:  # rules only: until the rules choose (issue 18), refused
            raise NoWorkerError(f"client {client!r} has no default pool and no rule chose one")
        pool = [
            w for w in self.config.pool(settings.pool)
            if self._states.get(w.name, ACTIVE) == ACTIVE
        ]  # fmt: skip
        if not pool:
            raise NoWorkerError(f"no active worker in pool {settings.pool!r}")
        others = {r.worker for r in self.store.routes_of(study_uid) if r.client != client}
        pool = [w for w in pool if w.name not in others] or pool
        cutoff = self.clock() - self.config.node.study_idle_timeout
        open_studies = self.store.open_studies([w.name for w in pool], cutoff)
        worker = choose_worker(pool, open_studies, self._down)
        loads = ", ".join(f"{w.name}={open_studies.get(w.name, 0)}/{w.capacity}" for w in pool)
        return worker.name, loads

    def return_route(self, study_uid: str, worker: str) -> Home:
        """Where a derived instance of ``study_uid`` from ``worker`` goes: its owner's destination.

        Only a worker the study was given (routed or moved to) may send its
        results, and they go to the destination of the client that owns it.

        Raises:
            NotHomeError: ``unknown_study`` (no client sent such a study, or its
                client is gone), ``not_your_study`` (it was never given to
                ``worker``), ``ambiguous_study`` (``worker`` holds it for two
                clients: the node never guesses).
        """
        owners = self.store.owners(study_uid, worker)
        if len(owners) > 1:
            raise NotHomeError(
                AMBIGUOUS_STUDY,
                f"worker {worker} holds study {study_uid} for clients {', '.join(owners)}",
            )
        if not owners:
            if self.store.routes_of(study_uid):
                why = f"study {study_uid} was never given to worker {worker}"
                raise NotHomeError(NOT_YOUR_STUDY, why)
            raise NotHomeError(UNKNOWN_STUDY, f"no study {study_uid} was routed by this node")
        client = self.config.client(owners[0])
        if client is None:
            why = f"study {study_uid}: its client {owners[0]} is no longer configured"
            raise NotHomeError(UNKNOWN_STUDY, why)
        return Home(client.name, client.destination)

    def target_health(self, name: str, up: bool) -> None:
        if up:
            self._down.discard(name)
        else:
            self._down.add(name)

    def set_worker_state(self, name: str, state: str) -> None:
        """``active`` or ``draining``, persisted; a draining worker gets no new study."""
        if self.config.worker(name) is None:
            raise ValueError(f"no worker {name!r}")
        if state not in (ACTIVE, DRAINING):
            raise ValueError(f"state must be {ACTIVE} or {DRAINING}, not {state!r}")
        self.store.set_worker_state(name, state)
        self._states[name] = state
        self._publish()  # a drain shows at once, not at the next tick
        logger.info("worker %s is now %s", name, state, extra={"event": "admin", "worker": name})

    def worker_state(self, name: str) -> str:
        return self._states.get(name, ACTIVE)

    def move(self, worker: str, to: str, studies: list[str] | None = None) -> list[dict[str, Any]]:
        """Re-route ``worker``'s studies (or those given) to ``to``; what moved.

        Instances still queued for ``worker`` follow: its sender hands them on
        (see :class:`wolfpacs.node.sender.Sender`). Each moved study comes back with
        the instances ``worker`` already has, so a split is never silent.
        """
        for name in (worker, to):
            if self.config.worker(name) is None:
                raise ValueError(f"no worker {name!r}")
        if worker == to:
            raise ValueError("a worker cannot be moved to itself")
        cutoff = self.clock() - self.config.node.study_idle_timeout
        try:
            moved = self.store.move_studies(worker, to, studies, cutoff)
        except UnavailableError:
            self._cache.clear()  # it may have committed all the same: read routes afresh
            raise
        for study in moved:
            self._cache.pop((study["client"], study["study_uid"]), None)
        self.registry.tell(f"sender:{worker}", HAND_OVER)
        split = sum(1 for study in moved if study["delivered"])
        logger.warning(
            "move: %d studies from worker %s to %s (%d already partly at %s)",
            len(moved), worker, to, split, worker, extra={"event": "admin", "worker": worker},
        )  # fmt: skip
        return moved

    def sweep_orphans(self) -> dict[str, int]:
        """See to queued rows whose target is no longer configured; how many of each fate.

        A removed worker's rows go to the worker its study routes to now (the
        study is routed anew if need be, and recorded as moved); a removed
        destination's rows, and rows whose study can go nowhere, go to ``dead/``.
        Their sender is gone, so nothing else touches them meanwhile.
        """
        counts = {"rerouted": 0, "dead_letters": 0}
        if self.spool is None:
            return counts
        known = {t.name for t in targets(self.config)}
        for target in [t for t in self.store.queue_stats() if t not in known]:
            for item in self.store.items_of(target):
                why = f"destination {target} was removed"
                if item.kind == WORKER:
                    route = self._lookup(item.client, item.study_uid)
                    try:
                        if route is None:
                            raise NoWorkerError("its study has no route")
                        worker = self.route(item.client, item.study_uid)
                    except NoWorkerError as exc:
                        why = f"worker {target} was removed and {exc}"
                    else:
                        path = self.spool.relocate(item.path, worker)
                        self.store.retarget(item.id, worker, path)
                        self.registry.tell(f"sender:{worker}", WAKE)
                        counts["rerouted"] += 1
                        continue
                letter = {**item.describe(), "reason": why}
                self.spool.bury(self.spool.path(item.path), letter, kind="target_removed")
                self.store.remove_item(item.id)
                counts["dead_letters"] += 1
        if any(counts.values()):
            logger.warning("orphaned queue rows: %s", counts, extra={"event": "admin"})
        return counts

    def on_receive(self, message: Any) -> Any:
        if message == _LOAD:
            self._states = self.store.worker_states()
        if message in (_LOAD, _PUBLISH):  # the load starts the ticks
            self._publish()
            self.send_after(PUBLISH_EVERY, _PUBLISH)
            return None
        if message == _SWEEP:
            self.sweep_orphans()
            self.send_after(SWEEP_INTERVAL, _SWEEP)
            return None
        if isinstance(message, TargetHealth):
            self.target_health(message.name, message.up)
            return None
        return super().on_receive(message)

    def _publish(self) -> None:
        """The workers' states and open studies on the board.

        A store that does not answer costs this tick only (the value ages and
        the gauges call it unknown): a told message that raised would crash
        the router for a gauge.
        """
        workers = [w.name for w in self.config.workers]
        cutoff = self.clock() - self.config.node.study_idle_timeout
        try:
            open_studies = self.store.open_studies(workers, cutoff)
        except UnavailableError as exc:
            logger.info("router: workers not published: %s", exc)
        else:
            states = {name: self._states.get(name, ACTIVE) for name in workers}
            self.board.publish(WORKERS, {"states": states, "open_studies": open_studies})

    def inspect(self) -> dict[str, Any]:
        return {
            "cached_routes": len(self._cache),
            "decisions": self.decisions,
            "worker_states": dict(self._states),
            "down": sorted(self._down),
        }
