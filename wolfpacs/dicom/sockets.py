"""What the data path sets on its TCP sockets: no Nagle delay, and timeouts the kernel keeps."""

from __future__ import annotations

import socket
import struct

__all__ = ["kernel_timeouts", "nodelay"]


def nodelay(sock: socket.socket) -> None:
    """Send each PDU at once: Nagle's algorithm stalls a request-response protocol ~40 ms."""
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def kernel_timeouts(sock: socket.socket, seconds: float | None) -> None:
    """Time out a blocking socket's reads and writes after ``seconds`` (None: never).

    The socket stays blocking and the kernel keeps the time
    (SO_RCVTIMEO/SO_SNDTIMEO), so a read that times out raises
    ``BlockingIOError``. Python's own timeouts poll() before every read and
    write, a system call (and a GIL hand-off) more each time.
    """
    whole = int(seconds or 0)
    micro = 0 if not seconds else max(int((seconds - whole) * 1e6), 1 if not whole else 0)
    value = struct.pack("ll", whole, micro)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, value)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, value)
