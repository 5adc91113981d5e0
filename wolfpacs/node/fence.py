"""Generations of actor incarnations, so that one a supervisor gave up on can change nothing.

A supervisor that cannot stop a child in its shutdown time abandons it and
starts its successor; the abandoned thread runs on (Python cannot kill it).
A sender left so could mark rows delivered and take files out of the spool
under its successor. So each incarnation of a named actor gets a
:class:`Fence`, a new generation of its name, when it starts; the store
actor refuses any request that carries a fence which is no longer the
name's newest, and the spool's writers check theirs first. The stale actor
then crashes (:class:`StaleGenerationError`): loudly, never a silent success.
This is the fencing token of leases, within one process.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

__all__ = ["Fence", "Fences", "StaleGenerationError"]


class StaleGenerationError(RuntimeError):
    """A newer incarnation of this actor has started: this one may change nothing."""


class Fences:
    """The newest generation of each name; thread-safe, kept by the node across restarts."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._newest: dict[str, int] = {}

    def issue(self, name: str) -> Fence:
        """A new generation of ``name``: every older one is stale from now on."""
        with self._lock:
            generation = self._newest.get(name, 0) + 1
            self._newest[name] = generation
        return Fence(self, name, generation)

    def newest(self, name: str) -> int:
        with self._lock:
            return self._newest.get(name, 0)


@dataclass(frozen=True)
class Fence:
    """One incarnation's generation of its name."""

    fences: Fences
    name: str
    generation: int

    def check(self) -> None:
        """Raises:
        StaleGenerationError: a newer incarnation of the name has started.
        """
        newest = self.fences.newest(self.name)
        if newest != self.generation:
            raise StaleGenerationError(
                f"{self.name}: generation {self.generation} is stale (newest {newest}): "
                "its supervisor gave up on it and started another"
            )
