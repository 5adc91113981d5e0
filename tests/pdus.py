"""Raw DICOM upper-layer PDUs (PS3.8 section 9.3), built by hand for the fuzz tests."""

from __future__ import annotations

import socket
import struct

APPLICATION_CONTEXT = "1.2.840.10008.3.1.1.1"
VERIFICATION = "1.2.840.10008.1.1"
CT = "1.2.840.10008.5.1.4.1.1.2"
IMPLICIT = "1.2.840.10008.1.2"
EXPLICIT = "1.2.840.10008.1.2.1"


def _uid(value: str) -> bytes:
    data = value.encode()
    return data + (b"\x00" if len(data) % 2 else b"")


def item(kind: int, body: bytes) -> bytes:
    """A variable item: type, reserved, 2-byte length, body."""
    return struct.pack(">BBH", kind, 0, len(body)) + body


def pdu(kind: int, body: bytes) -> bytes:
    """A PDU: type, reserved, 4-byte length, body."""
    return struct.pack(">BBL", kind, 0, len(body)) + body


def associate_rq(
    called: str,
    calling: str = "FUZZER",
    contexts: list[tuple[int, str, list[str]]] | None = None,
    max_pdu: int = 16384,
) -> bytes:
    """A well-formed A-ASSOCIATE-RQ."""
    contexts = contexts or [(1, VERIFICATION, [IMPLICIT]), (3, CT, [EXPLICIT, IMPLICIT])]
    body = struct.pack(">HH", 1, 0) + called.encode().ljust(16) + calling.encode().ljust(16)
    body += b"\x00" * 32 + item(0x10, APPLICATION_CONTEXT.encode())
    for context_id, abstract, syntaxes in contexts:
        sub = item(0x30, _uid(abstract)) + b"".join(item(0x40, _uid(ts)) for ts in syntaxes)
        body += item(0x20, struct.pack(">BBBB", context_id, 0, 0, 0) + sub)
    user = item(0x51, struct.pack(">L", max_pdu)) + item(0x52, _uid("1.2.826.0.1.3680043.9.7156"))
    body += item(0x50, user)
    return pdu(0x01, body)


def p_data(*pdvs: tuple[int, int, bytes]) -> bytes:
    """A P-DATA-TF of (context id, message control header, fragment) PDVs."""
    body = b"".join(
        struct.pack(">LB", len(fragment) + 2, context_id) + bytes([control]) + fragment
        for context_id, control, fragment in pdvs
    )
    return pdu(0x04, body)


def release_rq() -> bytes:
    return pdu(0x05, b"\x00" * 4)


def abort() -> bytes:
    return pdu(0x07, b"\x00\x00\x00\x00")


def exchange(port: int, chunks: list[bytes], wait: float = 0.3) -> bytes:
    """Send ``chunks`` on a fresh connection; what came back within ``wait`` s."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        answer = b""
        try:
            for chunk in chunks:
                sock.sendall(chunk)
            sock.settimeout(wait)
            while data := sock.recv(65536):
                answer += data
        except OSError:
            pass  # reset, timeout: both are answers a fuzzer may get
        return answer


def silent(port: int, data: bytes) -> socket.socket:
    """A connection that sent ``data`` (half a PDU, or nothing) and then says no more."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    sock.sendall(data)
    return sock
