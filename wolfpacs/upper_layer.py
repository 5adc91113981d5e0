"""The DICOM upper layer (PS3.8) on a blocking socket: the node's data path.

One thread per association reads each PDU whole with ``recv_into`` into a
buffer it keeps, and hands every P-DATA fragment of a dataset to a writer
(the spool file) as a view of that buffer; sending reads a file into
PDUs of the peer's maximum length and writes each with one system call.
Nothing polls: a blocked read waits in the kernel and the socket's
timeout is the only timer.

Why not pynetdicom's own upper layer: its reactors poll every millisecond,
read 4 KiB at a time and hand each PDU between two threads, which on a
pass-through node costs about three times DCMTK's time on receive alone
(``PERFORMANCE-NOTES.md``). pynetdicom still does what it does well here:
it encodes and decodes the A-ASSOCIATE PDUs and negotiates presentation
contexts. DIMSE command sets are :mod:`wolfpacs.dimse`.

Error contract (every error closes the association; the socket is the
caller's to forget):

- :class:`PeerAbortedError`: the peer sent A-ABORT, or the connection
  broke or was closed under us (an ``OSError`` is turned into this).
- :class:`ProtocolError`: the peer sent what PS3.8 does not allow at that
  point, or a PDU over the limit; an A-ABORT has been sent.
- :class:`RejectedError`: (requesting) the peer answered A-ASSOCIATE-RJ.
- :class:`TimeoutError`: the peer was silent for longer than the timeout;
  an A-ABORT has been sent.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import socket
import ssl
import struct
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pynetdicom.pdu import A_ASSOCIATE_AC, A_ASSOCIATE_RQ
from pynetdicom.pdu_primitives import (
    A_ASSOCIATE,
    ImplementationClassUIDNotification,
    ImplementationVersionNameNotification,
    MaximumLengthNotification,
    SCP_SCU_RoleSelectionNegotiation,
)
from pynetdicom.presentation import PresentationContext, negotiate_unrestricted

from wolfpacs import dimse
from wolfpacs.part10 import (
    IMPLEMENTATION_CLASS_UID,
    IMPLEMENTATION_VERSION,
    Part10Error,
    dataset_offset,
)

__all__ = [
    "Association", "AssociationError", "Context", "PeerAbortedError", "ProtocolError",
    "RejectedError", "accept", "request",
]  # fmt: skip

logger = logging.getLogger(__name__)

APPLICATION_CONTEXT = "1.2.840.10008.3.1.1.1"
VERIFICATION = "1.2.840.10008.1.1"
# Explicit VR LE, Implicit VR LE, Explicit VR BE, Deflated Explicit VR LE
UNCOMPRESSED = [
    "1.2.840.10008.1.2.1", "1.2.840.10008.1.2", "1.2.840.10008.1.2.2",
    "1.2.840.10008.1.2.1.99",
]  # fmt: skip

RECEIVE_BUFFER = 1024 * 1024  # read at a time, at most: several PDUs
RESPONSE_BUFFER = 64 * 1024  # a requestor's: it reads responses (grows for a larger PDU)
CACHED_REQUEST_BYTES = 64 * 1024  # a larger A-ASSOCIATE-RQ is decoded, not remembered
SEND_READ = 1024 * 1024  # bytes of a file read, and sent, at a time (a CT slice in one go)
MAX_PDUS_PER_SEND = 500  # two iovecs each (and two for the command): under IOV_MAX, 1024
MAX_FRAGMENTS_PER_WRITE = 512  # received fragments handed on at once, at most (IOV_MAX too)
# PDU types (PS3.8 9.3.1)
ASSOCIATE_RQ, ASSOCIATE_AC, ASSOCIATE_RJ = 0x01, 0x02, 0x03
P_DATA_TF, RELEASE_RQ, RELEASE_RP, ABORT = 0x04, 0x05, 0x06, 0x07
# A-ABORT (source, reason), PS3.8 9.3.8
ABORT_BY_USER = (0x00, 0x00)
ABORT_UNRECOGNISED_PDU = (0x02, 0x01)
ABORT_UNEXPECTED_PDU = (0x02, 0x02)
ABORT_UNEXPECTED_PARAMETER = (0x02, 0x05)
ABORT_INVALID_PARAMETER = (0x02, 0x06)
# A-ASSOCIATE-RJ (result, source, diagnostic), PS3.8 9.3.4
REJECT_APPLICATION_CONTEXT = (0x01, 0x01, 0x02)
REJECT_PROTOCOL_VERSION = (0x01, 0x02, 0x02)

_HEADER = struct.Struct(">BxL")  # PDU type, reserved, length
_PDV = struct.Struct(">LBB")  # item length, context id, message control header
_PDU_PDV = struct.Struct(">BxLLBB")  # both: a P-DATA-TF PDU that carries one PDV
COMMAND, LAST = 0x01, 0x02  # message control header bits
MAX_ASSOCIATE_PDU = 1 << 20  # an A-ASSOCIATE-RQ of 128 contexts is a few kilobytes
DEFAULT_SEND_PDU = 1 << 20  # what to send to a peer that announces no maximum
MAX_SEND_PDU = 4 << 20  # a larger announced maximum is not honoured in full


_UNSET = object()


class AssociationError(Exception):
    """The association cannot go on; it has been closed."""


class PeerAbortedError(AssociationError):
    """The peer aborted, or the connection broke."""


class ProtocolError(AssociationError):
    """The peer broke PS3.8; an A-ABORT has been sent."""


class RejectedError(AssociationError):
    """The peer rejected the association (A-ASSOCIATE-RJ)."""

    def __init__(self, result: int, source: int, diagnostic: int) -> None:
        super().__init__(
            f"association rejected (result {result}, source {source}, diagnostic {diagnostic})"
        )
        self.result, self.source, self.diagnostic = result, source, diagnostic


@dataclass(frozen=True)
class Context:
    """An accepted presentation context (plain data)."""

    id: int
    abstract_syntax: str
    transfer_syntax: str


def _pdu(kind: int, body: bytes) -> bytes:
    return _HEADER.pack(kind, len(body)) + body


def _abort_pdu(source: int, reason: int) -> bytes:
    return _pdu(ABORT, bytes([0, 0, source, reason]))


def _text(value: object) -> str:
    return str(value or "").strip()


class Association:
    """An established association, as acceptor or requestor.

    Used by one thread at a time, except :meth:`abort`, which any thread may
    call to end it (it wakes a read blocked on the socket).
    """

    def __init__(
        self,
        sock: socket.socket,
        contexts: dict[int, Context],
        *,
        peer_max_pdu: int,
        calling_ae: str,
        called_ae: str,
        pdu_limit: int,
        timeout: float | None,
        receive_buffer: int = RECEIVE_BUFFER,
    ) -> None:
        self.sock = sock
        self.contexts = contexts
        self.calling_ae = calling_ae
        self.called_ae = called_ae
        self.pdu_limit = pdu_limit
        self.timeout = timeout
        chunk = min(peer_max_pdu or DEFAULT_SEND_PDU, MAX_SEND_PDU)
        self.send_fragment = max(chunk - 6, 1024)  # a PDV item's header takes 6 bytes
        self.address, self.port = sock.getpeername()[:2]
        # What has been read and not yet parsed lies in _buffer[_start:_end]; each read
        # takes all the socket has (up to the buffer's end), often several PDUs.
        self._buffer = bytearray(receive_buffer)
        self._view = memoryview(self._buffer)
        self._start = self._end = 0
        self._pdu: memoryview = self._view[:0]  # the current P-DATA-TF body
        self._offset = 0  # of the next PDV in it
        self._send_lock = threading.Lock()
        self._plain = not isinstance(sock, ssl.SSLSocket)  # TLS has no sendmsg
        self._file_buffer: memoryview | None = None  # files are read into it to be sent
        self._message_id = 0
        self.is_open = True
        self.released = False
        self._timeout: object = _UNSET
        if self._plain:
            self.sock.settimeout(None)
        self._set_timeout(timeout)

    def _set_timeout(self, seconds: float | None) -> None:
        """Time out reads and writes after ``seconds`` (None: never).

        A plain socket stays blocking and the kernel keeps the time
        (SO_RCVTIMEO/SO_SNDTIMEO): Python's own timeouts poll() before every
        read and write, a system call (and a GIL hand-off) more each time.
        """
        if seconds == self._timeout:
            return  # two system calls saved on every C-STORE a sender makes
        self._timeout = seconds
        if not self._plain:
            self.sock.settimeout(seconds)
            return
        whole = int(seconds or 0)
        micro = 0 if not seconds else max(int((seconds - whole) * 1e6), 1 if not whole else 0)
        value = struct.pack("ll", whole, micro)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, value)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, value)

    # -- reading -----------------------------------------------------------------

    def _fill(self, need: int) -> None:
        """Have at least ``need`` unparsed bytes in the buffer, from ``_start`` on."""
        if self._start + need > len(self._buffer):  # make room: the unparsed bytes go first
            unread = bytes(self._view[self._start : self._end])
            if need > len(self._buffer):
                self._buffer = bytearray(max(need, RECEIVE_BUFFER))
                self._view = memoryview(self._buffer)
            self._view[: len(unread)] = unread
            self._start, self._end = 0, len(unread)
        recv_into, view, size = self.sock.recv_into, self._view, len(self._buffer)
        while self._end - self._start < need:
            try:
                n = recv_into(view[self._end :], size - self._end)
            except BlockingIOError:  # SO_RCVTIMEO ran out
                raise TimeoutError("the peer was silent for too long") from None
            if not n:
                raise PeerAbortedError("connection closed by the peer")
            self._end += n

    def _read_pdu(self) -> tuple[int, memoryview]:
        """The next PDU's type and body (a view valid until the next read)."""
        try:
            self._fill(6)
            kind, length = _HEADER.unpack_from(self._view, self._start)
            limit = self.pdu_limit if kind == P_DATA_TF else MAX_ASSOCIATE_PDU
            if length > limit:
                self._protocol_error(
                    f"a PDU of {length} bytes announced (limit {limit})", ABORT_INVALID_PARAMETER
                )
            self._fill(6 + length)
            body = self._view[self._start + 6 : self._start + 6 + length]
            self._start += 6 + length
        except TimeoutError:
            self.abort()
            raise
        except OSError as exc:
            self.close()
            raise PeerAbortedError(f"connection broken: {exc}") from None
        return kind, body

    def _protocol_error(self, why: str, reason: tuple[int, int]) -> None:
        self.abort(reason)
        raise ProtocolError(why)

    def _next_pdv(self) -> tuple[int, int, memoryview] | None:
        """The next PDV (context id, control, fragment); ``None`` if the peer asks to release."""
        while self._offset >= len(self._pdu):
            kind, body = self._read_pdu()
            if kind == P_DATA_TF:
                self._pdu, self._offset = body, 0
            elif kind == RELEASE_RQ:
                return None
            elif kind == ABORT:
                self.close()
                source, reason = (body[2], body[3]) if len(body) >= 4 else (0, 0)
                raise PeerAbortedError(f"aborted by the peer (source {source}, reason {reason})")
            elif kind in (ASSOCIATE_RQ, ASSOCIATE_AC, ASSOCIATE_RJ, RELEASE_RP):
                self._protocol_error(f"unexpected PDU type 0x{kind:02X}", ABORT_UNEXPECTED_PDU)
            else:
                self._protocol_error(f"unrecognised PDU type 0x{kind:02X}", ABORT_UNRECOGNISED_PDU)
        pdu, offset = self._pdu, self._offset
        if len(pdu) - offset < 6:
            self._protocol_error("a PDV item cut short", ABORT_INVALID_PARAMETER)
        length, context_id, control = _PDV.unpack_from(pdu, offset)
        if length < 2 or offset + 4 + length > len(pdu):
            self._protocol_error(f"a PDV item of {length} bytes", ABORT_INVALID_PARAMETER)
        if context_id not in self.contexts:
            self._protocol_error(
                f"a PDV on presentation context {context_id}, not accepted", ABORT_INVALID_PARAMETER
            )
        self._offset = offset + 4 + length
        return context_id, control, pdu[offset + 6 : offset + 4 + length]

    def receive_command(self) -> tuple[Context, dimse.Command] | None:
        """The next DIMSE command; ``None`` once the peer has released (answered, closed).

        Raises:
            ProtocolError: a dataset fragment, or a command set that does not parse.
        """
        parts: list[bytes] = []
        size = 0
        while True:
            pdv = self._next_pdv()
            if pdv is None:
                if parts:
                    self._protocol_error("A-RELEASE-RQ inside a command", ABORT_UNEXPECTED_PDU)
                self._answer_release()
                return None
            context_id, control, fragment = pdv
            if not control & COMMAND:
                self._protocol_error("a dataset fragment where a command was due",
                                     ABORT_UNEXPECTED_PDU)  # fmt: skip
            size += len(fragment)
            if size > dimse.MAX_COMMAND_BYTES:
                self._protocol_error(f"a command set of over {size} bytes", ABORT_INVALID_PARAMETER)
            parts.append(bytes(fragment))
            if control & LAST:
                break
        try:
            command = dimse.decode(b"".join(parts))
        except dimse.DimseError as exc:
            self._protocol_error(f"bad command set: {exc}", ABORT_INVALID_PARAMETER)
        return self.contexts[context_id], command

    def receive_dataset(
        self, context: Context, write: Callable[[list[memoryview]], Any], limit: int = 0
    ) -> int:
        """Pass the fragments of the dataset that follows a command to ``write``; its size.

        ``write`` gets, in order, lists of the fragments that arrived together
        (one ``writev`` for several PDUs); they are views into the receive
        buffer, valid until it returns.

        Raises:
            DatasetTooLargeError: over ``limit`` bytes (0: no limit); the
                association has been aborted.
            ProtocolError: a command fragment, a release, or another context.
        """
        size = 0
        pending: list[memoryview] = []
        while True:
            if pending and (len(pending) >= MAX_FRAGMENTS_PER_WRITE or not self._pdv_buffered()):
                write(pending)  # before a read moves or overwrites what the views show
                pending = []
            pdv = self._next_pdv()
            if pdv is None:
                self._protocol_error("A-RELEASE-RQ inside a dataset", ABORT_UNEXPECTED_PDU)
            context_id, control, fragment = pdv  # type: ignore[misc]
            if control & COMMAND or context_id != context.id:
                self._protocol_error("a command or another context inside a dataset",
                                     ABORT_UNEXPECTED_PDU)  # fmt: skip
            size += len(fragment)
            if limit and size > limit:
                self.abort()
                raise DatasetTooLargeError(f"a dataset of over {limit} bytes")
            pending.append(fragment)
            if control & LAST:
                write(pending)
                return size

    def _pdv_buffered(self) -> bool:
        """Whether the next PDV lies in the buffer already (it can be had without a read)."""
        if self._offset < len(self._pdu):
            return True
        have = self._end - self._start
        return have >= 6 and have >= 6 + _HEADER.unpack_from(self._view, self._start)[1]

    def _answer_release(self) -> None:
        with contextlib.suppress(OSError):
            self._send(_pdu(RELEASE_RP, b"\x00" * 4))
        self.released = True
        self.close()

    # -- writing -----------------------------------------------------------------

    def _send(self, *parts: bytes | memoryview) -> None:
        with self._send_lock:
            if not self._plain:
                for part in parts:
                    self.sock.sendall(part)
                return
            pending = list(parts)
            total = sum(map(len, pending))
            while pending:  # sendmsg may take only part of it: go on from where it stopped
                try:
                    sent = self.sock.sendmsg(pending)
                except BlockingIOError:  # SO_SNDTIMEO ran out
                    raise TimeoutError("the peer took nothing for too long") from None
                total -= sent
                if not total:
                    return  # all of it (a blocking socket's usual case)
                while pending and sent >= len(pending[0]):
                    sent -= len(pending.pop(0))
                if sent:
                    pending[0] = memoryview(pending[0])[sent:]

    @staticmethod
    def _command_parts(context_id: int, command: bytes) -> list[bytes]:
        """A command set as one P-DATA-TF of one PDV (command sets are far smaller than any PDU)."""
        size = len(command)
        return [_PDU_PDV.pack(P_DATA_TF, size + 6, size + 2, context_id, COMMAND | LAST), command]

    def send_command(self, context_id: int, command: bytes) -> None:
        """One command set, in one PDV."""
        try:
            self._send(*self._command_parts(context_id, command))
        except OSError as exc:
            self.close()
            raise PeerAbortedError(f"connection broken: {exc}") from None

    def _send_dataset(
        self, context_id: int, fd: int, first: memoryview, left: int, prefix: list[bytes]
    ) -> None:
        """Send ``first`` and then ``left`` more bytes read from ``fd`` as a dataset.

        ``first`` lies in the file buffer; the file is read into it again,
        up to :data:`SEND_READ` at a time, and each read goes out as all the
        PDUs it makes in one ``sendmsg`` (the first with ``prefix``, the
        command, before it): a CT slice to a peer with 16 KiB PDUs (DCMTK's
        default) costs one read and one send, not two system calls per PDU.
        """
        fragment, chunk = self.send_fragment, first
        full = _PDU_PDV.pack(P_DATA_TF, fragment + 6, fragment + 2, context_id, 0)
        try:
            while True:
                parts: list[bytes | memoryview] = prefix
                n = len(chunk)
                stop = n if n or left else 1  # an empty dataset: one empty last fragment
                for start in range(0, stop, fragment):
                    piece = chunk[start : start + fragment]
                    size = len(piece)
                    if size == fragment and (left or start + fragment < n):
                        parts += [full, piece]  # most PDUs: the header is made once
                    else:
                        control = LAST if not left and start + fragment >= n else 0
                        parts += [_PDU_PDV.pack(P_DATA_TF, size + 6, size + 2, context_id,
                                                control), piece]  # fmt: skip
                    if len(parts) >= 2 * MAX_PDUS_PER_SEND:
                        self._send(*parts)
                        parts = []
                self._send(*parts)
                if not left:
                    return
                buffer = self._file_buffer
                assert buffer is not None
                n = os.readv(fd, [buffer[: min(len(buffer), left)]])
                if n == 0:
                    raise AssociationError("the file is shorter than it was")
                chunk, left, prefix = buffer[:n], left - n, []
        except OSError as exc:
            self.close()
            raise PeerAbortedError(f"connection broken: {exc}") from None

    # -- requests (as requestor) -------------------------------------------------

    def context_for(self, sop_class_uid: str, transfer_syntax: str) -> Context | None:
        """The accepted context for this SOP class in this transfer syntax, if any."""
        wanted = (sop_class_uid, transfer_syntax)
        for context in self.contexts.values():
            if (context.abstract_syntax, context.transfer_syntax) == wanted:
                return context
        return None

    def _next_message_id(self) -> int:
        self._message_id = self._message_id % 0xFFFF + 1
        return self._message_id

    def _response(self, message_id: int, timeout: float | None) -> dimse.Command:
        self._set_timeout(timeout)
        try:
            answer = self.receive_command()
        finally:
            if self.is_open:
                self._set_timeout(self.timeout)
        if answer is None:
            raise PeerAbortedError("the peer released the association instead of answering")
        _, command = answer
        if command.is_request or command.message_id != message_id:
            self._protocol_error(
                f"command 0x{command.field:04X} for message {command.message_id} "
                f"where the response to {message_id} was due",
                ABORT_UNEXPECTED_PDU,
            )
        if command.has_dataset:  # no response the node asks for carries one: drain it
            self.receive_dataset(self.contexts[answer[0].id], lambda _fragments: None)
        return command

    def send_c_store(
        self, context: Context, path: str, sop_class_uid: str, sop_instance_uid: str,
        dimse_timeout: float | None = None,
    ) -> dimse.Command:  # fmt: skip
        """Send the DICOM file at ``path`` (its dataset, as stored); the C-STORE-RSP.

        Raises:
            Part10Error: the file has no file meta to skip.
        """
        fd = os.open(path, os.O_RDONLY)
        try:
            size = os.fstat(fd).st_size
            if self._file_buffer is None:
                self._file_buffer = memoryview(bytearray(SEND_READ))
            head = self._file_buffer[: min(size, SEND_READ)]
            n = os.readv(fd, [head])
            offset = dataset_offset(head[:n])
            if offset > n:
                raise Part10Error("a file meta longer than the file's first read")
            message_id = self._next_message_id()
            command = dimse.store_rq(message_id, sop_class_uid, sop_instance_uid)
            self._send_dataset(context.id, fd, head[offset:n], size - n,
                               self._command_parts(context.id, command))  # fmt: skip
        finally:
            os.close(fd)
        return self._response(message_id, dimse_timeout)

    def send_c_echo(self, dimse_timeout: float | None = None) -> int:
        """C-ECHO on the Verification context; the status answered.

        Raises:
            AssociationError: no Verification context was accepted.
        """
        context = next(
            (c for c in self.contexts.values() if c.abstract_syntax == VERIFICATION), None
        )
        if context is None:
            raise AssociationError("the peer accepted no Verification context")
        message_id = self._next_message_id()
        self.send_command(context.id, dimse.echo_rq(message_id))
        status = self._response(message_id, dimse_timeout).status
        return 0xC000 if status is None else status

    # -- ending ------------------------------------------------------------------

    def release(self, timeout: float | None = None) -> None:
        """A-RELEASE-RQ, wait for the A-RELEASE-RP, close. Never raises; aborts if need be."""
        if not self.is_open:
            return
        try:
            self._send(_pdu(RELEASE_RQ, b"\x00" * 4))
            self._set_timeout(timeout if timeout is not None else self.timeout)
            while True:
                kind, _body = self._read_pdu()
                if kind == RELEASE_RP:
                    break
                if kind == ABORT:
                    break
                if kind == RELEASE_RQ:  # a release collision (PS3.8 7.2.2): answer it
                    self._send(_pdu(RELEASE_RP, b"\x00" * 4))
                    break
                # P-DATA still on its way: not ours to act on any more
        except (AssociationError, OSError):
            logger.debug("release of %s:%s not answered: aborted", self.address, self.port)
            self.abort()
        self.released = True
        self.close()

    def abort(self, reason: tuple[int, int] = ABORT_BY_USER) -> None:
        """Send A-ABORT if the socket is free to take it, and end the connection (any thread)."""
        if not self.is_open:
            return
        if self._send_lock.acquire(blocking=False):  # mid-send, an A-ABORT would corrupt a PDU
            try:
                self._set_timeout(1.0)
                self.sock.sendall(_abort_pdu(*reason))
            except OSError:
                pass
            finally:
                self._send_lock.release()
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)  # wakes a read blocked in another thread
        self.is_open = False

    def close(self) -> None:
        self.is_open = False
        with contextlib.suppress(OSError):
            self.sock.close()


