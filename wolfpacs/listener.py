"""A listener: one port (outside or inside) served by a pynetdicom AE.

The listener actor owns the server socket. The :class:`Gate` holds the
event handlers pynetdicom calls from its association threads: it tells
clients (by called AE title) and workers (by calling AE title) from
strangers, rejects strangers with A-ASSOCIATE-RJ, starts a receiver for
each accepted association and hands it every C-STORE.
"""

from __future__ import annotations

import ipaddress
import itertools
import logging
import threading
from typing import TYPE_CHECKING, Any

import pykka
from pynetdicom import evt
from pynetdicom.pdu import P_DATA_TF

from supervisors import ChildSpec, Registry, SupervisedActor, monitor
from wolfpacs import dicom
from wolfpacs.metrics import Metrics
from wolfpacs.receiver import INSIDE, OUTSIDE, Peer, Receiver
from wolfpacs.status import Status, response

if TYPE_CHECKING:
    from pynetdicom.association import Association
    from pynetdicom.transport import ThreadedAssociationServer

    from wolfpacs.config import Config
    from wolfpacs.runtime import LiveConfig
    from wolfpacs.spool import Spool

__all__ = ["Gate", "Listener"]

logger = logging.getLogger(__name__)

# A-ASSOCIATE-RJ (result, source, diagnostic), PS3.8 9.3.4
REJECT_CALLED_AE = (0x01, 0x01, 0x07)  # permanent, service user, called AE not recognised
REJECT_CALLING_AE = (0x01, 0x01, 0x03)  # permanent, service user, calling AE not recognised
REJECT_NO_REASON = (0x01, 0x01, 0x01)  # permanent, service user, no reason given
REJECT_BUSY = (0x02, 0x03, 0x01)  # transient, service provider, temporary congestion
REJECT_LIMIT = (0x02, 0x03, 0x02)  # transient, service provider, local limit exceeded
REASONS = {REJECT_CALLED_AE: "called_ae", REJECT_CALLING_AE: "calling_ae",
           REJECT_NO_REASON: "address"}  # fmt: skip
ASK_TIMEOUT = 30.0  # seconds a C-STORE waits for its receiver (it may be fsyncing)
SWEEP_INTERVAL = 60.0  # seconds between two sweeps of incoming/
_SWEEP = "sweep"

_receiver_ids = itertools.count(1)
_ABORTED = -1  # in Gate._incoming: this association was aborted for its size


def _allowed(address: str, networks: tuple[Any, ...]) -> bool:
    if not networks:
        return True
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in net for net in networks)


def _reject(assoc: Association, result_source_diagnostic: tuple[int, int, int]) -> None:
    """Send an A-ASSOCIATE-RJ and wait until it is on the wire (as pynetdicom's own rejects do)."""
    assoc.acse.send_reject(*result_source_diagnostic)
    assoc.kill()


