"""Gauges read at scrape time: queues, workers, pools, peers, restarts and the spool's room.

Registered in a node's :class:`~wolfpacs.node.metrics.Metrics` registry by
:mod:`wolfpacs.ops.operations`. A scrape asks no actor: the queues, the
workers' states and loads, and the peers' health are the last values the
store, the router and the senders published on the metrics' board
(:mod:`wolfpacs.node.board`), so a blocked sender, router or store makes a
value old, never the scrape slow. Only the restarts come from the root's
``describe()``, waited for at most ``TREE_WAIT`` seconds, one ask at a time.

Nothing vanishes in silence: ``wolfpacs_gauge_unknown{source}`` is 1 while
a source's value is unknown (never published, or stale: its publisher is
blocked), and its gauges then show the last known value, or none if there
never was one; a worker whose state is unknown shows ``state="unknown"``.
Every configured target has its queue gauges, 0 when its queue is empty.
Every worker of a pool that tracks results has its overdue results, 0 when
none: computed at the scrape from the routes awaiting a result the store
last published and the live config's timeouts (:mod:`wolfpacs.node.results`).

A pool's reachable workers are those whose sender's last association or
C-ECHO succeeded (``wolfpacs_target_up`` 1); a worker whose health is not
known yet (its sender has had neither since it started) counts as not
reachable, so a pool is never called reachable on no evidence. The spool's
room is the spool's own count and limits, and the data_dir's free disk
(one ``statvfs``, cheap), read at the scrape.
"""

from __future__ import annotations

import logging
import shutil
import threading
import time
from typing import TYPE_CHECKING, Any

import pykka
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from wolfpacs.node.board import AWAITING, QUEUES, STALE_AFTER, WORKERS, Board
from wolfpacs.node.lease import NODES
from wolfpacs.node.messages import DRAINING, targets
from wolfpacs.node.results import overdue_counts

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from supervisors import Supervisor
    from wolfpacs.config.live import LiveConfig
    from wolfpacs.config.model import Config
    from wolfpacs.state.spool import Spool

__all__ = ["TREE_WAIT", "UNKNOWN", "NodeCollector"]

logger = logging.getLogger(__name__)

TREE_WAIT = 0.25  # seconds a scrape waits for the root's describe(): far below a scrape's
UNKNOWN = "unknown"  # a worker's state when the router has published none
RESTARTS = "restarts"  # the source of the restarts, in wolfpacs_gauge_unknown
DISK = "disk"  # the source of the free disk, in wolfpacs_gauge_unknown


