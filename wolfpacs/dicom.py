"""The one place where pynetdicom is configured: AEs, contexts, socket options.

pynetdicom is configured, never subclassed: module flags for a no-decode
data path (received datasets go to a file, sent ones stream from a file),
unrestricted storage (every public and private storage SOP class), and
AE properties from the node's config.
"""

from __future__ import annotations

import logging
import socket
import ssl
from typing import TYPE_CHECKING, Any

from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)
from pynetdicom import AE, _config, evt
from pynetdicom.presentation import PresentationContext, build_context
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

if TYPE_CHECKING:
    from pynetdicom.association import Association

    from wolfpacs.config import NodeConfig

__all__ = [
    "acceptor_ae", "configure_pynetdicom", "context", "guard_socket", "requestor_ae",
    "set_nodelay",
]  # fmt: skip

logger = logging.getLogger(__name__)

UNCOMPRESSED = [
    ExplicitVRLittleEndian, ImplicitVRLittleEndian, ExplicitVRBigEndian,
    DeflatedExplicitVRLittleEndian,
]  # fmt: skip


def configure_pynetdicom() -> None:
    """Set pynetdicom's process-wide flags for a pass-through node.

    - ``STORE_RECV_CHUNKED_DATASET``: a received dataset is written to a file
      as its P-DATA arrives and never decoded (handlers get ``dataset_path``);
    - ``STORE_SEND_CHUNKED_DATASET``: ``send_c_store(path)`` streams the file;
    - ``UNRESTRICTED_STORAGE_SERVICE``: accept every storage SOP class,
      private ones included, in the transfer syntax the peer proposes first.
    """
    _config.STORE_RECV_CHUNKED_DATASET = True
    _config.STORE_SEND_CHUNKED_DATASET = True
    _config.UNRESTRICTED_STORAGE_SERVICE = True


def set_nodelay(event: evt.Event) -> None:
    """EVT_CONN_OPEN handler: no Nagle delay on the association's socket."""
    sock = getattr(event.assoc.dul.socket, "socket", None)
    if sock is not None:
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError as exc:  # a socket already closed by the peer
            logger.debug("TCP_NODELAY not set: %s", exc)


def guard_socket(pdu_limit: int, stall_timeout: float) -> Any:
    """An EVT_CONN_OPEN handler that keeps one peer from holding memory or threads.

    - pynetdicom reads a whole PDU into memory at the length its header
      claims (up to 4 GiB), whatever maximum length was negotiated: one
      hostile header would do. Wrapping this socket's ``recv`` makes such a
      read fail as a broken connection (pynetdicom's Evt17) before any of it
      is buffered.
    - An accepted socket blocks for ever by default (Python does not pass
      the listening socket's timeout on), and pynetdicom's timers do not run
      while it waits inside a PDU: a peer that sends half a PDU and falls
      silent would hold two threads for good. A timeout on the socket turns
      that silence into a broken connection after ``stall_timeout`` s.
    """
    limit = pdu_limit

    def on_open(event: evt.Event) -> None:
        sock = event.assoc.dul.socket
        if sock.socket is not None:
            sock.socket.settimeout(stall_timeout)
        recv = sock.recv

        def bounded_recv(nr_bytes: int) -> bytearray:
            if nr_bytes > limit:
                logger.warning(
                    "%s: a PDU of %d bytes announced (limit %d): connection dropped",
                    event.assoc.requestor.address, nr_bytes, limit,
                )  # fmt: skip
                raise OSError(f"PDU of {nr_bytes} bytes is over the limit of {limit}")
            return recv(nr_bytes)

        sock.recv = bounded_recv

    return on_open


def server_tls(node: NodeConfig) -> ssl.SSLContext:
    """The listeners' TLS: the node's certificate; clients' checked on tls_ca if required."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=node.tls_ca or None)
    context.load_cert_chain(node.tls_cert, node.tls_key)
    context.verify_mode = ssl.CERT_REQUIRED if node.tls_require_client_cert else ssl.CERT_NONE
    return context


def client_tls(node: NodeConfig) -> ssl.SSLContext:
    """A sender's TLS: the peer's certificate checked on tls_ca, the node's own presented.

    Host names are not checked: DICOM peers are configured by address, and the
    certificate chain to the operator's own CA is what vouches for them.
    """
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=node.tls_ca)
    context.check_hostname = False
    context.load_cert_chain(node.tls_cert, node.tls_key)
    return context


def _timeouts(ae: AE, node: NodeConfig) -> AE:
    ae.maximum_pdu_size = node.max_pdu
    ae.acse_timeout = node.acse_timeout
    ae.dimse_timeout = node.dimse_timeout
    ae.network_timeout = node.network_timeout
    ae.connection_timeout = node.connect_timeout
    return ae


def acceptor_ae(node: NodeConfig) -> AE:
    """The AE serving a listener: Verification, and every storage SOP class."""
    configure_pynetdicom()
    ae = _timeouts(AE(ae_title=node.ae_title), node)
    ae.maximum_associations = node.max_associations
    ae.require_called_aet = False  # clients are told apart by their called AE (Gate)
    ae.require_calling_aet = []
    ae.add_supported_context(Verification, UNCOMPRESSED)
    return ae


def requestor_ae(node: NodeConfig) -> AE:
    """The AE a sender associates with: calling AE title is the node's."""
    configure_pynetdicom()
    return _timeouts(AE(ae_title=node.ae_title), node)


def context(sop_class_uid: str, transfer_syntax: str) -> PresentationContext:
    """One proposed context: that SOP class in exactly that transfer syntax (pass-through)."""
    return build_context(sop_class_uid, [transfer_syntax])


def verification_context() -> PresentationContext:
    return build_context(Verification, UNCOMPRESSED)


def accepts(assoc: Association, sop_class_uid: str, transfer_syntax: str) -> bool:
    """Did the peer accept this SOP class in this transfer syntax on ``assoc``?"""
    return any(
        cx.abstract_syntax == sop_class_uid and cx.transfer_syntax[0] == transfer_syntax
        for cx in assoc.accepted_contexts
    )


def nodelay_handlers() -> list[tuple[Any, Any]]:
    return [(evt.EVT_CONN_OPEN, set_nodelay)]
