"""Gauges read at scrape time: queues, workers and restarts, through the operator's verbs.

Registered in a node's :class:`~wolfpacs.node.metrics.Metrics` registry by
:mod:`wolfpacs.ops.operations`, so that ``/metrics`` shows the present
beside the counters, from the same source as ``wolfpacs ctl``.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

if TYPE_CHECKING:
    from collections.abc import Iterator

    from wolfpacs.ops.admin import Admin

__all__ = ["NodeCollector"]

logger = logging.getLogger(__name__)


class NodeCollector:
    """Gauges read at scrape time from the node, through the same verbs as the shell."""

    def __init__(self, admin: Admin) -> None:
        self.admin = admin

    def describe(self) -> list[Any]:
        # Without this, registering the collector would call collect(): it would ask a
        # node that has not started yet, and wait for it.
        return []

    def collect(self) -> Iterator[Any]:
        try:
            queues = self.admin.call("queues")
            workers = self.admin.call("workers")
            tree = self.admin.call("tree")
        except Exception as exc:  # a node between two lives of an actor: no gauges this time
            logger.info("metrics: node state not read: %s", exc)
            return
        depth = GaugeMetricFamily(
            "wolfpacs_queue_instances", "Instances queued", labels=["target", "kind"]
        )
        size = GaugeMetricFamily("wolfpacs_queue_bytes", "Bytes queued", labels=["target", "kind"])
        age = GaugeMetricFamily(
            "wolfpacs_queue_oldest_seconds", "Age of the oldest queued instance",
            labels=["target", "kind"],
        )  # fmt: skip
        for q in queues:
            depth.add_metric([q["target"], q["kind"]], q["instances"])
            size.add_metric([q["target"], q["kind"]], q["bytes"])
            age.add_metric([q["target"], q["kind"]], q["oldest_age_s"] or 0.0)
        yield from (depth, size, age)
        state = GaugeMetricFamily("wolfpacs_worker_state", "1 for the state a worker is in",
                                  labels=["worker", "state"])  # fmt: skip
        load = GaugeMetricFamily("wolfpacs_worker_open_studies", "Open studies", labels=["worker"])
        for w in workers:
            state.add_metric([w["name"], w["state"]], 1)
            load.add_metric([w["name"]], w["open_studies"])
        yield from (state, load)
        restarts = CounterMetricFamily(
            "wolfpacs_actor_restarts", "Restarts by supervisors, by kind of actor",
            labels=["actor_type"],
        )  # fmt: skip
        for kind, n in sorted(_restarts_by_type(tree).items()):
            restarts.add_metric([kind], n)
        yield restarts


def _restarts_by_type(tree: dict[str, Any]) -> dict[str, int]:
    """``sender:gpu-a`` counts as a ``sender``; the root and sub-supervisors by their ids."""
    counts: dict[str, int] = {}
    for child in tree.get("children") or []:
        kind = child["id"].split(":", 1)[0]
        counts[kind] = counts.get(kind, 0) + int(child.get("restarts") or 0)
        for sub, n in _restarts_by_type(child).items():
            counts[sub] = counts.get(sub, 0) + n
    return counts
