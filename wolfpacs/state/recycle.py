"""Delivered spool files kept to be written over by later receives, and who still reads them.

Creating and deleting a file per instance costs the file system an inode
and fresh blocks each time, and ext4 without a journal (this project's VMs)
scans the recently deleted inodes on every create: that was a quarter of
the node's CPU. So a delivered file is renamed into ``incoming/`` and the
next receive writes over it (a few dozen at most, dropped when idle or when
the disk runs low). Two rules keep that safe:

- a file is offered for reuse only after its rename away from its queue is
  durable (:meth:`Recycler.offer`, after the spool's fsync of the queue
  directory): else a power cut could bring the old queued name back with
  another instance's bytes under it, and recovery would queue them under
  the old owner's name;
- a file someone still reads (:meth:`Recycler.holding`: a sender streaming
  it, perhaps one its supervisor gave up on) is deleted, never recycled, so
  its reader keeps the bytes it began with.
"""

from __future__ import annotations

import contextlib
import errno
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from pathlib import Path

__all__ = ["RECYCLED", "RECYCLE_BYTES", "RECYCLE_FILES", "Recycler"]

RECYCLE_FILES = 32  # delivered files kept to be written over, at most...
RECYCLE_BYTES = 128 * 1024 * 1024  # ...and at most this many bytes of them
RECYCLED = "recycled-"  # their names' prefix in incoming/


class Recycler:
    """The pool of recycled files in ``incoming``; thread-safe.

    ``name()`` gives each kept file a unique name (after :data:`RECYCLED`).
    """

    def __init__(self, incoming: Path, name: Callable[[], str]) -> None:
        self.incoming = incoming
        self._name = name
        self._lock = threading.Lock()
        self._kept: deque[tuple[Path, int, float]] = deque()  # (path, size, when), newest last
        self._bytes = 0  # of the kept, and of those being renamed in
        self._held: dict[str, int] = {}  # queued files being read, by relative path: readers
        self._leaving: set[str] = set()  # queued files being renamed in

    def __bool__(self) -> bool:
        return bool(self._kept)

    def take(self) -> tuple[Path, int] | None:
        """The newest kept file (likeliest still in the page cache) and its size; None if none."""
        with self._lock:
            if not self._kept:
                return None
            path, size, _ = self._kept.pop()
            self._bytes -= size
        return path, size

    def keep(self, rel: str, path: Path, size: int, links: int) -> Path | None:
        """Rename the delivered file ``path`` (queued as ``rel``) in; its new path, or None.

        None: not kept (no room, another link to it, a dead letter's too, or
        a reader holds it): the caller deletes it. A kept file takes its room
        now and is reused only once the caller :meth:`offer` s it.
        Errors: ``OSError`` of the rename (nothing is kept then).
        """
        if links != 1:
            return None
        with self._lock:  # room is taken before the rename, which runs unlocked
            if (
                rel in self._held
                or len(self._kept) >= RECYCLE_FILES
                or self._bytes + size > RECYCLE_BYTES
            ):
                return None
            self._bytes += size
            self._leaving.add(rel)
        kept = self.incoming / f"{RECYCLED}{self._name()}"
        try:
            os.rename(path, kept)
        except BaseException:
            with self._lock:
                self._bytes -= size
            raise
        finally:
            with self._lock:
                self._leaving.discard(rel)
        return kept

    def offer(self, kept: list[tuple[Path, int]], usable: bool = True) -> None:
        """Offer renamed files for reuse; not ``usable``: give their room back and delete them."""
        with self._lock:
            for path, size in kept:
                if usable:
                    self._kept.append((path, size, time.monotonic()))
                else:
                    self._bytes -= size
        if not usable:
            for path, _ in kept:
                path.unlink(missing_ok=True)

    @contextlib.contextmanager
    def holding(self, rel: str) -> Iterator[None]:
        """While held, the queued file ``rel`` is never renamed in to be written over.

        Raises:
            FileNotFoundError: it is being renamed in right now (it is delivered).
        """
        with self._lock:
            if rel in self._leaving:
                raise FileNotFoundError(errno.ENOENT, "delivered, being recycled", rel)
            self._held[rel] = self._held.get(rel, 0) + 1
        try:
            yield
        finally:
            with self._lock:
                if self._held[rel] == 1:
                    del self._held[rel]
                else:
                    self._held[rel] -= 1

    def drop(self, older_than: float) -> int:
        """Delete the files kept longer than ``older_than`` seconds; how many."""
        cutoff = time.monotonic() - older_than
        dropped: list[Path] = []
        with self._lock:
            while self._kept and self._kept[0][2] <= cutoff:
                path, size, _ = self._kept.popleft()
                self._bytes -= size
                dropped.append(path)
        for path in dropped:
            path.unlink(missing_ok=True)
        return len(dropped)
