"""PS3.8 and PS3.7 corners of the upper layer: release collisions, ARTIM, A-ABORT, unserved DIMSE.

The peer is a raw socket speaking hand-written PDUs (:mod:`tests.pdus`), so
that each test says exactly what the other end does and when; a pynetdicom
SCU checks that a real peer gets the statuses. States are PS3.8's (table 9-10).
"""

from __future__ import annotations

import socket
import ssl
import struct
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from pynetdicom import AE

from tests.conftest import wait_until
from tests.pdus import CT, IMPLICIT, VERIFICATION, abort, associate_rq, p_data, pdu, release_rq
from tests.world import CLIENT_AE
from wolfpacs.dicom import acse, dimse
from wolfpacs.dicom.association import Association, Context
from wolfpacs.dicom.errors import PeerAbortedError
from wolfpacs.dicom.pdu import command_pdu

MR = "1.2.840.10008.5.1.4.1.1.4"
RELEASE_RQ, RELEASE_RP, ABORT = 0x05, 0x06, 0x07


def release_rp() -> bytes:
    """An A-RELEASE-RP PDU."""
    return pdu(RELEASE_RP, b"\x00" * 4)


class Watched(socket.socket):
    """A socket that counts the reads begun on it: a thread that begins one waits for the peer."""

    reads = 0

    def recv_into(self, buffer: Any, nbytes: int = 0, flags: int = 0) -> int:
        self.reads += 1
        return super().recv_into(buffer, nbytes, flags)


def watch(assoc: Association) -> Watched:
    """Put a :class:`Watched` socket (the same connection) under ``assoc``."""
    watched = Watched(fileno=assoc.sock.detach())
    assoc.sock = watched
    return watched


def read_pdu(sock: socket.socket) -> tuple[int, bytes]:
    """One whole PDU off ``sock``: its type and body; (0, b"") at the end of the stream."""
    data = b""
    while len(data) < 6 or len(data) < 6 + struct.unpack(">L", data[2:6])[0]:
        chunk = sock.recv(65536 if len(data) < 6 else 6 + struct.unpack(">L", data[2:6])[0]
                          - len(data))  # fmt: skip
        if not chunk:
            assert not data, f"the stream ended inside a PDU: {data[:16]!r}"
            return 0, b""
        data += chunk
    return data[0], data[6:]


def in_thread(call: Callable[[], Any]) -> tuple[threading.Thread, dict[str, Any]]:
    """Run ``call`` in a thread; what it returned or raised lands in the dict."""
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["value"] = call()
        except BaseException as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, outcome


def accepted(artim: float = 5.0) -> tuple[Association, socket.socket]:
    """An association we accepted on loopback, and the raw socket of its requestor."""
    listener = socket.create_server(("127.0.0.1", 0))
    peer = socket.create_connection(listener.getsockname(), timeout=10)
    conn, _ = listener.accept()
    listener.close()
    peer.sendall(associate_rq("NODE", "PEER", [(1, VERIFICATION, [IMPLICIT]),
                                               (3, CT, [IMPLICIT])]))  # fmt: skip
    assoc = acse.accept(conn, lambda calling, called: None, max_pdu=16384, acse_timeout=artim,
                        timeout=10, pdu_limit=1 << 20)  # fmt: skip
    assert assoc is not None and read_pdu(peer)[0] == 0x02
    return assoc, peer


def requested() -> tuple[Association, socket.socket]:
    """An association we requested on loopback, and the raw socket of its acceptor."""
    listener = socket.create_server(("127.0.0.1", 0))
    box: list[socket.socket] = []

    def answer() -> None:  # the A-ASSOCIATE-AC our own acceptor would give
        conn, _ = listener.accept()
        conn.settimeout(10)
        kind, body = read_pdu(conn)
        assert kind == 0x01
        conn.sendall(acse._negotiated(pdu(kind, body), 16384).answer)
        box.append(conn)

    thread, _ = in_thread(answer)
    assoc = acse.request(listener.getsockname(), [(VERIFICATION, [IMPLICIT])], calling_ae="NODE",
                         called_ae="PEER", max_pdu=16384, connect_timeout=5, acse_timeout=5,
                         timeout=10)  # fmt: skip
    thread.join(10)
    listener.close()
    return assoc, box[0]


def rest(sock: socket.socket) -> bytes:
    """Everything ``sock`` receives until its peer closes."""
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


# -- 1. A-RELEASE: collisions, and who closes the transport ------------------------------


