"""Establishing associations (PS3.8 A-ASSOCIATE): the node's one use of pynetdicom on its data path.

:func:`accept` answers an A-ASSOCIATE-RQ on an accepted connection
(Verification and every storage SOP class, each in the first transfer
syntax proposed) after asking the caller whom it lets in; :func:`request`
opens one to a worker or destination. pynetdicom encodes and decodes the
A-ASSOCIATE PDUs and negotiates the presentation contexts: what it does well.
Everything after, the :class:`~wolfpacs.dicom.association.Association`, is ours.

Errors (:mod:`wolfpacs.dicom.errors`): :class:`RejectedError` (requesting)
when the peer says no; :class:`ProtocolError`, :class:`PeerAbortedError`
or :class:`TimeoutError` when no association came of it; the socket is closed.
"""

from __future__ import annotations

import contextlib
import functools
import socket
import ssl
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from pydicom.uid import UID
from pynetdicom.pdu import A_ASSOCIATE_AC, A_ASSOCIATE_RQ
from pynetdicom.pdu_primitives import (
    A_ASSOCIATE,
    ImplementationClassUIDNotification,
    ImplementationVersionNameNotification,
    MaximumLengthNotification,
    SCP_SCU_RoleSelectionNegotiation,
)
from pynetdicom.presentation import (
    PresentationContext,
    negotiate_as_acceptor,
    negotiate_unrestricted,
)

from wolfpacs.dicom.association import Association, Context
from wolfpacs.dicom.errors import PeerAbortedError, ProtocolError, RejectedError
from wolfpacs.dicom.part10 import IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION
from wolfpacs.dicom.pdu import (
    ABORT,
    ABORT_UNEXPECTED_PDU,
    ASSOCIATE_AC,
    ASSOCIATE_RJ,
    ASSOCIATE_RQ,
    REJECT_APPLICATION_CONTEXT,
    REJECT_PROTOCOL_VERSION,
    abort_pdu,
    encode_pdu,
    read_first,
)
from wolfpacs.dicom.sockets import nodelay
from wolfpacs.dicom.uids import APPLICATION_CONTEXT, UNCOMPRESSED, VERIFICATION

__all__ = ["accept", "request"]

RESPONSE_BUFFER = 64 * 1024  # a requestor's: it reads responses (grows for a larger PDU)
CACHED_REQUEST_BYTES = 64 * 1024  # a larger A-ASSOCIATE-RQ is decoded, not remembered


def _text(value: object) -> str:
    return str(value or "").strip()


def _id(context: PresentationContext) -> int:
    return context.context_id or 0  # pynetdicom gives every context it makes or decodes one


def _syntaxes(uids: Sequence[str]) -> list[str | bytes | UID]:
    return list(uids)


def _user_information(max_pdu: int) -> list[Any]:
    max_length = MaximumLengthNotification()
    max_length.maximum_length_received = max_pdu
    class_uid = ImplementationClassUIDNotification()
    class_uid.implementation_class_uid = IMPLEMENTATION_CLASS_UID
    version = ImplementationVersionNameNotification()
    version.implementation_version_name = IMPLEMENTATION_VERSION
    return [max_length, class_uid, version]


def _peer_max_pdu(user_information: list[Any]) -> int:
    for item in user_information:
        if isinstance(item, MaximumLengthNotification):
            return int(item.maximum_length_received or 0)
    return 0


def _not_storage(uid: object) -> bool:
    """Whether ``uid`` is a SOP class of the standard that stores nothing (Worklist, Storage
    Commitment, MPPS...). pynetdicom's unrestricted negotiation takes for storage every UID
    its own ``sop_class`` module does not name, and that module spells some otherwise (Modality
    Worklist): so they are told apart by pydicom's dictionary, by their names."""
    known = UID(str(uid))
    name = known.name if known.type == "SOP Class" else ""  # the UID itself if unknown
    return name not in ("", str(uid)) and ("Storage" not in name or "Commitment" in name)


