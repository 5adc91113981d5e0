"""Recovery at start, as plain functions over a spool and a store: no actor, no socket."""

from __future__ import annotations

import os

import pytest

from wolfpacs.config import Client, Config, Destination, NodeConfig, Worker
from wolfpacs.node.recovery import recover, replay, requeue
from wolfpacs.state.spool import Spool
from wolfpacs.state.store import WORKER, QueueItem
from wolfpacs.testing.synthetic import ct_instance, write

CONFIG = Config(
    node=NodeConfig(),
    destinations=(Destination("pacs", "127.0.0.1", 104, "PACS"),),
    clients=(Client("sthlm", "STHLM", "pacs", "stroke"),),
    workers=tuple(Worker(n, "127.0.0.1", 11130, n.upper(), "stroke") for n in ("gpu-a", "gpu-b")),
)


@pytest.fixture
def parts(tmp_path, stores):
    """A spool and a store (of each backend in turn: tests/postgres.py)."""
    spool = Spool(tmp_path / "data", durable=False)
    spool.prepare()
    return spool, stores.opened()


def queued(
    spool: Spool, target: str, name: str, tmp_path, *, owner: str = "sthlm", study: str = "1.2.3"
) -> tuple[str, object]:
    """A received instance of ``owner``'s admitted into ``target``'s queue, and its dataset."""
    ds = ct_instance(study_uid=study, series_uid=f"{study}.1", number=1, rows=4, columns=4)
    path = write(ds, tmp_path / f"{name}.dcm")
    return spool.admit(path, target, str(ds.SOPInstanceUID), owner=owner), ds


def test_the_spool_and_the_queue_are_made_to_agree(parts, tmp_path):
    spool, store = parts
    orphan, ds = queued(spool, "gpu-a", "orphan", tmp_path)  # its row lost in a power cut
    moved, _ = queued(spool, "gpu-a", "moved", tmp_path)
    gone, _ = queued(spool, "gpu-b", "gone", tmp_path)
    for rel in (moved, gone):
        store.enqueue(
            QueueItem("gpu-a", WORKER, rel, "sthlm", "1.2.3", "1.2", "9." + rel, "1.2.1", 10)
        )
    relocated = spool.relocate(moved, "gpu-b")  # the file moved, the crash came before its row
    spool.path(gone).unlink()  # delivered, the crash came before its row went
    removed, _ = queued(spool, "gpu-x", "removed", tmp_path)  # a target no longer configured

    live = recover(spool, store, CONFIG)

    assert live == CONFIG
    assert store.queued_paths() == {orphan, relocated}
    (adopted,) = [i for i in store.items_of("gpu-a") if i.path == orphan]
    assert (adopted.client, adopted.study_uid) == ("sthlm", "1.2.3")
    assert adopted.sop_instance_uid == str(ds.SOPInstanceUID)
    assert not spool.path(removed).exists()
    (letter,) = spool.dead_letters()
    assert "gpu-x, which is no longer configured" in letter["reason"]
    assert spool.queued_bytes == sum(spool.path(p).stat().st_size for p in (orphan, relocated))


def test_runtime_changes_are_replayed_and_one_that_no_longer_fits_is_skipped(parts, caplog):
    spool, store = parts
    store.add_runtime_change("worker", "gpu-c", {"name": "gpu-c", "host": "127.0.0.1",
                             "port": 9, "ae_title": "GPU-A", "pool": "stroke"})  # fmt: skip
    store.add_runtime_change("worker", "gpu-d", {"name": "gpu-d", "host": "127.0.0.1",
                             "port": 9, "ae_title": "GPU_D", "pool": "stroke"})  # fmt: skip
    live = recover(spool, store, CONFIG)
    assert [w.name for w in live.workers] == ["gpu-a", "gpu-b", "gpu-d"]
    assert "runtime change 1 (add worker gpu-c) no longer fits; skipped" in caplog.text
    assert replay(CONFIG, []) is CONFIG


def test_a_file_named_before_owners_were_is_given_the_one_client_its_study_has(parts, tmp_path):
    spool, store = parts
    store.insert_route("sthlm", "1.2.3", "gpu-a", 10.0)
    store.insert_route("berlin", "1.2.3", "gpu-b", 10.0)  # the same UID: another's study
    known, _ = queued(spool, "gpu-a", "known", tmp_path, owner="")
    nobodys, _ = queued(spool, "gpu-b", "nobodys", tmp_path, owner="", study="7.7")
    recover(spool, store, CONFIG)
    ((item,),) = [store.items_of("gpu-a")]
    assert (item.path, item.client) == (known, "sthlm")
    assert store.items_of("gpu-b") == [] and not spool.path(nobodys).exists()
    (letter,) = spool.dead_letters()
    assert "whose study 7.7 more than one client has, or none" in letter["reason"]


def test_after_a_store_outage_files_of_one_queue_that_lost_their_row_get_it_again(parts, tmp_path):
    spool, store = parts
    lost, ds = queued(spool, "gpu-a", "lost", tmp_path)  # acknowledged; a database crash lost it
    kept, _ = queued(spool, "gpu-a", "kept", tmp_path)
    store.enqueue(QueueItem("gpu-a", WORKER, kept, "sthlm", "1.2.3", "1.2", "9.9", "1.2.1", 10))
    other, _ = queued(spool, "gpu-b", "other", tmp_path)  # another sender's queue: not here
    newer, _ = queued(spool, "gpu-a", "newer", tmp_path)  # a receiver still at work on it
    for rel, mtime in ((lost, 1000.0), (kept, 1000.0), (other, 1000.0), (newer, 3000.0)):
        os.utime(spool.path(rel), (mtime, mtime))

    assert requeue(spool, store, "gpu-a", WORKER, before=2000.0) == 1
    assert store.queued_paths() == {lost, kept}
    (item,) = [i for i in store.items_of("gpu-a") if i.path == lost]
    assert (item.client, item.sop_instance_uid) == ("sthlm", str(ds.SOPInstanceUID))
    assert requeue(spool, store, "gpu-a", WORKER, before=2000.0) == 0  # once only


@pytest.mark.sqlite_only
def test_after_a_store_outage_a_shared_spools_files_get_their_rows_again_as_rows_name_them(
    tmp_path, stores
):
    # A shared spool lies outside data_dir and its rows say "spool/<node>/<target>/…":
    # a row made from the file's path under data_dir would name no file (or fail).
    spool = Spool(tmp_path / "data", durable=False, spool_dir=tmp_path / "shared", node="node-a")
    spool.prepare()
    store = stores.opened()
    lost, _ = queued(spool, "gpu-a", "lost", tmp_path)
    os.utime(spool.path(lost), (1000.0, 1000.0))
    assert requeue(spool, store, "gpu-a", WORKER, before=2000.0) == 1
    assert store.queued_paths() == {lost} and lost.startswith("spool/node-a/gpu-a/")
    assert spool.path(lost).exists()
