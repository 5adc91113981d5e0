"""Restart intensity: how many restarts a supervisor allows in a sliding window."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

__all__ = ["RestartIntensity"]


class RestartIntensity:
    """OTP's intensity and period, counted on a monotonic clock.

    :meth:`add` records one restart and says whether it is still allowed:
    more than ``max_restarts`` within the last ``max_seconds`` is not, and the
    supervisor must give up (escalate) instead of restarting again.
    """

    def __init__(
        self,
        max_restarts: int,
        max_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_restarts = max_restarts
        self.max_seconds = max_seconds
        self._clock = clock
        self._times: deque[float] = deque()

    def add(self) -> bool:
        now = self._clock()
        self._times.append(now)
        self._expire(now)
        return len(self._times) <= self.max_restarts

    def count(self) -> int:
        """Restarts within the window, as of now."""
        self._expire(self._clock())
        return len(self._times)

    def _expire(self, now: float) -> None:
        while self._times and now - self._times[0] > self.max_seconds:
            self._times.popleft()
