"""An instance as it arrives: its file in ``incoming/``, and work done while it commits.

:class:`Incoming` takes a C-STORE's dataset fragment by fragment into its
file (keeping the first bytes, for the routing tags); :class:`Overlapped`
is work (the queue directory's fsync) done while the receiver waits for
the store to commit the row. Both belong to a receiver (:mod:`wolfpacs.node.receiver`).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from wolfpacs.state.spool import Spool

__all__ = ["HEAD_BYTES", "Incoming", "Overlapped"]

HEAD_BYTES = 64 * 1024  # of each dataset kept in memory, for the routing tags


class Incoming:
    """The file a C-STORE's dataset goes to as it arrives, and the dataset's first bytes.

    The file may be a recycled one (:meth:`Spool.open_incoming`): it is
    written from its start and cut to what was written when closed.
    A write error is kept, not raised: the dataset must still be read to its
    end, so that the association stays in step and the peer gets its answer.
    """

    def __init__(self, spool: Spool, meta: bytes) -> None:
        self.path, self.fd, self._old_size = spool.open_incoming()
        self.head = bytearray()
        self.written = 0
        self.error: OSError | None = None
        self._meta: bytes | None = meta  # written with the first fragment: one call fewer

    def write(self, fragments: list[memoryview]) -> None:
        for fragment in fragments:
            if len(self.head) >= HEAD_BYTES:
                break
            self.head += fragment[: HEAD_BYTES - len(self.head)]
        if self.error is None:
            self._write(fragments)

    def _write(self, fragments: list[memoryview]) -> None:
        parts = [memoryview(self._meta), *fragments] if self._meta is not None else [*fragments]
        self._meta = None
        try:
            while parts:
                done = os.writev(self.fd, parts)
                self.written += done
                while parts and done >= len(parts[0]):
                    done -= len(parts.pop(0))
                if done:
                    parts[0] = parts[0][done:]
        except OSError as exc:
            self.error = exc

    def close(self, fsync: bool) -> None:
        if self._meta is not None and self.error is None:
            self._write([])  # no fragment came: the meta alone
        try:
            if self._old_size > self.written and self.error is None:
                os.ftruncate(self.fd, self.written)  # what a recycled file held beyond
            if fsync and self.error is None:
                os.fsync(self.fd)  # now, while it is open and in the page cache
        except OSError as exc:
            self.error = exc
        finally:
            os.close(self.fd)

    def discard(self) -> None:
        self.path.unlink(missing_ok=True)


class Overlapped:
    """Work that overlaps a call to the store; its error is kept until :meth:`check`.

    Raised at once it would leave the store's answer unwaited for, and the
    row it commits with no one to take it back.
    """

    def __init__(self, work: Callable[[], object]) -> None:
        self.work = work
        self.error: OSError | None = None

    def __call__(self) -> None:
        try:
            self.work()
        except OSError as exc:
            self.error = exc

    def check(self) -> None:
        if self.error is not None:
            raise self.error
