"""Hostile input on both ports: mutated and half-sent PDUs, silence, floods of connections.

Each test throws a batch of bad input at a node, then checks with DCMTK
that the node still answers (echoscu on both ports) and still routes a real
study (storescu). ``pytest --long`` throws 100,000 PDUs instead of a few
hundred.
"""

from __future__ import annotations

import gc
import random
import socket
import struct
import threading
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from integration.peers import echoscu, storescu
from tests.conftest import wait_until
from tests.pdus import (
    abort,
    associate_rq,
    exchange,
    p_data,
    pdu,
    release_rq,
    silent,
)
from tests.world import CLIENT_AE
from wolfpacs.dicom.association import Association

LIMITS = {"acse_timeout": 1.0, "network_timeout": 2.0, "max_associations": 20}
# pynetdicom's state machine raises in its own thread on some pipelined or out-of-order
# PDUs (e.g. "Invalid event 'Evt7' for the current state 'Sta13'"): that connection
# dies, the node does not. Those thread exceptions are pynetdicom's, not failures here.
# pydicom warns of each mangled UID pynetdicom decodes: expected, of fuzzed input.
pytestmark = [
    pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning"),
    pytest.mark.filterwarnings("ignore:Invalid value for VR UI"),
    pytest.mark.filterwarnings("ignore:The value length"),  # pydicom, of a fuzzed long UID
]


def examples(request: pytest.FixtureRequest, short: int) -> settings:
    count = 100_000 // 4 if request.config.getoption("--long") else short
    return settings(max_examples=count, deadline=None, database=None,
                    suppress_health_check=list(HealthCheck))  # fmt: skip


def still_serving(w, tmp_path) -> None:
    """A real echoscu on both ports, a real study routed whole, and no threads left behind."""
    # Connections the batch left are timed out within seconds; then the slots are free.
    wait_until(lambda: echoscu(w.outside, CLIENT_AE, calling="HOSPITAL").returncode == 0,
               timeout=30, interval=0.5, what="echoscu answered")  # fmt: skip
    assert echoscu(w.inside, "WOLFPACS", calling="GPU_A").returncode == 0
    before = w.delivered()
    files = w.study(f"check-{time.monotonic_ns()}", series=1, per_series=3)
    result = storescu(files, w.outside, CLIENT_AE, "HOSPITAL", "-xe")
    assert result.returncode == 0, result.stderr
    wait_until(lambda: w.delivered() == before + 3, timeout=20, what="the study at a worker")
    # Every connection of the batch is over: its pynetdicom threads must be gone too.
    wait_until(lambda: threading.active_count() < 80, timeout=20, what="the threads released")
    # ...and so must its associations, and their buffers (a megabyte each): nothing may
    # keep a closed one (a logged exception did, through its frames, with 100,000 PDUs).
    wait_until(lambda: closed_associations() == 0, timeout=20, what="closed associations freed")


def closed_associations() -> int:
    gc.collect()
    return sum(1 for o in gc.get_objects() if isinstance(o, Association) and not o.is_open)


def mutate(data: bytes, rng: random.Random) -> bytes:
    """One of the ways a PDU goes wrong on the wire."""
    data = bytearray(data)
    how = rng.randrange(7)
    if how == 0:  # flipped bytes
        for _ in range(rng.randint(1, 8)):
            data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
    elif how == 1:  # cut short
        data = data[: rng.randrange(1, len(data))]
    elif how == 2:  # a PDU length that lies
        data[2:6] = struct.pack(
            ">L", rng.choice([0, 1, len(data) * 2, 0xFFFF, rng.randrange(1 << 20)])
        )
    elif how == 3:  # a variable item whose length lies (or is huge)
        at = rng.randrange(74, len(data) - 4) if len(data) > 78 else 6
        data[at + 2 : at + 4] = struct.pack(">H", rng.choice([0, 0xFFFF, rng.randrange(1 << 16)]))
    elif how == 4:  # garbage spliced in
        at = rng.randrange(len(data))
        data[at:at] = rng.randbytes(rng.randint(1, 300))
    elif how == 5:  # an unknown PDU type
        data[0] = rng.choice([0x00, 0x08, 0x7F, 0xFF])
    else:  # pure noise
        data = bytearray(rng.randbytes(rng.randint(1, 2000)))
    return bytes(data)


