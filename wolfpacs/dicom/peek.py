"""Read the few tags routing needs from a received instance, without decoding the rest.

Only the file meta and the dataset up to (0020,000E) SeriesInstanceUID are
parsed, or up to the last of the ``extra`` tags the caller asks for (the
ones its routing rules match on: :attr:`RoutingTags.attributes`); pixel
data and everything after is never read. The file itself is never
changed: it is passed on byte for byte.

:func:`peek_head` reads the first bytes of a dataset as they arrived, with
a scanner of its own that knows just enough of PS3.5 (Little Endian,
explicit or implicit VR, sequences of either length) to step over
elements; a few microseconds where pydicom takes a few hundred. Whatever it
is not sure of (big endian, deflated, an element cut by the end of the
bytes it has) it leaves to :func:`peek`, which reads the file with pydicom.
"""

from __future__ import annotations

import re
import struct
import warnings
import zlib
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, cast

from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filebase import DicomBytesIO
from pydicom.filereader import read_dataset, read_file_meta_info, read_partial
from pydicom.tag import BaseTag, Tag
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ImplicitVRLittleEndian,
)

from wolfpacs.dicom.attributes import MAX_VALUE, attribute_values, keyword

__all__ = ["PeekError", "RoutingTags", "peek", "peek_head"]

_STUDY_UID = Tag(0x0020, 0x000D)
_SERIES_UID = Tag(0x0020, 0x000E)
_SOP_CLASS_UID = Tag(0x0008, 0x0016)
_SOP_INSTANCE_UID = Tag(0x0008, 0x0018)
_WANTED: list[BaseTag | int] = [_SOP_CLASS_UID, _SOP_INSTANCE_UID, _STUDY_UID, _SERIES_UID]
_CHARSET = 0x00080005
PIXEL_DATA = 0x7FE00010

# pydicom's remarks on odd data (a UID over 64 characters...) are not the node's errors:
# the refusal's own log line says what is wrong. A filter for the process, once:
# warnings.catch_warnings around each peek changes process-wide state, so with
# receivers peeking side by side one restores what another relies on, and a raw
# "UserWarning" reached the node's log.
warnings.filterwarnings("ignore", category=UserWarning, module=r"pydicom(\.|$)")
INFLATE_LIMIT = 1 << 20  # bytes of a deflated dataset inflated to find its routing tags
# A UI value: at most 64 characters (PS3.5 6.2); printable ASCII, no backslash.
_UID = re.compile(r"^[\x21-\x5b\x5d-\x7e]{1,64}$")


class PeekError(ValueError):
    """The instance cannot be routed; ``missing_study`` tells the two cases apart."""

    def __init__(self, message: str, missing_study: bool = False) -> None:
        super().__init__(message)
        self.missing_study = missing_study


@dataclass(frozen=True)
class RoutingTags:
    """What the node routes an instance by.

    ``attributes``: the values of the ``extra`` tags asked for that the
    dataset has (at its top level), keyed by keyword, each a tuple of
    strings (:func:`~wolfpacs.dicom.attributes.attribute_values`: ``()``
    for a present but empty one); a tag it lacks, or whose value is over
    ``MAX_VALUE`` bytes or neither text nor numbers, is not a key.
    """

    study_uid: str
    series_uid: str
    sop_class_uid: str
    sop_instance_uid: str
    transfer_syntax: str
    attributes: dict[str, tuple[str, ...]] = field(default_factory=dict, hash=False)


def _text(value: object) -> str:
    return str(value or "").strip(" \x00")


def _last(extra: Collection[int]) -> int:
    """The last tag to read: the series UID's, or the last extra one's.

    Raises:
        ValueError: an extra tag lies at or after PixelData (a caller's mistake:
            the rules' checker refuses such keywords).
    """
    last = max(extra, default=_SERIES)
    if last >= PIXEL_DATA:
        raise ValueError(f"tag {last:08X} is at or after PixelData: never peeked")
    return max(last, _SERIES)