class Gate:
    """pynetdicom's event handlers for one listener; safe to call from any thread."""

    def __init__(
        self, side: str, live: LiveConfig, registry: Registry, spool: Spool, metrics: Metrics
    ) -> None:
        self.side = side
        self.live = live
        self.registry = registry
        self.spool = spool
        self.metrics = metrics
        self._lock = threading.Lock()
        self._receivers: dict[int, pykka.ActorRef[Receiver]] = {}
        self._per_peer: dict[str, int] = {}  # open associations per client or worker
        self._incoming: dict[int, int] = {}  # dataset bytes of the C-STORE arriving, per assoc

    def handlers(self) -> list[tuple[Any, Any]]:
        node = self.live.get().node
        pdu_limit = max(16 * node.max_pdu, 4 << 20) if node.max_pdu else 64 << 20
        return [
            (evt.EVT_CONN_OPEN, dicom.set_nodelay),
            (evt.EVT_CONN_OPEN, dicom.guard_socket(pdu_limit, node.network_timeout)),
            (evt.EVT_REQUESTED, self.on_requested),
            (evt.EVT_PDU_RECV, self.on_pdu),
            (evt.EVT_C_ECHO, lambda _event: Status.SUCCESS),
            (evt.EVT_C_STORE, self.on_c_store),
        ]

    def open_associations(self) -> int:
        with self._lock:
            return len(self._receivers)

    def identify(
        self, calling: str, called: str, address: str, port: int
    ) -> Peer | tuple[int, int, int]:
        """The peer, or the A-ASSOCIATE-RJ to answer (and the reason is logged).

        Read from the live config at each association: a client or worker added
        at runtime is known from its first association on.
        """
        config = self.live.get()
        if self.side == OUTSIDE:
            client = next((c for c in config.clients if c.ae_title == called), None)
            if client is None:
                why, rj = f"called AE {called!r} is no client's", REJECT_CALLED_AE
            elif client.calling_ae_titles and calling not in client.calling_ae_titles:
                why, rj = (
                    f"calling AE {calling!r} is not one of client {client.name}'s",
                    REJECT_CALLING_AE,
                )
            elif not _allowed(address, client.allow):
                why, rj = (
                    f"address {address} is not in client {client.name}'s allow list",
                    REJECT_NO_REASON,
                )
            else:
                return Peer(OUTSIDE, client.name, calling, called, address, port)
        else:
            worker = next((w for w in config.workers if w.ae_title == calling), None)
            if worker is None:
                why, rj = f"calling AE {calling!r} is no worker's", REJECT_CALLING_AE
            elif not _allowed(address, worker.allow):
                why, rj = (
                    f"address {address} is not in worker {worker.name}'s allow list",
                    REJECT_NO_REASON,
                )
            else:
                return Peer(INSIDE, worker.name, calling, called, address, port)
        logger.warning(
            "%s association from %s@%s:%d to %r rejected: %s",
            self.side, calling, address, port, called, why,
            extra={"event": "association", "side": self.side, "outcome": "rejected", "why": why},
        )  # fmt: skip
        self.metrics.association(self.side, "rejected", REASONS[rj])
        return rj

    def on_requested(self, event: evt.Event) -> None:
        assoc: Association = event.assoc
        rq = assoc.requestor
        calling = rq.primitive.calling_ae_title.strip() if rq.primitive else ""
        called = rq.primitive.called_ae_title.strip() if rq.primitive else ""
        peer = self.identify(calling, called, rq.address, rq.port)
        if isinstance(peer, tuple):
            _reject(assoc, peer)
            return
        refusal = self._over_limits(peer)
        if refusal:
            logger.warning("%s association from %s rejected: %s", self.side, peer, refusal,
                           extra={"event": "association", "side": self.side,
                                  "outcome": "rejected", "why": refusal})  # fmt: skip
            self.metrics.association(self.side, "rejected", "limit")
            _reject(assoc, REJECT_LIMIT)
            return
        spec = ChildSpec(
            f"receiver:{next(_receiver_ids)}",
            lambda: Receiver.start(self.registry, self.spool, peer, assoc, self.metrics),
            restart="temporary",
        )
        try:
            ref = self.registry.call("receivers", "start_child", spec, timeout=ASK_TIMEOUT)
        except Exception as exc:  # UnavailableError or a failed start: no receiver, no association
            logger.error("%s association from %s rejected: no receiver: %s", self.side, peer, exc)
            _reject(assoc, REJECT_BUSY)
            return
        key = id(assoc)
        with self._lock:
            self._receivers[key] = ref
            self._per_peer[peer.name] = self._per_peer.get(peer.name, 0) + 1
        monitor(ref, lambda _reason: self._forget(key, peer.name))
        self.metrics.association(self.side, "accepted")

    def _over_limits(self, peer: Peer) -> str | None:
        """Why this association may not open now (transient limits), or None."""
        node = self.live.get().node
        with self._lock:
            open_now = self._per_peer.get(peer.name, 0)
        if open_now >= node.max_associations_per_client:
            return f"{peer.name} already has {open_now} associations open (the limit)"
        try:
            self.spool.check_room(0)
        except OSError as exc:  # refuse whole associations while the disk is full
            return str(exc.strerror or exc)
        return None

    def on_pdu(self, event: evt.Event) -> None:
        """Count the dataset bytes of the C-STORE arriving; abort one over the size limit."""
        pdu = event.pdu
        if not isinstance(pdu, P_DATA_TF):
            return
        key, limit = id(event.assoc), self.live.get().node.max_instance_bytes
        for item in pdu.presentation_data_value_items:
            value = item.presentation_data_value or b""
            if not value or value[0] & 0x01:
                continue  # a command fragment
            with self._lock:
                if self._incoming.get(key) == _ABORTED:
                    return  # PDUs already on their way when it was aborted
                total = self._incoming.get(key, 0) + len(value) - 1
                over = total > limit
                self._incoming[key] = _ABORTED if over else 0 if value[0] & 0x02 else total
            if over:
                logger.warning(
                    "%s: a dataset of over %d bytes: association aborted (max_instance_bytes)",
                    self.side, limit,
                )  # fmt: skip
                self.metrics.association(self.side, "aborted", "too_large")
                event.assoc.abort(block=False)  # in pynetdicom's own thread: do not wait
                return

    def on_c_store(self, event: evt.Event) -> Any:
        with self._lock:
            ref = self._receivers.get(id(event.assoc))
        if ref is None:
            return response(Status.BUSY, "no receiver for this association")
        try:
            return ref.ask(
                pykka.messages.ProxyCall(
                    ("store",), (str(event.dataset_path),),
                    {"sop_instance_uid": str(event.request.AffectedSOPInstanceUID or "")},
                ),
                timeout=ASK_TIMEOUT,
            )  # fmt: skip
        except (pykka.ActorDeadError, pykka.Timeout) as exc:
            logger.warning(
                "%s: C-STORE refused: receiver unavailable (%s)", self.side, type(exc).__name__
            )
            return response(Status.BUSY, "receiver unavailable")
        except Exception:
            logger.exception("%s: C-STORE failed", self.side)
            return response(Status.PROCESSING_FAILURE, "internal error, logged")

    def _forget(self, key: int, peer: str) -> None:
        with self._lock:
            self._receivers.pop(key, None)
            self._incoming.pop(key, None)
            self._per_peer[peer] -= 1


