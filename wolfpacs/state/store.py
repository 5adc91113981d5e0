"""The store interface: what the node keeps in its database, and the data it keeps.

:class:`Store` is every operation the node needs of its routing state
(routes, the delivery queue, worker states, runtime config changes);
:class:`Backend` is a store that can be opened and closed, as the store
actor owns one. :class:`~wolfpacs.state.sqlite.SQLiteStore` is the
embedded backend, :class:`~wolfpacs.state.postgresql.PostgreSQLStore` the
one several nodes can share; the actors reach whichever there is through the typed
client of :mod:`wolfpacs.node.store`, which is a :class:`Store` too.

A backend made for a node (``node_id``) reads and changes that node's
queue rows only (see :mod:`wolfpacs.state.leases`).

Contract of every backend: each operation is one transaction, committed
when it returns; a write a retry can repeat is idempotent (a study's route
is insert-if-absent, a queue row is unique by its spool path, counters move
only when a row did). An error that means the backend cannot go on (a
broken file, connection or server) is one :meth:`Backend.is_broken` accepts; the
store actor then crashes and its successor opens the backend afresh.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from wolfpacs.state.choice import Choice

__all__ = [
    "DESTINATION", "OPERATIONS", "WORKER", "Backend", "Placement", "QueueItem", "Route", "Store",
]  # fmt: skip

WORKER = "worker"  # a queue row bound for a worker: an instance a client sent
DESTINATION = "destination"  # bound for a client's destination: a derived instance


@dataclass(frozen=True)
class Route:
    """Where a study goes in one pool: the worker its client's study was given (plain data).

    A study is its client's: the same UID sent by two hospitals is two
    studies, each with its own routes. Its series may go to several pools
    (routing rules); (client, study_uid, pool) is the key, one worker per
    pool. ``pool`` ``""``: a route from before pools were kept (it serves
    the series of its worker's pool).
    """

    client: str
    study_uid: str
    worker: str
    routed_at: float
    pool: str = ""


@dataclass(frozen=True)
class Placement:
    """What :meth:`Store.create_route` answers (plain data: it crosses actors).

    ``route``: the route that stands now. ``chosen``: whether this call
    chose its worker (False: another call, or node, had made the route).
    ``open_studies``: the loads the choice saw (empty when nothing was chosen).
    """

    route: Route
    chosen: bool
    open_studies: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class QueueItem:
    """One spooled instance owed to a target (plain data: it crosses actors)."""

    target: str
    kind: str
    path: str
    client: str  # whose study it is: the one a worker's instance came from, or goes home to
    study_uid: str
    sop_class_uid: str
    sop_instance_uid: str
    transfer_syntax: str
    size: int
    enqueued_at: float = 0.0
    id: int = 0
    attempts: int = 0
    last_error: str | None = None
    pool: str = ""  # the pool of its study's route (see Route): with client and study, its key

    def describe(self) -> dict[str, Any]:
        """What a dead letter's note says of its instance (plain data)."""
        return {
            "target": self.target, "target_kind": self.kind, "client": self.client,
            "study_uid": self.study_uid, "sop_instance_uid": self.sop_instance_uid,
            "sop_class_uid": self.sop_class_uid, "transfer_syntax": self.transfer_syntax,
            "enqueued_at": self.enqueued_at, "pool": self.pool,
        }  # fmt: skip


class Store(Protocol):
    """The operations on the node's routing state. Times are ``time.time()`` seconds."""

    # -- routes ------------------------------------------------------------------------

    def get_route(self, client: str, study_uid: str, pool: str = "") -> Route | None:
        """The route of ``client``'s study in ``pool``, else its route from before pools
        were kept (pool ``""``), else None."""
        ...

    def routes_of(self, study_uid: str) -> list[Route]:
        """Every client's route of a study with this UID."""
        ...

    def insert_route(
        self, client: str, study_uid: str, worker: str, at: float, pool: str = ""
    ) -> Route:
        """Record a new route of a study in ``pool`` unless it has one; the route that stands."""
        ...

    def create_route(self, client: str, study_uid: str, pool: str, choice: Choice) -> Placement:
        """The route that stands, else a new one to the least-loaded of ``choice``'s
        candidates (every node's open studies count), chosen and written in one transaction
        under the pool's lock; ``choice.removed``: the gone worker of the caller's route, to
        move it from (see :mod:`wolfpacs.state.placement`)."""
        ...

    def owners(self, study_uid: str, worker: str) -> list[str]:
        """The clients whose study ``study_uid`` was given to ``worker``, now or before a move."""
        ...

    def holders(self, study_uid: str, worker: str) -> list[tuple[str, str]]:
        """(client, pool) of each route of ``study_uid`` given to ``worker``, now or before
        a move: where its results count."""
        ...

    def get_series(self, client: str, study_uid: str, series_uid: str) -> dict[str, Any] | None:
        """The decision kept for a series: ``pool``, ``action``, ``rule``, ``decided_at``."""
        ...

    def decide_series(
        self,
        client: str,
        study_uid: str,
        series_uid: str,
        decision: dict[str, Any],
    ) -> dict[str, Any]:
        """Keep a series' decision unless it has one (insert-if-absent); the one that stands."""
        ...

    def open_studies(self, workers: list[str], cutoff: float) -> dict[str, int]:
        """How many studies each worker has open: active since ``cutoff`` or still queued to it."""
        ...

    def move_studies(  # noqa: PLR0917 -- positional: the store actor's requests carry no keywords
        self,
        worker: str,
        to: str,
        studies: list[str] | None = None,
        cutoff: float = 0.0,
        client: str | None = None,
        origin: str | None = None,
    ) -> list[dict[str, Any]]:
        """Re-route ``worker``'s studies (those given, or those open) to ``to``; what moved.

        With ``origin``, a move is recorded in the runtime changes (kind
        ``move``) in the same transaction, for the other nodes."""
        ...

    # -- the queue ---------------------------------------------------------------------

    def enqueue(self, item: QueueItem) -> int:
        """Add a queue row and count the instance in; its row id (idempotent by path)."""
        ...

    def enqueue_received(self, item: QueueItem) -> str | None:
        """:meth:`enqueue` a received instance; the worker its study moved to meanwhile, if any."""
        ...

    def enqueue_result(self, item: QueueItem, worker: str) -> float | None:
        """:meth:`enqueue` a derived instance ``worker`` sent; if it is its route's first
        result (from the worker the last delivery reached, or the route's worker), the
        seconds since that delivery, else None (see :mod:`wolfpacs.state.results`)."""
        ...

    def next_items(self, target: str, limit: int = 32, after_id: int = 0) -> list[QueueItem]:
        """The oldest rows owed to ``target``, leaving out those of studies moved away."""
        ...

    def delivered(self, item_id: int, at: float | None = None) -> bool:
        """The target answered success: drop the row, count the delivery (once); False:
        no such row of this node's (counted already, or adopted: leave its file)."""
        ...

    def delivered_next(
        self, item_ids: list[int], target: str, limit: int = 32
    ) -> tuple[list[int], list[QueueItem]]:
        """:meth:`delivered` for each of ``item_ids`` (one commit), then :meth:`next_items`:
        the ids whose rows went (only their files are the caller's to remove), the next."""
        ...

    def moved_items(self, target: str, limit: int = 256) -> list[tuple[QueueItem, str]]:
        """Queued rows of ``target`` whose study now routes elsewhere, with that worker."""
        ...

    def retarget(self, item_id: int, target: str, path: str) -> bool:
        """Point this node's row at another target and file; False: no such row of its own."""
        ...

    def repath(self, old: str, new: str) -> bool:
        """Point the row of spool file ``old`` at ``new``; whether there was one."""
        ...

    def remove_item(self, item_id: int) -> bool:
        """Drop a row whose file goes to ``dead/``; False: no such row of this node's."""
        ...

    def failed_attempt(self, item_id: int, error: str) -> int:
        """Count a failure answer for one instance; the attempts so far."""
        ...

    def items_of(self, target: str) -> list[QueueItem]: ...

    def queue_stats(self) -> dict[str, dict[str, Any]]:
        """Per target: its kind, queued instances, bytes, oldest enqueue time."""
        ...

    def queued_paths(self, all_nodes: bool = False) -> set[str]:
        """The spool paths of this node's rows (``all_nodes``: of every node's)."""
        ...

    def drop_missing(self, paths: set[str]) -> int:
        """Remove the rows of these spool paths (their files are gone); how many."""
        ...

    # -- studies, for the shell --------------------------------------------------------

    def study(self, study_uid: str) -> list[dict[str, Any]]:
        """Every client's study with this UID, each with what it still has queued."""
        ...

    def studies(
        self, worker: str | None = None, client: str | None = None, limit: int = 50
    ) -> list[dict[str, Any]]:
        """The most recently routed studies, of a worker or a client if given."""
        ...

    def open_studies_of(self, column: str, name: str, cutoff: float) -> int:
        """Studies of a client or worker (``column``) active since ``cutoff`` or queued."""
        ...

    def count_studies(self) -> int: ...

    # -- results -----------------------------------------------------------------------

    def awaiting_results(self, pools: list[str]) -> list[dict[str, Any]]:
        """The routes of ``pools`` (and those from before pools) awaiting a result: each
        ``client``, ``study_uid``, ``pool``, ``worker`` (the last delivery's),
        ``delivered_at``, ``overdue_at``; oldest delivery first."""
        ...

    def mark_overdue(
        self, routes: list[tuple[str, str, str]], at: float
    ) -> list[tuple[str, str, str]]:
        """Note (client, study_uid, pool) routes as seen overdue, once each; those noted now."""
        ...

    # -- retention ---------------------------------------------------------------------

    def purge(self, cutoff: float, limit: int = 500, dry_run: bool = False) -> int:
        """Forget up to ``limit`` studies idle since ``cutoff`` and not queued; how many."""
        ...

    def compact_runtime_changes(self, dry_run: bool = False) -> int:
        """Drop each runtime change a later one of the same entry overrides; how many."""
        ...

    # -- workers and runtime changes ---------------------------------------------------

    def worker_states(self) -> dict[str, str]: ...

    def set_worker_state(self, name: str, state: str, at: float | None = None) -> None: ...

    def delete_worker_state(self, name: str) -> None: ...

    def runtime_changes(self) -> list[tuple[str, str, dict[str, Any] | None]]: ...

    def changes_since(self, seq: int) -> list[tuple[int, str, str, dict[str, Any] | None]]:
        """The runtime changes after ``seq``: (seq, kind, name, table), in ``seq`` order.

        A change commits only after every change of a lower ``seq`` has: a
        reader that has seen ``seq`` n never finds a lower one later."""
        ...

    def last_change(self) -> int:
        """The latest runtime change's ``seq`` (0: none yet); a cheap look for a poll."""
        ...

    def add_runtime_change(self, kind: str, name: str, table: dict[str, Any] | None) -> None:
        """Append a runtime change to the history (other nodes are notified at commit)."""
        ...

    # -- nodes' leases (wolfpacs.state.leases) -------------------------------------------

    def register_node(self, lease_seconds: float, shared_spool: bool = False) -> int:
        """Start this node's lease with a new epoch (the fencing token); that epoch.
        ``shared_spool``: other nodes may adopt its queue once its lease expires."""
        ...

    def renew_lease(self, epoch: int, lease_seconds: float) -> bool:
        """Extend this node's lease if ``epoch`` is still its own; False: it was adopted."""
        ...

    def adopt_expired(self, epoch: int, family: str = "") -> list[dict[str, Any]]:
        """Take the queues of nodes whose lease expired (only ``family`` and its processes
        ``<family>.<n>``, if given); each: ``node_id``, ``epoch``, ``rows``, ``targets``. Nothing if
        ``epoch`` is not this node's, or its lease lapsed."""
        ...

    def forget_node(self, node_id: str) -> dict[str, Any]:
        """Forget a dead node that owns no queue rows; raises ``ValueError`` (the reason) for
        one unknown, alive, or still owning rows."""
        ...

    def nodes(self) -> list[dict[str, Any]]:
        """Every node: ``node_id``, ``state`` (alive|dead), ``epoch``, ``started_at``,
        ``last_heartbeat``, ``expires_at``, ``shared_spool``, ``queued``, ``adopted_by``,
        ``adopted_at``, ``adopted_from``."""
        ...

    def ping(self) -> bool:
        """Take the write lock and let it go: the store can be written to now."""
        ...


class Backend(Store, Protocol):
    """A store the store actor owns: opened in its thread, closed when it ends."""

    def open(self) -> None:
        """Connect, and bring the schema up to date (:mod:`wolfpacs.state.schema`)."""
        ...

    def close(self) -> None: ...

    def is_broken(self, exc: BaseException) -> bool:
        """Whether ``exc``, raised by an operation, means this backend cannot go on."""
        ...

    def describe(self) -> dict[str, Any]:
        """Where it keeps its data, and how (plain data, for ``inspect store``)."""
        ...


# The names a store actor answers to: Store's operations, and nothing else (not ``close``).
OPERATIONS = frozenset(
    name for name, value in vars(Store).items() if callable(value) and not name.startswith("_")
)
