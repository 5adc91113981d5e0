"""An association to a target (a worker or a destination), as its sender opens one.

:func:`associate` proposes the given storage contexts and Verification,
with the node's AE title, limits, timeouts and, if the target asks for it,
TLS; every way it can fail is one :class:`PeerDownError`, which says why in
the operator's words.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from wolfpacs.dicom import acse
from wolfpacs.dicom.errors import AssociationError, RejectedError
from wolfpacs.dicom.tls import client_tls
from wolfpacs.dicom.uids import UNCOMPRESSED, VERIFICATION

if TYPE_CHECKING:
    from wolfpacs.config.model import NodeConfig
    from wolfpacs.dicom.association import Association
    from wolfpacs.node.messages import Target

__all__ = ["PeerDownError", "associate"]


class PeerDownError(Exception):
    """The association could not be opened, or broke, or the peer is busy: retry later.

    ``reachable``: the peer answered (a "try again" status), so probing it
    with a C-ECHO tells nothing new.
    """

    def __init__(self, why: str, *, reachable: bool = False) -> None:
        super().__init__(why)
        self.reachable = reachable


def associate(
    target: Target, node: NodeConfig, proposals: list[tuple[str, list[str]]]
) -> Association:
    """Open an association with ``target`` proposing these contexts and Verification.

    Raises:
        PeerDownError: refused, rejected, aborted or timed out.
    """
    try:
        tls = client_tls(node, target.tls_check_hostname) if target.tls else None
        return acse.request(
            (target.host, target.port), [*proposals, (VERIFICATION, UNCOMPRESSED)],
            calling_ae=node.ae_title, called_ae=target.ae_title, max_pdu=node.max_pdu,
            connect_timeout=node.connect_timeout, acse_timeout=node.acse_timeout,
            timeout=node.network_timeout, tls=tls,
        )  # fmt: skip
    except RejectedError as exc:
        raise PeerDownError(f"{exc} (check its AE title and config)") from None
    except (AssociationError, OSError) as exc:
        why = str(exc) or type(exc).__name__
        where = f"{target.ae_title}@{target.host}:{target.port}"
        raise PeerDownError(f"cannot associate with {where}: {why}") from None