def _past(last: int) -> Callable[[BaseTag, str | None, int], bool]:
    """pydicom's ``stop_when``: past ``last``, nothing more is read."""
    return lambda tag, _vr, _length: bool(tag > last)


def _attributes(ds: Dataset, extra: Collection[int]) -> dict[str, tuple[str, ...]]:
    """The values of the ``extra`` tags that pydicom read, raw, decoded as the scanner's are."""
    if not extra:
        return {}
    charset = _charset(ds)
    found = {}
    for tag in sorted(extra):
        raw = _raw(ds, tag)
        if raw is not None:
            value, vr, little_endian = raw
            values = attribute_values(tag, vr, value, little_endian, charset)
            if values is not None:
                found[keyword(tag)] = values
    return found


def _charset(ds: Dataset) -> bytes | None:
    """The Specific Character Set as the scanner sees it: its raw value, terms split by '\\'."""
    element = ds.get_item(_CHARSET, keep_deferred=True)
    if element is None:
        return None
    if isinstance(element, RawDataElement):
        return element.value if isinstance(element.value, bytes) else b""
    # pydicom converts this one as it reads (it needs it for what follows)
    value = element.value
    terms = [value or ""] if value is None or isinstance(value, str) else list(value)
    return "\\".join(str(t) for t in terms).encode("latin-1", "replace")


def _raw(ds: Dataset, tag: int) -> tuple[bytes, str | None, bool] | None:
    """The raw value of ``tag`` as read (not converted), its VR and byte order.

    None if absent, deferred (over ``MAX_VALUE`` bytes) or a sequence pydicom parsed.
    """
    element = ds.get_item(tag, keep_deferred=True)
    if not isinstance(element, RawDataElement):
        return None
    if element.length == 0:  # (pydicom's empty raw value is None for an implicit VR)
        return b"", element.VR, element.is_little_endian
    if not isinstance(element.value, bytes):
        return None
    return element.value, element.VR, element.is_little_endian


def _read_deflated(fp: BinaryIO, meta: FileMetaDataset, extra: Collection[int]) -> Dataset:
    """The routing tags of a deflated dataset, inflating no more than ``INFLATE_LIMIT``.

    pydicom would inflate the whole dataset in memory: a deflate bomb's way in.
    """
    fp.seek(132 + 12 + int(meta.get("FileMetaInformationGroupLength", 0)))
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    prefix = b""
    while len(prefix) < INFLATE_LIMIT:
        chunk = fp.read(65536)
        if not chunk:
            break
        prefix += inflater.decompress(chunk, INFLATE_LIMIT - len(prefix))
    ds = read_dataset(
        cast("BinaryIO", DicomBytesIO(prefix)),  # one, in all but pydicom's annotations
        is_implicit_VR=False, is_little_endian=True,
        stop_when=_past(_last(extra)), defer_size=MAX_VALUE, specific_tags=[*_WANTED, *extra],
    )  # fmt: skip
    if _STUDY_UID not in ds and len(prefix) >= INFLATE_LIMIT:
        raise PeekError(f"no StudyInstanceUID in the first {INFLATE_LIMIT} inflated bytes")
    return ds


def _value(ds: Dataset, tag: BaseTag) -> str:
    return _text(ds[tag].value) if tag in ds else ""


