"""The node's own data path against pydicom and pynetdicom: command sets, Part 10, the upper layer.

:mod:`wolfpacs.dicom.dimse` and :mod:`wolfpacs.dicom.part10` are checked both ways
against pydicom's encoder (what we write, pydicom reads; what pynetdicom
writes, we read); :mod:`wolfpacs.dicom` talks to pynetdicom peers over
real loopback sockets, each way. DCMTK and the fuzz suite check it too
(``integration/``).
"""

from __future__ import annotations

import io
import socket
import threading
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filereader import read_dataset
from pydicom.uid import generate_uid
from pynetdicom import AE, evt
from pynetdicom.dimse_messages import C_STORE_RQ
from pynetdicom.dimse_primitives import C_STORE
from pynetdicom.dsutils import encode
from pynetdicom.sop_class import CTImageStorage, Verification

from tests.conftest import wait_until
from wolfpacs.dicom import acse, association, dimse
from wolfpacs.dicom.errors import AssociationError, RejectedError
from wolfpacs.dicom.part10 import Part10Error, dataset_offset, file_meta
from wolfpacs.testing.peers import free_port
from wolfpacs.testing.synthetic import ct_instance, write

uids = (
    st.lists(st.integers(0, 99999), min_size=2, max_size=12)
    .map(lambda parts: "1." + ".".join(map(str, parts)))
    .filter(lambda uid: len(uid) <= 64)
)
ids = st.integers(1, 0xFFFF)


def _read(data: bytes) -> Dataset:
    return read_dataset(DicomBytesIO(data), is_implicit_VR=True, is_little_endian=True)


@settings(max_examples=200, deadline=None)
@given(ids, uids, uids, st.integers(0, 2))
def test_a_store_request_we_write_reads_back_in_pydicom(message_id, sop_class, sop, priority):
    ds = _read(dimse.store_rq(message_id, sop_class, sop, priority))
    assert (ds.CommandField, ds.MessageID, ds.Priority) == (dimse.C_STORE_RQ, message_id, priority)
    assert (ds.AffectedSOPClassUID, ds.AffectedSOPInstanceUID) == (sop_class, sop)
    assert ds.CommandDataSetType != dimse.NO_DATASET
    assert ds.CommandGroupLength == len(dimse.store_rq(message_id, sop_class, sop)) - 12


@settings(max_examples=200, deadline=None)
@given(ids, uids, uids, st.integers(0, 0xFFFF), st.text(st.characters(max_codepoint=126,
       min_codepoint=32), max_size=80))  # fmt: skip
def test_a_store_response_we_write_reads_back_in_pydicom(message_id, sop_class, sop, status,
                                                         comment):  # fmt: skip
    request = dimse.Command(dimse.C_STORE_RQ, message_id, sop_class, sop, True)
    ds = _read(dimse.store_rsp(request, status, comment))
    assert (ds.CommandField, ds.MessageIDBeingRespondedTo) == (dimse.C_STORE_RSP, message_id)
    assert (ds.Status, ds.CommandDataSetType) == (status, dimse.NO_DATASET)
    assert (ds.AffectedSOPClassUID, ds.AffectedSOPInstanceUID) == (sop_class, sop)
    assert ds.get("ErrorComment", "") == comment.replace("\\", "/")[:64].rstrip()
    answer = dimse.decode(dimse.store_rsp(request, status, comment))
    assert (answer.status, answer.message_id, answer.is_request) == (status, message_id, False)


