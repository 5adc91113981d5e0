"""The board: values the actors publish, for readers that must never wait on an actor.

An actor writes its present here (the store its queues, the router its
workers' states and loads, a sender its peer's health), when it changes or
on a timer of its own; a reader (``/metrics``'s gauges) takes the last value
and its age without asking anyone, so a blocked or restarting actor can
make a value old, never make its reader wait.

A value never published, or older than the ``max_age`` its reader allows
(its publisher has missed several of its own ticks: it is blocked), is
*unknown*: the reader says so (``wolfpacs_gauge_unknown``) rather than
dropping it or passing an old value off as the present.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["AWAITING", "PUBLISH_EVERY", "QUEUES", "STALE_AFTER", "WORKERS", "Board", "Reading"]

# The keys of the values published on a timer; a sender publishes under its own name.
QUEUES = "queues"  # by the store: queue_stats(), per target
WORKERS = "workers"  # by the router: {"states": {name: state}, "open_studies": {name: n}}
AWAITING = "awaiting"  # by the store: awaiting_results() of the pools that track results
PUBLISH_EVERY = 1.0  # seconds between two publications of a timed value
# A timed value older than this is unknown: its publisher has missed ten ticks.
STALE_AFTER = 10 * PUBLISH_EVERY


@dataclass(frozen=True)
class Reading:
    """A value as a reader finds it: the last one published (None if never), and whether
    it is still the present (``known``): published, and no older than allowed."""

    value: Any
    age: float | None
    known: bool


class Board:
    """A thread-safe map of published values; writers never wait for readers, nor back."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._values: dict[str, tuple[Any, float]] = {}

    def publish(self, key: str, value: Any) -> None:
        """Make ``value`` the present of ``key`` (plain data: readers share it, never copy)."""
        at = self._clock()
        with self._lock:
            self._values[key] = (value, at)

    def read(self, key: str, max_age: float | None = None) -> Reading:
        """``key``'s last value; unknown if never published or older than ``max_age`` s."""
        with self._lock:
            found = self._values.get(key)
        if found is None:
            return Reading(None, None, known=False)
        value, at = found
        age = self._clock() - at
        return Reading(value, age, known=max_age is None or age <= max_age)
