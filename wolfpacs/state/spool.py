"""The durable spool: instance files waiting for a target, and dead letters beside their reasons.

Layout under ``data_dir``::

    incoming/             each C-STORE's dataset as it arrives, until it is admitted;
                          and recycled-* files, delivered and kept to be written over
    spool/<target>/       one file per queued instance, <client>+<SOPInstanceUID>.<random>.dcm
    dead/                 <time>-<name>.dcm with <time>-<name>.json saying why
    processes/<n>/        a node of several processes: each one's incoming/ (and control socket)

The queues may be elsewhere (``[node] spool_dir``, default ``data_dir/spool``).
With ``shared_spool`` (storage every node mounts) a node queues under
``spool_dir/<node_id>/<target>/``, and its rows' paths say so
(``spool/<node_id>/<target>/<name>``; ``spool/`` is spool_dir on every
node: :meth:`Spool.path`), so that a node that adopts its queue finds the
files. A node lists, recounts and recovers its own directory only.

A file enters the spool by rename (fsync of the file before and of its
directory after, in ``fsync`` durability), so a file in ``spool/`` is whole.
The queue rows say which files are owed to whom; a file without a row was
never acknowledged.

A delivered file is not deleted but renamed back into ``incoming/`` and
written over by a later receive (see :mod:`wolfpacs.state.recycle`), unless
the spool is shared (a late node may still read it: a deleted file keeps
its bytes for an open reader, one written over does not) or lies outside
``data_dir`` (no rename across file systems).
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import json
import logging
import os
import re
import shutil
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from wolfpacs.state.lockfile import DataDirInUseError, take
from wolfpacs.state.recycle import RECYCLE_FILES, RECYCLED, Recycler
from wolfpacs.state.sync import GroupSync, fsync_path

__all__ = ["PROCESSES", "RECYCLED", "RECYCLE_FILES", "DataDirInUseError", "Spool",
           "SpoolFullError", "owner_of"]  # fmt: skip

SPOOL = "spool/"  # a queue row's path begins so: it stands for spool_dir
PROCESSES = "processes"  # data_dir/processes/<n>/: what is a node's process's own


class SpoolFullError(OSError):
    """No room for another instance: refuse it (A700), deliver what is queued, then take more."""

    def __init__(self, why: str) -> None:
        super().__init__(errno.ENOSPC, why)


logger = logging.getLogger(__name__)

_UNSAFE = re.compile(r"[^0-9A-Za-z.]")
# Unique file names without a system call each: a random prefix per process, then a count.
_PREFIX = uuid.uuid4().hex[:10]
_COUNT = itertools.count()
DISK_CHECK_EVERY = 0.2  # seconds a free-space reading is trusted


def unique_name() -> str:
    """A name no other file of this or any other run of the node has (random, then counted)."""
    return f"{_PREFIX}{next(_COUNT):x}"


OWNER = "+"  # between a queued file's client and the rest of its name: no name has one


def _queued_name(owner: str, sop_instance_uid: str) -> str:
    label = _UNSAFE.sub("_", sop_instance_uid)[:64] or "instance"
    return f"{owner}{OWNER}{label}.{unique_name()}.dcm" if owner else f"{label}.{unique_name()}.dcm"


def owner_of(rel: str) -> str | None:
    """The client a queued file belongs to, from its name; None for a file named without one.

    The queue row says it too, but a power cut may take a row whose file
    survived; recovery then gives the file its row back from its name and
    its tags (files queued before owners were named have none).
    """
    name = rel.rsplit("/", 1)[-1]
    return name.split(OWNER, 1)[0] if OWNER in name else None


class Spool:
    """The files of ``data_dir``; thread-safe (every operation is a rename or an unlink).

    ``durable=True`` (``durability = "fsync"``) fsyncs every file and directory
    change so that it survives a power loss; ``False`` leaves that to the OS,
    which survives a crash of the process but not of the machine.
    ``spool_dir``: where the queues are (default ``data_dir/spool``);
    ``node``: with a shared spool, the node's id, whose subdirectory of
    ``spool_dir`` holds its queues (see the module). ``process``: one process of a
    node of several, sharing data_dir: it receives into processes/<process>/incoming/
    and leaves data_dir's lock to its process supervisor (it locks its queues only).

    Errors: every method raises ``OSError`` as the OS gave it (``ENOSPC``...);
    callers turn that into a DICOM status or a retry.
    """

    def __init__(
        self,
        data_dir: Path,
        durable: bool = True,
        max_bytes: int = 0,
        min_free: int = 0,
        on_dead: Callable[[str], None] | None = None,
        *,
        spool_dir: Path | None = None,
        node: str = "",
        process: str = "",
    ) -> None:
        self.root = Path(data_dir).resolve()
        self.spool_dir = Path(spool_dir).resolve() if spool_dir else self.root / "spool"
        self.node = node
        self.shared = bool(node)
        self.durable = durable
        self.max_bytes = max_bytes
        self.min_free = min_free
        self._bytes_lock = threading.Lock()
        self.queued_bytes = 0  # what the files under spool/ take; counted at prepare()
        self.on_dead = on_dead or (lambda _kind: None)  # told of each dead letter, by kind
        self.process = process
        own = self.root / PROCESSES / process if process else self.root
        self.incoming = own / "incoming"
        self.queues = self.spool_dir / node if node else self.spool_dir  # this node's own
        # Recycle delivered files only where no other node reads them, on data_dir's disk.
        self.recycles = not self.shared and self.spool_dir.is_relative_to(self.root)
        self._node_lock_fd: int | None = None
        self.dead = self.root / "dead"
        self._known_dirs: dict[Path, GroupSync] = {}
        self._lock_fd: int | None = None
        self._free, self._free_at = 0, -DISK_CHECK_EVERY - 1.0  # the last free-space reading
        self._recycled = Recycler(self.incoming, unique_name)

    def lock(self) -> None:
        """Take ``data_dir`` for this process alone: a second node on it would lose files.

        Raises:
            DataDirInUseError: another process holds it (its pid is in the message).
        """
        if not self.process:  # a process's data_dir is locked by its process supervisor
            self._lock_fd = take(self.root, f"{self.root} is in use by another WolfPACS node")
        if self.shared:  # and its queues in the shared spool: one process per node_id
            try:
                self._node_lock_fd = take(
                    self.queues, f"{self.queues} is in use by another process: node_id "
                    f"{self.node!r} must be unique among the nodes on {self.spool_dir}",
                )  # fmt: skip
            except DataDirInUseError:
                self.unlock()
                raise

    def unlock(self) -> None:
        """Let another node have ``data_dir`` (this one has stopped using it)."""
        for group in self._known_dirs.values():
            group.close()
        for fd in (self._node_lock_fd, self._lock_fd):
            if fd is not None:
                os.close(fd)  # closing the file releases the lock
        self._lock_fd = self._node_lock_fd = None

    def prepare(self) -> None:
        """Create the directories; remove what an interrupted receive left in ``incoming/``."""
        for directory in (self.incoming, self.queues, self.dead):
            directory.mkdir(parents=True, exist_ok=True)
        os.chmod(self.root, 0o700)  # patients' images and the control socket: the node's alone
        for leftover in self.incoming.iterdir():
            if not leftover.name.startswith(RECYCLED):
                logger.info("removing %s: a receive interrupted before it was acknowledged",
                            leftover)  # fmt: skip
            leftover.unlink(missing_ok=True)

    def recount(self) -> None:
        """Count the bytes under ``spool/`` afresh (after recovery has tidied it)."""
        with self._bytes_lock:
            self.queued_bytes = sum(p.stat().st_size for p in self.queues.glob("*/*"))

    def check_room(self, size: int) -> None:
        """Refuse an instance of ``size`` bytes the spool has no room for.

        Raises:
            SpoolFullError: past ``max_bytes`` queued, or below ``min_free`` free disk
                (``min_free`` 0: the disk is not looked at).
        """
        if self.max_bytes and self.queued_bytes + size > self.max_bytes:
            raise SpoolFullError(
                f"spool full: {self.queued_bytes} of {self.max_bytes} bytes queued"
            )
        if self.min_free <= 0:
            return  # "keep nothing free": no reading of the disk at all (some report 0 free)
        now = time.monotonic()
        if now - self._free_at > DISK_CHECK_EVERY:  # statvfs at most five times a second
            self._free, self._free_at = shutil.disk_usage(self.root).free, now
        if self._free - size < self.min_free and self._recycled:
            self._recycled.drop(0.0)  # the recycled files give their room back first
            self._free, self._free_at = shutil.disk_usage(self.root).free, now
        free = self._free
        if free - size < self.min_free:
            raise SpoolFullError(f"disk nearly full: {free} bytes free, {self.min_free} kept")

    def full(self) -> str | None:
        """Why the spool takes nothing more now (at ``max_bytes``, or disk below ``min_free``)."""
        try:
            self.check_room(0)
        except SpoolFullError as exc:
            return str(exc.strerror)
        if self.max_bytes and self.queued_bytes >= self.max_bytes:
            return f"spool full: {self.queued_bytes} of {self.max_bytes} bytes queued"
        return None

    def _count(self, delta: int) -> None:
        with self._bytes_lock:
            self.queued_bytes = max(self.queued_bytes + delta, 0)

    def open_incoming(self) -> tuple[Path, int, int]:
        """A file in ``incoming/`` for one arriving dataset.

        Returns its path, a descriptor open for writing at offset 0, and the
        bytes the file holds already: a recycled file (see :meth:`remove`) is
        written over, and the caller must truncate it to what it wrote.
        Errors: ``OSError`` of the create.
        """
        while (kept := self._recycled.take()) is not None:
            path, size = kept
            try:
                return path, os.open(path, os.O_WRONLY), size
            except FileNotFoundError:  # removed from under the node: take another
                continue
        path = self.incoming / f"{unique_name()}.dcm"
        return path, os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), 0

    def sweep_incoming(self, older_than: float) -> int:
        """Remove files in ``incoming/`` untouched for ``older_than`` seconds; how many.

        Recycled files unused for as long are deleted too (not counted).
        """
        self._recycled.drop(older_than)
        cutoff = time.time() - older_than
        removed = 0
        for leftover in self.incoming.iterdir():
            if leftover.name.startswith(RECYCLED):
                continue  # the pool's, or a receiver's that is writing over it
            try:
                if leftover.stat().st_mtime < cutoff:
                    leftover.unlink()
                    removed += 1
            except FileNotFoundError:
                continue  # taken into the spool, or refused and removed, meanwhile
        if removed:
            logger.info("removed %d files of interrupted receives from %s", removed, self.incoming)
        return removed

    def path(self, rel: str) -> Path:
        """The file of a queue row's path (``spool/…``: under spool_dir), or of data_dir's."""
        if rel.startswith(SPOOL):
            return self.spool_dir / rel[len(SPOOL) :]
        return self.root / rel

    def rel(self, path: Path) -> str:
        """A queued file's path as its queue row keeps it (see :meth:`path`)."""
        return SPOOL + str(path.relative_to(self.spool_dir))

    def admit(
        self, src: Path, target: str, sop_instance_uid: str, synced: bool = False,
        size: int | None = None, *, sync_later: bool = False, owner: str = "",
    ) -> str:  # fmt: skip
        """Move a received file into ``target``'s queue directory; its path relative to data_dir.

        The source is consumed (renamed, or copied then removed if it lies on
        another file system). ``synced``: the caller has fsynced it already;
        ``size``: its size, if the caller knows it; ``sync_later``: the
        caller calls :meth:`sync_queue` itself before it counts on the move;
        ``owner``: the client whose study it is (in the file's name: see
        :func:`owner_of`).
        """
        directory = self._queue_dir(target)
        name = _queued_name(owner, sop_instance_uid)
        self._move_in(Path(src), directory / name, synced, sync_dir=not sync_later)
        self._count(size if size is not None else (directory / name).stat().st_size)
        return self.rel(directory / name)

    def adopt(self, src: Path, target: str, sop_instance_uid: str, owner: str = "") -> str:
        """Like :meth:`admit`, but ``src`` stays where it is (a hard link, or a copy)."""
        directory = self._queue_dir(target)
        dest = directory / _queued_name(owner, sop_instance_uid)
        try:
            os.link(src, dest)
        except OSError:
            shutil.copyfile(src, dest)
        if self.durable:
            fsync_path(dest)
            self._sync_dir(directory)
        self._count(dest.stat().st_size)
        return self.rel(dest)

    def relocate(self, rel: str, target: str) -> str:
        """Move a queued file to another target's directory; its new relative path."""
        src = self.path(rel)
        directory = self._queue_dir(target)
        if src.parent == directory:
            return rel  # already there (a hand-over repeated after a crash)
        marks = (self._mark(directory), self._mark(src.parent))
        os.replace(src, directory / src.name)
        if self.durable:
            self._sync_dir(directory, marks[0])
            self._sync_dir(src.parent, marks[1])
        return self.rel(directory / src.name)

    def remove(self, *rels: str, recycle: bool = True) -> None:
        """Take delivered files out of the spool.

        Each is kept to be written over by a later receive if there is room
        (see :class:`~wolfpacs.state.recycle.Recycler`), else deleted;
        ``recycle=False``: deleted. One already gone is no error. In
        ``fsync`` durability the kept ones are offered for reuse after one
        fsync of each queue directory they left.

        Raises:
            OSError: that fsync failed (the kept files are deleted, not reused).
        """
        kept: list[tuple[Path, int]] = []
        left: dict[Path, list[tuple[Path, int]]] = {}
        marks: dict[Path, int | None] = {}
        for rel in rels:
            path = self.path(rel)
            if path.parent not in marks:
                marks[path.parent] = self._mark(path.parent)
            try:
                stat = os.stat(path)  # its links decide, and it gives the size to uncount
                moved = (
                    self._recycled.keep(rel, path, stat.st_size, stat.st_nlink)
                    if recycle and self.recycles
                    else None
                )
                if moved is None:
                    path.unlink()
                else:
                    kept.append((moved, stat.st_size))
                    left.setdefault(path.parent, []).append(kept[-1])
            except FileNotFoundError:
                continue
            if path.parent.parent == self.queues:  # counted: this node's own queue
                self._count(-stat.st_size)
        if not self.durable:
            self._recycled.offer(kept)
            return
        failed: OSError | None = None
        for directory, files in left.items():
            try:
                self._sync_dir(directory, marks[directory])
            except OSError as exc:
                self._recycled.offer(files, usable=False)
                failed = exc
            else:
                self._recycled.offer(files)
        if failed is not None:
            raise failed

    def holding(self, rel: str) -> contextlib.AbstractContextManager[None]:
        """Read the queued file ``rel``: while held it is never written over (see recycle).

        Raises:
            FileNotFoundError: it is being taken out of the spool right now.
        """
        return self._recycled.holding(rel)

    def bury(self, src: Path, reason: dict[str, Any], kind: str = "refused") -> Path:
        """Move ``src`` to ``dead/`` and write its reason beside it; the dead file's path.

        ``reason`` is plain data (what, who, why); a ``"at"`` timestamp is added.
        ``kind`` is the reason in one word, for the metrics (``refused``,
        ``not_accepted``, ``gave_up``, ``unknown_study``, ``target_removed``).
        """
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
        label = _UNSAFE.sub("_", str(reason.get("sop_instance_uid") or Path(src).stem))[:64]
        stem = f"{stamp}-{uuid.uuid4().hex[:8]}-{label}"
        dead_file = self.dead / f"{stem}.dcm"
        record = {**reason, "kind": kind, "at": time.time(), "file": dead_file.name}
        if Path(src).resolve().is_relative_to(self.queues):
            self._count(-Path(src).stat().st_size)
        note = self.dead / f"{stem}.json"
        tmp = note.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        if self.durable:
            fsync_path(tmp)
        self._move_in(Path(src), dead_file)  # the file first: a listed dead letter has its file
        os.replace(tmp, note)
        if self.durable:
            fsync_path(self.dead, directory=True)
        logger.warning("dead letter %s: %s", dead_file.name, reason.get("reason", "?"))
        self.on_dead(kind)
        return dead_file

    def purge_dead(self, older_than: float, dry_run: bool = False) -> int:
        """Delete the dead letters (file and note) kept longer than ``older_than`` s; how many.

        Their age is their note's: the time the letter was written.
        """
        cutoff = time.time() - older_than
        purged = 0
        for note in self.dead.glob("*.json"):
            try:
                if note.stat().st_mtime >= cutoff:
                    continue
            except FileNotFoundError:
                continue  # retried or purged meanwhile
            purged += 1
            if not dry_run:
                note.with_suffix(".dcm").unlink(missing_ok=True)  # the file first: no orphan note
                note.unlink(missing_ok=True)
        if purged and not dry_run:
            logger.info("purged %d dead letters older than %.0f days", purged, older_than / 86400)
        return purged

    def dead_letters(self) -> list[dict[str, Any]]:
        """Every dead letter's reason record, oldest first."""
        records = []
        for note in sorted(self.dead.glob("*.json")):
            try:
                records.append(json.loads(note.read_text(encoding="utf-8")))
            except (OSError, ValueError) as exc:
                records.append({"file": note.name, "reason": f"unreadable reason file: {exc}"})
        return records

    def find(self, name: str) -> str | None:
        """The path of this node's queued file called ``name``, in whichever queue it lies."""
        for path in self.queues.glob(f"*/{name}"):
            return self.rel(path)
        return None

    def queued_files(self) -> set[str]:
        """The paths (as queue rows keep them) of every file in this node's queues."""
        return {self.rel(path) for path in self.queues.glob("*/*") if path.is_file()}

    def _queue_dir(self, target: str) -> Path:
        directory = self.queues / target
        if directory not in self._known_dirs:
            directory.mkdir(parents=True, exist_ok=True)
            if self.durable:
                fsync_path(self.queues, directory=True)
            self._known_dirs.setdefault(directory, GroupSync(directory))
        return directory

    def _sync_dir(self, directory: Path, since: int | None = None) -> None:
        group = self._known_dirs.get(directory)
        if group is None:  # dead/ and the like: not shared
            fsync_path(directory, directory=True)
        else:
            group.sync(since)

    def _mark(self, directory: Path) -> int | None:
        group = self._known_dirs.get(directory)
        return None if group is None else group.mark()

    def queue_mark(self, target: str) -> int | None:
        """Take before a move into ``target``'s queue that :meth:`sync_queue` will make durable."""
        return self._mark(self._queue_dir(target))

    def sync_queue(self, target: str, since: int | None = None) -> None:
        """Make the moves into ``target``'s queue directory durable (``fsync`` durability).

        ``since``: the :meth:`queue_mark` taken before the move.

        Raises:
            OSError: an fsync of the directory failed since (see :class:`GroupSync`).
        """
        if self.durable:
            self._sync_dir(self._queue_dir(target), since)

    def _move_in(self, src: Path, dest: Path, synced: bool = False, sync_dir: bool = True) -> None:
        if self.durable and not synced:
            fsync_path(src)
        mark = self._mark(dest.parent)
        try:
            os.replace(src, dest)
        except OSError as exc:
            if exc.errno != errno.EXDEV:
                raise
            tmp = dest.with_suffix(".part")
            shutil.copyfile(src, tmp)
            if self.durable:
                fsync_path(tmp)
            os.replace(tmp, dest)
            src.unlink(missing_ok=True)
        if self.durable and sync_dir:
            self._sync_dir(dest.parent, mark)
