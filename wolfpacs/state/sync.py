"""fsync for the spool: of a file or directory, and of a directory shared by many writers.

:class:`GroupSync` is group commit for a directory: the receivers that
move files into one queue at about the same time pay for one flush of it,
not one each.
"""

from __future__ import annotations

import errno
import os
import threading
from pathlib import Path

__all__ = ["GroupSync", "fsync_path"]


def fsync_path(path: Path, directory: bool = False) -> None:
    """fsync the file (or directory) at ``path``; ``OSError`` as the OS gives it."""
    fd = os.open(path, os.O_RDONLY | (os.O_DIRECTORY if directory else 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class GroupSync:
    """fsync of one directory, shared by the threads that ask for it at about the same time.

    A caller returns once an fsync that *began after its call* has finished,
    so its own change is on disk; while one fsync runs, every caller that
    comes meanwhile waits for the next one, which serves them all (group
    commit: eight receivers pay about one flush, not eight).

    A failed fsync is final (PostgreSQL's "fsyncgate"): the kernel may have
    dropped the changes it was to flush and reports that once, so a retry on
    the same descriptor can succeed without them. Every caller that fsync
    was to serve fails with it, and so does every caller whose change was
    made before it (its :meth:`mark` was taken before the failure), even if
    a later fsync succeeds; the descriptor is closed and the next fsync
    opens the directory afresh.

    Errors: ``OSError`` of the failed fsync (``EIO``...), to every caller it
    concerns.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None  # the directory, kept open: two system calls fewer a sync
        self._cond = threading.Condition()
        self._asked = 0  # tickets given out
        self._done = 0  # every ticket up to this one is synced
        self._running = False
        self._failures = 0  # fsyncs of this directory that failed
        # The last one's errno and text, not the exception: its frames would keep the
        # callers' stacks (an association's buffers...) alive for as long as this lives.
        self._error: tuple[int, str] = (errno.EIO, "fsync failed")

    def close(self) -> None:
        with self._cond:
            while self._running:  # an fsync in flight uses the descriptor unlocked
                self._cond.wait()
            fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)

    def mark(self) -> int:
        """Take before a change that :meth:`sync` is to make durable (see ``since``)."""
        with self._cond:
            return self._failures

    def sync(self, since: int | None = None) -> None:
        """Return once the directory's changes made before this call are on disk.

        ``since``: a :meth:`mark` taken before the change; a failed fsync
        after it fails this call too. None: the change is made already, and
        only the fsync that serves this call counts.

        Raises:
            OSError: an fsync that concerns this call failed.
        """
        with self._cond:
            since = self._failures if since is None else since
            self._asked += 1
            ticket = self._asked
            while self._done < ticket and self._failures == since:
                if self._running:
                    self._cond.wait()
                    continue
                self._run(serves=self._asked)
            if self._failures != since:
                code, text = self._error
                raise OSError(code, f"fsync of {self.path} failed, its changes may be lost: {text}")

    def _run(self, serves: int) -> None:
        """One fsync, unlocked (called and returning with the condition held)."""
        self._running = True
        self._cond.release()
        error: OSError | None = None
        try:
            if self._fd is None:
                self._fd = os.open(self.path, os.O_RDONLY | os.O_DIRECTORY)
            os.fsync(self._fd)
        except OSError as exc:
            error = exc
            fd, self._fd = self._fd, None
            if fd is not None:
                os.close(fd)  # its error is spent: the next fsync needs a fresh descriptor
        finally:
            self._cond.acquire()
            self._running = False
            self._cond.notify_all()
        if error is None:
            self._done = max(self._done, serves)
        else:
            self._failures += 1
            self._error = (error.errno or errno.EIO, error.strerror or str(error))