def test_a_release_collision_as_requestor_answers_then_waits_for_the_peers_rp():
    """Sta7 -> Sta9 (RQ received) -> AR-9: our RP -> Sta11 -> the peer's RP -> AR-3: we close."""
    assoc, peer = requested()
    watched = watch(assoc)
    thread, outcome = in_thread(lambda: assoc.release(5))
    assert read_pdu(peer)[0] == RELEASE_RQ
    peer.sendall(release_rq())  # the peer asked too: a collision
    assert read_pdu(peer)[0] == RELEASE_RP
    wait_until(lambda: watched.reads >= 2, what="the requestor waits for the peer's RP (Sta11)")
    assert thread.is_alive()
    peer.sendall(release_rp())
    assert rest(peer) == b""  # the requestor closes the transport
    thread.join(10)
    assert outcome == {"value": None} and assoc.released and not assoc.is_open


def test_a_release_collision_as_acceptor_waits_for_the_rp_then_answers():
    """Sta7 -> Sta10 (RQ received) -> RP -> AR-10, Sta12 -> AR-4: our RP -> Sta13 until closed."""
    assoc, peer = accepted()
    watched = watch(assoc)
    thread, outcome = in_thread(lambda: assoc.release(5))
    assert read_pdu(peer)[0] == RELEASE_RQ
    peer.sendall(release_rq())
    wait_until(lambda: watched.reads >= 2, what="the acceptor waits for the RP (Sta10)")
    peer.settimeout(0)
    with pytest.raises(BlockingIOError):
        peer.recv(1)  # it has answered nothing yet: its RP comes after the requestor's
    peer.settimeout(10)
    peer.sendall(release_rp())
    assert read_pdu(peer)[0] == RELEASE_RP
    wait_until(lambda: watched.reads >= 3, what="the acceptor waits for the close (Sta13)")
    assert thread.is_alive()
    peer.close()  # the requestor closes the transport (AR-3)
    thread.join(10)
    assert outcome == {"value": None} and assoc.released and not assoc.is_open


def test_answering_a_release_waits_for_the_requestor_to_close_the_transport():
    """Sta6 -> RQ -> AR-2, AR-4: our RP, ARTIM started -> Sta13 until the requestor closes."""
    assoc, peer = accepted()
    watched = watch(assoc)
    thread, outcome = in_thread(assoc.receive_command)
    peer.sendall(release_rq())
    assert read_pdu(peer)[0] == RELEASE_RP
    wait_until(lambda: watched.reads >= 2, what="the acceptor waits for the close (Sta13)")
    assert thread.is_alive() and assoc.released
    peer.close()
    thread.join(10)
    assert outcome == {"value": None} and not assoc.is_open


def test_a_requestor_that_never_closes_is_closed_when_artim_runs_out():
    """Sta13: ARTIM expires -> AA-2: the transport is closed; the release stands."""
    assoc, peer = accepted(artim=0.3)
    thread, outcome = in_thread(assoc.receive_command)
    peer.sendall(release_rq())
    assert read_pdu(peer)[0] == RELEASE_RP
    assert rest(peer) == b""  # closed by us, at ARTIM, without an A-ABORT
    thread.join(10)
    assert outcome == {"value": None} and assoc.released and not assoc.is_open


def test_an_acceptor_released_by_us_has_its_rp_and_we_close_at_once():
    """Sta7 -> RP -> AR-3: the requestor of the release closes the transport itself."""
    assoc, peer = requested()
    thread, outcome = in_thread(lambda: assoc.release(5))
    assert read_pdu(peer)[0] == RELEASE_RQ
    peer.sendall(release_rp())
    assert rest(peer) == b""
    thread.join(10)
    assert outcome == {"value": None} and assoc.released


# -- 2. An A-ABORT is never answered ------------------------------------------------------


def test_an_a_abort_as_the_first_pdu_is_not_answered_with_an_a_abort():
    """Sta2: A-ABORT -> AA-2: close the transport, send nothing."""
    listener = socket.create_server(("127.0.0.1", 0))
    peer = socket.create_connection(listener.getsockname(), timeout=10)
    conn, _ = listener.accept()
    listener.close()
    peer.sendall(abort())
    with pytest.raises(PeerAbortedError):
        acse.accept(conn, lambda calling, called: None, max_pdu=16384, acse_timeout=5,
                    timeout=5, pdu_limit=1 << 20)  # fmt: skip
    assert rest(peer) == b""


