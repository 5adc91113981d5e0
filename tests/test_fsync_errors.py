"""fsync errors are final: nothing whose bytes a failed fsync was to keep is acknowledged.

An ``OSError(EIO)`` is injected at each fsync site: the received file, its
queue directory (shared by the receivers: group commit), the directory a
delivered file leaves to be recycled, and dead/.
"""

from __future__ import annotations

import errno
import os
import re
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import wait_until
from wolfpacs.dicom.status import Status
from wolfpacs.state.spool import Spool
from wolfpacs.state.sync import GroupSync
from wolfpacs.testing.peers import dataset_digest

real_fsync = os.fsync


class FailingFsync:
    """``os.fsync`` that fails with EIO for the first ``times`` descriptors whose path matches."""

    def __init__(self, matches: Callable[[str], bool], times: int = 1) -> None:
        self.matches = matches
        self.left = times
        self.failed: list[str] = []
        self.synced: list[str] = []
        self._lock = threading.Lock()

    def __call__(self, fd: int) -> None:
        path = os.readlink(f"/proc/self/fd/{fd}")
        with self._lock:
            fail = self.left > 0 and self.matches(path)
            if fail:
                self.left -= 1
                self.failed.append(path)
        if fail:
            raise OSError(errno.EIO, "Input/output error (injected)")
        real_fsync(fd)
        with self._lock:
            self.synced.append(path)


def queue_dir(path: str) -> bool:
    return re.search(r"/spool/[^/]+$", path) is not None


def test_every_waiter_of_a_failed_directory_fsync_fails_and_the_next_one_reopens(
    tmp_path, monkeypatch
):
    directory = tmp_path / "queue"
    directory.mkdir()
    group = GroupSync(directory)
    entered, go = threading.Event(), threading.Event()
    calls: list[int] = []

    def fsync(fd: int) -> None:
        calls.append(fd)
        if len(calls) == 1:  # the first flush: others queue behind it, then it fails
            entered.set()
            go.wait(10)
            raise OSError(errno.EIO, "Input/output error (injected)")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    before = group.mark()  # a change made before either failure
    outcomes: dict[int, str] = {}

    def waiter(n: int) -> None:
        try:
            group.sync()
            outcomes[n] = "ok"
        except OSError as exc:
            outcomes[n] = f"failed: {exc.errno}"

    first = threading.Thread(target=waiter, args=(0,))
    first.start()
    assert entered.wait(10)
    later = [threading.Thread(target=waiter, args=(n,)) for n in range(1, 5)]
    for thread in later:
        thread.start()
    wait_until(lambda: group._asked == 5)  # all four wait for the next flush
    go.set()
    for thread in (first, *later):
        thread.join(10)
    # The four made their changes while the failed flush ran, which may have dropped them:
    # they fail with it, and no retry on the spent descriptor tells them otherwise.
    assert outcomes == {n: f"failed: {errno.EIO}" for n in range(5)}
    assert len(calls) == 1 and group._fd is None  # the spent descriptor is closed
    group.sync()  # a new change after the failure: a fresh descriptor, and it succeeds
    assert len(calls) == 2
    with pytest.raises(OSError, match="its changes may be lost"):
        group.sync(since=before)  # made before the failures: never durable for sure
    group.close()


def test_a_failed_fsync_of_a_received_file_is_not_acknowledged(world, monkeypatch):
    failing = FailingFsync(lambda path: "/incoming/" in path)
    monkeypatch.setattr(os, "fsync", failing)
    w = world()
    files = w.study("s", series=1, per_series=3)
    assert w.send(files) == [Status.OUT_OF_RESOURCES, 0, 0]
    assert failing.failed
    wait_until(lambda: w.delivered() == 2)
    received = {item.digest for wk in w.workers for item in wk.received}
    assert received == {dataset_digest(p) for p in files[1:]}
    wait_until(lambda: not w.node.store.queue_stats(), what="no row left")
    assert list(w.node.spool.dead.iterdir()) == []


def test_a_failed_fsync_of_the_queue_directory_takes_the_committed_row_back(world, monkeypatch):
    failing = FailingFsync(queue_dir)
    monkeypatch.setattr(os, "fsync", failing)
    w = world()
    files = w.study("s", series=1, per_series=3)
    assert w.send(files) == [Status.OUT_OF_RESOURCES, 0, 0]
    assert len(failing.failed) == 1
    wait_until(lambda: w.delivered() == 2)
    wait_until(lambda: not w.node.store.queue_stats(), what="no row left")
    # Not sent as "spool file missing" to dead/: its row was taken back, its file deleted.
    assert list(w.node.spool.dead.iterdir()) == []
    received = {item.digest for wk in w.workers for item in wk.received}
    assert received == {dataset_digest(p) for p in files[1:]}


def queued(spool: Spool, content: bytes) -> str:
    src = spool.incoming / "tmp.dcm"
    src.write_bytes(content)
    return spool.admit(src, "gpu-a", "1.2.3")


def test_a_delivered_file_is_reused_only_after_its_removal_is_durable(tmp_path, monkeypatch):
    spool = Spool(tmp_path / "data", durable=True)
    spool.prepare()
    rel = queued(spool, b"x" * 100)
    failing = FailingFsync(lambda _path: False)
    monkeypatch.setattr(os, "fsync", failing)
    spool.remove(rel)
    assert str(spool.queues / "gpu-a") in failing.synced  # the rename away, made durable
    path, fd, size = spool.open_incoming()
    os.close(fd)
    assert size == 100 and path.read_bytes() == b"x" * 100  # then offered for reuse
    path.unlink()

    rel = queued(spool, b"y" * 100)
    failing = FailingFsync(queue_dir)
    monkeypatch.setattr(os, "fsync", failing)
    with pytest.raises(OSError, match="changes may be lost"):
        spool.remove(rel)
    assert failing.failed
    path, fd, size = spool.open_incoming()  # not offered: a fresh file
    os.close(fd)
    assert size == 0 and list(spool.incoming.glob("recycled-*")) == []
    assert spool.queued_files() == set()


def test_a_file_being_read_is_deleted_not_recycled(tmp_path):
    spool = Spool(tmp_path / "data", durable=False)
    spool.prepare()
    rel = queued(spool, b"being sent")
    with spool.holding(rel):
        fd = os.open(spool.path(rel), os.O_RDONLY)
        spool.remove(rel)  # delivered by a successor while the stale sender still reads
        path, wfd, size = spool.open_incoming()
        os.write(wfd, b"another patient")
        os.close(wfd)
        assert size == 0 and not path.name.startswith("recycled-")
        assert os.read(fd, 100) == b"being sent"  # the reader's bytes are its own
        os.close(fd)


def test_a_failed_fsync_of_dead_letters_is_raised(tmp_path, monkeypatch):
    spool = Spool(tmp_path / "data", durable=True)
    spool.prepare()
    src = spool.incoming / "refused.dcm"
    src.write_bytes(b"refused")
    failing = FailingFsync(lambda path: path.endswith("/dead"))
    monkeypatch.setattr(os, "fsync", failing)
    with pytest.raises(OSError, match="Input/output error"):
        spool.bury(Path(src), {"reason": "test"})
    assert failing.failed