class DatasetTooLargeError(AssociationError):
    """A dataset over the size limit; the association has been aborted."""


# -- establishing ---------------------------------------------------------------------


def _user_information(max_pdu: int) -> list[Any]:
    max_length = MaximumLengthNotification()
    max_length.maximum_length_received = max_pdu
    class_uid = ImplementationClassUIDNotification()
    class_uid.implementation_class_uid = IMPLEMENTATION_CLASS_UID
    version = ImplementationVersionNameNotification()
    version.implementation_version_name = IMPLEMENTATION_VERSION
    return [max_length, class_uid, version]


def _peer_max_pdu(user_information: list[Any]) -> int:
    for item in user_information:
        if isinstance(item, MaximumLengthNotification):
            return int(item.maximum_length_received or 0)
    return 0


def _read_first(sock: socket.socket) -> tuple[int, bytes]:
    header = bytearray(6)
    view = memoryview(header)
    got = 0
    while got < 6:
        n = sock.recv_into(view[got:])
        if not n:
            raise PeerAbortedError("connection closed before a PDU")
        got += n
    kind, length = _HEADER.unpack(header)
    if length > MAX_ASSOCIATE_PDU:
        raise ProtocolError(f"a first PDU of {length} bytes announced")
    body = bytearray(length)
    view = memoryview(body)
    got = 0
    while got < length:
        n = sock.recv_into(view[got:])
        if not n:
            raise PeerAbortedError("connection closed inside a PDU")
        got += n
    return kind, bytes(header + body)


