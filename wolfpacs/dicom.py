"""TLS contexts for the node's ports and peers; pynetdicom set up for simulated peers.

The node's own data path is :mod:`wolfpacs.upper_layer`. pynetdicom serves
the simulated workers and PACS of ``wolfpacs demo`` and the tests
(:mod:`wolfpacs.simulate`): configured here, never subclassed, with module
flags for a no-decode path (received datasets go to a file, sent ones
stream from a file) and unrestricted storage.
"""

from __future__ import annotations

import logging
import socket
import ssl
from typing import TYPE_CHECKING, Any

from pynetdicom import _config, evt
from pynetdicom.presentation import PresentationContext, build_context

from wolfpacs.upper_layer import UNCOMPRESSED

if TYPE_CHECKING:
    from wolfpacs.config import NodeConfig

__all__ = [
    "UNCOMPRESSED", "client_tls", "configure_pynetdicom", "context", "nodelay_handlers",
    "server_tls", "set_nodelay",
]  # fmt: skip

logger = logging.getLogger(__name__)


def configure_pynetdicom() -> None:
    """Set pynetdicom's process-wide flags for the simulated peers (not the node's data path).

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


def context(sop_class_uid: str, transfer_syntax: str) -> PresentationContext:
    """One proposed context: that SOP class in exactly that transfer syntax (pass-through)."""
    return build_context(sop_class_uid, [transfer_syntax])


def nodelay_handlers() -> list[tuple[Any, Any]]:
    return [(evt.EVT_CONN_OPEN, set_nodelay)]