@settings(max_examples=100, deadline=None)
@given(ids, uids, uids, st.integers(0, 2))
def test_a_store_request_pynetdicom_writes_decodes(message_id, sop_class, sop, priority):
    primitive = C_STORE()
    primitive.MessageID, primitive.Priority = message_id, priority
    primitive.AffectedSOPClassUID, primitive.AffectedSOPInstanceUID = sop_class, sop
    primitive.DataSet = io.BytesIO(b"\x00\x00")
    message = C_STORE_RQ()
    message.primitive_to_message(primitive)
    command = dimse.decode(encode(message.command_set, True, True))
    assert command == dimse.Command(dimse.C_STORE_RQ, message_id, sop_class, sop, True,
                                    priority=priority)  # fmt: skip


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x00\x00\x02\x00\x02\x00\x00\x001\x00",
        b"\x00\x00\x00\x01\x02\x00\x00\x00\x01\x00",
        b"\x08\x00\x10\x00\x02\x00\x00\x00ab",
        dimse.echo_rq(1)[:-3],
    ],
    ids=["empty", "no command field", "no message id", "not group 0000", "truncated"],
)
def test_a_command_set_that_does_not_parse_is_an_error(data):
    with pytest.raises(dimse.DimseError):
        dimse.decode(data)


def test_the_file_meta_we_write_is_read_by_pydicom_with_the_dataset(tmp_path):
    ds = ct_instance(generate_uid(), generate_uid(), 1)
    source = write(ds, tmp_path / "source.dcm")
    with open(source, "rb") as fp:
        fp.seek(dataset_offset(fp.read(144)))
        dataset = fp.read()
    meta = file_meta(ds.SOPClassUID, ds.SOPInstanceUID, "1.2.840.10008.1.2.1", "HOSPITAL")
    (tmp_path / "ours.dcm").write_bytes(meta + dataset)
    ours = dcmread(tmp_path / "ours.dcm")
    assert ours.file_meta.SourceApplicationEntityTitle == "HOSPITAL"
    assert ours.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
    assert ours.StudyInstanceUID == ds.StudyInstanceUID and ours.PixelData == ds.PixelData
    with open(tmp_path / "ours.dcm", "rb") as fp:
        assert dataset_offset(fp.read(144)) == len(meta)


def test_a_calling_ae_with_a_backslash_stays_one_value_in_the_file_meta(tmp_path):
    meta = file_meta("1.2.3", "1.2.3.4", "1.2.840.10008.1.2.1", "HOSP\\ITAL")
    (tmp_path / "x.dcm").write_bytes(meta)
    assert dcmread(tmp_path / "x.dcm").file_meta.SourceApplicationEntityTitle == "HOSP/ITAL"


def test_a_file_without_a_preamble_has_no_dataset_offset(tmp_path):
    with open(tmp_path / "x", "w+b") as fp:
        fp.write(b"not DICOM" * 40)
        fp.seek(0)
        with pytest.raises(Part10Error):
            dataset_offset(fp.read(144))


# -- the upper layer, against pynetdicom ---------------------------------------------


def _scp(handlers: list) -> tuple[AE, int, object]:
    ae = AE("PYNETDICOM")
    ae.add_supported_context(CTImageStorage, "1.2.840.10008.1.2.1")
    ae.add_supported_context(Verification)
    port = free_port()
    server = ae.start_server(("127.0.0.1", port), block=False, evt_handlers=handlers)
    return ae, port, server


# 10,000: the file goes in several reads, each ending in a PDU shorter than the rest
@pytest.mark.parametrize("send_read", [association.SEND_READ, 10_000])
def test_we_send_a_file_to_pynetdicom_in_small_pdus_and_it_gets_the_same_dataset(
    tmp_path, monkeypatch, send_read
):
    monkeypatch.setattr(association, "SEND_READ", send_read)
    ds = ct_instance(generate_uid(), generate_uid(), 1, rows=128, columns=128)
    path = write(ds, tmp_path / "x.dcm")
    got: list[Dataset] = []

    def on_store(event):
        got.append(event.dataset)
        return 0x0000

    _ae, port, server = _scp([(evt.EVT_C_STORE, on_store)])
    try:
        assoc = acse.request(
            ("127.0.0.1", port), [(CTImageStorage, ["1.2.840.10008.1.2.1"]),
                                  (Verification, ["1.2.840.10008.1.2"])],
            calling_ae="WOLFPACS", called_ae="PYNETDICOM", max_pdu=4096, connect_timeout=5,
            acse_timeout=5, timeout=10,
        )  # fmt: skip
        assert assoc.send_c_echo(5) == 0
        context = assoc.context_for(CTImageStorage, "1.2.840.10008.1.2.1")
        answer = assoc.send_c_store(context, str(path), ds.SOPClassUID, ds.SOPInstanceUID, 10)
        assoc.release(5)
    finally:
        server.shutdown()
    assert answer.status == 0 and len(got) == 1
    assert got[0].SOPInstanceUID == ds.SOPInstanceUID and got[0].PixelData == ds.PixelData