def _accept_contexts(primitive: A_ASSOCIATE, max_pdu: int) -> tuple[bytes, dict[int, Context]]:
    """The A-ASSOCIATE-AC for a request, and the contexts it accepts."""
    roles = {
        item.sop_class_uid: (item.scu_role, item.scp_role)
        for item in primitive.user_information or []
        if isinstance(item, SCP_SCU_RoleSelectionNegotiation)
    }
    verification = PresentationContext()
    verification.abstract_syntax = VERIFICATION
    verification.transfer_syntax = UNCOMPRESSED
    results, role_items = negotiate_unrestricted(
        primitive.presentation_context_definition_list, [verification], roles
    )
    ac = A_ASSOCIATE()
    ac.application_context_name = APPLICATION_CONTEXT
    ac.calling_ae_title = primitive.calling_ae_title
    ac.called_ae_title = primitive.called_ae_title
    ac.result, ac.result_source = 0x00, 0x01
    ac.presentation_context_definition_results_list = results
    ac.user_information = _user_information(max_pdu) + list(role_items)
    pdu = A_ASSOCIATE_AC()
    pdu.from_primitive(ac)
    contexts = {
        int(cx.context_id): Context(
            int(cx.context_id), str(cx.abstract_syntax), str(cx.transfer_syntax[0])
        )
        for cx in results
        if cx.result == 0x00
    }
    return pdu.encode(), contexts


