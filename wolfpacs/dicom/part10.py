"""DICOM files (PS3.10) as the spool keeps them: a preamble, the file meta, the dataset as received.

A received dataset is written after a file meta built from its C-STORE
request and presentation context, byte for byte as it arrived; a file
is sent by skipping its meta and streaming the rest. Neither side ever
decodes the dataset.
"""

from __future__ import annotations

import struct

from wolfpacs.dicom.dimse import text_value, uid_value

__all__ = ["IMPLEMENTATION_CLASS_UID", "IMPLEMENTATION_VERSION", "Part10Error",
           "dataset_offset", "file_meta"]  # fmt: skip

# A UUID-derived UID (PS3.5 B.2): ours without a registered root.
IMPLEMENTATION_CLASS_UID = "2.25.287016276430449422078339915464849518038"
IMPLEMENTATION_VERSION = "WOLFPACS_PY1"
PREAMBLE = b"\x00" * 128 + b"DICM"
_HEADER = struct.Struct("<HH2sHL")  # group, element, VR, length 2, value (UL)


class Part10Error(ValueError):
    """Not a DICOM file with a preamble and a file meta group length."""


def _element(element: int, vr: bytes, value: bytes) -> bytes:
    if vr == b"OB":
        return struct.pack("<HH2s2xL", 0x0002, element, vr, len(value)) + value
    return struct.pack("<HH2sH", 0x0002, element, vr, len(value)) + value


def file_meta(
    sop_class_uid: str, sop_instance_uid: str, transfer_syntax: str, source_ae: str = ""
) -> bytes:
    """The preamble and file meta (Explicit VR Little Endian) for a dataset received as given."""
    body = b"".join([
        _element(0x0001, b"OB", b"\x00\x01"),
        _element(0x0002, b"UI", uid_value(sop_class_uid)),
        _element(0x0003, b"UI", uid_value(sop_instance_uid)),
        _element(0x0010, b"UI", uid_value(transfer_syntax)),
        _element(0x0012, b"UI", uid_value(IMPLEMENTATION_CLASS_UID)),
        _element(0x0013, b"SH", text_value(IMPLEMENTATION_VERSION, 16)),
        *([_element(0x0016, b"AE", text_value(source_ae, 16))] if source_ae else []),
    ])  # fmt: skip
    return PREAMBLE + _element(0x0000, b"UL", struct.pack("<L", len(body))) + body


def dataset_offset(first: bytes | memoryview) -> int:
    """Where the dataset starts in a DICOM file, from its first bytes (144 are enough).

    Raises:
        Part10Error: no preamble, or no (0002,0000) group length first.
    """
    head = bytes(first[:144])
    if len(head) < 144 or head[128:132] != b"DICM":
        raise Part10Error("no DICOM preamble")
    group, element, vr, length, value = _HEADER.unpack_from(head, 132)
    if (group, element, vr, length) != (0x0002, 0x0000, b"UL", 4):
        raise Part10Error("no file meta group length (0002,0000) first")
    return 144 + int(value)
