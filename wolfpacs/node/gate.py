"""A port's gate: who may associate on it, how many at once, and the handshake before.

The :class:`Gate` of a port counts what is open on it: connections not yet
associated (in all, and per source address) and associations (in all, and
per client or worker). It outlives the port's listener: a node makes one
per port and hands it to each incarnation of the listener, so a restarted
listener counts the associations its predecessor accepted, and their
receivers, when they end, free the slots on the gate that counts them.

Each connection gets a short-lived thread that negotiates the association
(:func:`wolfpacs.dicom.acse.accept`) by a deadline, ``acse_timeout`` from
the accept: a peer that trickles its request a byte at a time is closed
by then, whatever it sends. The gate tells clients (by called AE title)
and workers (by calling AE title) from strangers, rejects strangers and
peers over their limits with A-ASSOCIATE-RJ, and hands each accepted
association to a new receiver, which serves it from then on.
"""

from __future__ import annotations

import ipaddress
import itertools
import logging
import socket
import ssl
import threading
import time
from typing import TYPE_CHECKING, Any

from supervisors import ChildSpec, Registry, Restart, Supervisor, monitor
from wolfpacs.config.secrets import masked
from wolfpacs.dicom import acse
from wolfpacs.dicom.association import Association
from wolfpacs.dicom.errors import AssociationError
from wolfpacs.dicom.pdu import (
    REJECT_CALLED_AE,
    REJECT_CALLING_AE,
    REJECT_LIMIT,
    REJECT_NO_REASON,
)
from wolfpacs.dicom.sockets import nodelay
from wolfpacs.dicom.tls import Certificate, pinned_to, presented
from wolfpacs.node.messages import OUTSIDE, Peer, shown_called_ae
from wolfpacs.node.metrics import Metrics
from wolfpacs.node.receiver import Receiver

if TYPE_CHECKING:
    from wolfpacs.config.live import LiveConfig
    from wolfpacs.config.model import Client, Worker
    from wolfpacs.node.store import StoreClient
    from wolfpacs.state.spool import Spool

__all__ = ["Gate"]

logger = logging.getLogger(__name__)

ASK_TIMEOUT = 30.0  # seconds a C-STORE waits for its receiver (it may be fsyncing)
MAX_HANDSHAKES = 256  # connections not yet associated on a port; more are closed at once
REFUSAL_LOG_INTERVAL = 10.0  # seconds: a flood of refused connections logs one line in each

_receiver_ids = itertools.count(1)


def _allowed(address: str, networks: tuple[Any, ...]) -> bool:
    if not networks:
        return True
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in net for net in networks)


