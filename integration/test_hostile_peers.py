"""Hostile peers on the outside port: connections that trickle an A-ASSOCIATE-RQ.

A node in-process (its global cap on handshakes made small), an attacker
on 127.0.0.2 that keeps trying to hold far more connections than that cap,
each sending a byte of a request now and then and never the whole of it,
and DCMTK's storescu from 127.0.0.1 as the hospital that must get through.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import time

from integration.peers import acknowledged, storescu
from tests.conftest import wait_until
from tests.world import CLIENT_AE
from wolfpacs.node import gate

ATTACKER = "127.0.0.2"  # loopback: storescu cannot choose its address, it comes from 127.0.0.1
GLOBAL_CAP = 8  # connections not yet associated, on the whole port (256 in production)
PER_ADDRESS = 4
ACSE_TIMEOUT = 2.0
HOLD = 5 * GLOBAL_CAP  # connections the attacker tries to keep open at once
TICK = 0.25  # seconds between two bytes on each connection: far less than ACSE_TIMEOUT
SLACK = 1.5  # seconds past the deadline a connection may take to be seen closed (2 loaded cores)
# A-ASSOCIATE-RQ's header, announcing a body of 1000 bytes that never all arrive.
REQUEST = struct.pack(">BxL", 0x01, 1000) + b"\x00\x01\x00\x00" + b"A" * 994


class Trickler(threading.Thread):
    """Keeps up to ``HOLD`` trickling connections open from ATTACKER; measures how long each lasts.

    A connection the node closes is replaced at the next tick, as an attacker would.
    ``lasted``: for each connection seen closed, seconds from its connect to then.
    """

    def __init__(self, port: int) -> None:
        super().__init__(name="trickler", daemon=True)
        self.port = port
        self.opened: dict[socket.socket, tuple[float, int]] = {}  # -> (connected at, bytes sent)
        self.lasted: list[float] = []
        self.connects = 0
        self.replenish = threading.Event()
        self.replenish.set()
        self.done = threading.Event()
        self.lock = threading.Lock()

    def held(self, older_than: float) -> int:
        """Connections open for longer than ``older_than`` seconds."""
        now = time.monotonic()
        with self.lock:
            return sum(1 for at, _ in self.opened.values() if now - at > older_than)

    def run(self) -> None:
        deadline = time.monotonic() + 120  # bounded: the test ends it far sooner
        while time.monotonic() < deadline and (self.opened or self.replenish.is_set()):
            with self.lock:
                self._tick()
            self.done.wait(TICK)
        self.done.set()

    def _tick(self) -> None:
        for sock, (at, sent) in list(self.opened.items()):
            if self._closed(sock) or not self._send_byte(sock, sent):
                self.lasted.append(time.monotonic() - at)
                del self.opened[sock]
                sock.close()
            else:
                self.opened[sock] = (at, sent + 1)
        while self.replenish.is_set() and len(self.opened) < HOLD and self.connects < 5000:
            sock = socket.socket()
            sock.bind((ATTACKER, 0))
            sock.settimeout(5)
            try:
                sock.connect(("127.0.0.1", self.port))
            except OSError:
                sock.close()
                break  # the backlog is full: try again at the next tick
            sock.setblocking(False)
            self.connects += 1
            self.opened[sock] = (time.monotonic(), 0)

    @staticmethod
    def _closed(sock: socket.socket) -> bool:
        try:
            return sock.recv(1) == b""  # the node never answers a request it has not had
        except BlockingIOError:
            return False
        except OSError:  # reset
            return True

    @staticmethod
    def _send_byte(sock: socket.socket, sent: int) -> bool:
        try:
            return sock.send(REQUEST[sent % len(REQUEST) : sent % len(REQUEST) + 1]) == 1
        except BlockingIOError:
            return True
        except OSError:
            return False

    def stop(self) -> None:
        self.replenish.clear()
        with self.lock:
            for sock in self.opened:
                with contextlib.suppress(OSError):
                    sock.close()
            self.opened.clear()


def test_trickling_connections_from_one_address_lock_no_hospital_out(world, monkeypatch, caplog):
    monkeypatch.setattr(gate, "MAX_HANDSHAKES", GLOBAL_CAP)
    w = world(acse_timeout=ACSE_TIMEOUT, max_handshakes_per_address=PER_ADDRESS)
    files = w.study("s", series=1, per_series=3)
    attacker = Trickler(w.outside)
    attacker.start()
    try:
        wait_until(lambda: attacker.held(older_than=2 * TICK) >= PER_ADDRESS,
                   what="the attacker holding connections")  # fmt: skip
        started = time.monotonic()
        result = storescu(files, w.outside, CLIENT_AE)
        assert result.returncode == 0, result.stdout + result.stderr
        assert len(acknowledged(result.stdout + result.stderr)) == len(files)
        wait_until(lambda: w.delivered() == len(files), what="the study at a worker")
        # The attacker never stopped trying while the hospital was served...
        assert attacker.connects > HOLD and attacker.is_alive()
        # ...and got no more than its share, each connection closed by the deadline.
        attacker.replenish.clear()
        assert attacker.done.wait(ACSE_TIMEOUT + SLACK + 5), "trickling connections left open"
        assert attacker.lasted and max(attacker.lasted) < ACSE_TIMEOUT + SLACK
        assert max(attacker.lasted) > ACSE_TIMEOUT - SLACK / 2  # some were held: they trickled
    finally:
        attacker.stop()
        attacker.join(10)
    refused = [r for r in caplog.records if "not yet associated" in r.getMessage()]
    assert attacker.connects > 2 * len(refused)  # one line for many refusals, not one each
    assert len(refused) <= 2 + (time.monotonic() - started) / gate.REFUSAL_LOG_INTERVAL


def test_many_addresses_still_meet_the_global_cap(world, monkeypatch, caplog):
    monkeypatch.setattr(gate, "MAX_HANDSHAKES", GLOBAL_CAP)
    w = world(acse_timeout=ACSE_TIMEOUT, max_handshakes_per_address=PER_ADDRESS)
    port_gate = w.node.gates["outside"]
    silent = []
    try:
        for n in range(3 * PER_ADDRESS):  # 12 from three addresses, each within its limit
            sock = socket.socket()
            sock.bind((f"127.0.0.{2 + n % 3}", 0))
            sock.connect(("127.0.0.1", w.outside))
            silent.append(sock)
        wait_until(lambda: "not yet associated on the port" in caplog.text, what="a refusal")
        assert port_gate.handshakes() == GLOBAL_CAP
        wait_until(lambda: port_gate.handshakes() == 0, timeout=ACSE_TIMEOUT + 5,
                   what="the silent connections closed at the deadline")  # fmt: skip
    finally:
        for sock in silent:
            sock.close()