@pytest.mark.parametrize("when", ["between commands", "inside a dataset", "during a release"])
def test_an_a_abort_later_is_not_answered_either(when):
    assoc, peer = accepted()
    if when == "during a release":
        thread, outcome = in_thread(lambda: assoc.release(5))
        assert read_pdu(peer)[0] == RELEASE_RQ
    else:
        if when == "inside a dataset":
            peer.sendall(p_data((3, 0x03, dimse.store_rq(1, CT, "1.2.3"))))
            peer.sendall(p_data((3, 0x00, b"\x08\x00" * 8)))
        thread, outcome = in_thread(lambda: assoc.receive_dataset(assoc.contexts[3], list)
                                    if assoc.receive_command() else None)  # fmt: skip
    peer.sendall(abort())
    assert rest(peer) == b""
    thread.join(10)
    assert not assoc.is_open
    assert when == "during a release" or isinstance(outcome.get("error"), PeerAbortedError)


# -- 4. abort() from another thread -------------------------------------------------------


class WatchedTLS(ssl.SSLSocket):
    """A TLS socket that counts the reads begun on it (see :class:`Watched`)."""

    reads = 0

    def recv_into(self, buffer: Any, nbytes: int | None = None, flags: int = 0) -> int:
        self.reads += 1
        return super().recv_into(buffer, nbytes, flags)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate and its key, made with openssl."""
    folder = tmp_path_factory.mktemp("tls")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", "key.pem", "-out",
                    "cert.pem", "-days", "2", "-subj", "/CN=localhost"], cwd=folder, check=True,
                   capture_output=True, timeout=60)  # fmt: skip
    return folder / "cert.pem", folder / "key.pem"


def tls_pair(certificate: tuple[Path, Path]) -> tuple[WatchedTLS, ssl.SSLSocket]:
    """A TLS connection on loopback: our (client) end, watched, and the peer's."""
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(*certificate)
    client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client.check_hostname, client.verify_mode = False, ssl.CERT_NONE
    client.sslsocket_class = WatchedTLS
    listener = socket.create_server(("127.0.0.1", 0))
    raw = socket.create_connection(listener.getsockname(), timeout=10)
    conn, _ = listener.accept()
    listener.close()
    thread, outcome = in_thread(lambda: server.wrap_socket(conn, server_side=True))
    ours = client.wrap_socket(raw)
    thread.join(10)
    assert isinstance(ours, WatchedTLS)
    return ours, outcome["value"]


def test_abort_from_another_thread_writes_nothing_into_a_tls_socket_being_read(certificate):
    ours, peer = tls_pair(certificate)
    assoc = Association(ours, {1: Context(1, VERIFICATION, IMPLICIT)}, peer_max_pdu=16384,
                        calling_ae="A", called_ae="B", pdu_limit=1 << 20, timeout=10)  # fmt: skip
    thread, outcome = in_thread(assoc.receive_command)
    wait_until(lambda: ours.reads >= 1, what="a read blocked in the TLS socket")
    assoc.abort()  # from this thread: SSL objects are not safe to share between threads
    thread.join(10)
    assert isinstance(outcome.get("error"), PeerAbortedError)
    assert rest(peer) == b""  # shutdown only: no A-ABORT written


def test_abort_from_another_thread_sends_an_a_abort_on_a_plain_socket_being_read():
    """The kernel takes a write and a read at once: the peer is told (AA-1)."""
    assoc, peer = accepted()
    watched = watch(assoc)
    thread, outcome = in_thread(assoc.receive_command)
    wait_until(lambda: watched.reads >= 1, what="a read blocked in the socket")
    assoc.abort()
    thread.join(10)
    assert isinstance(outcome.get("error"), PeerAbortedError)
    assert read_pdu(peer)[0] == ABORT and rest(peer) == b""


def test_abort_from_another_thread_writes_nothing_inside_a_send():
    """A send blocked on a full socket holds the I/O lock: abort() only shuts it down."""
    assoc, peer = requested()
    big = b"\x00" * (32 << 20)  # more than both socket buffers hold: the send blocks
    thread, outcome = in_thread(lambda: assoc.send_command(1, big))
    assert peer.recv(1, socket.MSG_PEEK)  # the send has begun...
    wait_until(assoc._io_lock.locked, what="a send in the socket")  # ...and holds the lock
    assoc.abort()
    received = rest(peer)
    thread.join(10)
    assert isinstance(outcome.get("error"), PeerAbortedError)
    sent = b"".join(bytes(part) for part in command_pdu(1, big))
    assert 0 < len(received) < len(sent) and received == sent[: len(received)]  # no A-ABORT


# -- 3. DIMSE commands the node does not serve (through a node) ---------------------------


