"""The store as the other actors see it: :class:`StoreClient`, a typed client of the store actor.

Each method of :class:`StoreClient` is an operation of
:class:`~wolfpacs.state.store.Store`: it asks the store actor
(:mod:`wolfpacs.node.store`, whichever incarnation is alive, through the
registry) with a :class:`StoreRequest` and returns its answer.

Errors: the operation's own exception, unchanged; ``UnavailableError`` when
no store answers within the client's ``timeout`` (or the operation was cut
by an outage: it may have committed); :class:`StoreDownError` at once while
the store cannot reach its backend (the operation did not run);
``StaleGenerationError`` for a fenced client whose incarnation is stale.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from supervisors import Registry, UnavailableError
from wolfpacs.node.fence import Fence
from wolfpacs.state.store import Placement, QueueItem, Route, Store

if TYPE_CHECKING:
    from wolfpacs.state.choice import Choice

__all__ = ["NAME", "TIMEOUT", "StoreClient", "StoreDownError", "StoreRequest"]

NAME = "store"
TIMEOUT = 10.0  # seconds a caller waits for the store, through a restart
R = TypeVar("R")


class StoreDownError(UnavailableError):
    """The store cannot reach its backend now: the operation did not run; try again later."""


@dataclass(frozen=True)
class StoreRequest:
    """One operation of :class:`~wolfpacs.state.store.Store`, by name, with its arguments."""

    operation: str
    args: tuple[Any, ...] = ()
    fence: Fence | None = None  # the asking incarnation's: checked before the operation runs


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

    def create_route(self, client: str, study_uid: str, pool: str, choice: Choice) -> Placement:
        return self._ask(Store.create_route, client, study_uid, pool, choice)

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

    def forget_node(self, node_id: str) -> dict[str, Any]:
        return self._ask(Store.forget_node, node_id)

    def nodes(self) -> list[dict[str, Any]]:
        return self._ask(Store.nodes)

    def ping(self, timeout: float | None = None) -> bool:
        """``timeout``: seconds to wait for an answer, if not the client's."""
        return self._ask(Store.ping, timeout=timeout)


if TYPE_CHECKING:  # the type checker holds the client to every operation of the interface
    _CLIENT_IS_A_STORE: type[Store] = StoreClient
