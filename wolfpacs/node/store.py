"""The store in the supervision tree: the actor that owns the backend, and the client actors use.

:class:`StoreActor`, registered as ``store``, opens a backend
(:class:`wolfpacs.state.store.Backend`) in its own thread and runs every
operation there, one at a time. It answers :class:`StoreRequest` s for the
operations of :class:`~wolfpacs.state.store.Store` and nothing else: no
caller can close its connection or reach past the interface.

:class:`StoreClient` is the :class:`~wolfpacs.state.store.Store` the other
actors, the operator's verbs and the HTTP port hold: each method asks the
actor (whichever is alive, through the registry) and returns its answer.

It publishes the queues (``queue_stats()``) and the routes awaiting a
result (``awaiting_results()`` of the pools that track results) on its
``board`` every ``PUBLISH_EVERY`` seconds, between two operations: the
gauges read them there and never wait for the store
(:mod:`wolfpacs.node.board`). At the same tick it writes the audit line of
each route newly overdue (:mod:`wolfpacs.node.results`), once: the store
notes the route as logged (``mark_overdue``), across restarts and nodes.

Errors: an operation's exception goes back to the caller unchanged; one
that means the backend is broken (:meth:`Backend.is_broken`) then crashes
the actor, and its successor opens the backend afresh (committed state is
whole: each operation is a transaction). A caller that finds no store in
``timeout`` seconds gets ``supervisors.UnavailableError``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from supervisors import Registry, SupervisedActor
from wolfpacs.node.board import AWAITING, PUBLISH_EVERY, QUEUES, Board
from wolfpacs.node.fence import Fence
from wolfpacs.node.results import overdue, tracked_pools
from wolfpacs.state.store import OPERATIONS, Backend, QueueItem, Route, Store

if TYPE_CHECKING:
    from wolfpacs.config.model import Config

__all__ = ["StoreActor", "StoreClient", "StoreRequest"]

NAME = "store"
TIMEOUT = 10.0  # seconds a caller waits for the store, through a restart
PURGE_FIRST = 60.0  # seconds after a start before the first purge: let recovery's rush pass
PURGE_EVERY = 86400.0  # seconds between two purges
PURGE_BATCH = 500  # studies forgotten in one transaction
_PURGE = "purge"
_PUBLISH = "publish"

logger = logging.getLogger(__name__)
R = TypeVar("R")


@dataclass(frozen=True)
class StoreRequest:
    """One operation of :class:`~wolfpacs.state.store.Store`, by name, with its arguments."""

    operation: str
    args: tuple[Any, ...] = ()
    fence: Fence | None = None  # the asking incarnation's: checked before the operation runs


class StoreActor(SupervisedActor):
    """Registered as ``store``: owns one backend, opened by ``open_backend()`` at its start.

    It also forgets, once a day (and soon after it starts), the studies idle
    for longer than ``retention_days()`` (0: never), a few hundred to a
    transaction, each batch a message of its own so that the enqueues of
    received instances get their turn between; then it compacts the history
    of runtime changes. ``config()``, the node's live config, says which
    pools track results and their timeouts (None: none does).
    """

    def __init__(
        self,
        registry: Registry,
        open_backend: Callable[[], Backend],
        retention_days: Callable[[], float] = lambda: 0.0,
        *,
        board: Board | None = None,
        config: Callable[[], Config] | None = None,
    ) -> None:
        super().__init__()
        self.registry = registry
        self._open_backend = open_backend
        self._retention_days = retention_days
        self._config = config
        self.board = board or Board()
        self._backend: Backend | None = None
        self.purged = 0  # studies forgotten by this actor

    @property
    def backend(self) -> Backend:
        if self._backend is None:
            raise RuntimeError("the store is not open")
        return self._backend

    def on_start(self) -> None:
        backend = self._open_backend()
        backend.open()
        self._backend = backend
        self.registry.register(NAME, self.actor_ref)
        self.send_after(PURGE_FIRST, _PURGE)
        self._publish()

    def on_stop(self) -> None:
        self._close()

    def on_failure(self, *_exc_info: object) -> None:
        self._close()

    def _close(self) -> None:
        backend, self._backend = self._backend, None
        if backend is not None:
            backend.close()

    def is_fatal(self, exc: BaseException) -> bool:
        return self._backend is not None and self._backend.is_broken(exc)

    def on_receive(self, message: Any) -> Any:
        if isinstance(message, StoreRequest):
            if message.operation not in OPERATIONS:
                raise ValueError(f"the store has no operation {message.operation!r}")
            if message.fence is not None:
                message.fence.check()  # here, in turn with every other operation: no race
            return getattr(self.backend, message.operation)(*message.args)
        if message == _PURGE:
            self._purge()
            return None
        if message == _PUBLISH:
            self._publish()
            return None
        return super().on_receive(message)

    def _purge(self) -> None:
        """One batch of the daily purge; the next batch, or the next day, by message."""
        days = self._retention_days()
        if days > 0:
            forgotten = self.backend.purge(time.time() - days * 86400, PURGE_BATCH)
            self.purged += forgotten
            if forgotten == PURGE_BATCH:
                self.actor_ref.tell(_PURGE)  # more: after what waits in the inbox
                return
            compacted = self.backend.compact_runtime_changes()
            if self.purged or compacted:
                logger.info("purge: %d studies idle over %g days forgotten, %d runtime changes "
                            "compacted", self.purged, days, compacted)  # fmt: skip
        self.purged = 0
        self.send_after(PURGE_EVERY, _PURGE)

    def _publish(self) -> None:
        """The queues on the board, and the next publication in ``PUBLISH_EVERY`` s.

        A tick a blocked store misses leaves the last queues to age: the
        gauges then call them unknown, rather than wait for the store.
        """
        self.board.publish(QUEUES, self.backend.queue_stats())
        config = self._config() if self._config is not None else None
        pools = tracked_pools(config) if config is not None else []
        awaiting = self.backend.awaiting_results(pools) if pools else []
        self.board.publish(AWAITING, awaiting)
        if config is not None and awaiting:
            self._log_overdue(config, awaiting)
        self.send_after(PUBLISH_EVERY, _PUBLISH)

    def _log_overdue(self, config: Config, awaiting: list[dict[str, Any]]) -> None:
        """The audit line of each route newly overdue: the one the store notes now."""
        now = time.time()
        late = {o.key: o for o in overdue(awaiting, config, now) if not o.noted}
        if not late:
            return
        for key in self.backend.mark_overdue(list(late), now):
            o = late[key]
            logger.warning(
                "study %s of client %s: no result from worker %s of pool %s for %.0f s since "
                "its last delivery (result_timeout %g s)", o.study_uid, o.client, o.worker,
                o.pool, o.waiting_s, config.pool_settings(o.pool).result_timeout,
                extra={"event": "overdue", "study": o.study_uid, "client": o.client,
                       "worker": o.worker, "pool": o.pool, "waiting_s": round(o.waiting_s, 3)},
            )  # fmt: skip

    def inspect(self) -> dict[str, Any]:
        return {**self.backend.describe(), "studies": self.backend.count_studies()}


class StoreClient:
    """The store as the actors see it: a :class:`~wolfpacs.state.store.Store` that asks the actor.

    Thread-safe; hold one, never a ref to the actor (it changes with every restart).
    """

    def __init__(
        self, registry: Registry, timeout: float = TIMEOUT, fence: Fence | None = None
    ) -> None:
        self.registry = registry
        self.timeout = timeout
        self.fence = fence

    def fenced(self, fence: Fence) -> StoreClient:
        """This client for one actor incarnation: the store refuses its requests once stale.

        Raises (from each operation, then):
            StaleGenerationError: a newer incarnation has started.
        """
        return StoreClient(self.registry, self.timeout, fence)

    def _ask(
        self,
        operation: Callable[..., R],
        *args: Any,
        timeout: float | None = None,
        meanwhile: Callable[[], object] | None = None,
    ) -> R:
        result: R = self.registry.ask(
            NAME, StoreRequest(operation.__name__, args, self.fence),
            timeout=self.timeout if timeout is None else timeout, meanwhile=meanwhile,
        )  # fmt: skip
        return result

    def get_route(self, client: str, study_uid: str, pool: str = "") -> Route | None:
        return self._ask(Store.get_route, client, study_uid, pool)

    def routes_of(self, study_uid: str) -> list[Route]:
        return self._ask(Store.routes_of, study_uid)

    def insert_route(
        self, client: str, study_uid: str, worker: str, at: float, pool: str = ""
    ) -> Route:
        return self._ask(Store.insert_route, client, study_uid, worker, at, pool)

    def owners(self, study_uid: str, worker: str) -> list[str]:
        return self._ask(Store.owners, study_uid, worker)

    def holders(self, study_uid: str, worker: str) -> list[tuple[str, str]]:
        return self._ask(Store.holders, study_uid, worker)

    def get_series(self, client: str, study_uid: str, series_uid: str) -> dict[str, Any] | None:
        return self._ask(Store.get_series, client, study_uid, series_uid)

    def decide_series(
        self, client: str, study_uid: str, series_uid: str, decision: dict[str, Any]
    ) -> dict[str, Any]:
        return self._ask(Store.decide_series, client, study_uid, series_uid, decision)

    def open_studies(self, workers: list[str], cutoff: float) -> dict[str, int]:
        return self._ask(Store.open_studies, workers, cutoff)

    def move_studies(  # noqa: PLR0917 -- positional: the store actor's requests carry no keywords
        self,
        worker: str,
        to: str,
        studies: list[str] | None = None,
        cutoff: float = 0.0,
        client: str | None = None,
        origin: str | None = None,
    ) -> list[dict[str, Any]]:
        return self._ask(Store.move_studies, worker, to, studies, cutoff, client, origin)

    def enqueue(self, item: QueueItem) -> int:
        return self._ask(Store.enqueue, item)

    def enqueue_received(
        self, item: QueueItem, meanwhile: Callable[[], object] | None = None
    ) -> str | None:
        """``meanwhile``: the caller's work that overlaps the commit (see ``Registry.ask``)."""
        return self._ask(Store.enqueue_received, item, meanwhile=meanwhile)

    def enqueue_result(
        self, item: QueueItem, worker: str, meanwhile: Callable[[], object] | None = None
    ) -> float | None:
        """``meanwhile``: the caller's work that overlaps the commit (see ``Registry.ask``)."""
        return self._ask(Store.enqueue_result, item, worker, meanwhile=meanwhile)

    def next_items(self, target: str, limit: int = 32, after_id: int = 0) -> list[QueueItem]:
        return self._ask(Store.next_items, target, limit, after_id)

    def delivered(self, item_id: int, at: float | None = None) -> bool:
        return self._ask(Store.delivered, item_id, at)

    def delivered_next(
        self, item_ids: list[int], target: str, limit: int = 32
    ) -> tuple[list[int], list[QueueItem]]:
        return self._ask(Store.delivered_next, item_ids, target, limit)

    def moved_items(self, target: str, limit: int = 256) -> list[tuple[QueueItem, str]]:
        return self._ask(Store.moved_items, target, limit)

    def retarget(self, item_id: int, target: str, path: str) -> bool:
        return self._ask(Store.retarget, item_id, target, path)

    def repath(self, old: str, new: str) -> bool:
        return self._ask(Store.repath, old, new)

    def remove_item(self, item_id: int) -> bool:
        return self._ask(Store.remove_item, item_id)

    def failed_attempt(self, item_id: int, error: str) -> int:
        return self._ask(Store.failed_attempt, item_id, error)

    def items_of(self, target: str) -> list[QueueItem]:
        return self._ask(Store.items_of, target)

    def queue_stats(self) -> dict[str, dict[str, Any]]:
        return self._ask(Store.queue_stats)

    def queued_paths(self, all_nodes: bool = False) -> set[str]:
        return self._ask(Store.queued_paths, all_nodes)

    def drop_missing(self, paths: set[str]) -> int:
        return self._ask(Store.drop_missing, paths)

    def study(self, study_uid: str) -> list[dict[str, Any]]:
        return self._ask(Store.study, study_uid)

    def studies(
        self, worker: str | None = None, client: str | None = None, limit: int = 50
    ) -> list[dict[str, Any]]:
        return self._ask(Store.studies, worker, client, limit)

    def open_studies_of(self, column: str, name: str, cutoff: float) -> int:
        return self._ask(Store.open_studies_of, column, name, cutoff)

    def count_studies(self) -> int:
        return self._ask(Store.count_studies)

    def awaiting_results(self, pools: list[str]) -> list[dict[str, Any]]:
        return self._ask(Store.awaiting_results, pools)

    def mark_overdue(
        self, routes: list[tuple[str, str, str]], at: float
    ) -> list[tuple[str, str, str]]:
        return self._ask(Store.mark_overdue, routes, at)

    def purge(self, cutoff: float, limit: int = 500, dry_run: bool = False) -> int:
        return self._ask(Store.purge, cutoff, limit, dry_run)

    def compact_runtime_changes(self, dry_run: bool = False) -> int:
        return self._ask(Store.compact_runtime_changes, dry_run)

    def worker_states(self) -> dict[str, str]:
        return self._ask(Store.worker_states)

    def set_worker_state(self, name: str, state: str, at: float | None = None) -> None:
        return self._ask(Store.set_worker_state, name, state, at)

    def delete_worker_state(self, name: str) -> None:
        return self._ask(Store.delete_worker_state, name)

    def runtime_changes(self) -> list[tuple[str, str, dict[str, Any] | None]]:
        return self._ask(Store.runtime_changes)

    def changes_since(self, seq: int) -> list[tuple[int, str, str, dict[str, Any] | None]]:
        return self._ask(Store.changes_since, seq)

    def last_change(self) -> int:
        return self._ask(Store.last_change)

    def add_runtime_change(self, kind: str, name: str, table: dict[str, Any] | None) -> None:
        return self._ask(Store.add_runtime_change, kind, name, table)

    def register_node(self, lease_seconds: float, shared_spool: bool = False) -> int:
        return self._ask(Store.register_node, lease_seconds, shared_spool)

    def renew_lease(self, epoch: int, lease_seconds: float) -> bool:
        return self._ask(Store.renew_lease, epoch, lease_seconds)

    def adopt_expired(self, epoch: int, family: str = "") -> list[dict[str, Any]]:
        return self._ask(Store.adopt_expired, epoch, family)

    def nodes(self) -> list[dict[str, Any]]:
        return self._ask(Store.nodes)

    def ping(self, timeout: float | None = None) -> bool:
        """``timeout``: seconds to wait for an answer, if not the client's."""
        return self._ask(Store.ping, timeout=timeout)


if TYPE_CHECKING:  # the type checker holds the client to every operation of the interface
    _CLIENT_IS_A_STORE: type[Store] = StoreClient
