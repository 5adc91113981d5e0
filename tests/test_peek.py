"""Peeking the routing tags: every transfer syntax, and what bad files get."""

from __future__ import annotations

import pytest
from pydicom.uid import generate_uid

from wolfpacs.peek import PeekError, peek
from wolfpacs.synthetic import SYNTAXES, ct_instance, write


@pytest.mark.parametrize("syntax", SYNTAXES, ids=lambda s: s.name)
def test_routing_tags_in_every_transfer_syntax(tmp_path, syntax):
    study, series = generate_uid(), generate_uid()
    ds = ct_instance(study, series, 1, transfer_syntax=syntax)
    tags = peek(write(ds, tmp_path / "x.dcm"))
    assert (tags.study_uid, tags.series_uid) == (study, series)
    assert tags.sop_instance_uid == ds.SOPInstanceUID and tags.sop_class_uid == ds.SOPClassUID
    assert tags.transfer_syntax == syntax


def test_missing_study_uid(tmp_path):
    ds = ct_instance(generate_uid(), generate_uid(), 1)
    del ds.StudyInstanceUID
    with pytest.raises(PeekError) as failed:
        peek(write(ds, tmp_path / "x.dcm"))
    assert failed.value.missing_study


def test_a_2kb_study_uid_is_refused(tmp_path):
    ds = ct_instance("1." * 1000 + "1", generate_uid(), 1)
    with pytest.raises(PeekError, match="2001 characters") as failed:
        peek(write(ds, tmp_path / "x.dcm"))
    assert failed.value.missing_study


@pytest.mark.parametrize("keep", [10, 132, 140, 200, 300])
def test_truncated_files_are_unreadable_not_crashes(tmp_path, keep):
    path = write(ct_instance(generate_uid(), generate_uid(), 1), tmp_path / "x.dcm")
    path.write_bytes(path.read_bytes()[:keep])
    with pytest.raises(PeekError):
        peek(path)


def test_non_dicom_bytes(tmp_path):
    path = tmp_path / "x.dcm"
    path.write_bytes(b"\x00" * 128 + b"DICM" + b"this is not a dataset" * 20)
    with pytest.raises(PeekError):
        peek(path)


def test_pixel_data_is_never_read(tmp_path):
    """A file cut inside its pixel data still gives its routing tags."""
    ds = ct_instance(generate_uid(), generate_uid(), 1, rows=256, columns=256)
    path = write(ds, tmp_path / "x.dcm")
    path.write_bytes(path.read_bytes()[:-100_000])
    assert peek(path).study_uid == ds.StudyInstanceUID
