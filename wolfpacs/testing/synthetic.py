"""Synthetic DICOM instances for the demo, the tests and the benchmarks.

CT-like images in any transfer syntax WolfPACS accepts: uncompressed ones
carry real pixel bytes, compressed ones carry encapsulated frames of
random bytes (nothing on the way decodes them; they only have to arrive
unchanged). Derived instances are what a simulated AI worker sends back.
"""

from __future__ import annotations

import random
from pathlib import Path

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import (
    UID,
    CTImageStorage,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGLosslessSV1,
    JPEGLSLossless,
    RLELossless,
    SecondaryCaptureImageStorage,
    generate_uid,
)

__all__ = [
    "STORESCU_PROPOSES", "SYNTAXES", "ct_instance", "derived_instance", "write", "write_study",
]  # fmt: skip

# The transfer syntaxes synthetic instances come in: those the node must pass through.
SYNTAXES = [
    ImplicitVRLittleEndian, ExplicitVRLittleEndian, ExplicitVRBigEndian,
    DeflatedExplicitVRLittleEndian, JPEGBaseline8Bit, JPEGLosslessSV1, JPEGLSLossless,
    JPEG2000Lossless, RLELossless,
]  # fmt: skip

# DCMTK storescu's option that proposes each of SYNTAXES as it is in the file.
STORESCU_PROPOSES = {
    "1.2.840.10008.1.2": "-xi",
    "1.2.840.10008.1.2.1": "-xe",
    "1.2.840.10008.1.2.2": "-xb",
    "1.2.840.10008.1.2.1.99": "-xd",
    "1.2.840.10008.1.2.4.50": "-xy",
    "1.2.840.10008.1.2.4.70": "-xs",
    "1.2.840.10008.1.2.4.80": "-xt",
    "1.2.840.10008.1.2.4.90": "-xv",
    "1.2.840.10008.1.2.5": "-xr",
}

_UNCOMPRESSED = {"1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2",
                 "1.2.840.10008.1.2.1.99"}  # fmt: skip


def ct_instance(
    study_uid: str,
    series_uid: str,
    number: int,
    *,
    rows: int = 64,
    columns: int = 64,
    transfer_syntax: str = ExplicitVRLittleEndian,
    patient_id: str = "WOLF-0001",
    seed: int | None = None,
) -> Dataset:
    """One CT image of a study and series, ready to :func:`write`."""
    rng = random.Random(seed if seed is not None else f"{series_uid}/{number}")
    ds = Dataset()
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = generate_uid()
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.PatientID = patient_id
    ds.PatientName = "Synthetic^Wolf"
    ds.Modality = "CT"
    ds.StudyDate = "20261126"
    ds.SeriesNumber = 1
    ds.InstanceNumber = number
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.Rows, ds.Columns = rows, columns
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 12, 11
    ds.PixelRepresentation = 0
    size = rows * columns * 2
    if str(transfer_syntax) in _UNCOMPRESSED:
        ds.PixelData = rng.randbytes(size)
    else:  # a stand-in for a compressed frame: about a third of the raw size
        ds.PixelData = encapsulate([rng.randbytes(max(size // 3, 16))])
        ds["PixelData"].VR = "OB"
    _file_meta(ds, transfer_syntax)
    return ds


def derived_instance(source: Dataset, series_uid: str, number: int) -> Dataset:
    """A derived image (secondary capture) of ``source``'s study, in a new series."""
    ds = Dataset()
    ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.SOPInstanceUID = generate_uid()
    ds.StudyInstanceUID = source.StudyInstanceUID
    ds.SeriesInstanceUID = series_uid
    ds.PatientID = source.get("PatientID", "")
    ds.PatientName = source.get("PatientName", "")
    ds.Modality = "OT"
    ds.SeriesNumber = 1000
    ds.InstanceNumber = number
    ds.SeriesDescription = "WolfPACS demo AI result"
    ds.ImageType = ["DERIVED", "SECONDARY"]
    ds.ConversionType = "WSD"
    ds.Rows = ds.Columns = 16
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0
    ds.PixelData = bytes(range(256))
    _file_meta(ds, ExplicitVRLittleEndian)
    return ds


def _file_meta(ds: Dataset, transfer_syntax: str) -> None:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = UID(transfer_syntax)
    ds.file_meta = meta


def write(ds: Dataset, path: Path) -> Path:
    """Write ``ds`` as a DICOM file in its file meta's transfer syntax."""
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


def write_study(
    directory: Path,
    *,
    series: int = 2,
    per_series: int = 5,
    transfer_syntax: str = ExplicitVRLittleEndian,
    rows: int = 64,
    columns: int = 64,
    study_uid: str | None = None,
) -> list[Path]:
    """Write one study of ``series`` x ``per_series`` CT images; their paths, in order."""
    study_uid = study_uid or generate_uid()
    paths = []
    for s in range(series):
        series_uid = generate_uid()
        for n in range(1, per_series + 1):
            ds = ct_instance(study_uid, series_uid, n, rows=rows, columns=columns,
                             transfer_syntax=transfer_syntax)  # fmt: skip
            paths.append(write(ds, directory / f"s{s + 1}-{n:04d}.dcm"))
    return paths
