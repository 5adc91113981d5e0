"""The options of a chaos run (:mod:`wolfpacs.testing.chaos`), checked together."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

__all__ = ["Options"]


@dataclass(frozen=True)
class Options:
    instances: int = 300
    studies: int = 10
    clients: int = 2
    workers: int = 3
    seed: int = 1
    duration: float = 60.0  # seconds of faults; sending may go on a little longer
    faults: int = 10
    kills: int = 1
    size: int = 32  # rows = columns of each image
    data_dir: Path | None = None  # the node's; default: in the run's directory
    power_cut: Path | None = None  # a LazyFS FIFO: each kill -9 also drops every unsynced write
    durability: str = "fsync"
    nodes: int = 1
    store: str = "sqlite"  # or a postgresql:// URL, which several nodes need (and share)
    store_restart: str | None = None  # a shell command that restarts the store's server: a fault
    lease_seconds: float = 3.0  # with several nodes: a killed node's queue is adopted after it
    processes: int = 1  # [node] processes of each node; > 1: its processes are killed too

    def check(self) -> None:
        """Raises ValueError for options that cannot run together."""
        if self.nodes < 1 or self.processes < 1:
            raise ValueError("--nodes and --processes must be at least 1")
        if self.nodes > 1 and not self.store.startswith("postgresql"):
            raise ValueError("several nodes share a PostgreSQL store: give --store postgresql://…")
        if self.nodes > 1 and (self.data_dir is not None or self.power_cut is not None):
            raise ValueError("--data-dir and --power-cut are for a run of one node")
        if self.store_restart and not self.store.startswith("postgresql"):
            raise ValueError("--store-restart restarts a PostgreSQL server: give --store too")