def _serve_once(port_box: list[int], seen: dict, limit: int = 0) -> threading.Thread:
    listener = socket.create_server(("127.0.0.1", 0))
    port_box.append(listener.getsockname()[1])

    def serve() -> None:
        conn, _ = listener.accept()
        listener.close()
        assoc = acse.accept(conn, lambda calling, called: None, max_pdu=16384,
                                   acse_timeout=5, timeout=5, pdu_limit=1 << 20)  # fmt: skip
        assert assoc is not None
        try:
            while (received := assoc.receive_command()) is not None:
                context, command = received
                dataset = io.BytesIO()
                assoc.receive_dataset(context, dataset.writelines, limit)
                seen.setdefault("datasets", []).append(dataset.getvalue())
                assoc.send_command(context.id, dimse.store_rsp(command, 0x0000))
            seen["end"] = "released"
        except AssociationError as exc:
            seen["end"] = type(exc).__name__

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return thread


def test_pynetdicom_sends_to_us_and_we_stream_its_dataset_as_sent(tmp_path):
    ds = ct_instance(generate_uid(), generate_uid(), 1, rows=200, columns=200)
    path = write(ds, tmp_path / "x.dcm")
    port, seen = [], {}
    thread = _serve_once(port, seen)
    ae = AE("HOSPITAL")
    ae.add_requested_context(CTImageStorage, "1.2.840.10008.1.2.1")
    assoc = ae.associate("127.0.0.1", port[0], ae_title="WOLFPACS", max_pdu=8192)
    assert assoc.is_established
    assert assoc.send_c_store(path).Status == 0
    assoc.release()
    thread.join(10)
    with open(path, "rb") as fp:
        fp.seek(dataset_offset(fp.read(144)))
        sent = fp.read()
    assert seen == {"datasets": [sent], "end": "released"}


def test_a_dataset_over_the_limit_aborts_the_association(tmp_path):
    ds = ct_instance(generate_uid(), generate_uid(), 1, rows=200, columns=200)
    path = write(ds, tmp_path / "x.dcm")
    port, seen = [], {}
    thread = _serve_once(port, seen, limit=10_000)
    ae = AE("HOSPITAL")
    ae.add_requested_context(CTImageStorage, "1.2.840.10008.1.2.1")
    assoc = ae.associate("127.0.0.1", port[0], ae_title="WOLFPACS")
    assoc.send_c_store(path)
    thread.join(10)
    assert seen == {"end": "DatasetTooLargeError"}
    assert wait_until(lambda: assoc.is_aborted)


def test_a_peer_that_is_not_there_is_an_association_error():
    with pytest.raises((AssociationError, OSError)):
        acse.request(("127.0.0.1", free_port()), [(Verification, ["1.2.840.10008.1.2"])],
                            calling_ae="A", called_ae="B", max_pdu=16384, connect_timeout=2,
                            acse_timeout=2, timeout=2)  # fmt: skip


def test_a_rejection_is_a_rejected_error():
    port, done = [], threading.Event()
    listener = socket.create_server(("127.0.0.1", 0))
    port.append(listener.getsockname()[1])

    def serve() -> None:
        conn, _ = listener.accept()
        acse.accept(conn, lambda calling, called: (1, 1, 7), max_pdu=16384,
                           acse_timeout=5, timeout=5, pdu_limit=1 << 20)  # fmt: skip
        listener.close()
        done.set()

    threading.Thread(target=serve, daemon=True).start()
    with pytest.raises(RejectedError):
        acse.request(("127.0.0.1", port[0]), [(Verification, ["1.2.840.10008.1.2"])],
                            calling_ae="STRANGER", called_ae="B", max_pdu=16384,
                            connect_timeout=2, acse_timeout=2, timeout=2)  # fmt: skip
    assert done.wait(5)