def _accept_contexts(primitive: A_ASSOCIATE, max_pdu: int) -> tuple[bytes, dict[int, Context]]:
    """The A-ASSOCIATE-AC for a request, and the contexts it accepts: Verification, and every
    storage-like SOP class (private and unknown ones too), no other SOP class."""
    roles = {
        item.sop_class_uid: (item.scu_role, item.scp_role)
        for item in primitive.user_information or []
        if isinstance(item, SCP_SCU_RoleSelectionNegotiation) and item.sop_class_uid is not None
    }
    verification = PresentationContext()
    verification.abstract_syntax = VERIFICATION
    verification.transfer_syntax = _syntaxes(UNCOMPRESSED)
    proposed = primitive.presentation_context_definition_list
    others = [cx for cx in proposed if _not_storage(cx.abstract_syntax)]
    results, role_items = negotiate_unrestricted(
        [cx for cx in proposed if cx not in others], [verification], roles
    )
    if others:  # refused but Verification, as pynetdicom does with the SOP classes it names
        more, more_roles = negotiate_as_acceptor(others, [verification], roles)
        results = sorted([*results, *more], key=_id)
        role_items = [*role_items, *more_roles]
    ac = A_ASSOCIATE()
    ac.application_context_name = APPLICATION_CONTEXT
    ac.calling_ae_title = primitive.calling_ae_title
    ac.called_ae_title = primitive.called_ae_title
    ac.result, ac.result_source = 0x00, 0x01
    ac.presentation_context_definition_results_list = results
    ac.user_information = _user_information(max_pdu) + list(role_items)
    pdu = A_ASSOCIATE_AC()
    pdu.from_primitive(ac)
    contexts = {
        _id(cx): Context(_id(cx), str(cx.abstract_syntax), str(cx.transfer_syntax[0]))
        for cx in results
        if cx.result == 0x00
    }
    return pdu.encode(), contexts


def _decoded(pdu: A_ASSOCIATE_RQ | A_ASSOCIATE_AC, data: bytes, what: str) -> A_ASSOCIATE:
    """The primitive of an A-ASSOCIATE PDU, by pynetdicom.

    Raises:
        ProtocolError: it does not decode (pynetdicom raises many kinds on hostile bytes).
    """
    try:
        pdu.decode(data)
        return pdu.to_primitive()
    except Exception as exc:
        raise ProtocolError(f"undecodable {what}: {type(exc).__name__}") from None


@dataclass(frozen=True)
class _Negotiation:
    """What an A-ASSOCIATE-RQ asks, and the answer to it (the caller may still reject)."""

    calling_ae: str
    called_ae: str
    rejection: tuple[int, int, int] | None  # the request is not one we can take
    answer: bytes  # the A-ASSOCIATE-AC
    contexts: dict[int, Context]
    peer_max_pdu: int


@functools.lru_cache(maxsize=64)
def _negotiated(data: bytes, max_pdu: int) -> _Negotiation:
    """Decode a request and work out the answer, once for each distinct request.

    A modality sends the same request, byte for byte, every time; decoding
    its hundred-odd presentation contexts with pynetdicom takes ~8 ms of the
    interpreter, which eight clients connecting at once would wait for in turn.

    Raises:
        ProtocolError: it does not decode (not cached).
    """
    rq = A_ASSOCIATE_RQ()
    primitive = _decoded(rq, data, "A-ASSOCIATE-RQ")
    calling, called = _text(primitive.calling_ae_title), _text(primitive.called_ae_title)
    rejection: tuple[int, int, int] | None = None
    if not rq.protocol_version & 0x0001:
        rejection = REJECT_PROTOCOL_VERSION
    elif str(primitive.application_context_name) != APPLICATION_CONTEXT:
        rejection = REJECT_APPLICATION_CONTEXT
    if rejection is not None:
        return _Negotiation(calling, called, rejection, b"", {}, 0)
    answer, contexts = _accept_contexts(primitive, max_pdu)
    peer_max_pdu = _peer_max_pdu(primitive.user_information or [])
    return _Negotiation(calling, called, None, answer, contexts, peer_max_pdu)


