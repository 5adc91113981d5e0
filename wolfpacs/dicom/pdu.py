"""PDUs of the DICOM upper layer (PS3.8 section 9): their types, codes and framing.

Plain bytes and numbers: building the few PDUs the node writes itself
(A-ABORT, A-ASSOCIATE-RJ, A-RELEASE, the headers of P-DATA-TF), and
reading one whole PDU off a socket before an association exists.
A-ASSOCIATE-RQ and -AC bodies are pynetdicom's to encode and decode
(:mod:`wolfpacs.dicom.acse`).
"""

from __future__ import annotations

import socket
import struct
import time

from wolfpacs.dicom.errors import PeerAbortedError, ProtocolError

__all__ = [
    "ABORT", "ABORT_BY_USER", "ABORT_INVALID_PARAMETER", "ABORT_UNEXPECTED_PARAMETER",
    "ABORT_UNEXPECTED_PDU", "ABORT_UNRECOGNISED_PDU", "ASSOCIATE_AC", "ASSOCIATE_RJ",
    "ASSOCIATE_RQ", "COMMAND", "DEFAULT_SEND_PDU", "HEADER", "LAST", "MAX_ASSOCIATE_PDU",
    "MAX_SEND_PDU", "PDU_PDV", "PDV", "P_DATA_TF", "Pieces", "REJECT_APPLICATION_CONTEXT",
    "REJECT_BUSY", "REJECT_CALLED_AE", "REJECT_CALLING_AE", "REJECT_LIMIT", "REJECT_NO_REASON",
    "REJECT_PROTOCOL_VERSION", "RELEASE_RP", "RELEASE_RQ", "abort_pdu", "command_pdu",
    "encode_pdu", "read_first",
]  # fmt: skip

# PDU types (PS3.8 9.3.1)
ASSOCIATE_RQ, ASSOCIATE_AC, ASSOCIATE_RJ = 0x01, 0x02, 0x03
P_DATA_TF, RELEASE_RQ, RELEASE_RP, ABORT = 0x04, 0x05, 0x06, 0x07
# A-ABORT (source, reason), PS3.8 9.3.8
ABORT_BY_USER = (0x00, 0x00)
ABORT_UNRECOGNISED_PDU = (0x02, 0x01)
ABORT_UNEXPECTED_PDU = (0x02, 0x02)
ABORT_UNEXPECTED_PARAMETER = (0x02, 0x05)
ABORT_INVALID_PARAMETER = (0x02, 0x06)
# A-ASSOCIATE-RJ (result, source, diagnostic), PS3.8 9.3.4
REJECT_APPLICATION_CONTEXT = (0x01, 0x01, 0x02)
REJECT_PROTOCOL_VERSION = (0x01, 0x02, 0x02)
# ... and those the node answers itself, by its own rules (PS3.8 9.3.4)
REJECT_CALLED_AE = (0x01, 0x01, 0x07)  # permanent, service user, called AE not recognised
REJECT_CALLING_AE = (0x01, 0x01, 0x03)  # permanent, service user, calling AE not recognised
REJECT_NO_REASON = (0x01, 0x01, 0x01)  # permanent, service user, no reason given
REJECT_BUSY = (0x02, 0x03, 0x01)  # transient, service provider, temporary congestion
REJECT_LIMIT = (0x02, 0x03, 0x02)  # transient, service provider, local limit exceeded

HEADER = struct.Struct(">BxL")  # PDU type, reserved, length
PDV = struct.Struct(">LBB")  # item length, context id, message control header
PDU_PDV = struct.Struct(">BxLLBB")  # both: a P-DATA-TF PDU that carries one PDV
COMMAND, LAST = 0x01, 0x02  # message control header bits
MAX_ASSOCIATE_PDU = 1 << 20  # an A-ASSOCIATE-RQ of 128 contexts is a few kilobytes
DEFAULT_SEND_PDU = 1 << 20  # what to send to a peer that announces no maximum
MAX_SEND_PDU = 4 << 20  # a larger announced maximum is not honoured in full

Pieces = list[bytes | memoryview]  # of PDUs, for one sendmsg


def encode_pdu(kind: int, body: bytes) -> bytes:
    """A whole PDU: its header and ``body``."""
    return HEADER.pack(kind, len(body)) + body


def abort_pdu(source: int, reason: int) -> bytes:
    return encode_pdu(ABORT, bytes([0, 0, source, reason]))


def command_pdu(context_id: int, command: bytes) -> Pieces:
    """A command set as one P-DATA-TF of one PDV (command sets are far smaller than any PDU).

    Two pieces, header and command, for a ``sendmsg`` that may carry more.
    """
    size = len(command)
    return [PDU_PDV.pack(P_DATA_TF, size + 6, size + 2, context_id, COMMAND | LAST), command]


def read_first(sock: socket.socket, deadline: float | None = None) -> tuple[int, bytes]:
    """The first PDU on a connection, whole (header and body), and its type.

    ``deadline`` (``time.monotonic()``): the PDU must be whole by then, however
    it trickles in; each read waits only what is left (the socket's timeout is
    changed). None: each read waits the socket's own timeout.

    Raises:
        PeerAbortedError: the connection closed before the PDU was whole.
        ProtocolError: it announces more than :data:`MAX_ASSOCIATE_PDU` bytes.
        OSError: the socket's (a timeout included, TimeoutError at the deadline).
    """
    header = bytearray(6)
    view = memoryview(header)
    got = 0
    while got < 6:
        _wait_at_most(sock, deadline)
        n = sock.recv_into(view[got:])
        if not n:
            raise PeerAbortedError("connection closed before a PDU")
        got += n
    kind, length = HEADER.unpack(header)
    if length > MAX_ASSOCIATE_PDU:
        raise ProtocolError(f"a first PDU of {length} bytes announced")
    body = bytearray(length)
    view = memoryview(body)
    got = 0
    while got < length:
        _wait_at_most(sock, deadline)
        n = sock.recv_into(view[got:])
        if not n:
            raise PeerAbortedError("connection closed inside a PDU")
        got += n
    return kind, bytes(header + body)


def _wait_at_most(sock: socket.socket, deadline: float | None) -> None:
    """Let the next read on ``sock`` wait only until ``deadline``; TimeoutError if it is past."""
    if deadline is None:
        return
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError("the deadline passed before the first PDU was whole")
    sock.settimeout(left)