def _decoded(pdu: A_ASSOCIATE_RQ | A_ASSOCIATE_AC, data: bytes, what: str) -> A_ASSOCIATE:
    """The primitive of an A-ASSOCIATE PDU, by pynetdicom.

    Raises:
        ProtocolError: it does not decode (pynetdicom raises many kinds on hostile bytes).
    """
    try:
        pdu.decode(data)
        return pdu.to_primitive()
    except Exception as exc:
        raise ProtocolError(f"undecodable {what}: {type(exc).__name__}") from None


@dataclass(frozen=True)
class _Negotiation:
    """What an A-ASSOCIATE-RQ asks, and the answer to it (the caller may still reject)."""

    calling_ae: str
    called_ae: str
    rejection: tuple[int, int, int] | None  # the request is not one we can take
    answer: bytes  # the A-ASSOCIATE-AC
    contexts: dict[int, Context]
    peer_max_pdu: int


@functools.lru_cache(maxsize=64)
def _negotiated(data: bytes, max_pdu: int) -> _Negotiation:
    """Decode a request and work out the answer, once for each distinct request.

    A modality sends the same request, byte for byte, every time; decoding
    its hundred-odd presentation contexts with pynetdicom takes ~8 ms of the
    interpreter, which eight clients connecting at once would wait for in turn.

    Raises:
        ProtocolError: it does not decode (not cached).
    """
    rq = A_ASSOCIATE_RQ()
    primitive = _decoded(rq, data, "A-ASSOCIATE-RQ")
    calling, called = _text(primitive.calling_ae_title), _text(primitive.called_ae_title)
    rejection: tuple[int, int, int] | None = None
    if not rq.protocol_version & 0x0001:
        rejection = REJECT_PROTOCOL_VERSION
    elif str(primitive.application_context_name) != APPLICATION_CONTEXT:
        rejection = REJECT_APPLICATION_CONTEXT
    if rejection is not None:
        return _Negotiation(calling, called, rejection, b"", {}, 0)
    answer, contexts = _accept_contexts(primitive, max_pdu)
    peer_max_pdu = _peer_max_pdu(primitive.user_information or [])
    return _Negotiation(calling, called, None, answer, contexts, peer_max_pdu)


