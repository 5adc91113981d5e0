"""An established DICOM association (PS3.8) on a blocking socket: the node's data path.

One thread per association reads each PDU whole with ``recv_into`` into a
buffer it keeps, and hands every P-DATA fragment of a dataset to a writer
(the spool file) as a view of that buffer; sending reads a file into
PDUs of the peer's maximum length and writes each with one system call.
Nothing polls: a blocked read waits in the kernel and the socket's
timeout is the only timer.

Establishing an association is :mod:`wolfpacs.dicom.acse`'s; DIMSE command
sets are :mod:`wolfpacs.dicom.dimse`'s; why not pynetdicom's upper layer:
see :mod:`wolfpacs.dicom`.

Error contract (every error closes the association; the socket is the
caller's to forget), with the errors of :mod:`wolfpacs.dicom.errors`:

- :class:`PeerAbortedError`: the peer sent A-ABORT, or the connection
  broke or was closed under us (an ``OSError`` is turned into this).
- :class:`ProtocolError`: the peer sent what PS3.8 does not allow at that
  point, or a PDU over the limit; an A-ABORT has been sent.
- :class:`TimeoutError`: the peer was silent for longer than the timeout;
  an A-ABORT has been sent.
"""

from __future__ import annotations

import contextlib
import os
import socket
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NoReturn

from wolfpacs.dicom import dimse, ending
from wolfpacs.dicom.errors import (
    AssociationError,
    DatasetTooLargeError,
    PeerAbortedError,
    ProtocolError,
)
from wolfpacs.dicom.part10 import Part10Error, dataset_offset
from wolfpacs.dicom.pdu import (
    ABORT,
    ABORT_BY_USER,
    ABORT_INVALID_PARAMETER,
    ABORT_UNEXPECTED_PDU,
    ABORT_UNRECOGNISED_PDU,
    ASSOCIATE_AC,
    ASSOCIATE_RJ,
    ASSOCIATE_RQ,
    COMMAND,
    DEFAULT_SEND_PDU,
    HEADER,
    LAST,
    MAX_ASSOCIATE_PDU,
    MAX_SEND_PDU,
    P_DATA_TF,
    PDU_PDV,
    PDV,
    RELEASE_RP,
    RELEASE_RQ,
    Pieces,
    abort_pdu,
    command_pdu,
)
from wolfpacs.dicom.sockets import kernel_timeouts
from wolfpacs.dicom.uids import VERIFICATION

__all__ = ["Association", "Context"]

RECEIVE_BUFFER = 1024 * 1024  # read at a time, at most: several PDUs
SEND_READ = 1024 * 1024  # bytes of a file read, and sent, at a time (a CT slice in one go)
MAX_PDUS_PER_SEND = 500  # two iovecs each (and two for the command): under IOV_MAX, 1024
MAX_FRAGMENTS_PER_WRITE = 512  # received fragments handed on at once, at most (IOV_MAX too)
ARTIM = 30.0  # seconds to wait for the peer to close after a release, if not told (PS3.8 9.1.5)

_UNSET = object()


@dataclass(frozen=True)
class Context:
    """An accepted presentation context (plain data)."""

    id: int
    abstract_syntax: str
    transfer_syntax: str


