"""An attribute's value as the routing rules see it: a tuple of strings, from its raw bytes.

Both ways of peeking (:func:`~wolfpacs.dicom.peek.peek_head`'s scanner and
pydicom's reader in :func:`~wolfpacs.dicom.peek.peek`) hand the raw bytes of
an element here, so that the two cannot disagree on what a value is:

- text (AE, CS, DA, DS, IS, LO, PN, SH, UI, ...): decoded with the
  dataset's Specific Character Set (for the VRs it applies to), split on
  backslash (not LT, ST, UT, UR, whose single value may hold one), each
  value stripped of the spaces and NULs that pad it; empty values left
  out, as they mean "unknown" (so a present but empty attribute is ``()``);
- numbers in binary (US, SS, UL, SL, FL, FD, SV, UV): each value as
  Python's ``str`` writes it (``512``, ``0.5``); IS and DS are text already;
- anything else (sequences, OB/OW and other bytes, AT, a VR the data
  dictionary does not know): None, not an attribute a rule can match.

An element whose VR is UN, or not given (implicit VR), takes its VR from
the data dictionary. Pure functions, no I/O.
"""

from __future__ import annotations

import functools
import struct

from pydicom.charset import convert_encodings, decode_bytes
from pydicom.datadict import dictionary_VR, keyword_for_tag

__all__ = ["MAX_VALUE", "attribute_values", "encodings", "keyword"]

MAX_VALUE = 4096  # bytes: a longer value is not read for the rules (no routing value is so long)
_NUMBERS = {
    "US": "H", "SS": "h", "UL": "L", "SL": "l", "FL": "f", "FD": "d", "SV": "q", "UV": "Q",
}  # fmt: skip
_CHARSET_TEXT = frozenset({"LO", "LT", "PN", "SH", "ST", "UC", "UT"})  # the character set applies
_ASCII_TEXT = frozenset({"AE", "AS", "CS", "DA", "DS", "DT", "IS", "TM", "UI", "UR"})
_SINGLE = frozenset({"LT", "ST", "UT", "UR"})  # one value, which may hold a backslash
# Bytes that reset an ISO 2022 encoding (pydicom's own choice for text and names).
_DELIMITERS = {0x5C, 0x0D, 0x0A, 0x09, 0x0C}
_PN_DELIMITERS = _DELIMITERS | {0x3D, 0x5E}
_PADDING = " \x00"


@functools.lru_cache(maxsize=64)
def encodings(charset: bytes | None) -> tuple[str, ...]:
    """Python's codecs for a raw (0008,0005) Specific Character Set value (None: the default)."""
    terms = [t.strip(_PADDING) for t in charset.decode("latin-1").split("\\")] if charset else None
    try:
        return tuple(convert_encodings(terms))
    except (LookupError, ValueError):  # pydicom raises only if configured to; be sure anyway
        return tuple(convert_encodings(None))


@functools.lru_cache(maxsize=1024)
def keyword(tag: int) -> str:
    """The data dictionary's keyword for ``tag``, or ``GGGGEEEE`` in hex if it has none."""
    return keyword_for_tag(tag) or f"{tag:08X}"


@functools.lru_cache(maxsize=1024)
def _dictionary_vr(tag: int) -> str | None:
    try:
        return dictionary_VR(tag)
    except KeyError:
        return None


def attribute_values(
    tag: int,
    vr: str | None,
    raw: bytes,
    little_endian: bool = True,
    charset: bytes | None = None,
) -> tuple[str, ...] | None:
    """The values of element ``tag`` whose value is ``raw``; None if not text or numbers.

    ``vr``: the element's explicit VR, or None (implicit VR: the data
    dictionary's is taken); ``charset``: the dataset's raw Specific
    Character Set, if it has one. Never raises: undecodable bytes are
    replaced (as pydicom does, with a warning the node filters out).
    """
    if vr is None or vr == "UN":
        vr = _dictionary_vr(tag)
    if vr is None:
        return None
    if vr in _NUMBERS:
        code = ("<" if little_endian else ">") + _NUMBERS[vr]  # standard sizes, not native
        usable = raw[: len(raw) // struct.calcsize(code) * struct.calcsize(code)]
        return tuple(str(v) for (v,) in struct.iter_unpack(code, usable))
    if vr in _CHARSET_TEXT:
        delimiters = _PN_DELIMITERS if vr == "PN" else _DELIMITERS
        try:
            text = decode_bytes(raw, list(encodings(charset)), delimiters)
        except (LookupError, ValueError):  # a strict pydicom configuration; never the default
            text = raw.decode("latin-1")
    elif vr in _ASCII_TEXT:
        text = raw.decode("latin-1")  # ASCII by the standard; latin-1 never fails
    else:
        return None
    parts = (text,) if vr in _SINGLE else tuple(text.split("\\"))
    return tuple(value for part in parts if (value := part.strip(_PADDING)))
