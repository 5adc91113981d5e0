"""DIMSE command sets for the two services a node speaks, C-STORE and C-ECHO, and refusals.

A command set is a little dataset of group 0000 elements, always in
Implicit VR Little Endian (PS3.7 section 6.3.1, annex E). The node needs
only a handful of its elements, so they are packed and parsed here
directly: a C-STORE on the data path costs a few microseconds of command
handling instead of a pydicom dataset each way.

Any other request gets the failure PS3.7 gives it (:func:`refusal`,
:func:`refusal_rsp`).

Error contract: :func:`decode` raises :class:`DimseError` for a command set
it cannot parse; the association that sent it is aborted.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from wolfpacs.dicom.status import Status
from wolfpacs.dicom.uids import VERIFICATION

__all__ = [
    "C_CANCEL_RQ", "C_ECHO_RQ", "C_ECHO_RSP", "C_STORE_RQ", "C_STORE_RSP", "Command",
    "DimseError", "decode", "echo_rq", "echo_rsp", "refusal", "refusal_rsp", "store_rq",
    "store_rsp", "text_value", "uid_value",
]  # fmt: skip

C_STORE_RQ = 0x0001
C_STORE_RSP = 0x8001
C_ECHO_RQ = 0x0030
C_ECHO_RSP = 0x8030
C_CANCEL_RQ = 0x0FFF  # it has no response (PS3.7 9.3.2.3, 9.3.3.3, 9.3.4.3)
# The requests of PS3.7 9.3 and 10.3 but C-CANCEL: each has a response, its field | 0x8000.
# C-GET, C-FIND, C-MOVE; N-EVENT-REPORT, N-GET, N-SET, N-ACTION, N-CREATE, N-DELETE.
_ANSWERED = frozenset({C_STORE_RQ, C_ECHO_RQ, 0x0010, 0x0020, 0x0021,
                       0x0100, 0x0110, 0x0120, 0x0130, 0x0140, 0x0150})  # fmt: skip
NO_DATASET = 0x0101  # CommandDataSetType: no dataset follows
DATASET = 0x0000  # any other value: a dataset follows

# (0000,eeee) element numbers
_GROUP_LENGTH = 0x0000
_SOP_CLASS = 0x0002
_COMMAND_FIELD = 0x0100
_MESSAGE_ID = 0x0110
_RESPONDED_TO = 0x0120
_PRIORITY = 0x0700
_DATASET_TYPE = 0x0800
_STATUS = 0x0900
_ERROR_COMMENT = 0x0902
_SOP_INSTANCE = 0x1000

_ELEMENT = struct.Struct("<HHL")
_US = struct.Struct("<H")
MAX_COMMAND_BYTES = 1 << 16  # a command set is a few hundred bytes; more is not a command


class DimseError(ValueError):
    """A command set that cannot be parsed, or lacks what its command requires."""


@dataclass(frozen=True)
class Command:
    """The elements of one command set the node acts on (plain data)."""

    field: int
    message_id: int = 0  # MessageID of a request, MessageIDBeingRespondedTo of a response
    sop_class_uid: str = ""
    sop_instance_uid: str = ""
    has_dataset: bool = False
    status: int | None = None
    error_comment: str = ""
    priority: int = 0

    @property
    def is_request(self) -> bool:
        return not self.field & 0x8000


def _text(value: bytes) -> str:
    return value.decode("ascii", "replace").rstrip(" \x00")


def decode(data: bytes | bytearray | memoryview) -> Command:
    """Parse a command set (Implicit VR Little Endian group 0000).

    Raises:
        DimseError: truncated, not group 0000, or without a CommandField.
    """
    view = memoryview(data)
    values: dict[int, bytes] = {}
    offset, end = 0, len(view)
    while offset < end:
        if end - offset < 8:
            raise DimseError(f"command set truncated at byte {offset}")
        group, element, length = _ELEMENT.unpack_from(view, offset)
        offset += 8
        if group != 0x0000:
            raise DimseError(f"element ({group:04X},{element:04X}) in a command set")
        if length > end - offset:
            raise DimseError(f"element (0000,{element:04X}) runs past the command set")
        values[element] = bytes(view[offset : offset + length])
        offset += length
    try:
        field = _US.unpack(values[_COMMAND_FIELD])[0]
    except (KeyError, struct.error):
        raise DimseError("no CommandField (0000,0100) in the command set") from None

    def number(element: int) -> int | None:
        value = values.get(element)
        if value is None:
            return None
        if len(value) != 2:
            raise DimseError(f"element (0000,{element:04X}) is not a US")
        return int(_US.unpack(value)[0])

    is_request = not field & 0x8000
    message_id = number(_MESSAGE_ID if is_request else _RESPONDED_TO)
    if message_id is None:
        raise DimseError("no MessageID in the command set")
    dataset_type = number(_DATASET_TYPE)
    return Command(
        field=field,
        message_id=message_id,
        sop_class_uid=_text(values.get(_SOP_CLASS, b"")),
        sop_instance_uid=_text(values.get(_SOP_INSTANCE, b"")),
        has_dataset=dataset_type is not None and dataset_type != NO_DATASET,
        status=number(_STATUS),
        error_comment=_text(values.get(_ERROR_COMMENT, b"")),
        priority=number(_PRIORITY) or 0,
    )


def uid_value(value: str) -> bytes:
    """A UI value, padded to even length with a NUL (PS3.5 6.2); the file meta's too."""
    data = value.encode("ascii")
    return data + b"\x00" if len(data) % 2 else data


