"""Small SupervisedActors that record what happens to them, for the supervisor tests."""

from __future__ import annotations

import threading
from typing import Any

from supervisors import ChildSpec, SupervisedActor


class Journal:
    """A thread-safe list of (event, name) tuples, in the order they happened."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._events: list[tuple[str, str]] = []

    def add(self, event: str, name: str) -> None:
        with self._lock:
            self._events.append((event, name))

    def events(self, event: str | None = None) -> list[Any]:
        with self._lock:
            if event is None:
                return list(self._events)
            return [name for kind, name in self._events if kind == event]

    def clear(self) -> None:
        with self._lock:
            self._events.clear()


class Probe(SupervisedActor):
    """Records start and stop; can stop itself, refuse to start, or hang in on_stop."""

    def __init__(
        self,
        name: str,
        journal: Journal,
        fail_start: bool = False,
        hold_stop: threading.Event | None = None,
    ) -> None:
        super().__init__()
        self.name = name
        self.journal = journal
        self.fail_start = fail_start
        self.hold_stop = hold_stop

    def on_start(self) -> None:
        if self.fail_start:
            raise RuntimeError(f"{self.name} refuses to start")
        self.journal.add("start", self.name)

    def on_stop(self) -> None:
        if self.hold_stop is not None:
            self.hold_stop.wait()
        self.journal.add("stop", self.name)

    def on_receive(self, message: Any) -> Any:
        if message == "finish":
            self.stop()  # a normal exit of its own accord
        elif message == "raise":
            raise ValueError(f"{self.name} crashed")
        return None

    def ping(self) -> str:
        return self.name


def probe(name: str, journal: Journal, restart: str = "permanent", **kwargs: Any) -> ChildSpec:
    return ChildSpec(name, lambda: Probe.start(name, journal, **kwargs), restart=restart)
