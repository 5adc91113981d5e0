"""The spool: admit, relocate, remove, bury, and what recovery finds."""

from __future__ import annotations

import json
import os
import shutil

import pytest

from wolfpacs.state.spool import RECYCLE_FILES, RECYCLED, Spool, SpoolFullError


@pytest.fixture(params=[True, False], ids=["fsync", "os"])
def spool(request, tmp_path) -> Spool:
    spool = Spool(tmp_path / "data", durable=request.param)
    spool.prepare()
    return spool


def received(spool: Spool, content: bytes = b"DICM-ish bytes") -> object:
    path = spool.incoming / "tmpabc.dcm"
    path.write_bytes(content)
    return path


def test_admit_moves_the_file_into_its_targets_queue(spool):
    src = received(spool, b"instance")
    rel = spool.admit(src, "gpu-a", "1.2.3.4")
    assert rel.startswith("spool/gpu-a/1.2.3.4.") and rel.endswith(".dcm")
    assert spool.path(rel).read_bytes() == b"instance"
    assert not src.exists()
    assert spool.queued_files() == {rel}


def test_hostile_uids_make_safe_file_names(spool):
    rel = spool.admit(received(spool), "gpu-a", "../../etc/passwd" + "9" * 200)
    assert spool.path(rel).parent == spool.queues / "gpu-a"
    assert "/" not in rel.removeprefix("spool/gpu-a/")


def test_two_copies_of_one_instance_do_not_collide(spool):
    first = spool.admit(received(spool, b"one"), "gpu-a", "1.2.3")
    second = spool.admit(received(spool, b"two"), "gpu-a", "1.2.3")
    assert first != second and spool.path(first).read_bytes() == b"one"


def test_relocate_and_remove(spool):
    rel = spool.admit(received(spool), "gpu-a", "1.2.3")
    moved = spool.relocate(rel, "gpu-b")
    assert moved.startswith("spool/gpu-b/") and spool.path(moved).exists()
    spool.remove(moved)
    spool.remove(moved)  # removing twice is not an error
    assert spool.queued_files() == set()


def test_bury_keeps_the_file_and_its_reason(spool):
    src = received(spool, b"unknown study")
    dead = spool.bury(src, {"reason": "unknown study", "sop_instance_uid": "1.2.3"})
    assert dead.read_bytes() == b"unknown study" and dead.parent == spool.dead
    assert "1.2.3" in dead.name
    (record,) = spool.dead_letters()
    assert record["reason"] == "unknown study" and record["file"] == dead.name
    assert json.loads(dead.with_suffix(".json").read_text())["at"] > 0


def test_prepare_removes_interrupted_receives(tmp_path):
    spool = Spool(tmp_path, durable=False)
    spool.prepare()
    (spool.incoming / "tmp-half.dcm").write_bytes(b"half a dataset")
    spool.prepare()
    assert list(spool.incoming.iterdir()) == []


def test_sweep_removes_only_stale_files_of_cut_receives(spool):
    import time

    stale = spool.incoming / "cut.dcm"
    stale.write_bytes(b"half")
    old = time.time() - 3600
    os.utime(stale, (old, old))
    fresh = spool.incoming / "arriving.dcm"
    fresh.write_bytes(b"being written")
    assert spool.sweep_incoming(older_than=600) == 1
    assert not stale.exists() and fresh.exists()


def delivered(spool: Spool, content: bytes) -> None:
    """Admit a file of ``content`` and take it out again, as a sender does after delivery."""
    src, fd, _ = spool.open_incoming()
    os.write(fd, content)
    os.close(fd)
    spool.remove(spool.admit(src, "gpu-a", "1.2.3"))


def test_a_delivered_file_is_written_over_by_the_next_receive(spool):
    delivered(spool, b"x" * 1000)
    path, fd, size = spool.open_incoming()
    os.close(fd)
    assert size == 1000 and path.name.startswith(RECYCLED) and path.read_bytes() == b"x" * 1000
    assert spool.queued_files() == set() and spool.queued_bytes == 0
    path.unlink()
    path, fd, size = spool.open_incoming()  # none kept: a new file
    os.close(fd)
    assert size == 0 and not path.name.startswith(RECYCLED) and path.read_bytes() == b""


def test_a_file_with_another_link_is_deleted_not_recycled(spool, tmp_path):
    src = received(spool, b"a dead letter's twin")
    rel = spool.admit(src, "gpu-a", "1.2.3")
    os.link(spool.path(rel), tmp_path / "twin.dcm")
    spool.remove(rel)
    assert list(spool.incoming.iterdir()) == []
    assert (tmp_path / "twin.dcm").read_bytes() == b"a dead letter's twin"


def test_only_so_many_delivered_files_are_kept(spool):
    for _ in range(RECYCLE_FILES + 3):
        spool.admit(received(spool), "gpu-a", "1.2.3")
    for rel in sorted(spool.queued_files()):
        spool.remove(rel)
    assert len(list(spool.incoming.iterdir())) == RECYCLE_FILES
    assert spool.queued_files() == set()


def test_kept_files_go_when_idle_and_at_start(spool):
    delivered(spool, b"old")
    assert spool.sweep_incoming(older_than=600) == 0
    assert len(list(spool.incoming.iterdir())) == 1  # not idle long enough
    spool.sweep_incoming(older_than=0)
    assert list(spool.incoming.iterdir()) == []
    delivered(spool, b"old")
    spool.prepare()
    assert list(spool.incoming.iterdir()) == []
    assert spool.open_incoming()[2] == 0  # the pool forgot it


def test_min_free_zero_means_no_free_space_check(tmp_path, monkeypatch):
    """A file system that reports 0 free (LazyFS without statfs) refuses nothing with 0 kept."""
    zero = shutil._ntuple_diskusage(total=0, used=0, free=0)  # type: ignore[attr-defined]
    monkeypatch.setattr(shutil, "disk_usage", lambda _path: zero)
    kept_nothing = Spool(tmp_path / "a", min_free=0)
    kept_nothing.prepare()
    kept_nothing.check_room(1 << 20)
    assert kept_nothing.full() is None
    kept_one = Spool(tmp_path / "b", min_free=1)
    kept_one.prepare()
    with pytest.raises(SpoolFullError, match="disk nearly full"):
        kept_one.check_room(0)
