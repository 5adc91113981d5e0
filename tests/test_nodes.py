"""Several nodes: a node's identity, the spool's layout with and without a shared spool, the
recovery of a node's own queue only, the lease in the tree (fenced: the node stops), and the
``nodes`` verb, tree header and gauge."""

from __future__ import annotations

import threading
import time

import pytest

from tests.conftest import wait_until
from tests.test_config import GOOD, error, write
from tests.test_gauges import scrape
from tests.test_recovery import CONFIG, queued
from wolfpacs.config import load
from wolfpacs.node import identity
from wolfpacs.node.identity import ID_FILE, node_identity
from wolfpacs.node.lease import Lease
from wolfpacs.node.recovery import recover
from wolfpacs.ops import render
from wolfpacs.state.spool import RECYCLED, DataDirInUseError, Spool
from wolfpacs.state.sqlite import SQLiteStore
from wolfpacs.state.store import WORKER, QueueItem


def row(rel: str, target: str = "gpu-a") -> QueueItem:
    return QueueItem(target, WORKER, rel, "sthlm", "1.2.3", "1.2", "9." + rel, "1.2.1", 10)


# -- config --------------------------------------------------------------------------------


def test_the_node_keys_default_to_one_node_and_are_checked(tmp_path):
    config = load(write(tmp_path, GOOD), env={})
    node = config.node
    assert (node.node_id, node.spool_dir, node.shared_spool, node.lease_seconds) == (
        "",
        "",
        False,
        10.0,
    )
    assert node.spool_path == tmp_path / "data" / "spool"  # today's layout
    several = GOOD.replace(
        "[node]\n",
        '[node]\nnode_id = "node-a"\nspool_dir = "shared"\nshared_spool = true\n'
        "lease_seconds = 2\n",
    )
    node = load(write(tmp_path, several), env={}).node
    assert (node.node_id, node.shared_spool, node.lease_seconds) == ("node-a", True, 2.0)
    assert node.spool_path == tmp_path / "shared"  # relative to the file
    for line, message in (
        ('node_id = "../etc"', "node.node_id: must be 1-63 letters, digits"),
        ("lease_seconds = 0.5", "node.lease_seconds: must be >= 1"),
    ):
        assert message in str(error(tmp_path, GOOD.replace("[node]\n", f"[node]\n{line}\n")))


# -- identity ------------------------------------------------------------------------------


def test_a_node_id_is_made_once_from_the_host_name_and_kept_in_data_dir(tmp_path, monkeypatch):
    monkeypatch.setattr(identity.socket, "gethostname", lambda: "box-7f3a.cluster.local")
    assert node_identity(tmp_path / "data") == "box-7f3a"
    assert (tmp_path / "data" / ID_FILE).read_text().strip() == "box-7f3a"
    monkeypatch.setattr(identity.socket, "gethostname", lambda: "box-new")  # a new container
    assert node_identity(tmp_path / "data") == "box-7f3a"  # the same node, the same queue
    assert node_identity(tmp_path / "data", "node-a") == "node-a"  # the config's wins
    (tmp_path / "data" / ID_FILE).write_text("../etc\n")
    with pytest.raises(ValueError, match="no node id"):
        node_identity(tmp_path / "data")


# -- the spool's layout --------------------------------------------------------------------


def test_one_node_keeps_todays_layout(tmp_path):
    spool = Spool(tmp_path / "data", durable=False)
    spool.prepare()
    rel, _ = queued(spool, "gpu-a", "one", tmp_path)
    assert rel.startswith("spool/gpu-a/") and (tmp_path / "data" / rel).is_file()
    assert spool.queued_files() == {rel}


def test_with_a_shared_spool_each_node_queues_under_its_id_and_any_node_finds_the_file(tmp_path):
    shared = tmp_path / "shared"
    a = Spool(tmp_path / "a", durable=False, spool_dir=shared, node="node-a")
    b = Spool(tmp_path / "b", durable=False, spool_dir=shared, node="node-b")
    for spool in (a, b):
        spool.lock()
        spool.prepare()
    try:
        rel, _ = queued(a, "gpu-a", "x", tmp_path)
        assert rel.startswith("spool/node-a/gpu-a/")
        assert a.path(rel) == b.path(rel) == shared / rel.removeprefix("spool/")
        assert a.queued_files() == {rel} and b.queued_files() == set()  # each its own
        b.remove(rel)  # delivered by b, which adopted it: deleted, never recycled
        assert not a.path(rel).exists()
        assert not any(p.name.startswith(RECYCLED) for p in (tmp_path / "b/incoming").iterdir())
        twin = Spool(tmp_path / "c", durable=False, spool_dir=shared, node="node-a")
        with pytest.raises(DataDirInUseError, match="node_id 'node-a' must be unique"):
            twin.lock()
    finally:
        a.unlock()
        b.unlock()


# -- recovery ------------------------------------------------------------------------------


