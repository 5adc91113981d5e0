"""Resource limits: what a node does at each one, and that it recovers behind it."""

from __future__ import annotations

import socket
import struct
import time

from pynetdicom import AE

from supervisors import join, kill
from tests.conftest import wait_until
from wolfpacs.dicom.status import Status
from wolfpacs.testing.peers import configure_pynetdicom

CT = "1.2.840.10008.5.1.4.1.1.2"
EXPLICIT = "1.2.840.10008.1.2.1"


def associate(w, called: str = "DEMO_SECRET"):
    configure_pynetdicom()
    ae = AE(ae_title="HOSPITAL")
    ae.add_requested_context(CT, EXPLICIT)
    return ae.associate("127.0.0.1", w.outside, ae_title=called)


def test_associations_per_client_are_limited(world, caplog):
    w = world(max_associations_per_client=2)
    first, second = associate(w), associate(w)
    assert first.is_established and second.is_established
    third = associate(w)
    assert third.is_rejected
    assert third.acceptor.primitive.result == 0x02  # transient: try again later
    assert third.acceptor.primitive.diagnostic == 0x02  # local limit exceeded
    assert "already has 2 associations open" in caplog.text
    first.release()
    wait_until(lambda: associate(w).is_established, what="a free slot after a release")
    second.release()


def test_associations_per_client_stay_limited_across_a_listener_restart(world):
    """The restarted listener shares the gate: old receivers free slots on the one it uses."""
    w = world(max_associations_per_client=2)
    first, second = associate(w), associate(w)
    assert first.is_established and second.is_established
    old = w.actor("listener:outside")
    kill(old)
    join(old, timeout=10)
    wait_until(lambda: w.actor("listener:outside") not in (None, old), what="a new listener")
    assert associate(w).is_rejected  # the two opened before the restart still count
    assert w.node.registry.call("listener:outside", "inspect")["open_associations"] == 2
    first.release()  # its receiver, started by the old listener, frees the slot
    wait_until(
        lambda: w.node.registry.call("listener:outside", "inspect")["open_associations"] == 1,
        what="the released slot freed on the new listener's gate",
    )
    third = associate(w)
    assert third.is_established
    assert associate(w).is_rejected  # and the limit holds with it
    third.release()
    second.release()


def test_an_instance_over_the_size_limit_aborts_its_association(world):
    w = world(max_instance_bytes=100_000)
    assert w.send(w.study("small", series=1, per_series=1)) == [0]
    big = w.study("big", series=1, per_series=1, rows=512, columns=512)  # 0.5 MB
    assert w.send(big) == [-1]  # no answer: the association was aborted
    # counted by the receiver right after its abort, which the client may see first
    wait_until(
        lambda: (
            w.node.metrics.value(
                "wolfpacs_associations_total", side="outside", outcome="aborted", reason="too_large"
            )
            == 1
        ),
        what="the abort counted",
    )
    assert w.send(w.study("again", series=1, per_series=1)) == [0]


def test_a_full_spool_refuses_then_recovers(world):
    w = world(spool_max_bytes=40_000)
    for wk in w.workers:
        wk.stop()  # nothing leaves: the spool fills
    statuses = w.send(w.study("s", series=1, per_series=8))  # ~9 kB each
    assert statuses[:4] == [0] * 4 and Status.OUT_OF_RESOURCES in statuses
    assert w.node.spool.queued_bytes <= 40_000
    for wk in w.workers:
        wk.start()
    wait_until(lambda: w.node.spool.queued_bytes == 0, timeout=20, what="an empty spool")
    assert w.send(w.study("t", series=1, per_series=3)) == [0, 0, 0]


def test_a_disk_nearly_full_refuses_associations(world):
    w = world(min_free_bytes=1 << 62)  # more than any disk has
    assert associate(w).is_rejected


def test_a_pdu_header_announcing_gigabytes_drops_the_connection(world):
    w = world()
    with socket.create_connection(("127.0.0.1", w.outside), timeout=10) as sock:
        sock.sendall(struct.pack(">BBL", 0x04, 0, 2_000_000_000))  # a 2 GB P-DATA-TF
        sent, started = 0, time.monotonic()
        try:
            while sent < 64 << 20 and time.monotonic() - started < 10:
                sock.sendall(b"\x00" * 65536)
                sent += 65536
        except OSError:
            pass  # dropped, as it should be
        assert sent < 64 << 20, "the node kept reading a PDU far over its limit"
    assert associate(w).is_established  # and serves everyone else