class NodeCollector:
    """The gauges of one node: ``board`` as its actors publish it, ``live``'s targets and
    pools, ``root()``, the tree's root while it runs (for the restarts), and ``spool``, whose
    room they show (none without one). Thread-safe."""

    def __init__(
        self,
        board: Board,
        live: LiveConfig,
        root: Callable[[], pykka.ActorRef[Supervisor] | None],
        spool: Spool | None = None,
    ) -> None:
        self.board = board
        self.live = live
        self.root = root
        self.spool = spool
        self._free: int | None = None  # the last free disk read, shown while it cannot be
        self._lock = threading.Lock()
        self._asked: tuple[pykka.ActorRef[Supervisor], pykka.Future[Any]] | None = None
        self._restarts: dict[str, int] = {}  # the last known, shown while the root is busy

    def describe(self) -> list[Any]:
        # Without this, registering the collector would call collect() at once.
        return []

    def collect(self) -> Iterator[Any]:
        config = self.live.get()
        unknown = GaugeMetricFamily(
            "wolfpacs_gauge_unknown",
            "1 while a source's present is unknown (never published, or its publisher is "
            "blocked): its gauges show the last known value, or none",
            labels=["source"],
        )
        queues = self.board.read(QUEUES, STALE_AFTER)
        workers = self.board.read(WORKERS, STALE_AFTER)
        unknown.add_metric([QUEUES], 0 if queues.known else 1)
        unknown.add_metric([WORKERS], 0 if workers.known else 1)
        yield from _queues(config, queues.value or {})
        yield from _workers(config, queues.value or {}, workers.value, self._health)
        up = GaugeMetricFamily(
            "wolfpacs_target_up", "1 if a worker or destination answered its last "
            "association or C-ECHO, 0 if it did not", labels=["target", "kind"],
        )  # fmt: skip
        for target in targets(config):
            health = self._health(target.name)
            if health is not None:
                up.add_metric([target.name, target.kind], 1 if health else 0)
            unknown.add_metric([f"sender:{target.name}"], 0 if health is not None else 1)
        yield up
        yield from _pools(config, self._health)
        awaiting = self.board.read(AWAITING, STALE_AFTER)
        unknown.add_metric([AWAITING], 0 if awaiting.known else 1)
        yield _overdue(config, awaiting.value or [])
        # The lease actor publishes every third of a lease: stale after a lease, at least.
        nodes = self.board.read(NODES, max(STALE_AFTER, config.node.lease_seconds))
        unknown.add_metric([NODES], 0 if nodes.known else 1)
        yield _nodes(nodes.value)
        if self.spool is not None:
            free = _disk_free(self.spool)
            unknown.add_metric([DISK], 0 if free is not None else 1)
            self._free = free if free is not None else self._free
            yield from _room(self.spool, self._free)
        restarts = CounterMetricFamily(
            "wolfpacs_actor_restarts", "Restarts by supervisors, by kind of actor",
            labels=["actor_type"],
        )  # fmt: skip
        counts, known = self._restarts_now()
        for kind, n in sorted(counts.items()):
            restarts.add_metric([kind], n)
        unknown.add_metric([RESTARTS], 0 if known else 1)
        yield restarts
        yield unknown

    def _health(self, target: str) -> bool | None:
        """What ``target``'s sender last published: up, down, or None (not known)."""
        value = self.board.read(f"sender:{target}").value
        return value if isinstance(value, bool) else None

    def _restarts_now(self) -> tuple[dict[str, int], bool]:
        """The restarts by kind, and whether they are the present (else the last known).

        One ask at a time: a root that has not answered the last one gets no
        other (a scrape every few seconds must not fill a blocked root's inbox).
        """
        with self._lock:
            root = self.root()
            if root is None:
                return self._restarts, False
            if self._asked is None or self._asked[0] is not root:
                try:
                    self._asked = (root, root.proxy().describe())
                except pykka.ActorDeadError:
                    return self._restarts, False
            try:
                tree = self._asked[1].get(timeout=TREE_WAIT)
            except pykka.Timeout:
                return self._restarts, False  # still asked: its answer serves a later scrape
            except Exception as exc:  # the root ended meanwhile
                logger.info("metrics: restarts not read: %s", exc)
                self._asked = None
                return self._restarts, False
            self._asked = None
            self._restarts = _restarts_by_type(tree)
            return self._restarts, True


def _queues(config: Config, stats: dict[str, dict[str, Any]]) -> Iterator[GaugeMetricFamily]:
    """The queue gauges: every configured target (0 when empty), and any other with rows."""
    depth = GaugeMetricFamily(
        "wolfpacs_queue_instances", "Instances queued", labels=["target", "kind"]
    )
    size = GaugeMetricFamily("wolfpacs_queue_bytes", "Bytes queued", labels=["target", "kind"])
    age = GaugeMetricFamily(
        "wolfpacs_queue_oldest_seconds", "Age of the oldest queued instance",
        labels=["target", "kind"],
    )  # fmt: skip
    kinds = {t.name: t.kind for t in targets(config)}
    kinds.update({name: q["kind"] for name, q in stats.items()})
    now = time.time()
    for name, kind in sorted(kinds.items()):
        q = stats.get(name, {})
        depth.add_metric([name, kind], q.get("instances", 0))
        size.add_metric([name, kind], q.get("bytes", 0))
        age.add_metric([name, kind], now - q["oldest"] if q.get("oldest") else 0.0)
    yield from (depth, size, age)


def _workers(
    config: Config,
    stats: dict[str, dict[str, Any]],
    published: dict[str, Any] | None,
    health: Callable[[str], bool | None],
) -> Iterator[GaugeMetricFamily]:
    """State and load of each worker, as ``wolfpacs ctl workers`` shows them."""
    state = GaugeMetricFamily("wolfpacs_worker_state", "1 for the state a worker is in",
                              labels=["worker", "state"])  # fmt: skip
    load = GaugeMetricFamily("wolfpacs_worker_open_studies", "Open studies", labels=["worker"])
    states = (published or {}).get("states", {})
    loads = (published or {}).get("open_studies", {})
    for w in config.workers:
        shown = states.get(w.name, UNKNOWN)
        open_studies = loads.get(w.name, 0)
        if shown == DRAINING:
            idle = not open_studies and not stats.get(w.name, {}).get("instances")
            shown = "drained" if idle else DRAINING
        elif shown != UNKNOWN and health(w.name) is False:
            shown = "down"
        state.add_metric([w.name, shown], 1)
        if published is not None:
            load.add_metric([w.name], open_studies)
    yield from (state, load)