def test_recovery_reconciles_only_the_nodes_own_rows_and_files(tmp_path, stores):
    shared = tmp_path / "shared"
    spool_a = Spool(tmp_path / "a", durable=False, spool_dir=shared, node="a")
    spool_b = Spool(tmp_path / "b", durable=False, spool_dir=shared, node="b")
    for spool in (spool_a, spool_b):
        spool.prepare()
    store_a, store_b = stores.new(), stores.new()
    store_a.node_id, store_b.node_id = "a", "b"
    for store in (store_a, store_b):
        store.open()
        stores._opened.append(store)
    a_queued, _ = queued(spool_a, "gpu-a", "a1", tmp_path)  # a's, with its row
    store_a.enqueue(row(a_queued))
    a_orphan, _ = queued(spool_a, "gpu-a", "a2", tmp_path)  # a's file, its row lost
    adopted, _ = queued(spool_a, "gpu-a", "a3", tmp_path)  # a's file, its row b's now
    store_b.enqueue(row(adopted))
    b_orphan, _ = queued(spool_b, "gpu-a", "b1", tmp_path)  # b's file, its row lost
    store_a.enqueue(row("spool/a/gpu-a/gone.dcm"))  # a's row, its file delivered: a's to drop

    recover(spool_b, store_b, CONFIG)

    assert store_b.queued_paths() == {adopted, b_orphan}  # the adopted row kept: its file is there
    assert store_a.queued_paths() == {a_queued, "spool/a/gpu-a/gone.dcm"}  # untouched
    assert spool_a.path(a_orphan).exists()  # a's own business, at a's start

    recover(spool_a, store_a, CONFIG)

    assert store_a.queued_paths() == {a_queued, a_orphan}
    assert store_b.queued_paths() == {adopted, b_orphan}  # a leaves b's rows (and files) alone


# -- the lease in the tree -----------------------------------------------------------------


def test_a_lapsed_lease_stops_delivery_only_with_a_shared_spool_and_a_lost_one_for_good():
    shared, alone = Lease("a", 0.5, fencing=True), Lease("a", 0.5, fencing=False)
    for lease in (shared, alone):
        lease.renewed(3, time.monotonic())
        assert lease.valid()
        lease.renewed(3, time.monotonic() - 1.0)  # asked more than a lease ago: it may be taken
    assert not shared.valid() and alone.valid()
    alone.lose("adopted")
    assert not alone.valid() and alone.lost == "adopted"


def test_one_node_shows_itself_in_nodes_tree_and_metrics(world):
    w = world()
    me = w.node.node_id
    (seen,) = w.admin("nodes")
    assert seen["node_id"] == me and seen["this"] is True and seen["state"] == "alive"
    assert seen["epoch"] == 1 and seen["queued"] == 0 and seen["adopted_from"] == []
    table = render.render("nodes", w.admin("nodes"))
    assert me in table and "alive" in table and "ago" in table  # the heartbeat, told as an age
    tree = wait_until(lambda: (t := w.admin("tree"))["peers"] is not None and t, what="a look")
    assert tree["node"] == {"node_id": me, "epoch": 1} and tree["peers"] == []
    assert render.render("tree", tree).startswith(f"node {me} (epoch 1); peers: none\n")
    _, text = scrape(w)
    assert 'wolfpacs_nodes{state="alive"} 1.0' in text
    assert 'wolfpacs_nodes{state="dead"} 0.0' in text


def test_a_node_whose_epoch_is_taken_stops_and_says_why(world):
    w = world(lease_seconds=0.6)
    assert w.node.lease.valid()
    usurper = SQLiteStore(w.node.db_path, durable=False, node_id=w.node.node_id)
    usurper.open()
    try:
        usurper.register_node(60.0)  # as an adopter's fence, or a second process of its id
    finally:
        usurper.close()
    wait_until(w.node.exited.is_set, timeout=10, what="the node to stop itself")
    assert not w.node.lease.valid()
    assert "is no longer its own" in (w.node.fatal or "")


def test_a_file_its_adopter_delivers_while_its_node_recovers_is_no_error(
    tmp_path, stores, monkeypatch
):
    spool = Spool(tmp_path / "a", durable=False, spool_dir=tmp_path / "shared", node="a")
    spool.prepare()
    store = stores.new()
    store.node_id = "a"
    store.open()
    stores._opened.append(store)
    rel, _ = queued(spool, "gpu-a", "x", tmp_path)
    listed = spool.queued_files()
    spool.path(rel).unlink()  # its adopter delivered it (row and file) after the listing
    monkeypatch.setattr(spool, "queued_files", lambda: listed)
    recover(spool, store, CONFIG)  # the node starts
    assert spool.dead_letters() == [] and store.queued_paths(all_nodes=True) == set()


def test_a_node_whose_rows_were_adopted_mid_send_leaves_their_files_to_the_adopter(world, tmp_path):
    shared = tmp_path / "shared"
    w = world(node_id="a", spool_dir=str(shared), shared_spool=True)
    held, release = threading.Event(), threading.Event()

    def hold(_item: object) -> int:  # the worker keeps the sender in its C-STORE
        held.set()
        release.wait(30)
        return 0x0000

    for worker in w.workers:
        worker.answer = hold
    try:
        assert w.send(w.study("s", series=1, per_series=3)) == [0, 0, 0]
        assert held.wait(10)
        files = sorted(shared.glob("a/gpu-*/*.dcm"))
        assert len(files) == 3
        adopter = SQLiteStore(w.node.db_path, durable=False, node_id="b")
        adopter.open()
        try:  # b takes a's rows while a's sender is mid-send (as adopt_expired does)
            adopter._database.execute("UPDATE queue SET owner = 'b' WHERE owner = 'a'")
        finally:
            adopter.close()
    finally:
        release.set()
    wait_until(lambda: w.delivered() >= 1, what="the send in flight to end")
    wait_until(lambda: not w.node.store.next_items("gpu-1") + w.node.store.next_items("gpu-2"),
               what="a to see none of its rows")  # fmt: skip
    assert all(f.exists() for f in files)  # a removed none: they are b's to deliver and remove
    assert w.node.store.queue_stats() == {}  # a's own queue is empty