class Association:
    """An established association, as acceptor or requestor.

    Used by one thread at a time, except :meth:`abort`, which any thread may
    call to end it (it wakes a read blocked on the socket).

    ``_io_lock`` is held while a thread sends and, on TLS, while it reads, so
    :meth:`abort` writes no A-ABORT inside another thread's send, nor into an
    SSL object another thread reads (not thread-safe); the kernel takes a
    write during a plain socket's read.
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
        requestor: bool = False,
        artim: float | None = ARTIM,
    ) -> None:
        self.sock = sock
        self.requestor = requestor  # of the association: it decides a release collision
        self.artim = ARTIM if artim is None else artim
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
        self._io_lock = threading.Lock()
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
        """Time out reads and writes after ``seconds`` (None: never); TLS: Python's timeout."""
        if seconds == self._timeout:
            return  # two system calls saved on every C-STORE a sender makes
        self._timeout = seconds
        if not self._plain:
            self.sock.settimeout(seconds)
            return
        kernel_timeouts(self.sock, seconds)

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
                if self._plain:
                    n = recv_into(view[self._end :], size - self._end)
                else:
                    with self._io_lock:  # see the class: abort() must know the SSL object is busy
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
            kind, length = HEADER.unpack_from(self._view, self._start)
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

    def _protocol_error(self, why: str, reason: tuple[int, int]) -> NoReturn:
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
        length, context_id, control = PDV.unpack_from(pdu, offset)
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
                ending.answer_release(self)
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
            context_id, control, fragment = pdv
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
        return have >= 6 and have >= 6 + HEADER.unpack_from(self._view, self._start)[1]

    # -- writing -----------------------------------------------------------------

    def _send(self, *parts: bytes | memoryview) -> None:
        with self._io_lock:
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

    def send_command(self, context_id: int, command: bytes) -> None:
        """One command set, in one PDV."""
        try:
            self._send(*command_pdu(context_id, command))
        except OSError as exc:
            self.close()
            raise PeerAbortedError(f"connection broken: {exc}") from None

    def _send_dataset(
        self, context_id: int, fd: int, first: memoryview, left: int, prefix: Pieces
    ) -> None:
        """Send ``first`` and then ``left`` more bytes read from ``fd`` as a dataset.

        ``first`` lies in the file buffer; the file is read into it again,
        up to :data:`SEND_READ` at a time, and each read goes out as all the
        PDUs it makes in one ``sendmsg`` (the first with ``prefix``, the
        command, before it): a CT slice to a peer with 16 KiB PDUs (DCMTK's
        default) costs one read and one send, not two system calls per PDU.
        """
        fragment, chunk = self.send_fragment, first
        full = PDU_PDV.pack(P_DATA_TF, fragment + 6, fragment + 2, context_id, 0)
        try:
            while True:
                parts: Pieces = prefix
                n = len(chunk)
                stop = n if n or left else 1  # an empty dataset: one empty last fragment
                for start in range(0, stop, fragment):
                    piece = chunk[start : start + fragment]
                    size = len(piece)
                    if size == fragment and (left or start + fragment < n):
                        parts += [full, piece]  # most PDUs: the header is made once
                    else:
                        control = LAST if not left and start + fragment >= n else 0
                        parts += [PDU_PDV.pack(P_DATA_TF, size + 6, size + 2, context_id,
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

    def refuse(self, context: Context, command: dimse.Command, status: int, limit: int = 0) -> None:
        """Answer ``command`` with a failure ``status``; a dataset it has is read and dropped.

        Raises:
            DatasetTooLargeError, ProtocolError: as :meth:`receive_dataset`.
        """
        if command.has_dataset:  # read to its end: the association stays in step
            self.receive_dataset(context, lambda _fragments: None, limit)
        self.send_command(context.id, dimse.refusal_rsp(command, status))

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
                               command_pdu(context.id, command))  # fmt: skip
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
        """A-RELEASE-RQ, await the A-RELEASE-RP, close; never raises (:func:`.ending.release`)."""
        if self.is_open:
            ending.release(self, timeout)

    def abort(self, reason: tuple[int, int] = ABORT_BY_USER) -> None:
        """End the connection, from any thread; A-ABORT first if the socket is free (see the class).

        Not after an A-RELEASE-RP: the release stands. ``shutdown()`` wakes a
        read blocked in another thread; a close is an abort to the peer (AA-4).
        """
        if not self.is_open:
            return
        if not self.released and self._io_lock.acquire(blocking=False):
            try:
                self._set_timeout(1.0)
                self.sock.sendall(abort_pdu(*reason))
            except OSError:
                pass
            finally:
                self._io_lock.release()
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.is_open = False

    def close(self) -> None:
        self.is_open = False
        with contextlib.suppress(OSError):
            self.sock.close()
