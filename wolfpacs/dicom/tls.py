"""DICOM TLS (PS3.15 annex B): the node's ports, its senders, and whose certificate is whose.

Both ends present the node's certificate (``[node] tls_cert``, ``tls_key``)
and check the peer's on the operator's own CA (``tls_ca``). A certificate
that chains to that CA proves only that the CA signed it: a client or
worker may also be pinned to its own (:func:`pinned_to`), so that one
hospital's certificate cannot open another's association.

TLS 1.2 is the oldest version either side speaks (PS3.15 annex B's BCP 195
profiles), set here rather than left to the platform's OpenSSL
configuration, which may allow older ones.
"""

from __future__ import annotations

import hashlib
import ssl
from typing import TYPE_CHECKING, Any

from wolfpacs.config.model import TLS_SUBJECT_KEYS

if TYPE_CHECKING:
    from wolfpacs.config.model import NodeConfig

__all__ = ["Certificate", "client_tls", "pinned_to", "presented", "server_tls"]

# What the peer presented on a TLS connection: ssl's dict of it, and its DER bytes.
Certificate = tuple[dict[str, Any], bytes]


def server_tls(node: NodeConfig) -> ssl.SSLContext:
    """The listeners' TLS: the node's certificate; clients' checked on tls_ca.

    A client must present a certificate unless ``tls_require_client_cert`` is
    false; even then one is asked for and, if presented, checked on
    ``tls_ca`` (a handshake with a certificate the CA did not sign fails), so
    that a client pinned to its certificate gets in with it.
    """
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=node.tls_ca or None)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(node.tls_cert, node.tls_key)
    if node.tls_require_client_cert:
        context.verify_mode = ssl.CERT_REQUIRED
    elif node.tls_ca:  # asked for, checked if shown: a pinned client can still show its own
        context.verify_mode = ssl.CERT_OPTIONAL
    else:
        context.verify_mode = ssl.CERT_NONE
    return context


def client_tls(node: NodeConfig, check_hostname: bool = True) -> ssl.SSLContext:
    """A sender's TLS: the peer's certificate checked on tls_ca, the node's own presented.

    ``check_hostname``: the peer's certificate must also name the host (or
    address) the node connects to, as in HTTPS; off (``tls_check_hostname =
    false``) for peers whose certificates name no host.
    """
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=node.tls_ca)
    context.check_hostname = check_hostname
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(node.tls_cert, node.tls_key)
    return context


def presented(sock: ssl.SSLSocket) -> Certificate | None:
    """The certificate the peer of ``sock`` presented, if it presented one."""
    der = sock.getpeercert(binary_form=True)
    return (sock.getpeercert() or {}, der) if der else None


def pinned_to(certificate: Certificate | None, subject: str, fingerprint: str) -> bool:
    """Whether ``certificate`` is the one pinned: its subject has every ``KEY=value`` of
    ``subject`` (``"CN=gpu-a,O=Vendor"``), its SHA-256 is ``fingerprint`` (``"sha256:<hex>"``).

    An empty pin pins nothing; a pinned peer without a certificate is not it.
    """
    if not subject and not fingerprint:
        return True
    if certificate is None:
        return False
    fields, der = certificate
    if fingerprint and f"sha256:{hashlib.sha256(der).hexdigest()}" != fingerprint:
        return False
    names = {name: value for rdn in fields.get("subject", ()) for name, value in rdn}
    for pair in subject.split(",") if subject else ():
        key, _, value = pair.partition("=")
        if names.get(TLS_SUBJECT_KEYS[key]) != value:
            return False
    return True
