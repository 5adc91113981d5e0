"""A listener: one port (outside or inside), and the thread that accepts on it.

The listener actor owns the server socket and a linked thread that
accepts on it, and hands each connection to the port's
:class:`~wolfpacs.node.gate.Gate`, which negotiates and admits (or
refuses) it. The gate is the node's, not the listener's: a restarted
listener keeps counting what its predecessor let in. The outside
listener also sweeps ``incoming/`` of what a crash left there, and
``dead/`` of letters kept past ``dead_retention_days``.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import ssl
import threading
import time
from typing import TYPE_CHECKING, Any

from supervisors import SupervisedActor
from wolfpacs.dicom.tls import server_tls
from wolfpacs.node.messages import OUTSIDE

if TYPE_CHECKING:
    from wolfpacs.config.model import Config
    from wolfpacs.node.gate import Gate

__all__ = ["Listener"]

logger = logging.getLogger(__name__)

SWEEP_INTERVAL = 60.0  # seconds between two sweeps of incoming/
DEAD_PURGE_INTERVAL = 86400.0  # seconds between two purges of old dead letters
_SWEEP = "sweep"


class Listener(SupervisedActor):
    """Registered as ``listener:<side>``: binds in ``on_start`` (a busy port fails the start).

    ``gate``: the port's, kept by the node across the listener's restarts.
    """

    def __init__(self, gate: Gate) -> None:
        super().__init__()
        self.gate = gate
        self.side = gate.side
        self.live = gate.live
        self.registry = gate.registry
        self.spool = gate.spool
        self.server: socket.socket | None = None
        self._closing = threading.Event()
        self._dead_purged_at = -DEAD_PURGE_INTERVAL  # the first sweep purges

    @property
    def config(self) -> Config:
        return self.live.get()

    @property
    def port(self) -> int:
        node = self.config.node
        return node.outside_port if self.side == OUTSIDE else node.inside_port

    def on_start(self) -> None:
        self.registry.register(f"listener:{self.side}", self.actor_ref)
        node = self.config.node
        tls = node.tls_outside if self.side == OUTSIDE else node.tls_inside
        context = server_tls(node) if tls else None
        # A node of several processes: each binds the port too, and the kernel spreads
        # the connections among them (SO_REUSEPORT; only processes of one user may share).
        self.server = socket.create_server(
            (node.bind, self.port), backlog=128, reuse_port=node.processes > 1
        )
        self.start_thread(self._accept, self.server, self.gate, context,
                          name=f"listener-{self.side}")  # fmt: skip
        logger.info("%s port listening on %s:%d", self.side, node.bind, self.port)
        if self.side == OUTSIDE:  # one sweeper is enough: both ports share incoming/
            self.send_after(SWEEP_INTERVAL, _SWEEP)

    def _accept(self, server: socket.socket, gate: Gate, tls: ssl.SSLContext | None) -> None:
        """Accept connections until the server socket is closed (by a stop)."""
        while True:
            try:
                sock, address = server.accept()
            except OSError:
                if self._closing.is_set():
                    return
                raise  # the listener crashes; its supervisor binds afresh
            gate.take(sock, address, tls)

    def on_receive(self, message: object) -> object:
        if message == _SWEEP:
            node = self.config.node
            # A file nobody has written to for longer than any association may stay
            # silent belongs to a transfer that was cut short by a crash.
            self.spool.sweep_incoming(older_than=node.network_timeout + node.dimse_timeout)
            now = time.monotonic()
            if node.dead_retention_days and now - self._dead_purged_at > DEAD_PURGE_INTERVAL:
                self._dead_purged_at = now  # dead letters: a look a day is plenty
                self.spool.purge_dead(older_than=node.dead_retention_days * 86400)
            self.send_after(SWEEP_INTERVAL, _SWEEP)
            return None
        return super().on_receive(message)

    def on_stop(self) -> None:
        self._close()

    def on_failure(self, *_exc_info: object) -> None:
        self._close()

    def _close(self) -> None:
        """Stop accepting; open associations end with their receivers."""
        self._closing.set()
        server, self.server = self.server, None
        if server is not None:
            with contextlib.suppress(OSError):
                server.shutdown(socket.SHUT_RDWR)  # wakes the accepting thread
            server.close()

    def inspect(self) -> dict[str, Any]:
        return {
            "side": self.side,
            "address": f"{self.config.node.bind}:{self.port}",
            "open_associations": self.gate.open_associations(),
            "handshakes": self.gate.handshakes(),
        }
