"""The node's metrics: counters and latency histograms since it started, for Prometheus.

One :class:`Metrics` per node, in a prometheus_client registry of its own
(several nodes may share a process in tests). The listeners, receivers,
senders and router count into it through a few verbs with domain names;
``wolfpacs ctl stats`` and ``/metrics`` read the same objects, so there is
no second source of truth. Gauges that describe the present (queues,
restarts, workers) are read at scrape time by the operator's side
(:mod:`wolfpacs.ops.gauges`), registered in the same registry, from what the
actors publish on its :attr:`Metrics.board` (:mod:`wolfpacs.node.board`).
"""

from __future__ import annotations

import logging
import time
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    disable_created_metrics,
    generate_latest,
)

from wolfpacs.node.board import Board

__all__ = ["Metrics"]

logger = logging.getLogger(__name__)

# A *_created sample beside every counter doubles the output for what restarts tell anyway.
disable_created_metrics()  # type: ignore[no-untyped-call]  # prometheus_client's, unannotated

# Seconds: a fsync'ed spool write is milliseconds; a delivery waits for a peer, maybe long.
SPOOL_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
DELIVERY_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0, 3600.0)
# Seconds an AI worker takes to answer a study: from seconds to hours (result_timeout's range).
RESULT_BUCKETS = (1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 900.0, 1800.0, 3600.0,
                  7200.0, 14400.0)  # fmt: skip


class Metrics:
    """Counts what crosses the node. Thread-safe (prometheus_client's objects are)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._children: dict[tuple[int, tuple[str, ...]], Any] = {}  # see _child()
        self.started = time.time()
        self.board = Board()  # the present, as the actors publish it: the gauges read it
        r = self.registry
        self.associations = Counter(
            "wolfpacs_associations", "Associations by port and outcome, with the reason refused",
            ["side", "outcome", "reason"], registry=r,
        )  # fmt: skip
        self.instances = Counter(
            "wolfpacs_instances", "Instances received (in: outside/inside, by client or worker) "
            "and delivered (out: worker/destination, by target)",
            ["direction", "side", "peer"], registry=r,
        )  # fmt: skip
        self.bytes = Counter(
            "wolfpacs_bytes", "Bytes of those instances", ["direction", "side", "peer"], registry=r
        )
        self.statuses = Counter(
            "wolfpacs_cstore_statuses",
            "C-STORE statuses: answered by the node (in) and received from peers (out)",
            ["direction", "status"], registry=r,
        )  # fmt: skip
        self.dead = Counter(
            "wolfpacs_dead_letters", "Instances kept in dead/", ["reason"], registry=r
        )
        self.routes = Counter(
            "wolfpacs_routing_decisions", "New studies routed", ["client", "worker"], registry=r
        )
        self.discarded = Counter(
            "wolfpacs_discarded_instances",
            "Instances a rule discarded: answered success, forwarded nowhere",
            ["client"], registry=r,
        )  # fmt: skip
        self.spooled = Histogram(
            "wolfpacs_receive_to_spooled_seconds",
            "From a received C-STORE to its commit in the spool, before the answer",
            ["side"], buckets=SPOOL_BUCKETS, registry=r,
        )  # fmt: skip
        self.delivered_after = Histogram(
            "wolfpacs_spooled_to_delivered_seconds",
            "From an instance's commit in the spool to its delivery",
            ["kind"], buckets=DELIVERY_BUCKETS, registry=r,
        )  # fmt: skip
        self.result_latency = Histogram(
            "wolfpacs_result_latency_seconds",
            "From the last delivery of a study's instance to a worker to the first result "
            "(derived instance) of that study from it, per pool and worker (each study once)",
            ["pool", "worker"], buckets=RESULT_BUCKETS, registry=r,
        )  # fmt: skip

    # -- what the actors say ------------------------------------------------------------

    def _child(self, metric: Any, *labels: str) -> Any:
        """``metric.labels(*labels)``, remembered: it is looked up several times an instance."""
        key = (id(metric), labels)
        child = self._children.get(key)
        if child is None:
            child = self._children.setdefault(key, metric.labels(*labels))
        return child

    def association(self, side: str, outcome: str, reason: str = "") -> None:
        self.associations.labels(side, outcome, reason).inc()

    def received(self, side: str, peer: str, size: int, seconds: float) -> None:
        self._child(self.instances, "in", side, peer).inc()
        self._child(self.bytes, "in", side, peer).inc(size)
        self._child(self.spooled, side).observe(seconds)

    def answered(self, status: int) -> None:
        self._child(self.statuses, "in", f"0x{status:04X}").inc()

    def peer_answered(self, status: int) -> None:
        self._child(self.statuses, "out", f"0x{status:04X}").inc()

    def delivered(self, kind: str, target: str, size: int, queued_seconds: float) -> None:
        self._child(self.instances, "out", kind, target).inc()
        self._child(self.bytes, "out", kind, target).inc(size)
        self._child(self.delivered_after, kind).observe(max(queued_seconds, 0.0))

    def result(self, pool: str, worker: str, seconds: float) -> None:
        """A study's first result from ``worker``, ``seconds`` after its last delivery."""
        self._child(self.result_latency, pool, worker).observe(max(seconds, 0.0))

    def dead_letter(self, reason: str) -> None:
        self.dead.labels(reason).inc()

    def routed(self, client: str, worker: str) -> None:
        self.routes.labels(client, worker).inc()

    def discard(self, client: str) -> None:
        self._child(self.discarded, client).inc()

    # -- reading ------------------------------------------------------------------------

    def value(self, name: str, **labels: str) -> float:
        """One sample's value summed over unnamed labels (0 if never counted)."""
        total = 0.0
        for family in self.registry.collect():
            for sample in family.samples:
                if sample.name == name and all(
                    sample.labels.get(k) == v for k, v in labels.items()
                ):
                    total += sample.value
        return total

    def snapshot(self) -> dict[str, Any]:
        """Every counter sample, as ``name{label=value,...}: count`` (plain data)."""
        counts: dict[str, float] = {}
        for family in self.registry.collect():
            if family.type != "counter":
                continue
            for sample in family.samples:
                if not sample.name.endswith("_total") or not sample.value:
                    continue
                labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()) if v)
                counts[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
        return {"since": self.started, "uptime_s": time.time() - self.started, "counters": counts}

    def exposition(self) -> bytes:
        """The Prometheus text format of everything, the collectors' gauges included."""
        return generate_latest(self.registry)
