"""Peeking the attributes routing rules match on: both paths, every syntax, the same values."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydicom.datadict import tag_for_keyword
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    generate_uid,
)

from wolfpacs.dicom.attributes import MAX_VALUE
from wolfpacs.dicom.part10 import dataset_offset
from wolfpacs.dicom.peek import RoutingTags, peek, peek_head
from wolfpacs.node.receiver import HEAD_BYTES
from wolfpacs.testing.synthetic import SYNTAXES, ct_instance, write


def tags(*keywords: str) -> frozenset[int]:
    return frozenset(tag_for_keyword(k) for k in keywords)


def both(path: Path, extra: frozenset[int], quick_expected: bool = True) -> RoutingTags:
    """Peek ``path`` both ways; they agree (the scanner may be unsure, never different)."""
    slow = peek(path, extra)
    with open(path, "rb") as fp:
        fp.seek(dataset_offset(fp.read(144)))
        head = fp.read(HEAD_BYTES)
    syntax = slow.transfer_syntax
    quick = peek_head(head, syntax, slow.sop_class_uid, slow.sop_instance_uid, extra)
    if quick_expected and syntax in (ImplicitVRLittleEndian, ExplicitVRLittleEndian):
        assert quick is not None
    if quick is not None:
        assert quick == slow
    return slow


ROUTING = tags(
    "Modality", "ImageType", "SeriesDescription", "BodyPartExamined", "SeriesNumber", "Rows",
    "ProtocolName", "SimpleFrameList", "SelectorFLValue", "SelectorFDValue", "SelectorSSValue",
    "SelectorSLValue", "PatientName",
)  # fmt: skip


def routed_ct(syntax: str = ExplicitVRLittleEndian):
    ds = ct_instance(generate_uid(), generate_uid(), 1, transfer_syntax=syntax)
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.SeriesDescription = "Thorax Lunge ÄÖ 1mm"
    ds.BodyPartExamined = ""  # present, empty: "unknown"
    ds.PatientName = "Wölf^Ülla"
    ds.SimpleFrameList = [1, 3, 70000]
    ds.SelectorFLValue, ds.SelectorFDValue = [0.5, -2.0], 1.25
    ds.SelectorSSValue, ds.SelectorSLValue = [-3, 4], -70000
    return ds


@pytest.mark.parametrize("syntax", SYNTAXES, ids=lambda s: s.name)
def test_extra_tags_in_every_transfer_syntax_both_ways(tmp_path, syntax):
    found = both(write(routed_ct(syntax), tmp_path / "x.dcm"), ROUTING)
    assert found.attributes == {
        "PatientName": ("Wölf^Ülla",),
        "Modality": ("CT",),
        "ImageType": ("ORIGINAL", "PRIMARY", "AXIAL"),  # multi-valued: split on backslash
        "SimpleFrameList": ("1", "3", "70000"),
        "SeriesDescription": ("Thorax Lunge ÄÖ 1mm",),  # in its character set
        "BodyPartExamined": (),  # present but empty; ProtocolName is absent: no key
        "SeriesNumber": ("1",),  # after the series UID: read because asked for
        "Rows": ("64",),  # (0028,0010), a US: its number as text
        "SelectorFDValue": ("1.25",),
        "SelectorFLValue": ("0.5", "-2.0"),
        "SelectorSLValue": ("-70000",),
        "SelectorSSValue": ("-3", "4"),
    }


def test_without_extra_tags_nothing_more_is_read(tmp_path):
    found = both(write(routed_ct(), tmp_path / "x.dcm"), frozenset())
    assert found.attributes == {}


def test_a_latin1_dataset_is_decoded_as_latin1(tmp_path):
    ds = routed_ct(ImplicitVRLittleEndian)
    ds.SpecificCharacterSet = "ISO_IR 100"
    found = both(write(ds, tmp_path / "x.dcm"), tags("SeriesDescription"))
    assert found.attributes == {"SeriesDescription": ("Thorax Lunge ÄÖ 1mm",)}


def test_the_head_must_reach_the_last_tag_wanted(tmp_path):
    """A head that ends before Rows: the scanner is unsure; the file has the answer."""
    ds = routed_ct()
    ds.add_new(0x00231010, "OB", bytes(HEAD_BYTES))  # a private blob before (0028,0010)
    path = write(ds, tmp_path / "x.dcm")
    with open(path, "rb") as fp:
        fp.seek(dataset_offset(fp.read(144)))
        head = fp.read(HEAD_BYTES)
    assert peek_head(head, ExplicitVRLittleEndian, ds.SOPClassUID, ds.SOPInstanceUID,
                     tags("Rows")) is None  # fmt: skip
    assert peek_head(head, ExplicitVRLittleEndian, ds.SOPClassUID, ds.SOPInstanceUID,
                     tags("Modality")).attributes == {"Modality": ("CT",)}  # fmt: skip
    assert peek(path, tags("Rows")).attributes == {"Rows": ("64",)}


def test_a_value_too_long_to_route_on_is_not_read(tmp_path):
    ds = routed_ct()
    ds.ImageComments = "x" * (MAX_VALUE + 1)  # LT, after the series UID
    ds.AdditionalPatientHistory = "y" * MAX_VALUE  # LT, just within
    found = both(write(ds, tmp_path / "x.dcm"), tags("ImageComments", "AdditionalPatientHistory"))
    assert found.attributes == {"AdditionalPatientHistory": ("y" * MAX_VALUE,)}


def test_pixel_data_is_never_asked_for(tmp_path):
    path = write(routed_ct(), tmp_path / "x.dcm")
    for extra in (tags("PixelData"), tags("Modality", "DataSetTrailingPadding")):
        with pytest.raises(ValueError, match="PixelData"):
            peek(path, extra)
        with pytest.raises(ValueError, match="PixelData"):
            peek_head(b"", ExplicitVRLittleEndian, "1.2", "1.3", extra)


def test_a_file_cut_in_its_pixel_data_still_gives_the_attributes(tmp_path):
    ds = ct_instance(generate_uid(), generate_uid(), 1, rows=256, columns=256)
    path = write(ds, tmp_path / "x.dcm")
    path.write_bytes(path.read_bytes()[:-100_000])
    assert peek(path, tags("Rows", "Modality")).attributes == {
        "Modality": ("CT",), "Rows": ("256",),
    }  # fmt: skip


def test_a_sequence_asked_for_is_not_an_attribute(tmp_path):
    """The checker refuses sequences; the peek, asked anyway, leaves them out (both ways)."""
    from pydicom.dataset import Dataset

    ds = routed_ct()
    item = Dataset()
    item.ReferencedSOPInstanceUID = generate_uid()
    ds.ReferencedImageSequence = [item]
    found = both(write(ds, tmp_path / "x.dcm"), tags("ReferencedImageSequence", "Modality"))
    assert found.attributes == {"Modality": ("CT",)}


# -- any dataset, any syntax: the scanner agrees with pydicom, and both with what was written

_TEXT = {"SeriesDescription": "LO", "ProtocolName": "LO", "StudyDescription": "LO",
         "BodyPartExamined": "CS", "InstitutionName": "LO", "PatientName": "PN"}  # fmt: skip
_NUMBERS = {"SliceThickness": "DS", "AcquisitionNumber": "IS", "PixelSpacing": "DS",
            "WindowCenter": "DS", "SelectorUSValue": "US", "SelectorULValue": "UL"}  # fmt: skip
_SYNTAXES = [ImplicitVRLittleEndian, ExplicitVRLittleEndian, ExplicitVRBigEndian,
             DeflatedExplicitVRLittleEndian]  # fmt: skip
_CHARSETS = {"": "ABCxyz -^", "ISO_IR 100": "ABCxyz -^åäöÉ", "ISO_IR 192": "ABCxyz -^åäö€漢"}


@st.composite
def _routed(draw):
    syntax = draw(st.sampled_from(_SYNTAXES))
    ds = ct_instance(generate_uid(), generate_uid(), 1, transfer_syntax=syntax)
    charset = draw(st.sampled_from(sorted(_CHARSETS)))
    if charset:
        ds.SpecificCharacterSet = charset
    expected = {"Modality": ("CT",), "Rows": ("64",), "PatientName": ("Synthetic^Wolf",)}
    for keyword in draw(st.lists(st.sampled_from(sorted(_TEXT)), unique=True)):
        alphabet = _CHARSETS[charset] if _TEXT[keyword] != "CS" else "ABC_ 1"
        values = draw(st.lists(st.text(alphabet, max_size=12), min_size=1, max_size=3))
        if keyword == "PatientName":
            values = values[:1]
        setattr(ds, keyword, values if len(values) > 1 else values[0])
        expected[keyword] = tuple(v.strip(" ") for v in values if v.strip(" "))
    for keyword in draw(st.lists(st.sampled_from(sorted(_NUMBERS)), unique=True)):
        numbers = draw(st.lists(st.integers(0, 60000), min_size=1, max_size=3))
        if _NUMBERS[keyword] in ("DS", "IS"):
            setattr(ds, keyword, [str(n) for n in numbers] if len(numbers) > 1 else str(numbers[0]))
        else:
            setattr(ds, keyword, numbers if len(numbers) > 1 else numbers[0])
        expected[keyword] = tuple(str(n) for n in numbers)
    asked = draw(st.sets(st.sampled_from(sorted({*_TEXT, *_NUMBERS, "Modality", "Rows"}))))
    return ds, tags(*asked), {k: v for k, v in expected.items() if k in asked}


@settings(
    max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(_routed())
def test_both_ways_read_what_was_written(tmp_path, routed):
    ds, extra, expected = routed
    assert both(write(ds, tmp_path / "x.dcm"), extra).attributes == expected
