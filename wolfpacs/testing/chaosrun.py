"""The parts of a chaos run (:mod:`wolfpacs.testing.chaos`): its options, and each node of it.

A node of the run is a ``wolfpacs run`` subprocess (so that it can be
``kill -9``-ed) with its own ports, files and log; with ``processes`` > 1,
that process is the node's process supervisor and its children are killed
one at a time too (``ctl kill process:<n>``).
"""

from __future__ import annotations

import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from wolfpacs.ops.control import ControlClient
from wolfpacs.testing.peers import free_port, wait_port

__all__ = ["NAMES", "NodeRun", "Options"]


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


NAMES = "abcdefghijklmnopqrstuvwxyz"


class NodeRun:
    """One node of the run: its ports, files and ``wolfpacs run`` process."""

    def __init__(self, name: str, root: Path, data_dir: Path, solo: bool) -> None:
        self.name = name
        self.outside, self.inside = free_port(), free_port()
        self.data_dir = data_dir
        # (one node keeps the names a run of one node always had)
        self.config = root / ("chaos.toml" if solo else f"{name}.toml")
        self.socket = root / ("control.sock" if solo else f"{name}.sock")  # never on FUSE
        self.log = root / ("node.log" if solo else f"{name}.log")
        self.process: subprocess.Popen[bytes] | None = None
        self.restarts_now: dict[str, int] = {}  # the restart counts of its present life
        self.down = False  # killed, and not started again yet (on purpose)

    def start(self) -> None:
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "wolfpacs", "run", "--config", str(self.config)],
                stdout=log, stderr=log,
            )  # fmt: skip
        wait_port(self.outside, timeout=60)
        wait_port(self.inside, timeout=60)
        self.down = False

    @property
    def exited(self) -> bool:
        """It ended by itself (not killed on purpose)."""
        return not self.down and self.process is not None and self.process.poll() is not None

    def kill(self) -> None:
        assert self.process is not None
        self.process.kill()  # SIGKILL: no on_stop, no flush, nothing
        self.process.wait(30)
        self.down = True

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                self.process.kill()

    def control(self, timeout: float = 30, reconnect: float = 30) -> ControlClient:
        return ControlClient(self.socket, timeout=timeout, reconnect=reconnect)
