"""``wolfpacs run`` with ``[node] processes`` > 1: the process supervisor and the node's front.

The supervisor (:class:`wolfpacs.node.processes.ProcessSupervisor`) takes
data_dir's lock, resolves the node's id (kept in data_dir as for one
process), migrates a SQLite store's schema once (so that its children do
not race on it), starts the children, and serves the node's control socket
(:mod:`wolfpacs.ops.front`) and HTTP port (:mod:`wolfpacs.ops.frontweb`).
SIGTERM or SIGINT: the children are stopped in order, exit 0. Too many
deaths: exit 1 (:data:`~wolfpacs.node.processes.EXIT_ESCALATED`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from wolfpacs.cli.signals import stop_on_signals
from wolfpacs.config.model import SQLITE
from wolfpacs.node.identity import node_identity
from wolfpacs.node.processes import ProcessSpec, ProcessSupervisor, child_argv
from wolfpacs.node.tree import STATE_DB
from wolfpacs.ops.front import ChildControls, FrontControl
from wolfpacs.ops.frontweb import FrontWeb
from wolfpacs.state.lockfile import DataDirInUseError, take
from wolfpacs.state.spool import PROCESSES
from wolfpacs.state.sqlite import SQLiteStore

if TYPE_CHECKING:
    from wolfpacs.config.model import Config

__all__ = ["supervise"]

logger = logging.getLogger("wolfpacs")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _migrate(config: Config) -> None:
    """SQLite's schema, once, before the children open the file. (PostgreSQL's migrations
    take an advisory lock, and a server out of reach is the children's to wait for.)"""
    node = config.node
    if node.store == SQLITE:
        store = SQLiteStore(Path(node.data_dir).resolve() / STATE_DB, node.durability == "fsync")
        store.open()
        store.close()


def supervise(config_path: str, config: Config) -> int:
    """Run the node's processes until SIGTERM; the exit code (see the module).

    Raises what starting needs and cannot get (``SchemaError``,
    ``DriverMissingError``: the caller says so and exits 2).
    """
    node = config.node
    data_dir = Path(node.data_dir).resolve()
    try:
        lock = take(data_dir, f"{data_dir} is in use by another WolfPACS node")
    except DataDirInUseError as exc:
        logger.error("the node could not start: %s", exc)
        return 1
    try:
        node_id = node_identity(data_dir, node.node_id, node.durability == "fsync")
        _migrate(config)
        count = node.processes
        ports = {str(n): _free_port() for n in range(1, count + 1)}
        specs = [ProcessSpec(id, child_argv(config_path, int(id), port, node_id))
                 for id, port in ports.items()]  # fmt: skip
        supervisor = ProcessSupervisor(specs)
        stop = stop_on_signals()
        paths = {id: data_dir / PROCESSES / id / "control.sock" for id in ports}
        control = FrontControl(node, ChildControls(supervisor, paths))
        web = FrontWeb(node, supervisor, ports) if node.http_port else None
        control.start()
        if web is not None:
            web.start()
        supervisor.start()
        logger.info("WolfPACS node %s (%s) up: %d processes (%s), outside port %d, inside "
                    "port %d", node.ae_title, node_id, count,
                    ", ".join(f"{node_id}.{n}" for n in ports), node.outside_port,
                    node.inside_port)  # fmt: skip
        code = supervisor.run(stop)
        if code:
            logger.critical("stopped: %s", supervisor.escalated)
        else:
            logger.info("stopped: every process ended")
        control.close()
        if web is not None:
            web.close()
        return code
    finally:
        os.close(lock)
        with contextlib.suppress(Exception):
            sys.stdout.flush()