def accept(
    sock: socket.socket,
    decide: Callable[[str, str], tuple[int, int, int] | None],
    *,
    max_pdu: int,
    acse_timeout: float,
    timeout: float | None,
    pdu_limit: int,
) -> Association | None:
    """Take an association on an accepted connection; ``None`` if it was rejected.

    ``decide(calling_ae, called_ae)`` returns the A-ASSOCIATE-RJ
    (result, source, diagnostic) to answer, or ``None`` to accept. Accepted
    are Verification and every storage-like SOP class, each in the first
    transfer syntax proposed.

    Raises:
        ProtocolError, PeerAbortedError, TimeoutError: no association (A-ABORT
            sent where PS3.8 asks for one); the socket is closed.
    """
    try:
        sock.settimeout(acse_timeout)
        kind, data = _read_first(sock)
        if kind != ASSOCIATE_RQ:
            raise ProtocolError(f"PDU type 0x{kind:02X} before an A-ASSOCIATE-RQ")
        # Only requests of a modality's size are remembered: 64 distinct ones of up to
        # 1 MiB (MAX_ASSOCIATE_PDU) would keep 64 MiB for a peer that sends them.
        negotiate = _negotiated if len(data) <= CACHED_REQUEST_BYTES else _negotiated.__wrapped__
        found = negotiate(data, max_pdu)
        rejection = found.rejection or decide(found.calling_ae, found.called_ae)
        if rejection is not None:
            sock.sendall(_pdu(ASSOCIATE_RJ, bytes([0, *rejection])))
            sock.close()
            return None
        sock.sendall(found.answer)
        sock.settimeout(timeout)
        return Association(
            sock, dict(found.contexts), peer_max_pdu=found.peer_max_pdu,
            calling_ae=found.calling_ae, called_ae=found.called_ae, pdu_limit=pdu_limit,
            timeout=timeout,
        )  # fmt: skip
    except ProtocolError:
        with contextlib.suppress(OSError):
            sock.sendall(_abort_pdu(*ABORT_UNEXPECTED_PDU))
        sock.close()
        raise
    except OSError as exc:
        sock.close()
        if isinstance(exc, TimeoutError):
            raise
        raise PeerAbortedError(f"connection broken: {exc}") from None


