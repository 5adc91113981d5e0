"""A node in-process between pynetdicom peers: two workers and a PACS, on loopback."""

from __future__ import annotations

import threading
from dataclasses import replace
from pathlib import Path
from typing import Any

from wolfpacs.cli.demo import CLIENT_AE, demo_config
from wolfpacs.config.model import Pool
from wolfpacs.node import Node
from wolfpacs.ops import Operations
from wolfpacs.testing.peers import SimulatedPACS, SimulatedWorker, free_port, send_files
from wolfpacs.testing.synthetic import write_study

__all__ = ["CLIENT_AE", "World"]


class World:
    def __init__(self, root: Path, pools: tuple[Pool, ...] = (), **node_settings: object) -> None:
        self.root = root
        self.outside, self.inside = free_port(), free_port()
        self.pacs = SimulatedPACS("PACS")
        self.workers = [SimulatedWorker(f"GPU_{x}", self.inside, quiet=0.2) for x in "AB"]
        config = demo_config(root / "data", self.pacs, self.workers, self.outside, self.inside)
        settings = {
            "retry_initial": 0.05, "retry_max": 0.2, "idle_release": 0.2,
            "http_port": free_port(), "fault_injection": True, **node_settings,
        }  # fmt: skip
        self.config = replace(config, node=replace(config.node, **settings), pools=pools)
        self.node = Node(self.config, operations=Operations)
        for peer in (self.pacs, *self.workers):
            peer.start()
        self.node.start()

    def study(self, name: str, **kwargs: object) -> list[Path]:
        return write_study(self.root / name, **kwargs)

    def send(self, files: list[Path], called: str = CLIENT_AE) -> list[int]:
        return send_files(files, self.outside, called)

    def at_workers(self) -> dict[str, set[str]]:
        """Study → the workers (AE titles) that hold any of its instances."""
        where: dict[str, set[str]] = {}
        for worker in self.workers:
            for item in worker.received:
                where.setdefault(item.study_uid, set()).add(worker.ae_title)
        return where

    def delivered(self) -> int:
        return sum(len(w.received) for w in self.workers)

    def actor(self, name: str):
        return self.node.registry.whereis(name)

    def stop(self) -> None:
        # Each pynetdicom server takes up to 0.5 s to stop: stop them side by side.
        stoppers = [threading.Thread(target=p.stop) for p in (self.node, *self.workers, self.pacs)]
        for thread in stoppers:
            thread.start()
        for thread in stoppers:
            thread.join(30)

    def admin(self, verb: str, **args: Any) -> Any:
        """A verb, in-process, as the control socket would run it."""
        assert isinstance(self.node.operations, Operations)
        return self.node.operations.admin.call(verb, args)

    def restart(self) -> None:
        """Stop the node and start a new one on the same data_dir and config file."""
        self.node.stop()
        self.node = Node(self.config, operations=Operations)
        self.node.start()