class Listener(SupervisedActor):
    """Registered as ``listener:<side>``: binds in ``on_start`` (a busy port fails the start)."""

    def __init__(
        self,
        side: str,
        live: LiveConfig,
        registry: Registry,
        spool: Spool,
        metrics: Metrics | None = None,
    ) -> None:
        super().__init__()
        self.side = side
        self.live = live
        self.registry = registry
        self.spool = spool
        self.metrics = metrics or Metrics()
        self.server: ThreadedAssociationServer | None = None
        self.gate: Gate | None = None

    @property
    def config(self) -> Config:
        return self.live.get()

    @property
    def port(self) -> int:
        node = self.config.node
        return node.outside_port if self.side == OUTSIDE else node.inside_port

    def on_start(self) -> None:
        self.registry.register(f"listener:{self.side}", self.actor_ref)
        self.gate = Gate(self.side, self.live, self.registry, self.spool, self.metrics)
        ae = dicom.acceptor_ae(self.config.node)
        node = self.config.node
        tls = node.tls_outside if self.side == OUTSIDE else node.tls_inside
        self.server = ae.start_server(
            (node.bind, self.port), block=False, evt_handlers=self.gate.handlers(),
            ssl_context=dicom.server_tls(node) if tls else None,
        )  # fmt: skip
        logger.info("%s port listening on %s:%d", self.side, self.config.node.bind, self.port)
        if self.side == OUTSIDE:  # one sweeper is enough: both ports share incoming/
            self.send_after(SWEEP_INTERVAL, _SWEEP)

    def on_receive(self, message: object) -> object:
        if message == _SWEEP:
            node = self.config.node
            # A file nobody has written to for longer than any association may stay
            # silent belongs to a transfer that was cut: pynetdicom never removes those.
            self.spool.sweep_incoming(older_than=node.network_timeout + node.dimse_timeout)
            self.send_after(SWEEP_INTERVAL, _SWEEP)
            return None
        return super().on_receive(message)

    def on_stop(self) -> None:
        self._close()

    def on_failure(self, *_exc_info: object) -> None:
        self._close()

    def _close(self) -> None:
        server, self.server = self.server, None
        if server is not None:
            server.shutdown()  # stops accepting; open associations end with their receivers

    def inspect(self) -> dict[str, Any]:
        return {
            "side": self.side,
            "address": f"{self.config.node.bind}:{self.port}",
            "open_associations": self.gate.open_associations() if self.gate else 0,
        }
