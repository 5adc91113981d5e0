"""Counters since the node started: associations, instances and bytes, dead letters.

One :class:`Counters` per node, shared by the listeners, receivers and
senders that count into it (a lock-guarded dict: counting must never wait
on an actor's inbox). It outlives every actor restart; it does not outlive
the process.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from typing import Any

__all__ = ["Counters"]


class Counters:
    """Named counters; a name is a dotted path, e.g. ``in.outside.instances``."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[str, int] = defaultdict(int)
        self.started = time.time()

    def add(self, name: str, amount: int = 1) -> None:
        with self._lock:
            self._counts[name] += amount

    def get(self, name: str) -> int:
        with self._lock:
            return self._counts.get(name, 0)

    def snapshot(self) -> dict[str, Any]:
        """Every counter, and the seconds since the node started."""
        with self._lock:
            counts = dict(self._counts)
        return {"since": self.started, "uptime_s": time.time() - self.started, "counters": counts}