def _pools(config: Config, health: Callable[[str], bool | None]) -> Iterator[GaugeMetricFamily]:
    """Each pool's workers, and how many of them are reachable (health known and up)."""
    total = GaugeMetricFamily(
        "wolfpacs_pool_workers", "Workers configured in a pool, whatever their state",
        labels=["pool"],
    )  # fmt: skip
    reachable = GaugeMetricFamily(
        "wolfpacs_pool_reachable_workers",
        "Workers of a pool that answered their sender's last association or C-ECHO "
        "(wolfpacs_target_up 1), whatever their state; a worker whose health is not known yet "
        "counts as not reachable. A pool with none still takes new studies: they wait queued",
        labels=["pool"],
    )  # fmt: skip
    pools: dict[str, list[int]] = {p: [0, 0] for c in config.clients for p in c.pools}
    for w in config.workers:
        counts = pools.setdefault(w.pool, [0, 0])
        counts[0] += 1
        counts[1] += 1 if health(w.name) is True else 0
    for pool, (workers, up) in sorted(pools.items()):
        total.add_metric([pool], workers)
        reachable.add_metric([pool], up)
    yield from (total, reachable)


def _overdue(config: Config, awaiting: list[dict[str, Any]]) -> GaugeMetricFamily:
    """Each tracking pool's workers' overdue results, now (none tracked: no sample)."""
    gauge = GaugeMetricFamily(
        "wolfpacs_results_overdue", "Studies delivered to a worker whose result has not come "
        "back within their pool's result_timeout, per pool and worker",
        labels=["pool", "worker"],
    )  # fmt: skip
    for (pool, worker), n in sorted(overdue_counts(awaiting, config, time.time()).items()):
        gauge.add_metric([pool, worker], n)
    return gauge


def _nodes(nodes: list[dict[str, Any]] | None) -> GaugeMetricFamily:
    """The nodes sharing the store, alive (their lease runs) and dead; none before the
    lease actor's first look."""
    gauge = GaugeMetricFamily(
        "wolfpacs_nodes", "Nodes sharing the store, by state: alive while its lease runs",
        labels=["state"],
    )  # fmt: skip
    if nodes is not None:
        for state in ("alive", "dead"):
            gauge.add_metric([state], sum(1 for n in nodes if n["state"] == state))
    return gauge


def _disk_free(spool: Spool) -> int | None:
    """Free bytes of data_dir's file system, or None if it cannot be read."""
    try:
        return shutil.disk_usage(spool.root).free
    except OSError as exc:  # data_dir gone or unreadable: said by wolfpacs_gauge_unknown
        logger.info("metrics: free disk not read: %s", exc)
        return None


def _room(spool: Spool, free: int | None) -> Iterator[GaugeMetricFamily]:
    """The spool's bytes and limit, the free disk and the floor the spool keeps."""
    yield GaugeMetricFamily(
        "wolfpacs_spool_bytes", "Bytes of the instances queued in the spool",
        value=spool.queued_bytes,
    )  # fmt: skip
    yield GaugeMetricFamily(
        "wolfpacs_spool_max_bytes", "Bytes the spool may hold (spool_max_bytes), past which "
        "new instances are refused; 0: no limit but the disk", value=spool.max_bytes,
    )  # fmt: skip
    if free is not None:
        yield GaugeMetricFamily(
            "wolfpacs_disk_free_bytes", "Free bytes on the file system of data_dir", value=free
        )
    yield GaugeMetricFamily(
        "wolfpacs_disk_min_free_bytes", "Free disk the spool keeps (min_free_bytes): below it, "
        "new instances are refused; 0: the disk is not checked", value=spool.min_free,
    )  # fmt: skip


def _restarts_by_type(tree: dict[str, Any]) -> dict[str, int]:
    """``sender:gpu-a`` counts as a ``sender``; the root and sub-supervisors by their ids."""
    counts: dict[str, int] = {}
    for child in tree.get("children") or []:
        kind = child["id"].split(":", 1)[0]
        counts[kind] = counts.get(kind, 0) + int(child.get("restarts") or 0)
        for sub, n in _restarts_by_type(child).items():
            counts[sub] = counts.get(sub, 0) + n
    return counts