class Gate:
    """Admission and service of one listener's associations; safe to call from any thread."""

    def __init__(
        self,
        side: str,
        live: LiveConfig,
        registry: Registry,
        spool: Spool,
        store: StoreClient,
        *,
        metrics: Metrics,
    ) -> None:
        self.side = side
        self.live = live
        self.registry = registry
        self.spool = spool
        self.store = store
        self.metrics = metrics
        self._lock = threading.Lock()
        self._open: dict[int, Association | None] = {}  # slot -> its association
        self._per_peer: dict[str, int] = {}  # open associations per client or worker
        self._handshakes = 0  # connections not yet associated...
        self._handshakes_from: dict[str, int] = {}  # ...and per source address (none: no key)
        self._ids = itertools.count(1)
        self._refusals = _Refusals(side)

    def open_associations(self) -> int:
        with self._lock:
            return len(self._open)

    def handshakes(self) -> int:
        """Connections not yet associated (or rejected) on the port."""
        with self._lock:
            return self._handshakes

    def identify(
        self,
        calling: str,
        called: str,
        address: str,
        port: int,
        certificate: Certificate | None = None,
    ) -> Peer | tuple[int, int, int]:
        """The peer, or the A-ASSOCIATE-RJ to answer (and the reason is logged).

        Read from the live config at each association: a client or worker added
        at runtime is known from its first association on. ``certificate``:
        what the peer presented on a TLS port, held to its pin if it has one.
        """
        why, rj, reason = "", None, ""
        config = self.live.get()
        peer: Client | Worker | None
        if self.side == OUTSIDE:
            peer = next((c for c in config.clients if c.ae_title == called), None)
            if peer is None:
                why = f"called AE {masked(called)!r} is no client's"
                rj, reason = REJECT_CALLED_AE, "called_ae"
            elif peer.calling_ae_titles and calling not in peer.calling_ae_titles:
                why = f"calling AE {calling!r} is not one of client {peer.name}'s"
                rj, reason = REJECT_CALLING_AE, "calling_ae"
        else:
            peer = next((w for w in config.workers if w.ae_title == calling), None)
            if peer is None:
                why = f"calling AE {calling!r} is no worker's"
                rj, reason = REJECT_CALLING_AE, "calling_ae"
        if peer is not None and rj is None:
            kind = "client" if self.side == OUTSIDE else "worker"
            if not _allowed(address, peer.allow):
                why = f"address {address} is not in {kind} {peer.name}'s allow list"
                rj, reason = REJECT_NO_REASON, "address"
            elif not pinned_to(certificate, peer.tls_subject, peer.tls_fingerprint):
                why = f"its TLS certificate is not {kind} {peer.name}'s (the one pinned)"
                rj, reason = REJECT_NO_REASON, "certificate"
            else:
                return Peer(self.side, peer.name, calling, called, address, port)
        logger.warning(
            "%s association from %s@%s:%d to %r rejected: %s",
            self.side, calling, address, port, shown_called_ae(self.side, called), why,
            extra={"event": "association", "side": self.side, "outcome": "rejected", "why": why},
        )  # fmt: skip
        self.metrics.association(self.side, "rejected", reason)
        assert rj is not None
        return rj

    def _reserve(self, peer: Peer) -> int | str:
        """A slot for an association of ``peer`` (its key), or why it may not open now."""
        node = self.live.get().node
        try:
            self.spool.check_room(0)
        except OSError as exc:  # refuse whole associations while the disk is full
            return str(exc.strerror or exc)
        with self._lock:
            open_now, per_peer = len(self._open), self._per_peer.get(peer.name, 0)
            if open_now >= node.max_associations:
                return f"{open_now} associations open on the {self.side} port (max_associations)"
            if per_peer >= node.max_associations_per_client:
                return f"{peer.name} already has {per_peer} associations open (the limit)"
            key = next(self._ids)
            self._open[key] = None
            self._per_peer[peer.name] = per_peer + 1
            return key

    def _forget(self, key: int, peer: str) -> None:
        with self._lock:
            if self._open.pop(key, _GONE) is not _GONE:
                self._per_peer[peer] -= 1

    # -- one connection, in its own thread -----------------------------------------------

    def take(
        self, sock: socket.socket, address: tuple[str, int], tls: ssl.SSLContext | None
    ) -> None:
        """Serve one accepted connection in a thread of its own, or close it at once.

        Closed at once (a flood): a connection from an address that has
        ``max_handshakes_per_address`` connections not yet associated, or any
        connection while the port has :data:`MAX_HANDSHAKES`; one address alone
        can so never take every slot. The association must be negotiated within
        ``acse_timeout`` from now, however slowly the peer sends its request.
        """
        node = self.live.get().node
        deadline = time.monotonic() + node.acse_timeout
        host = address[0]
        with self._lock:
            from_host = self._handshakes_from.get(host, 0)
            if from_host >= node.max_handshakes_per_address:
                limit = "max_handshakes_per_address"
                why = f"{from_host} connections from {host} not yet associated ({limit})"
                reason = "handshakes_per_address"
            elif self._handshakes >= MAX_HANDSHAKES:
                why = f"{self._handshakes} connections not yet associated on the port"
                reason = "handshakes"
            else:
                why = reason = ""
                self._handshakes += 1
                self._handshakes_from[host] = from_host + 1
        if why:
            sock.close()
            self.metrics.association(self.side, "rejected", reason)
            self._refusals.log(address, why)
            return
        threading.Thread(
            target=self._connection, args=(sock, address, tls, deadline),
            name=f"{self.side}-{host}:{address[1]}", daemon=True,
        ).start()  # fmt: skip

    def _connection(
        self,
        sock: socket.socket,
        address: tuple[str, int],
        tls: ssl.SSLContext | None,
        deadline: float,
    ) -> None:
        try:
            accepted = self._handshake(sock, address, tls, deadline)
        finally:
            with self._lock:
                self._handshakes -= 1
                left = self._handshakes_from.pop(address[0]) - 1
                if left:  # an address with none has no key: the dict stays as small as the count
                    self._handshakes_from[address[0]] = left
        if accepted is None:
            return
        assoc, peer, key = accepted
        node = self.live.get().node
        spec = ChildSpec(
            f"receiver:{next(_receiver_ids)}",
            lambda: Receiver.start(
                self.registry,
                self.spool,
                self.store,
                peer,
                assoc,
                metrics=self.metrics,
                limits=node,
                live=self.live,
            ),
            restart=Restart.TEMPORARY,
        )
        try:
            ref = self.registry.call("receivers", Supervisor.start_child, spec, timeout=ASK_TIMEOUT)
        except Exception as exc:  # UnavailableError or a failed start: no receiver, no association
            logger.error("%s association from %s aborted: no receiver: %s", self.side, peer, exc)
            assoc.abort()
            assoc.close()
            self._forget(key, peer.name)
            return
        monitor(ref, lambda _reason: self._forget(key, peer.name))
        self.metrics.association(self.side, "accepted")

    def _handshake(
        self,
        sock: socket.socket,
        address: tuple[str, int],
        tls: ssl.SSLContext | None,
        deadline: float,
    ) -> tuple[Association, Peer, int] | None:
        """Negotiate; the association, its peer and its slot, or None (rejected or failed)."""
        node = self.live.get().node
        host, port = address[0], address[1]
        chosen: list[tuple[Peer, int]] = []

        def decide(calling: str, called: str) -> tuple[int, int, int] | None:
            certificate = presented(sock) if isinstance(sock, ssl.SSLSocket) else None
            peer = self.identify(calling, called, host, port, certificate)
            if isinstance(peer, tuple):
                return peer
            slot = self._reserve(peer)
            if isinstance(slot, str):
                logger.warning("%s association from %s rejected: %s", self.side, peer, slot,
                               extra={"event": "association", "side": self.side,
                                      "outcome": "rejected", "why": slot})  # fmt: skip
                self.metrics.association(self.side, "rejected", "limit")
                return REJECT_LIMIT
            chosen.append((peer, slot))
            return None

        try:
            nodelay(sock)
            if tls is not None:
                # The TLS handshake is part of the handshake: Python bounds it as a whole
                # by the socket's timeout, so it is given what is left of the deadline.
                sock.settimeout(max(deadline - time.monotonic(), 0.001))
                sock = tls.wrap_socket(sock, server_side=True)
            pdu_limit = max(16 * node.max_pdu, 4 << 20) if node.max_pdu else 64 << 20
            assoc = acse.accept(
                sock, decide, max_pdu=node.max_pdu, acse_timeout=node.acse_timeout,
                deadline=deadline, timeout=node.network_timeout, pdu_limit=pdu_limit,
            )  # fmt: skip
        except (AssociationError, OSError) as exc:
            logger.info("%s connection from %s:%d ended before an association: %s",
                        self.side, host, port, str(exc) or type(exc).__name__)  # fmt: skip
            sock.close()
            for peer, slot in chosen:
                self._forget(slot, peer.name)
            return None
        if assoc is None:
            return None
        peer, slot = chosen[0]
        with self._lock:
            self._open[slot] = assoc
        return assoc, peer, slot


_GONE = object()


class _Refusals:
    """The log lines of connections closed at once: one in each :data:`REFUSAL_LOG_INTERVAL`.

    A flood closes thousands a second, and a line each would drown the log
    (and fill the disk); the metrics count every one. A line says how many
    were closed without a line of their own since the one before.
    """

    def __init__(self, side: str) -> None:
        self.side = side
        self._lock = threading.Lock()
        self._logged_at = -REFUSAL_LOG_INTERVAL
        self._unlogged = 0

    def log(self, address: tuple[str, int], why: str) -> None:
        now = time.monotonic()
        with self._lock:
            if now - self._logged_at < REFUSAL_LOG_INTERVAL:
                self._unlogged += 1
                return
            self._logged_at, unlogged, self._unlogged = now, self._unlogged, 0
        more = f" ({unlogged} more closed since the last such line)" if unlogged else ""
        logger.warning("%s port: connection from %s:%d closed at once: %s%s",
                       self.side, address[0], address[1], why, more,
                       extra={"event": "association", "side": self.side, "outcome": "rejected",
                              "why": why})  # fmt: skip