def peek(path: Path, extra: Collection[int] = ()) -> RoutingTags:
    """The routing tags of the DICOM file at ``path`` (preamble and file meta included).

    SOP class, SOP instance and transfer syntax come from the file meta
    (for a received instance: what the C-STORE request and the presentation
    context said); the study and series from the dataset itself, and the
    values of the ``extra`` tags (:attr:`RoutingTags.attributes`).

    Raises:
        PeekError: the file cannot be parsed that far, or it has no valid
            StudyInstanceUID (``missing_study=True``).
        ValueError: a tag of ``extra`` is at or after PixelData (7FE0,0010).
    """
    last = _last(extra)
    try:
        with open(path, "rb") as fp:
            meta = read_file_meta_info(path)
            if meta.get("TransferSyntaxUID") == DeflatedExplicitVRLittleEndian:
                ds = _read_deflated(fp, meta, extra)
            else:
                ds = read_partial(fp, stop_when=_past(last), defer_size=MAX_VALUE,
                                  specific_tags=[*_WANTED, *extra])  # fmt: skip
            attributes = _attributes(ds, extra)  # first: reading a value converts it
            transfer_syntax = _text(meta.get("TransferSyntaxUID"))
            sop_class = _text(meta.get("MediaStorageSOPClassUID")) or _value(ds, _SOP_CLASS_UID)
            sop_instance = _text(meta.get("MediaStorageSOPInstanceUID")) or _value(
                ds, _SOP_INSTANCE_UID
            )
            study = _value(ds, _STUDY_UID)
            series = _value(ds, _SERIES_UID)
    except PeekError:
        raise
    except Exception as exc:  # pydicom raises many kinds on truncated or hostile data
        raise PeekError(f"unreadable dataset: {type(exc).__name__}: {exc}") from None
    # Garbage after a file meta parses as nothing at all: "cannot parse" (0xC001), not
    # "no StudyInstanceUID" (0xC002), which a dataset with its SOP UIDs but no study earns.
    parsed = _SOP_CLASS_UID in ds or _SOP_INSTANCE_UID in ds or _SERIES_UID in ds
    tags = RoutingTags(study, series, sop_class, sop_instance, transfer_syntax, attributes)
    return _checked(tags, parsed)


def _checked(tags: RoutingTags, parsed: bool = True) -> RoutingTags:
    """``parsed``: the dataset held an element the node knows (else it is not a dataset)."""
    if not tags.study_uid and not parsed:
        raise PeekError("unreadable dataset: no element of a DICOM dataset where one was due")
    if not tags.study_uid:
        raise PeekError("no StudyInstanceUID (0020,000D)", missing_study=True)
    if not _UID.match(tags.study_uid):
        raise PeekError(
            f"invalid StudyInstanceUID ({len(tags.study_uid)} characters): must be 1-64 printable",
            missing_study=True,
        )
    if not tags.transfer_syntax or not tags.sop_class_uid or not tags.sop_instance_uid:
        raise PeekError("no transfer syntax, SOP class or SOP instance UID in the file meta")
    return tags


# -- the quick scanner ----------------------------------------------------------------

_TAG_LENGTH = struct.Struct("<HHL")  # implicit VR: group, element, 4-byte length
_EXPLICIT = struct.Struct("<HH2sH")  # explicit VR: group, element, VR, 2-byte length
_LONG = struct.Struct("<L")
# Explicit VRs with a 4-byte length after two reserved bytes (PS3.5 7.1.2)
_LONG_VRS = frozenset(b"OB OD OF OL OV OW SQ SV UC UN UR UT UV".split())
_UNDEFINED = 0xFFFFFFFF
_ITEM, _ITEM_END, _SEQUENCE_END = 0xFFFEE000, 0xFFFEE00D, 0xFFFEE0DD
_STUDY, _SERIES = 0x0020000D, 0x0020000E
_MAX_DEPTH = 16


class _UnsureError(Exception):
    """The quick scanner cannot tell: pydicom reads the file instead."""


def _element(head: bytes, offset: int, implicit: bool) -> tuple[int, bytes | None, int, int]:
    """(tag, explicit VR or None, value length, value offset) of the element at ``offset``."""
    if offset + 8 > len(head):
        raise _UnsureError
    if implicit:
        group, element, length = _TAG_LENGTH.unpack_from(head, offset)
        return group << 16 | element, None, length, offset + 8
    group, element, vr, length = _EXPLICIT.unpack_from(head, offset)
    if group == 0xFFFE:  # item and delimiters have no VR in any syntax
        group, element, length = _TAG_LENGTH.unpack_from(head, offset)
        return group << 16 | element, None, length, offset + 8
    if vr in _LONG_VRS:
        if offset + 12 > len(head):
            raise _UnsureError
        return group << 16 | element, vr, _LONG.unpack_from(head, offset + 8)[0], offset + 12
    if not vr.isalpha():
        raise _UnsureError  # not explicit VR after all
    return group << 16 | element, vr, length, offset + 8


