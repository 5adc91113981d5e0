"""Lock files: a directory held by one process alone, released when it exits, however.

``flock`` on a file in the directory: the OS releases it when the holder's
descriptor closes, a ``kill -9`` included, so a lock never outlives its
process. (On NFS, ``flock`` is as good as the server's lock manager: NFSv4
has one; the database's epoch is the fence that does not depend on it.)
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

__all__ = ["LOCK_FILE", "DataDirInUseError", "take"]

LOCK_FILE = "node.lock"


class DataDirInUseError(RuntimeError):
    """Another node holds the lock on this data_dir (or on its node_id's queues)."""


def take(directory: Path, in_use: str) -> int:
    """Lock ``directory`` (created if need be) for this process; the descriptor that holds it.

    Closing the descriptor releases the lock. The holder's pid is written in
    its :data:`LOCK_FILE`.

    Raises:
        DataDirInUseError: another process holds it: ``in_use``, and its pid.
    """
    directory.mkdir(parents=True, exist_ok=True)
    fd = os.open(directory / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.read(fd, 64).decode(errors="replace").strip() or "?"
        os.close(fd)
        raise DataDirInUseError(f"{in_use} (pid {holder})") from None
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    return fd