def command(field: int, message_id: int, sop_class: str = "", dataset: bool = False) -> bytes:
    """A command set (group 0000, Implicit VR LE) with the elements a request needs here."""
    uid = sop_class.encode() + (b"\x00" if len(sop_class) % 2 else b"")
    elements = [(0x0002, uid)] if sop_class else []
    elements += [(0x0100, struct.pack("<H", field)), (0x0110, struct.pack("<H", message_id)),
                 (0x0800, struct.pack("<H", 0x0000 if dataset else 0x0101))]  # fmt: skip
    body = b"".join(struct.pack("<HHL", 0, tag, len(v)) + v for tag, v in elements)
    return struct.pack("<HHLL", 0, 0, 4, len(body)) + body


def answer(sock: socket.socket) -> dimse.Command:
    """The next command set off ``sock`` (in one PDV, as the node sends them)."""
    kind, body = read_pdu(sock)
    assert kind == 0x04, f"PDU type 0x{kind:02X} where a response was due"
    return dimse.decode(body[6:])


@pytest.fixture
def client(world: Callable[..., Any]) -> Iterator[socket.socket]:
    """A connection to a node's outside port, associated on Verification, CT and MR.

    The node accepts no other context pynetdicom knows (negotiate_unrestricted):
    a C-FIND comes on a storage context, if at all.
    """
    w = world()
    sock = socket.create_connection(("127.0.0.1", w.outside), timeout=10)
    sock.sendall(associate_rq(CLIENT_AE, "HOSPITAL", [
        (1, VERIFICATION, [IMPLICIT]), (3, CT, [IMPLICIT]), (5, MR, [IMPLICIT]),
    ]))  # fmt: skip
    assert read_pdu(sock)[0] == 0x02
    yield sock
    sock.close()


@pytest.mark.parametrize(("context_id", "sop_class"), [(1, CT), (3, MR), (5, "")],
                         ids=["on Verification", "MR on a CT context", "no SOP class"])  # fmt: skip
def test_a_c_store_the_context_does_not_allow_is_refused_0122_not_aborted(client, context_id,
                                                                         sop_class):  # fmt: skip
    client.sendall(p_data((context_id, 0x03, command(0x0001, 7, sop_class, dataset=True))))
    client.sendall(p_data((context_id, 0x02, b"\x08\x00\x16\x00" + b"\x00" * 60)))
    rsp = answer(client)
    assert (rsp.field, rsp.message_id, rsp.status) == (dimse.C_STORE_RSP, 7, 0x0122)
    client.sendall(p_data((1, 0x03, dimse.echo_rq(8))))  # and the association goes on
    assert answer(client).status == 0x0000


UNSERVED = {"C-FIND": (0x0020, True), "N-GET": (0x0110, False), "N-DELETE": (0x0150, False),
            "C-GET": (0x0010, True), "N-EVENT-REPORT": (0x0100, True)}  # fmt: skip


@pytest.mark.parametrize(("field", "dataset"), UNSERVED.values(), ids=UNSERVED.keys())
def test_a_request_the_node_does_not_serve_gets_0211_unrecognized_operation(client, field,
                                                                            dataset):  # fmt: skip
    client.sendall(p_data((3, 0x03, command(field, 9, CT, dataset))))
    if dataset:  # e.g. C-FIND's identifier: read and dropped, the association in step
        client.sendall(p_data((3, 0x02, b"\x08\x00\x52\x00\x06\x00\x00\x00STUDY ")))
    rsp = answer(client)
    assert (rsp.field, rsp.message_id, rsp.status) == (field | 0x8000, 9, 0x0211)
    assert not rsp.has_dataset
    client.sendall(p_data((1, 0x03, dimse.echo_rq(10))))
    assert answer(client).status == 0x0000


def test_a_c_cancel_is_ignored_and_an_undefined_command_aborts(client):
    client.sendall(p_data((3, 0x03, command(0x0FFF, 9))))  # C-CANCEL-RQ: no response defined
    client.sendall(p_data((1, 0x03, dimse.echo_rq(11))))
    assert answer(client).message_id == 11
    client.sendall(p_data((1, 0x03, command(0x0042, 12))))  # no such command: no response
    assert read_pdu(client)[0] == ABORT


def test_a_pynetdicom_scu_hears_0211_for_n_get_and_the_association_stays(world):
    w = world()
    ae = AE(ae_title="HOSPITAL")
    ae.add_requested_context(CT, IMPLICIT)
    ae.add_requested_context(VERIFICATION, IMPLICIT)
    assoc = ae.associate("127.0.0.1", w.outside, ae_title=CLIENT_AE)
    assert assoc.is_established
    try:
        status, attributes = assoc.send_n_get([(0x0010, 0x0010)], CT, "1.2.3.4")
        assert (int(status.Status), attributes) == (0x0211, None)
        assert int(assoc.send_c_echo().Status) == 0x0000
    finally:
        assoc.release()
