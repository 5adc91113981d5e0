"""Results that never come back: which routes are overdue, computed when asked.

A pool with ``[[pools]] result_timeout`` > 0 tracks results. A route of
such a pool that awaits a result (:mod:`wolfpacs.state.results`: from its
last delivery to a worker until that worker's first result) is *overdue*
once its pool's ``result_timeout`` has passed since that delivery. Nothing
sweeps: :func:`overdue` compares the routes the store lists as awaiting
with the live config's timeouts and the clock, at the moment it is asked
(the ``overdue`` verb asks the store then; the gauge and the audit log use
the list the store actor publishes every ``PUBLISH_EVERY`` second, so a
delivery or a result shows there within that tick, and the time passing at
once). A route from before pools were kept (pool ``""``) counts in its
worker's pool; one whose worker is gone from the config cannot be placed
and is left out.

Plain functions of plain data: the store actor, the verbs and the gauges
share them, so that all three say the same.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Iterable

    from wolfpacs.config.model import Config

__all__ = ["Overdue", "overdue", "overdue_counts", "tracked_pools"]


@dataclass(frozen=True)
class Overdue:
    """A route past its pool's ``result_timeout``: ``key`` is the route's in the store
    ((client, study_uid, pool): pool ``""`` for one from before pools), ``pool`` the pool
    it counts in; ``noted``: the store has it as seen overdue already (logged)."""

    client: str
    study_uid: str
    pool: str
    worker: str
    delivered_at: float
    waiting_s: float
    key: tuple[str, str, str]
    noted: bool

    def shown(self) -> dict[str, Any]:
        """What the ``overdue`` verb says of it: exactly ``study`` (its StudyInstanceUID),
        ``client``, ``pool``, ``worker``, ``delivered_at``, ``waiting_s``."""
        return {"study": self.study_uid, "client": self.client, "pool": self.pool,
                "worker": self.worker, "delivered_at": self.delivered_at,
                "waiting_s": self.waiting_s}  # fmt: skip


def tracked_pools(config: Config) -> list[str]:
    """The pools that track results (``result_timeout`` > 0), by name."""
    return sorted(p.name for p in config.pools if p.result_timeout > 0)


def overdue(awaiting: Iterable[dict[str, Any]], config: Config, now: float) -> list[Overdue]:
    """The routes of ``awaiting`` (as the store's ``awaiting_results`` gives them) past
    their pool's ``result_timeout`` at ``now``, the longest waiting first."""
    timeouts = {name: config.pool_settings(name).result_timeout for name in tracked_pools(config)}
    found = []
    for row in awaiting:
        pool = row["pool"]
        if not pool:  # a route from before pools: its worker's pool, if it is still there
            worker = config.worker(row["worker"])
            if worker is None:
                continue
            pool = worker.pool
        timeout = timeouts.get(pool)
        waiting = now - row["delivered_at"]
        if timeout is None or waiting <= timeout:
            continue
        found.append(Overdue(
            row["client"], row["study_uid"], pool, row["worker"], row["delivered_at"], waiting,
            (row["client"], row["study_uid"], row["pool"]), row.get("overdue_at") is not None,
        ))  # fmt: skip
    found.sort(key=lambda o: (-o.waiting_s, o.client, o.study_uid, o.pool))
    return found


def overdue_counts(
    awaiting: Iterable[dict[str, Any]], config: Config, now: float
) -> dict[tuple[str, str], int]:
    """Overdue routes per (pool, worker): every worker of a tracking pool (0 if none),
    and any other a route names (a worker removed since)."""
    counts = {(pool, w.name): 0 for pool in tracked_pools(config) for w in config.pool(pool)}
    for route in overdue(awaiting, config, now):
        key = (route.pool, route.worker)
        counts[key] = counts.get(key, 0) + 1
    return counts
