"""fsync for the spool: of a file or directory, and of a directory shared by many writers.

:class:`GroupSync` is group commit for a directory: the receivers that
move files into one queue at about the same time pay for one flush of it,
not one each.
"""

from __future__ import annotations

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

    Errors: the ``OSError`` of the fsync that was to serve the caller.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None  # the directory, kept open: two system calls fewer a sync
        self._cond = threading.Condition()
        self._asked = 0  # tickets given out
        self._done = 0  # every ticket up to this one is synced
        self._running = False

    def close(self) -> None:
        with self._cond:
            while self._running:  # an fsync in flight uses the descriptor unlocked
                self._cond.wait()
            fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)

    def sync(self) -> None:
        with self._cond:
            self._asked += 1
            ticket = self._asked
            while self._done < ticket:
                if self._running:
                    self._cond.wait()
                    continue
                self._running, serves = True, self._asked
                self._cond.release()
                try:
                    if self._fd is None:
                        self._fd = os.open(self.path, os.O_RDONLY | os.O_DIRECTORY)
                    os.fsync(self._fd)
                finally:
                    self._cond.acquire()
                    self._running = False
                    self._cond.notify_all()
                self._done = max(self._done, serves)  # not reached if the fsync raised