def text_value(value: str, limit: int) -> bytes:
    """One value of a text VR (LO, SH, AE): at most ``limit`` characters, padded with a space.

    A backslash would split it in two (value multiplicity) and control
    characters are not allowed: each becomes ``/``.
    """
    value = "".join(c if " " <= c <= "~" and c != "\\" else "/" for c in value)
    data = value.encode("ascii", "replace")[:limit]
    return data + b" " if len(data) % 2 else data


def _encode(elements: list[tuple[int, bytes]]) -> bytes:
    body = b"".join(_ELEMENT.pack(0, element, len(value)) + value for element, value in elements)
    return _ELEMENT.pack(0, _GROUP_LENGTH, 4) + struct.pack("<L", len(body)) + body


def store_rq(
    message_id: int, sop_class_uid: str, sop_instance_uid: str, priority: int = 0
) -> bytes:
    """A C-STORE-RQ command set announcing a dataset."""
    return _encode([
        (_SOP_CLASS, uid_value(sop_class_uid)),
        (_COMMAND_FIELD, _US.pack(C_STORE_RQ)),
        (_MESSAGE_ID, _US.pack(message_id)),
        (_PRIORITY, _US.pack(priority)),
        (_DATASET_TYPE, _US.pack(DATASET)),
        (_SOP_INSTANCE, uid_value(sop_instance_uid)),
    ])  # fmt: skip


def store_rsp(request: Command, status: int, error_comment: str = "") -> bytes:
    """The C-STORE-RSP to ``request``; an ErrorComment (at most 64 characters) if given."""
    elements = [
        (_SOP_CLASS, uid_value(request.sop_class_uid)),
        (_COMMAND_FIELD, _US.pack(C_STORE_RSP)),
        (_RESPONDED_TO, _US.pack(request.message_id)),
        (_DATASET_TYPE, _US.pack(NO_DATASET)),
        (_STATUS, _US.pack(status)),
    ]
    if error_comment:
        elements.append((_ERROR_COMMENT, text_value(error_comment, 64)))
    elements.append((_SOP_INSTANCE, uid_value(request.sop_instance_uid)))
    return _encode(elements)


def refusal(command: Command, abstract_syntax: str) -> int | None:
    """The failure status to answer a request with, unserved, on a context; None: serve it.

    - A C-STORE whose Affected SOP Class UID is not the context's abstract
      syntax, or on the Verification context (the one context the node
      accepts that is not storage: :mod:`wolfpacs.dicom.acse`), is refused
      0x0122, "Refused: SOP Class not supported" (PS3.7 9.1.1.1.9 and C.5;
      pynetdicom's answer too). Not 0xA900: PS3.4 B.2.3 means the dataset
      does not match its SOP class, and the node reads no dataset.
    - Any other request with a response defined but C-ECHO gets 0x0211,
      "Unrecognized operation" (PS3.7 C.5): not one the peers agreed on.

    None for C-ECHO, a C-STORE to serve, and commands that have no response
    (C-CANCEL, responses, undefined fields): the caller serves, ignores or aborts.
    """
    if command.field == C_STORE_RQ:
        if command.sop_class_uid != abstract_syntax or abstract_syntax == VERIFICATION:
            return Status.SOP_CLASS_NOT_SUPPORTED
        return None
    if command.field in _ANSWERED and command.field != C_ECHO_RQ:
        return Status.UNRECOGNIZED_OPERATION
    return None


_REFUSALS = {
    Status.SOP_CLASS_NOT_SUPPORTED: "SOP class not supported on this presentation context",
    Status.UNRECOGNIZED_OPERATION: "operation not served by this node",
}


def refusal_rsp(request: Command, status: int) -> bytes:
    """The response to ``request`` (its field | 0x8000) with a failure ``status``, no dataset.

    Affected SOP Class and Instance UIDs are echoed when the request named
    them (optional in every response, PS3.7 9.3 and 10.3); an ErrorComment
    says why.
    """
    error_comment = _REFUSALS.get(status, "")
    elements = [(_SOP_CLASS, uid_value(request.sop_class_uid))] if request.sop_class_uid else []
    elements += [
        (_COMMAND_FIELD, _US.pack(request.field | 0x8000)),
        (_RESPONDED_TO, _US.pack(request.message_id)),
        (_DATASET_TYPE, _US.pack(NO_DATASET)),
        (_STATUS, _US.pack(status)),
    ]
    if error_comment:
        elements.append((_ERROR_COMMENT, text_value(error_comment, 64)))
    if request.sop_instance_uid:
        elements.append((_SOP_INSTANCE, uid_value(request.sop_instance_uid)))
    return _encode(elements)


def echo_rq(message_id: int) -> bytes:
    return _encode([
        (_SOP_CLASS, uid_value("1.2.840.10008.1.1")),
        (_COMMAND_FIELD, _US.pack(C_ECHO_RQ)),
        (_MESSAGE_ID, _US.pack(message_id)),
        (_DATASET_TYPE, _US.pack(NO_DATASET)),
    ])  # fmt: skip


def echo_rsp(request: Command, status: int = 0x0000) -> bytes:
    return _encode([
        (_SOP_CLASS, uid_value(request.sop_class_uid or "1.2.840.10008.1.1")),
        (_COMMAND_FIELD, _US.pack(C_ECHO_RSP)),
        (_RESPONDED_TO, _US.pack(request.message_id)),
        (_DATASET_TYPE, _US.pack(NO_DATASET)),
        (_STATUS, _US.pack(status)),
    ])  # fmt: skip