def request(
    address: tuple[str, int],
    proposals: list[tuple[str, list[str]]],
    *,
    calling_ae: str,
    called_ae: str,
    max_pdu: int,
    connect_timeout: float | None,
    acse_timeout: float | None,
    timeout: float | None,
    tls: ssl.SSLContext | None = None,
    pdu_limit: int = 64 << 20,
) -> Association:
    """Open an association: each (SOP class, transfer syntaxes) proposed on its own context.

    Raises:
        RejectedError: the peer said no.
        PeerAbortedError: the peer aborted or closed instead of answering.
        OSError (TimeoutError, ConnectionRefusedError...): no connection.
    """
    sock = socket.create_connection(address, timeout=connect_timeout)
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if tls is not None:
            sock = tls.wrap_socket(sock, server_hostname=address[0])
        primitive = A_ASSOCIATE()
        primitive.application_context_name = APPLICATION_CONTEXT
        primitive.calling_ae_title = calling_ae
        primitive.called_ae_title = called_ae
        proposed: dict[int, str] = {}
        for index, (abstract, syntaxes) in enumerate(proposals):
            context = PresentationContext()
            context.context_id = 2 * index + 1
            context.abstract_syntax = abstract
            context.transfer_syntax = syntaxes
            primitive.presentation_context_definition_list.append(context)
            proposed[context.context_id] = abstract
        primitive.user_information = _user_information(max_pdu)
        pdu = A_ASSOCIATE_RQ()
        pdu.from_primitive(primitive)
        sock.settimeout(acse_timeout)
        sock.sendall(pdu.encode())
        kind, data = _read_first(sock)
        if kind == ASSOCIATE_RJ and len(data) >= 10:
            raise RejectedError(data[7], data[8], data[9])
        if kind == ABORT:
            raise PeerAbortedError("the peer aborted instead of answering A-ASSOCIATE-RQ")
        if kind != ASSOCIATE_AC:
            raise ProtocolError(f"PDU type 0x{kind:02X} in answer to A-ASSOCIATE-RQ")
        answer = _decoded(A_ASSOCIATE_AC(), data, "A-ASSOCIATE-AC")
        contexts = {
            int(cx.context_id): Context(
                int(cx.context_id), proposed[int(cx.context_id)], str(cx.transfer_syntax[0])
            )
            for cx in answer.presentation_context_definition_results_list
            if cx.result == 0x00 and int(cx.context_id) in proposed and cx.transfer_syntax
        }
        sock.settimeout(timeout)
        return Association(
            sock, contexts, peer_max_pdu=_peer_max_pdu(answer.user_information or []),
            calling_ae=calling_ae, called_ae=called_ae, pdu_limit=pdu_limit, timeout=timeout,
            receive_buffer=RESPONSE_BUFFER,
        )  # fmt: skip
    except BaseException:
        sock.close()
        raise