@pytest.mark.parametrize("syntaxes", [1, 14])  # ~3 KB, and over CACHED_REQUEST_BYTES
def test_only_requests_of_a_modalitys_size_are_remembered(syntaxes):
    # 14 made-up transfer syntaxes of 64 characters on 120 contexts: ~120 KB of request
    proposals = [(f"1.2.3.{n}", ["1.2.840.10008.1.2.1"] +
                  [f"1.2.{n}.{k}.".ljust(64, "9") for k in range(syntaxes - 1)])
                 for n in range(120)]  # fmt: skip
    acse._negotiated.cache_clear()
    port, seen = [], {}
    thread = _serve_once(port, seen)
    assoc = acse.request(("127.0.0.1", port[0]), proposals, calling_ae="HOSPITAL",
                                called_ae="WOLFPACS", max_pdu=16384, connect_timeout=5,
                                acse_timeout=5, timeout=5)  # fmt: skip
    assert len(assoc.contexts) == 120  # negotiated alike, remembered or not
    assoc.release(5)
    thread.join(10)
    assert seen == {"end": "released"}
    assert acse._negotiated.cache_info().currsize == (1 if syntaxes == 1 else 0)


def test_a_requestor_reads_a_pdu_larger_than_its_small_buffer(tmp_path):
    # A requestor starts with RESPONSE_BUFFER bytes; one PDU of ~200 KB must still come whole.
    ds = ct_instance(generate_uid(), generate_uid(), 1, rows=320, columns=320)
    path = write(ds, tmp_path / "x.dcm")
    listener = socket.create_server(("127.0.0.1", 0))
    answers: list[int] = []

    def serve() -> None:  # the acceptor sends a C-STORE to the requestor, in one PDU
        conn, _ = listener.accept()
        listener.close()
        acceptor = acse.accept(conn, lambda calling, called: None, max_pdu=16384,
                                      acse_timeout=5, timeout=5, pdu_limit=1 << 20)  # fmt: skip
        assert acceptor is not None
        context = acceptor.context_for(CTImageStorage, "1.2.840.10008.1.2.1")
        answers.append(acceptor.send_c_store(context, str(path), ds.SOPClassUID,
                                             ds.SOPInstanceUID, 5).status)  # fmt: skip
        acceptor.receive_command()  # the release

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    assoc = acse.request(("127.0.0.1", listener.getsockname()[1]),
                                [(CTImageStorage, ["1.2.840.10008.1.2.1"])], calling_ae="A",
                                called_ae="B", max_pdu=1 << 20, connect_timeout=5,
                                acse_timeout=5, timeout=5)  # fmt: skip
    received = assoc.receive_command()
    assert received is not None
    context, command = received
    dataset = io.BytesIO()
    assert assoc.receive_dataset(context, dataset.writelines) > 2 * acse.RESPONSE_BUFFER
    assoc.send_command(context.id, dimse.store_rsp(command, 0x0000))
    assoc.release(5)
    thread.join(10)
    with open(path, "rb") as fp:
        fp.seek(dataset_offset(fp.read(144)))
        assert answers == [0] and dataset.getvalue() == fp.read()


def test_free_ports_lie_below_the_ephemeral_range_and_are_not_handed_out_twice():
    # An ephemeral port, free when asked, may be taken by any outgoing connection
    # before the server binds it: that made a node fail to start (EADDRINUSE) in CI.
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    ports = [free_port() for _ in range(200)]
    assert all(1024 <= port < low for port in ports) and len(set(ports)) == 200
    with socket.create_server(("127.0.0.1", ports[0])):  # and a server can bind one
        pass
