"""Read the few tags routing needs from a received instance, without decoding the rest.

Only the file meta and the dataset up to (0020,000E) SeriesInstanceUID are
parsed; pixel data and everything after is never read. The file itself is
never changed: it is passed on byte for byte.
"""

from __future__ import annotations

import re
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filebase import DicomBytesIO
from pydicom.filereader import read_dataset, read_file_meta_info, read_partial
from pydicom.tag import Tag
from pydicom.uid import DeflatedExplicitVRLittleEndian

__all__ = ["PeekError", "RoutingTags", "peek"]

_STUDY_UID = Tag(0x0020, 0x000D)
_SERIES_UID = Tag(0x0020, 0x000E)
_SOP_CLASS_UID = Tag(0x0008, 0x0016)
_SOP_INSTANCE_UID = Tag(0x0008, 0x0018)
_WANTED = [_SOP_CLASS_UID, _SOP_INSTANCE_UID, _STUDY_UID, _SERIES_UID]
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
    study_uid: str
    series_uid: str
    sop_class_uid: str
    sop_instance_uid: str
    transfer_syntax: str


def _text(value: object) -> str:
    return str(value or "").strip(" \x00")


def _past_series(tag: object, _vr: object, _length: object) -> bool:
    return tag > _SERIES_UID  # type: ignore[operator]


def _read_deflated(fp: BinaryIO, meta: FileMetaDataset) -> Dataset:
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
        DicomBytesIO(prefix), is_implicit_VR=False, is_little_endian=True,
        stop_when=_past_series, defer_size=4096, specific_tags=_WANTED,
    )  # fmt: skip
    if _STUDY_UID not in ds and len(prefix) >= INFLATE_LIMIT:
        raise PeekError(f"no StudyInstanceUID in the first {INFLATE_LIMIT} inflated bytes")
    return ds


def _value(ds: object, tag: object) -> str:
    return _text(ds[tag].value) if tag in ds else ""  # type: ignore[index,operator]


def peek(path: Path) -> RoutingTags:
    """The routing tags of the DICOM file at ``path`` (preamble and file meta included).

    SOP class, SOP instance and transfer syntax come from the file meta
    (for a received instance: what the C-STORE request and the presentation
    context said); the study and series from the dataset itself.

    Raises:
        PeekError: the file cannot be parsed that far, or it has no valid
            StudyInstanceUID (``missing_study=True``).
    """
    try:
        with open(path, "rb") as fp, warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pydicom's remarks on odd data are not our errors
            meta = read_file_meta_info(path)
            if meta.get("TransferSyntaxUID") == DeflatedExplicitVRLittleEndian:
                ds = _read_deflated(fp, meta)
            else:
                ds = read_partial(
                    fp, stop_when=_past_series, defer_size=4096, specific_tags=_WANTED
                )
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
    if not study:
        raise PeekError("no StudyInstanceUID (0020,000D)", missing_study=True)
    if not _UID.match(study):
        raise PeekError(
            f"invalid StudyInstanceUID ({len(study)} characters): must be 1-64 printable",
            missing_study=True,
        )
    if not transfer_syntax or not sop_class or not sop_instance:
        raise PeekError("no transfer syntax, SOP class or SOP instance UID in the file meta")
    return RoutingTags(study, series, sop_class, sop_instance, transfer_syntax)
