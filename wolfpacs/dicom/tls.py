"""TLS contexts for DICOM TLS (PS3.15 annex B): the node's ports, and its senders.

Both present the node's certificate (``[node] tls_cert``, ``tls_key``) and
check the peer's on the operator's own CA (``tls_ca``).
"""

from __future__ import annotations

import ssl
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from wolfpacs.config.model import NodeConfig

__all__ = ["client_tls", "server_tls"]


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
