"""Peeking the routing tags: every transfer syntax, and what bad files get."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian, generate_uid

from wolfpacs.dicom.part10 import dataset_offset
from wolfpacs.dicom.peek import PeekError, peek, peek_head
from wolfpacs.node.receiver import HEAD_BYTES
from wolfpacs.testing.synthetic import SYNTAXES, ct_instance, write


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


@pytest.mark.filterwarnings("ignore:The value length")  # pydicom's warning on writing it
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


def test_a_deflate_bomb_is_not_inflated_whole(tmp_path):
    """A deflated dataset of 100 MB of zeros before its UIDs: peek inflates at most 1 MB."""
    import tracemalloc
    import zlib

    from pydicom.filereader import read_file_meta_info
    from pydicom.uid import DeflatedExplicitVRLittleEndian

    ds = ct_instance(
        generate_uid(), generate_uid(), 1, transfer_syntax=DeflatedExplicitVRLittleEndian
    )
    path = write(ds, tmp_path / "ok.dcm")
    meta_end = 132 + 12 + read_file_meta_info(path).FileMetaInformationGroupLength
    head = path.read_bytes()[:meta_end]
    # a private OB element of 100 MB of zeros, first in the dataset, deflated to ~100 kB
    bomb = b"\x09\x00\x10\x00OB\x00\x00" + (100 << 20).to_bytes(4, "little") + bytes(100 << 20)
    squeezer = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    (tmp_path / "bomb.dcm").write_bytes(head + squeezer.compress(bomb) + squeezer.flush())
    tracemalloc.start()
    with pytest.raises(PeekError):
        peek(tmp_path / "bomb.dcm")
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 20 << 20


# -- the quick scanner (peek_head) agrees with pydicom, or says it is unsure ---------------

_SQ_TAGS = ["ReferencedStudySequence", "ProcedureCodeSequence", "ReferencedPatientSequence"]


@st.composite
def _datasets(draw):
    ds = ct_instance(generate_uid(), generate_uid(), 1, transfer_syntax=draw(st.sampled_from(
        [ExplicitVRLittleEndian, ImplicitVRLittleEndian])))  # fmt: skip
    for keyword in draw(st.lists(st.sampled_from(_SQ_TAGS), unique=True, max_size=3)):
        items = []
        for _ in range(draw(st.integers(0, 3))):
            item = Dataset()
            item.ReferencedSOPInstanceUID = generate_uid()
            item.CodeMeaning = draw(st.text("abc xyz", max_size=20))
            if draw(st.booleans()):  # a nested sequence
                inner = Dataset()
                inner.CodeValue = "X1"
                item.ConceptNameCodeSequence = [inner]
                item["ConceptNameCodeSequence"].is_undefined_length = draw(st.booleans())
            item.is_undefined_length_sequence_item = draw(st.booleans())
            items.append(item)
        setattr(ds, keyword, items)
        ds[keyword].is_undefined_length = draw(st.booleans())
    if draw(st.booleans()):  # a long value before the study: the head may end first
        ds.add_new(0x00091010, "LO", "private")
        ds.add_new(0x00091011, "OB", bytes(draw(st.sampled_from([10, 40_000, 70_000]))))
    if draw(st.booleans()):
        del ds.SeriesInstanceUID
    return ds


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(_datasets())
def test_the_quick_scanner_agrees_with_pydicom_or_is_unsure(tmp_path, ds):
    path = write(ds, tmp_path / "x.dcm")
    with open(path, "rb") as fp:
        fp.seek(dataset_offset(fp.read(144)))
        head = fp.read()[:HEAD_BYTES]
    syntax = str(ds.file_meta.TransferSyntaxUID)
    quick = peek_head(head, syntax, ds.SOPClassUID, ds.SOPInstanceUID)
    if quick is not None:
        assert quick == peek(path)
    if len(head) < HEAD_BYTES:  # the whole dataset is in the head: no reason to be unsure
        assert quick == peek(path)
