"""The orderly end of an association (PS3.8 A-RELEASE): the states of table 9-10 from Sta6 on.

- :func:`release`: we ask (Sta7), and a release collision (Sta9 to Sta12);
- :func:`answer_release`: the peer asks, we answer and wait (Sta8, Sta13);
- :func:`await_close`: Sta13, where the A-RELEASE-RP is sent and the
  requestor of the release closes the transport (AR-3), within ARTIM.

Functions of an :class:`~wolfpacs.dicom.association.Association`, kept
apart from its data path; they never raise (an error aborts).
"""

from __future__ import annotations

import logging
from typing import NoReturn, Protocol

from wolfpacs.dicom.errors import AssociationError
from wolfpacs.dicom.pdu import (
    ABORT,
    ABORT_UNEXPECTED_PDU,
    ABORT_UNRECOGNISED_PDU,
    ASSOCIATE_RQ,
    P_DATA_TF,
    RELEASE_RP,
    RELEASE_RQ,
    abort_pdu,
    encode_pdu,
)

__all__ = ["answer_release", "await_close", "release"]

logger = logging.getLogger(__name__)

_RQ = encode_pdu(RELEASE_RQ, b"\x00" * 4)
_RP = encode_pdu(RELEASE_RP, b"\x00" * 4)


class Ending(Protocol):
    """What of an association its end uses (an Association; a Protocol, against an import cycle)."""

    requestor: bool
    artim: float
    timeout: float | None
    released: bool
    address: str
    port: int

    def _read_pdu(self) -> tuple[int, memoryview]: ...
    def _send(self, *parts: bytes | memoryview) -> None: ...
    def _set_timeout(self, seconds: float | None) -> None: ...
    def _protocol_error(self, why: str, reason: tuple[int, int]) -> NoReturn: ...
    def abort(self, reason: tuple[int, int] = ...) -> None: ...
    def close(self) -> None: ...


def _unexpected(kind: int) -> tuple[int, int]:
    """The A-ABORT reason for a PDU of type ``kind`` where it may not come."""
    return ABORT_UNEXPECTED_PDU if ASSOCIATE_RQ <= kind <= ABORT else ABORT_UNRECOGNISED_PDU


def release(assoc: Ending, timeout: float | None) -> None:
    """A-RELEASE-RQ, wait for the A-RELEASE-RP, close; abort if need be.

    Sta7: P-DATA still on its way is dropped (AR-6), the RP closes the
    transport (AR-3), an A-ABORT ends it (AA-3). If the peer asks to release
    too (a collision, AR-8, PS3.8 7.2.2), the association's requestor answers
    A-RELEASE-RP at once and waits for the peer's (Sta9, AR-9, Sta11, AR-3);
    its acceptor waits for the requestor's RP, then answers and waits for the
    requestor to close (Sta10, AR-10, Sta12, AR-4, Sta13). Anything else
    aborts (AA-8).
    """
    try:
        assoc._send(_RQ)
        assoc._set_timeout(timeout if timeout is not None else assoc.timeout)
        collided = False
        while True:
            kind, _body = assoc._read_pdu()
            if kind == ABORT:
                break
            if kind == RELEASE_RP:
                if collided and not assoc.requestor:
                    assoc._send(_RP)
                    await_close(assoc)
                break
            if kind == RELEASE_RQ and not collided:
                collided = True
                if assoc.requestor:
                    assoc._send(_RP)
            elif kind != P_DATA_TF or collided:
                assoc._protocol_error(f"PDU type 0x{kind:02X} during a release", _unexpected(kind))
    except (AssociationError, OSError):
        logger.debug("release of %s:%s not answered: aborted", assoc.address, assoc.port)
        assoc.abort()
    assoc.released = True
    assoc.close()


def answer_release(assoc: Ending) -> None:
    """The peer asked to release (AR-2): answer A-RELEASE-RP (AR-4) and wait in Sta13."""
    try:
        assoc._send(_RP)
    except OSError:
        assoc.released = True
        assoc.close()
        return
    await_close(assoc)


def await_close(assoc: Ending) -> None:
    """Sta13: the A-RELEASE-RP is sent; wait for the requestor of the release to close (AR-3).

    At most ARTIM, then close (AA-2): closing first would leave the TIME_WAIT
    on the node and race the RP against our FIN. PDUs still coming are
    ignored (AA-6), but an A-ASSOCIATE-RQ or an unrecognised PDU is answered
    with an A-ABORT (AA-7), and an A-ABORT closes at once (AA-2).
    """
    assoc.released = True  # abort() writes no A-ABORT after this: the release stands
    try:
        assoc._set_timeout(assoc.artim)
        while True:
            kind, _body = assoc._read_pdu()
            if kind == ABORT:
                break
            if kind == ASSOCIATE_RQ or not ASSOCIATE_RQ <= kind <= ABORT:
                assoc._send(abort_pdu(*_unexpected(kind)))
    except (AssociationError, OSError):
        pass  # the peer closed (AR-5), or ARTIM ran out (the read timed out: AA-2)
    assoc.close()
