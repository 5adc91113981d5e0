"""Hostile datasets inside well-formed associations: each gets a defined status and a log line."""

from __future__ import annotations

import pytest
from pydicom.uid import generate_uid
from pynetdicom import AE

from tests.conftest import wait_until
from tests.world import CLIENT_AE
from wolfpacs.dicom.status import Status
from wolfpacs.testing.peers import configure_pynetdicom
from wolfpacs.testing.synthetic import ct_instance, write

CT = "1.2.840.10008.5.1.4.1.1.2"
EXPLICIT = "1.2.840.10008.1.2.1"


def raw_file(tmp_path, name: str, dataset: bytes):
    """A DICOM file whose dataset part is ``dataset``, bytes as given: sent as they are."""
    good = write(ct_instance(generate_uid(), generate_uid(), 1), tmp_path / "good.dcm")
    data = good.read_bytes()
    meta_end = 132 + 12 + int.from_bytes(data[140:144], "little")
    path = tmp_path / name
    path.write_bytes(data[:meta_end] + dataset)
    return path


def send_raw(w, paths) -> list[int]:
    configure_pynetdicom()
    ae = AE(ae_title="HOSPITAL")
    ae.add_requested_context(CT, EXPLICIT)
    assoc = ae.associate("127.0.0.1", w.outside, ae_title=CLIENT_AE)
    assert assoc.is_established
    try:
        return [int(assoc.send_c_store(p).Status) for p in paths]
    finally:
        assoc.release()


def dataset_of(path) -> bytes:
    data = path.read_bytes()
    return data[132 + 12 + int.from_bytes(data[140:144], "little") :]


@pytest.mark.filterwarnings("ignore:The value length")
def test_each_hostile_dataset_gets_its_status_and_the_node_goes_on(world, tmp_path, caplog):
    w = world()
    good = write(ct_instance(generate_uid(), generate_uid(), 1), tmp_path / "base.dcm")
    whole = dataset_of(good)
    no_study = ct_instance(generate_uid(), generate_uid(), 1)
    del no_study.StudyInstanceUID
    # Garbage after a file meta is "cannot parse" (README), never "no StudyInstanceUID".
    unreadable = {Status.UNREADABLE}
    junk = b"this is no dataset" * 50
    cases = {
        "non-DICOM bytes": (raw_file(tmp_path, "junk", junk), unreadable),
        "truncated header": (raw_file(tmp_path, "cut", whole[:30]), unreadable),
        "wrong VR length": (raw_file(tmp_path, "vr", whole[:6] + b"\xff\xff" + whole[8:]),
                            unreadable),
        "no StudyInstanceUID": (write(no_study, tmp_path / "nostudy.dcm"), {Status.NO_STUDY_UID}),
        "StudyInstanceUID of 2 kB": (
            write(ct_instance("1." * 1000 + "1", generate_uid(), 1), tmp_path / "big.dcm"),
            {Status.NO_STUDY_UID},
        ),
    }  # fmt: skip
    statuses = send_raw(w, [path for path, _ in cases.values()])
    for (case, (_, allowed)), status in zip(cases.items(), statuses, strict=True):
        assert status in allowed, f"{case}: 0x{status:04X}"
    assert caplog.text.count("refused (0xC00") >= len(cases)
    assert w.delivered() == 0 and w.node.spool.queued_bytes == 0  # nothing of them kept
    assert send_raw(w, [good]) == [0]
    wait_until(lambda: w.delivered() == 1)


def test_a_duplicate_sop_instance_uid_is_taken_and_passed_on_twice(world, tmp_path):
    """A resend is normal in DICOM: the worker decides; WolfPACS drops nothing it acknowledged."""
    w = world()
    path = write(ct_instance(generate_uid(), generate_uid(), 1), tmp_path / "twice.dcm")
    assert send_raw(w, [path, path]) == [0, 0]
    wait_until(lambda: w.delivered() == 2)
    (uids,) = [{i.sop_instance_uid for i in wk.received} for wk in w.workers if wk.received]
    assert len(uids) == 1