def _skip_undefined(head: bytes, offset: int, implicit: bool, depth: int) -> int:
    """Past the sequence of undefined length whose items start at ``offset``."""
    if depth > _MAX_DEPTH:
        raise _UnsureError
    while True:
        tag, _vr, length, offset = _element(head, offset, True)
        if tag == _SEQUENCE_END:
            return offset
        if tag != _ITEM:
            raise _UnsureError
        if length != _UNDEFINED:
            offset += length
            continue
        while True:  # an item of undefined length: its elements, up to the item end
            tag, vr, length, offset = _element(head, offset, implicit)
            if tag == _ITEM_END:
                break
            if length == _UNDEFINED:
                if vr not in (None, b"SQ"):
                    raise _UnsureError  # UN of undefined length: implicit VR inside
                offset = _skip_undefined(head, offset, implicit, depth + 1)
            else:
                offset += length


def peek_head(
    head: bytes,
    transfer_syntax: str,
    sop_class_uid: str,
    sop_instance_uid: str,
    extra: Collection[int] = (),
) -> RoutingTags | None:
    """The routing tags from the first bytes of a dataset; None if unsure (then :func:`peek`).

    ``extra``: as for :func:`peek`, with the same result; the head must
    reach past the last of them (else None: unsure).

    Raises:
        PeekError: the study UID is there but not a valid UID.
        ValueError: a tag of ``extra`` is at or after PixelData (7FE0,0010).
    """
    last = _last(extra) if extra else _SERIES  # (the common case without rules: no call)
    if transfer_syntax in (ExplicitVRBigEndian, DeflatedExplicitVRLittleEndian):
        return None
    implicit = transfer_syntax == ImplicitVRLittleEndian
    found: dict[int, str] = {}
    raw: dict[int, tuple[bytes, bytes | None]] = {}  # extra tags (and the charset): value, VR
    wanted = frozenset((*extra, _CHARSET)) if extra else frozenset()  # one look-up an element
    offset = 0
    try:
        while offset < len(head):
            tag, vr, length, offset = _element(head, offset, implicit)
            if tag > last:
                break
            if length == _UNDEFINED:
                if vr not in (None, b"SQ"):
                    return None
                offset = _skip_undefined(head, offset, implicit, 0)
                continue
            if tag in (_STUDY, _SERIES):
                if offset + length > len(head):
                    return None
                found[tag] = _text(head[offset : offset + length].decode("ascii", "replace"))
            if tag in wanted and (length <= MAX_VALUE or tag == _CHARSET):
                if offset + length > len(head):
                    return None
                raw[tag] = (head[offset : offset + length], vr)
            offset += length
        else:
            return None  # the bytes ended before the last tag wanted: the file has the rest
    except (_UnsureError, struct.error):
        return None
    if _STUDY not in found:
        return None  # pydicom has the last word on what is missing
    return _checked(RoutingTags(found.get(_STUDY, ""), found.get(_SERIES, ""),
                                sop_class_uid, sop_instance_uid, transfer_syntax,
                                _head_attributes(raw, extra) if extra else {}))  # fmt: skip


def _head_attributes(
    raw: dict[int, tuple[bytes, bytes | None]], extra: Collection[int]
) -> dict[str, tuple[str, ...]]:
    """The scanner's raw values of the ``extra`` tags, decoded (as :func:`_attributes` does)."""
    charset = raw[_CHARSET][0] if _CHARSET in raw else None
    found = {}
    for tag, (value, vr) in raw.items():
        if tag in extra:
            values = attribute_values(tag, vr.decode("ascii") if vr else None, value, True, charset)
            if values is not None:
                found[keyword(tag)] = values
    return found