def test_mutated_association_requests(world, tmp_path, request):
    w = world(**LIMITS)

    @examples(request, short=150)
    @given(seed=st.integers(0, 2**32), outside=st.booleans())
    def batch(seed: int, outside: bool) -> None:
        rng = random.Random(seed)
        called, port = (CLIENT_AE, w.outside) if outside else ("WOLFPACS", w.inside)
        valid = associate_rq(called, calling="HOSPITAL" if outside else "GPU_A")
        exchange(port, [mutate(valid, rng)], wait=0.05)

    batch()
    still_serving(w, tmp_path)


def test_mutated_data_on_an_open_association(world, tmp_path, request):
    w = world(**LIMITS)
    command = bytes.fromhex("00000000")  # not a command set at all

    @examples(request, short=100)
    @given(seed=st.integers(0, 2**32))
    def batch(seed: int) -> None:
        rng = random.Random(seed)
        context = rng.choice([1, 3, 5, 255])
        pieces = [
            p_data((context, 0x00, rng.randbytes(rng.randint(0, 500)))),  # dataset before command
            p_data((context, 0x03, command)),
            p_data((context, 0x02, rng.randbytes(100)), (context, 0x03, rng.randbytes(20))),
            p_data((context, rng.randrange(256), rng.randbytes(rng.randint(0, 64)))),
            mutate(p_data((3, 0x03, rng.randbytes(40))), rng),  # bad PDV headers
            pdu(0x04, struct.pack(">L", 0xFFFF) + b"\x01\x03"),  # a PDV longer than its PDU
        ]
        rng.shuffle(pieces)
        ending = rng.choice([release_rq(), abort(), b""])
        exchange(w.outside, [associate_rq(CLIENT_AE, "HOSPITAL"), *pieces[:3], ending],
                 wait=0.05)  # fmt: skip

    batch()
    still_serving(w, tmp_path)


def test_p_data_and_release_before_any_association(world, tmp_path):
    w = world(**LIMITS)
    for stray in (p_data((1, 0x03, b"\x00" * 20)), release_rq(), abort(), pdu(0x02, b"\x00" * 10)):
        answer = exchange(w.outside, [stray], wait=0.2)
        assert answer[:1] in (b"", b"\x07"), answer[:8]  # silence, or an A-ABORT
    still_serving(w, tmp_path)


def test_half_sent_pdus_then_silence_are_timed_out(world, tmp_path):
    w = world(**LIMITS)
    valid = associate_rq(CLIENT_AE, "HOSPITAL")
    # Each holds one of the 20 association slots until it is timed out: 15 leave room.
    quiet = [silent(w.outside, valid[:cut]) for cut in (0, 3, 6, 40, len(valid) - 1) * 3]
    still_serving(w, tmp_path)  # while fifteen peers hang half-way

    def closed(sock: socket.socket) -> bool:
        sock.settimeout(0.05)
        try:
            return sock.recv(1024) == b""
        except TimeoutError:
            return False
        except OSError:
            return True

    try:
        wait_until(lambda: all(closed(s) for s in quiet), timeout=15, what="ARTIM closes them")
    finally:
        for sock in quiet:
            sock.close()


def test_connections_up_to_the_association_limit_and_beyond(world, tmp_path):
    w = world(**{**LIMITS, "network_timeout": 10.0}, max_associations_per_client=100)
    held = [silent(w.outside, associate_rq(CLIENT_AE, "HOSPITAL")) for _ in range(20)]
    bare: list[socket.socket] = []
    try:
        wait_until(lambda: open_associations(w) == 20, timeout=10, what="20 associations")
        over = exchange(w.outside, [associate_rq(CLIENT_AE, "HOSPITAL")], wait=0.5)
        # A-ASSOCIATE-RJ: rejected-transient, by the service provider, local limit exceeded
        assert over[:1] == b"\x03" and over[-3:] == b"\x02\x03\x02", over
        bare = [silent(w.outside, b"") for _ in range(300)]  # never a word: ARTIM closes them
    finally:
        for sock in held + bare:
            sock.close()
    wait_until(lambda: open_associations(w) == 0, timeout=20, what="the slots freed")
    still_serving(w, tmp_path)


def open_associations(w) -> int:
    return w.admin("inspect", actor="listener:outside")["state"]["open_associations"]