def accept(
    sock: socket.socket,
    decide: Callable[[str, str], tuple[int, int, int] | None],
    *,
    max_pdu: int,
    acse_timeout: float,
    timeout: float | None,
    pdu_limit: int,
    deadline: float | None = None,
) -> Association | None:
    """Take an association on an accepted connection; ``None`` if it was rejected.

    ``decide(calling_ae, called_ae)`` returns the A-ASSOCIATE-RJ
    (result, source, diagnostic) to answer, or ``None`` to accept. Accepted
    are Verification and every storage-like SOP class, each in the first
    transfer syntax proposed. The answer is sent by ``deadline``
    (``time.monotonic()``; default: ``acse_timeout`` from now), a bound on
    the whole handshake, not on each read: a peer that trickles its request
    is cut off at the deadline.

    Raises:
        ProtocolError, PeerAbortedError, TimeoutError: no association (A-ABORT
            sent where PS3.8 asks for one); the socket is closed.
    """
    if deadline is None:
        deadline = time.monotonic() + acse_timeout
    try:
        kind, data = read_first(sock, deadline)
        if kind == ABORT:  # Sta2: AA-2, close; an A-ABORT is never answered (PS3.8 9.2)
            raise PeerAbortedError("A-ABORT before an A-ASSOCIATE-RQ")
        if kind != ASSOCIATE_RQ:
            raise ProtocolError(f"PDU type 0x{kind:02X} before an A-ASSOCIATE-RQ")
        # Only requests of a modality's size are remembered: 64 distinct ones of up to
        # 1 MiB (MAX_ASSOCIATE_PDU) would keep 64 MiB for a peer that sends them.
        negotiate = _negotiated if len(data) <= CACHED_REQUEST_BYTES else _negotiated.__wrapped__
        found = negotiate(data, max_pdu)
        rejection = found.rejection or decide(found.calling_ae, found.called_ae)
        sock.settimeout(max(deadline - time.monotonic(), 0.001))  # to send the answer
        if rejection is not None:
            sock.sendall(encode_pdu(ASSOCIATE_RJ, bytes([0, *rejection])))
            sock.close()
            return None
        sock.sendall(found.answer)
        sock.settimeout(timeout)
        return Association(
            sock, dict(found.contexts), peer_max_pdu=found.peer_max_pdu,
            calling_ae=found.calling_ae, called_ae=found.called_ae, pdu_limit=pdu_limit,
            timeout=timeout, artim=acse_timeout,
        )  # fmt: skip
    except ProtocolError:
        with contextlib.suppress(OSError):
            sock.sendall(abort_pdu(*ABORT_UNEXPECTED_PDU))
        sock.close()
        raise
    except PeerAbortedError:
        sock.close()
        raise
    except OSError as exc:
        sock.close()
        if isinstance(exc, TimeoutError):
            raise
        raise PeerAbortedError(f"connection broken: {exc}") from None


def request(
    address: tuple[str, int],
    proposals: list[tuple[str, list[str]]],
    *,
    calling_ae: str,
    called_ae: str,
    max_pdu: int,
    connect_timeout: float | None,
    acse_timeout: float | None,
    timeout: float | None,
    tls: ssl.SSLContext | None = None,
    pdu_limit: int = 64 << 20,
) -> Association:
    """Open an association: each (SOP class, transfer syntaxes) proposed on its own context.

    Raises:
        RejectedError: the peer said no.
        PeerAbortedError: the peer aborted or closed instead of answering.
        OSError (TimeoutError, ConnectionRefusedError...): no connection.
    """
    sock = socket.create_connection(address, timeout=connect_timeout)
    try:
        nodelay(sock)
        if tls is not None:
            sock = tls.wrap_socket(sock, server_hostname=address[0])
        primitive = A_ASSOCIATE()
        primitive.application_context_name = APPLICATION_CONTEXT
        primitive.calling_ae_title = calling_ae
        primitive.called_ae_title = called_ae
        proposed: dict[int, str] = {}
        for index, (abstract, syntaxes) in enumerate(proposals):
            context = PresentationContext()
            context.context_id = 2 * index + 1
            context.abstract_syntax = abstract
            context.transfer_syntax = _syntaxes(syntaxes)
            primitive.presentation_context_definition_list.append(context)
            proposed[context.context_id] = abstract
        primitive.user_information = _user_information(max_pdu)
        pdu = A_ASSOCIATE_RQ()
        pdu.from_primitive(primitive)
        # The answer by a deadline, not a timeout per read: a peer that trickles it is cut off.
        deadline = None if acse_timeout is None else time.monotonic() + acse_timeout
        sock.settimeout(acse_timeout)
        sock.sendall(pdu.encode())
        kind, data = read_first(sock, deadline)
        if kind == ASSOCIATE_RJ and len(data) >= 10:
            raise RejectedError(data[7], data[8], data[9])
        if kind == ABORT:
            raise PeerAbortedError("the peer aborted instead of answering A-ASSOCIATE-RQ")
        if kind != ASSOCIATE_AC:
            raise ProtocolError(f"PDU type 0x{kind:02X} in answer to A-ASSOCIATE-RQ")
        answer = _decoded(A_ASSOCIATE_AC(), data, "A-ASSOCIATE-AC")
        contexts = {
            _id(cx): Context(_id(cx), proposed[_id(cx)], str(cx.transfer_syntax[0]))
            for cx in answer.presentation_context_definition_results_list
            if cx.result == 0x00 and _id(cx) in proposed and cx.transfer_syntax
        }
        sock.settimeout(timeout)
        return Association(
            sock, contexts, peer_max_pdu=_peer_max_pdu(answer.user_information or []),
            calling_ae=calling_ae, called_ae=called_ae, pdu_limit=pdu_limit, timeout=timeout,
            receive_buffer=RESPONSE_BUFFER, requestor=True, artim=acse_timeout,
        )  # fmt: skip
    except BaseException:
        sock.close()
        raise
