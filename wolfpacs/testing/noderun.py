"""A node of a chaos run: its ports, its files and its ``wolfpacs run`` process.

:class:`NodeRun` starts the node as a subprocess (so that it can be
``kill -9``-ed), waits for both its ports, kills it, stops it with SIGTERM,
and gives a control client of it. Several make a run of several nodes
(:mod:`wolfpacs.testing.chaos`).
"""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

from wolfpacs.ops.control import ControlClient
from wolfpacs.testing.peers import free_port, wait_port

__all__ = ["NAMES", "NodeRun"]

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
