"""The router: the one actor that decides which pool and worker a series goes to.

It is the only writer of the series → pool and study → worker tables (in
the store). A study is its client's: (client, StudyInstanceUID) is the key,
and the same UID from another client is another study. Each series is
given a pool once, at its first instance, by its client's rules
(:mod:`wolfpacs.node.rules`: the first that matches, else the client's
``pool``), and the decision is kept. Every series of one study that goes
to pool P goes to one worker of P: a known (client, study, pool) goes where
it went before; a new one to the least-loaded active worker of P, away
from a worker that holds the same UID for another client if it can.
The return path takes a derived instance only from a worker its study was
given, home to the destination of the client that owns the study.

Several nodes share the store: the router names the candidates (its pool's
active workers, and which it knows down) and the store chooses among them
and writes the route in one transaction under the pool's lock
(:meth:`~wolfpacs.state.store.Store.create_route`), so that every node's
open studies count and two nodes racing on new studies see each other's
choices. A known route costs no more than its lookup (the cache, else one
read).

Load (see README, "Routing"): a study is *open* on its worker from its
routing until ``study_idle_timeout`` seconds have passed with none of its
instances received or delivered, and none still queued for the worker. A
worker's load is its open studies divided by its ``capacity``; ties go to
the worker with fewer open studies, then to the first by name.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from supervisors import Registry, SupervisedActor, UnavailableError
from wolfpacs.config.model import DISCARD
from wolfpacs.node.board import PUBLISH_EVERY, WORKERS, Board
from wolfpacs.node.messages import (
    ACTIVE,
    AMBIGUOUS_STUDY,
    DRAINING,
    HAND_OVER,
    NOT_YOUR_STUDY,
    REPORT,
    UNKNOWN_STUDY,
    Home,
    NoPoolError,
    NotHomeError,
    NoWorkerError,
    Routed,
    TargetHealth,
)
from wolfpacs.node.orphans import sweep
from wolfpacs.node.rules import Attributes, decide
from wolfpacs.state.choice import Candidate, Choice, least_loaded

if TYPE_CHECKING:
    from wolfpacs.config.live import LiveConfig
    from wolfpacs.config.model import Config, Worker
    from wolfpacs.node.metrics import Metrics
    from wolfpacs.state.spool import Spool
    from wolfpacs.state.store import Route, Store

# The router's answers (Home, Routed) and refusals (NoPoolError, NoWorkerError, NotHomeError)
# live in node.messages (what crosses between actors).
__all__ = [
    "AMBIGUOUS_STUDY", "NOT_YOUR_STUDY", "UNKNOWN_STUDY", "Home", "NoPoolError", "NoWorkerError",
    "NotHomeError", "Routed", "Router", "candidates_of", "choose_worker",
]  # fmt: skip

logger = logging.getLogger(__name__)

CACHE_SIZE = 100_000  # routes kept in memory; older ones are read back from the store
# Seconds a cached route is used without a look in the store: far below the shortest
# retention (a day), so that a route the store has purged is never used from memory.
CACHE_FRESH = 3600.0
SWEEP_INTERVAL = 60.0  # seconds between two looks for rows of removed targets
_SWEEP = "sweep"
_LOAD = "load"  # the worker states from the store: the first message of each life
_PUBLISH = "publish"


def choose_worker(candidates: list[Worker], open_studies: dict[str, int], down: set[str]) -> Worker:
    """The least-loaded worker: open studies per unit of capacity, healthy ones first.

    A worker known to be down is chosen only if every candidate is down (its
    queue keeps the study until it comes back). The rule is
    :func:`wolfpacs.state.choice.least_loaded`, the one the store applies to
    a new route (:meth:`~wolfpacs.state.store.Store.create_route`).
    """
    chosen = least_loaded(candidates_of(candidates, down), open_studies)
    return next(w for w in candidates if w.name == chosen.name)


def candidates_of(workers: list[Worker], down: set[str]) -> list[Candidate]:
    """The workers as the choice rule sees them: name, capacity, whether known up."""
    return [Candidate(w.name, w.capacity, w.name not in down) for w in workers]


class Router(SupervisedActor):
    """Registered as ``router``; called as ``registry.call("router", Router.route, ...)``:

    - :meth:`route` ``(client, study_uid) -> worker``: raises :class:`NoWorkerError`.
    - :meth:`return_route` ``(study_uid, worker) -> destination | None``.
    - :meth:`set_worker_state`, :meth:`move`: the operator's drain, resume
      and move (``ValueError`` for unknown names).
    - :meth:`reload_states`, :meth:`moved_away`: another node's drain, resume or move.

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
        origin: str | None = None,
    ) -> None:
        super().__init__()
        self.registry = registry
        self.live = live
        self.store = store
        self.clock = clock
        self.origin = origin  # this node in the history of changes (None: moves unrecorded)
        self.spool = spool
        self.metrics = metrics
        self.board = metrics.board if metrics is not None else Board()
        self._cache: OrderedDict[tuple[str, str, str], tuple[Route, float]] = OrderedDict()
        # (client, study, series) -> its kept decision; decisions never change, so no age
        self._series: OrderedDict[tuple[str, str, str], dict[str, Any]] = OrderedDict()
        self._states: dict[str, str] = {}
        self._loaded = False  # _states read from the store in this life
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

    def _lookup(self, client: str, study_uid: str, pool: str) -> Route | None:
        """The route of ``client``'s study in ``pool``, from the cache while it is fresh,
        else the store. A route from before pools were kept serves the pool of its worker."""
        key = (client, study_uid, pool)
        cached = self._cache.get(key)
        now = time.monotonic()
        if cached is not None and now - cached[1] < CACHE_FRESH:
            self._cache[key] = (cached[0], now)
            self._cache.move_to_end(key)
            return cached[0]
        route = self.store.get_route(client, study_uid, pool)
        if route is not None and route.pool != pool:  # from before pools: is it this pool's?
            worker = self.config.worker(route.worker)
            if worker is not None and worker.pool != pool:
                route = None
        if route is None:
            self._cache.pop(key, None)
        else:
            self._remember(key, route)
        return route

    def _remember(self, key: tuple[str, str, str], route: Route) -> None:
        self._cache[key] = (route, time.monotonic())
        self._cache.move_to_end(key)
        if len(self._cache) > CACHE_SIZE:
            self._cache.popitem(last=False)

    def _forget(self, studies: set[tuple[str, str]]) -> None:
        """Drop the cached routes of these (client, study) pairs, in every pool (rare: moves)."""
        for key in [k for k in self._cache if (k[0], k[1]) in studies]:
            del self._cache[key]

    def route_series(
        self,
        client: str,
        study_uid: str,
        series_uid: str,
        attributes: Attributes,
        calling_ae: str = "",
    ) -> Routed:
        """Where an instance of ``client``'s series goes: the series' pool (decided by the
        rules at its first instance, then kept), and the study's worker in that pool.

        Raises:
            NoPoolError: no rule matched and the client has no default pool.
            NoWorkerError: the pool has no active worker for a new study.
        """
        key = (client, study_uid, series_uid)
        decision = self._series.get(key)
        if decision is None:
            decision = self.store.get_series(client, study_uid, series_uid)
            if decision is None:
                decision = self._decide(client, study_uid, series_uid, attributes, calling_ae)
            self._series[key] = decision
            if len(self._series) > CACHE_SIZE:
                self._series.popitem(last=False)
        if decision["action"] == DISCARD:
            return Routed(discard=True, rule=decision["rule"])
        route = self._route_in(client, study_uid, decision["pool"])
        return Routed(route.worker, route.pool, rule=decision["rule"])

    def _decide(
        self,
        client: str,
        study_uid: str,
        series_uid: str,
        attributes: Attributes,
        calling_ae: str,
    ) -> dict[str, Any]:
        """A new series: what its client's rules say, kept (the first decision stands)."""
        settings = self.config.client(client)
        if settings is None:
            raise NoWorkerError(f"unknown client {client!r}")
        made = decide(settings, attributes, calling_ae)
        if made.outcome == "refuse":
            raise NoPoolError(f"series {series_uid}: {made.reason}")
        wanted = {"pool": made.pool, "action": DISCARD if made.outcome == "discard" else "",
                  "rule": made.rule, "decided_at": self.clock()}  # fmt: skip
        kept = self.store.decide_series(client, study_uid, series_uid, wanted)
        where = "discarded" if kept["action"] else f"pool {kept['pool']}"
        logger.info(
            "series %s of study %s from client %s -> %s (%s)",
            series_uid, study_uid, client, where, made.reason,
            extra={"event": "series", "study": study_uid, "client": client,
                   "pool": kept["pool"]},
        )  # fmt: skip
        return kept

    def route(self, client: str, study_uid: str, pool: str | None = None) -> str:
        """The worker for ``client``'s study in ``pool`` (default: the client's own pool)."""
        return self._route_in(client, study_uid, pool).worker

    def _route_in(self, client: str, study_uid: str, pool: str | None) -> Route:
        """The route of ``client``'s study in ``pool``: the one it has, or a new choice.

        A study is its client's: the same UID from another client is another
        study. A study whose worker in the pool has been removed is routed
        anew (and recorded as moved). ``pool`` None: the client's own.

        Raises:
            NoWorkerError: a new choice finds no worker (or the client no pool).
        """
        if pool is None:
            settings = self.config.client(client)
            if settings is None:
                raise NoWorkerError(f"unknown client {client!r}")
            if settings.pool is None:
                raise NoWorkerError(f"client {client!r} has no default pool")
            pool = settings.pool
        route = self._lookup(client, study_uid, pool)
        if route is not None and self.config.worker(route.worker) is not None:
            return route  # the known route: no more asked of the store
        removed = route.worker if route is not None else None
        candidates = self._candidates(pool)
        cutoff = self.clock() - self.config.node.study_idle_timeout
        choice = Choice(tuple(candidates), cutoff, self.clock(), removed)
        placed = self.store.create_route(client, study_uid, pool, choice)
        route = placed.route
        if removed is not None:
            logger.warning("study %s of client %s: its worker %s was removed, now %s",
                           study_uid, client, removed, route.worker)  # fmt: skip
            self._forget({(client, study_uid)})
        self._remember((client, study_uid, pool), route)
        if not placed.chosen:  # another node (or call) made it: its choice, counted there
            return route
        self.decisions += 1
        if self.metrics is not None:
            self.metrics.routed(client, route.worker)
        loads = ", ".join(
            f"{c.name}={placed.open_studies.get(c.name, 0)}/{c.capacity}" for c in candidates
        )
        logger.info(
            "route: study %s from client %s -> worker %s of pool %s (open studies %s)",
            study_uid, client, route.worker, pool, loads,
            extra={"event": "route", "study": study_uid, "client": client,
                   "worker": route.worker, "pool": pool},
        )  # fmt: skip
        return route

    def _candidates(self, pool_name: str) -> list[Candidate]:
        """The workers of pool ``pool_name`` that may take a new study: the active ones,
        each with its capacity and whether this node knows it down.

        The choice among them is the store's, in the transaction that writes
        the route (:meth:`~wolfpacs.state.store.Store.create_route`): every
        node's open studies count, and two nodes racing see each other's.

        Raises:
            NoWorkerError: the pool has no active worker.
        """
        if not self._loaded:  # the store was unavailable at _LOAD: no drain may be missed
            self._load()
        pool = [
            w for w in self.config.pool(pool_name)
            if self._states.get(w.name, ACTIVE) == ACTIVE
        ]  # fmt: skip
        if not pool:
            raise NoWorkerError(f"no active worker in pool {pool_name!r}")
        return candidates_of(pool, self._down)

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
        holders = self.store.holders(study_uid, worker)
        owners = sorted({client for client, _ in holders})
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
        return Home(client.name, client.destination, holders[0][1])

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
            moved = self.store.move_studies(worker, to, studies, cutoff, origin=self.origin)
        except UnavailableError:
            self._cache.clear()  # it may have committed all the same: read routes afresh
            raise
        self._forget({(study["client"], study["study_uid"]) for study in moved})
        self.registry.tell(f"sender:{worker}", HAND_OVER)
        split = sum(1 for study in moved if study["delivered"])
        logger.warning(
            "move: %d studies from worker %s to %s (%d already partly at %s)",
            len(moved), worker, to, split, worker, extra={"event": "admin", "worker": worker},
        )  # fmt: skip
        return moved

    def reload_states(self) -> dict[str, str]:
        """The workers' states read again (changed on another node); those that changed."""
        old, self._states = self._states, self.store.worker_states()
        changed = {n: s for n in {*old, *self._states}
                   if (s := self._states.get(n, ACTIVE)) != old.get(n, ACTIVE)}  # fmt: skip
        if changed:
            self._publish()
            logger.info("workers changed on another node: %s", changed, extra={"event": "admin"})
        return changed

    def moved_away(self, worker: str) -> None:
        """Another node moved studies of ``worker``: forget the cached routes to it (the store
        says where they go now), and tell its sender to hand its queue on."""
        self._forget({(c, s) for (c, s, _), (r, _) in self._cache.items() if r.worker == worker})
        self.registry.tell(f"sender:{worker}", HAND_OVER)

    def sweep_orphans(self) -> dict[str, int]:
        """See to queued rows whose target is no longer configured (see node.orphans)."""
        if self.spool is None:
            return {"rerouted": 0, "dead_letters": 0}

        def route(client: str, study_uid: str, pool: str | None) -> str:
            return self._route_in(client, study_uid, pool).worker

        return sweep(self.config, self.store, self.spool, self.registry, route)

    def _load(self) -> None:  # raises the store's UnavailableError
        self._states, self._loaded = self.store.worker_states(), True

    def on_receive(self, message: Any) -> Any:
        # An unavailable store (its database out of reach) must not crash the router, as a
        # told message that raised would: the load is done before the next new route, the
        # sweep at the next tick.
        if message == _LOAD:
            with contextlib.suppress(UnavailableError):
                self._load()
        if message in (_LOAD, _PUBLISH):  # the load starts the ticks
            self._publish()
            self.send_after(PUBLISH_EVERY, _PUBLISH)
            return None
        if message == _SWEEP:
            with contextlib.suppress(UnavailableError):
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
            "cached_series": len(self._series),
            "decisions": self.decisions,
            "worker_states": dict(self._states),
            "down": sorted(self._down),
        }
