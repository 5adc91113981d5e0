"""A whole node in-process, with pynetdicom peers: routing, return path, failures, recovery.

The tests that touch the state run on both backends (``stores``: tests/postgres.py)."""

from __future__ import annotations

import threading

import pytest
from pydicom import dcmread
from pydicom.uid import generate_uid

from supervisors import join, kill
from tests.conftest import wait_until
from tests.world import World
from wolfpacs.cli.demo import CLIENT_AE, demo
from wolfpacs.dicom.status import Status
from wolfpacs.node import Node
from wolfpacs.node.receiver import Receiver
from wolfpacs.testing.peers import dataset_digest, send_files
from wolfpacs.testing.synthetic import ct_instance, write


def test_the_demo_round_trip(capsys):
    assert demo() == 0
    out = capsys.readouterr().out
    assert "-> worker gpu-" in out and "-> PACS DEMO_PACS" in out


def test_studies_land_whole_on_one_worker_each_and_bytes_are_unchanged(world, stores):
    w = world(store=stores.setting)
    studies = [w.study(f"s{n}", series=2, per_series=4) for n in range(4)]
    for files in studies:
        assert w.send(files[:5]) == [0] * 5
    for files in studies:  # the rest of each study on a later association
        assert w.send(files[5:]) == [0] * 3
    wait_until(lambda: w.delivered() == 32)
    where = w.at_workers()
    assert all(len(workers) == 1 for workers in where.values()), where
    assert {a for workers in where.values() for a in workers} == {"GPU_A", "GPU_B"}
    sent = {dataset_digest(p) for files in studies for p in files}
    assert {item.digest for wk in w.workers for item in wk.received} == sent


def test_a_small_instance_written_over_a_delivered_big_one_arrives_unchanged(world):
    w = world()
    big = w.study("big", series=1, per_series=3, rows=256, columns=256)
    assert w.send(big) == [0] * 3
    wait_until(lambda: w.delivered() == 3)
    # kept to be reused, once the sender has had the worker's answers (after the worker has them)
    wait_until(lambda: len(list(w.node.spool.incoming.glob("recycled-*"))) == 3)
    small = w.study("small", series=1, per_series=3)
    assert w.send(small) == [0] * 3
    wait_until(lambda: w.delivered() == 6)
    sent = {dataset_digest(p) for p in big + small}
    assert {item.digest for wk in w.workers for item in wk.received} == sent


def test_a_sender_keeps_one_association_while_it_has_work(world):
    w = world(idle_release=5.0)
    assert w.send(w.study("s", series=2, per_series=10)) == [0] * 20
    wait_until(lambda: w.delivered() == 20)
    assert sorted(wk.associations for wk in w.workers) == [0, 1]


def test_a_sender_releases_its_association_idle_release_after_its_last_batch(world):
    # A worker may serve one association at a time (DCMTK's storescp): a sender that kept an
    # idle one would starve every other sender of it (another node's, another process's).
    w = world(idle_release=0.2)
    for worker in w.workers:
        worker.stop()
    assert w.send(w.study("s", series=1, per_series=3)) == [0] * 3  # queued, in one batch
    for worker in w.workers:
        worker.start()
    wait_until(lambda: w.delivered() == 3, timeout=20)
    for name in ("sender:gpu-1", "sender:gpu-2"):
        sender = w.actor(name).proxy()
        wait_until(lambda s=sender: not s.inspect().get()["association_open"], timeout=5,
                   what=f"{name} to release its association")  # fmt: skip


def test_c_echo_finds_a_worker_down_and_new_studies_avoid_it(world):
    w = world(echo_interval=0.1)
    w.workers[0].stop()  # gpu-1: its sender's next C-ECHO fails
    wait_until(lambda: w.node.registry.call("sender:gpu-1", "inspect")["up"] is False)
    for n in range(3):
        assert w.send(w.study(f"s{n}", series=1, per_series=1)) == [0]
    wait_until(lambda: w.delivered() == 3)
    assert len(w.workers[1].received) == 3


def test_derived_series_return_to_the_clients_destination(world, stores):
    w = world(store=stores.setting)
    files = w.study("s", series=1, per_series=3)
    assert w.send(files) == [0, 0, 0]
    assert w.pacs.wait_for(3, timeout=20)
    assert {item.study_uid for item in w.pacs.received} == {dcmread(files[0]).StudyInstanceUID}


def test_an_instance_without_study_uid_is_refused_with_a_c0xx_status(world, caplog):
    w = world()
    ds = ct_instance(generate_uid(), generate_uid(), 1)
    del ds.StudyInstanceUID
    assert w.send([write(ds, w.root / "bad.dcm")]) == [Status.NO_STUDY_UID]
    assert "no StudyInstanceUID" in caplog.text
    assert w.send(w.study("ok", series=1, per_series=1)) == [0]  # the node goes on


def test_no_active_worker_is_out_of_resources(world):
    w = world()
    for worker in ("gpu-1", "gpu-2"):
        w.node.store.set_worker_state(worker, "draining")
    router = w.actor("router")
    kill(router)  # the restarted router reads the states
    join(router, timeout=10)
    assert w.send(w.study("s", series=1, per_series=1)) == [Status.NO_WORKER]


def test_a_worker_down_during_the_send_gets_everything_later(world, stores):
    w = world(store=stores.setting)
    for worker in w.workers:
        worker.stop()
    files = w.study("s", series=1, per_series=5)
    assert w.send(files) == [0] * 5  # acknowledged: spooled, owed to a worker
    worker = next(wk for wk in w.workers if wk.ae_title in {"GPU_A", "GPU_B"})
    for wk in w.workers:
        wk.start()
    assert wait_until(lambda: w.delivered() == 5, timeout=20)
    assert sum(1 for wk in w.workers if wk.received) == 1 and worker


def test_a_failure_status_is_retried_and_a_permanent_one_is_dead(world):
    w = world(max_attempts=3)  # three failure answers for one instance, then dead/
    answers = {"n": 0}

    def flaky(_item):
        answers["n"] += 1
        return 0xA700 if answers["n"] <= 2 else 0x0000  # out of resources, twice

    for wk in w.workers:
        wk.answer = flaky
    assert w.send(w.study("s1", series=1, per_series=1)) == [0]
    wait_until(lambda: w.delivered() == 1)
    for wk in w.workers:
        wk.answer = lambda _item: 0xC123  # "cannot understand": never again
    assert w.send(w.study("s2", series=1, per_series=1)) == [0]
    dead = wait_until(w.node.spool.dead_letters)
    assert dead[0]["status"] == 0xC123 and "refused with status 0xC123" in dead[0]["reason"]
    assert list(w.node.spool.dead.glob("*.dcm"))


def test_unknown_study_on_the_inside_port_is_refused_and_kept_in_dead(world):
    w = world()
    source = ct_instance(generate_uid(), generate_uid(), 1)
    from wolfpacs.testing.synthetic import derived_instance

    path = write(derived_instance(source, generate_uid(), 1), w.root / "d.dcm")
    assert send_files([path], w.inside, "WOLFPACS", calling_ae="GPU_A") == [Status.UNKNOWN_STUDY]
    (record,) = w.node.spool.dead_letters()
    assert record["study_uid"] == source.StudyInstanceUID and record["worker"] == "gpu-1"


def test_strangers_are_rejected(world):
    w = world()
    with pytest.raises(ConnectionError):
        w.send(w.study("s", series=1, per_series=1), called="NOT_A_CLIENT")
    with pytest.raises(ConnectionError):
        send_files(
            w.study("t", series=1, per_series=1), w.inside, "WOLFPACS", calling_ae="STRANGER"
        )


@pytest.mark.parametrize(
    "victim", ["router", "store", "sender:gpu-1", "sender:gpu-2", "listener:outside"]
)
def test_crashes_during_a_c_store_lose_nothing_and_keep_stickiness(
    world, victim, monkeypatch, stores
):
    take = Receiver._take
    inside, go = threading.Event(), threading.Event()

    def taking(self: Receiver, *args: object) -> object:
        if not inside.is_set():  # the first C-STORE: its dataset is in, its answer not yet
            inside.set()
            go.wait(10)
        return take(self, *args)

    monkeypatch.setattr(Receiver, "_take", taking)
    w = world(store=stores.setting)
    studies = [w.study(f"s{n}", series=1, per_series=6) for n in range(2)]
    statuses: list[int] = []
    sending = threading.Thread(target=lambda: statuses.extend(w.send(studies[0][:3])))
    sending.start()
    assert inside.wait(10)
    ref = w.actor(victim)
    kill(ref)  # while a C-STORE is inside the node
    join(ref, timeout=10)
    go.set()
    sending.join(30)
    wait_until(lambda: w.actor(victim) is not None and w.actor(victim) is not ref)
    # What was not acknowledged is sent again, as a hospital would (a refusal, or busy).
    again = [p for p, status in zip(studies[0][:3], statuses, strict=True) if status != 0]
    assert not again or w.send(again) == [0] * len(again)
    assert w.send(studies[1][:3]) == [0, 0, 0]
    for files in studies:
        assert w.send(files[3:]) == [0, 0, 0]
    sent = {dataset_digest(p) for files in studies for p in files}
    # Unique deliveries: a duplicate (at least once) must not stand in for a lost one.
    wait_until(lambda: {i.digest for wk in w.workers for i in wk.received} == sent, timeout=20)
    assert all(len(ws) == 1 for ws in w.at_workers().values())
    assert find(w.node.describe(), victim)["restarts"] == 1


def find(tree: dict, child_id: str) -> dict:
    """The entry of ``child_id`` anywhere in a describe() tree."""
    for child in tree.get("children") or []:
        if child["id"] == child_id:
            return child
        found = find(child, child_id)
        if found:
            return found
    return {}


def test_a_crashed_receiver_aborts_only_its_own_association(world):
    w = world()
    from pynetdicom import AE

    from wolfpacs.testing.peers import configure_pynetdicom

    ae = AE(ae_title="HOSPITAL")
    ae.add_requested_context("1.2.840.10008.5.1.4.1.1.2", "1.2.840.10008.1.2.1")
    doomed = ae.associate("127.0.0.1", w.outside, ae_title=CLIENT_AE)
    other = ae.associate("127.0.0.1", w.outside, ae_title=CLIENT_AE)
    assert doomed.is_established and other.is_established
    receivers = wait_until(lambda: len(w.node.registry.call("receivers", "which_children")) == 2)
    assert receivers
    first_id, first_ref, _ = w.node.registry.call("receivers", "which_children")[0]
    kill(first_ref)
    wait_until(lambda: doomed.is_aborted)
    files = w.study("s", series=1, per_series=2)
    configure_pynetdicom()
    assert [int(other.send_c_store(p).Status) for p in files] == [0, 0]
    other.release()
    assert first_id.startswith("receiver:")


def test_recovery_drops_rows_without_files_and_gives_files_without_rows_one(tmp_path, stores):
    w = World(tmp_path / "a", store=stores.setting)
    for wk in w.workers:
        wk.stop()  # nothing is delivered: the queue keeps everything
    assert w.send(w.study("s", series=1, per_series=3)) == [0, 0, 0]
    w.node.stop()
    spool = w.node.spool
    store = w.node.backend()
    store.open()
    queued = sorted(store.queued_paths())
    store.close()
    assert len(queued) == 3
    spool.path(queued[0]).unlink()  # as if delivered, then a crash before the row went
    torn = spool.path(queued[1]).with_name("torn.part")
    torn.write_bytes(b"half a file")  # as if a copy was cut by a crash
    stray = spool.path(queued[1]).with_name("stray.dcm")
    stray.write_bytes(b"not DICOM")
    store.open()
    target = spool.path(queued[2]).parent.name
    lost_row = next(i for i in store.items_of(target) if i.path == queued[2])
    store.remove_item(lost_row.id)  # as if a power cut took the row, not the file
    store.close()
    node = Node(w.config)
    node.recover()
    store.open()
    assert sorted(store.queued_paths()) == queued[1:]
    adopted = next(i for i in store.items_of(lost_row.target) if i.path == lost_row.path)
    assert (adopted.study_uid, adopted.sop_instance_uid, adopted.size) == (
        lost_row.study_uid, lost_row.sop_instance_uid, lost_row.size)  # fmt: skip
    store.close()
    assert not torn.exists() and not stray.exists()
    assert [r["reason"].startswith("spool file without a queue row, unreadable")
            for r in spool.dead_letters()] == [True]  # fmt: skip
    assert all(spool.path(p).exists() for p in queued[1:])
    for wk in w.workers:
        wk.start()
    node.start()
    wait_until(lambda: w.delivered() == 2, timeout=20)
    node.stop()
    for peer in (*w.workers, w.pacs):
        peer.stop()


def test_describe_shows_the_tree(world):
    w = world()
    tree = w.node.describe()
    assert [c["id"] for c in tree["children"]] == [
        "store", "lease", "router", "senders", "changes", "receivers", "listener:outside",
        "listener:inside", "control", "web",
    ]  # fmt: skip
    assert tree["node"] == {"node_id": w.node.node_id, "epoch": 1}  # the node it comes from
    assert tree["peers"] in (None, [])  # alone: no peers (None before the lease's first look)
    senders = next(c for c in tree["children"] if c["id"] == "senders")
    assert [c["id"] for c in senders["children"]] == [
        "sender:gpu-1",
        "sender:gpu-2",
        "sender:demo-pacs",
    ]


def test_a_second_node_on_the_same_data_dir_is_refused(world):
    from wolfpacs.node import DataDirInUseError

    w = world()
    with pytest.raises(DataDirInUseError, match="in use by another WolfPACS node"):
        Node(w.config).start()
    assert w.send(w.study("s", series=1, per_series=1)) == [0]  # the first one is unharmed


def test_a_receiver_ends_with_its_association_however_it_ends(world):
    from pynetdicom import AE

    w = world()
    ae = AE(ae_title="HOSPITAL")
    ae.add_requested_context("1.2.840.10008.5.1.4.1.1.2", "1.2.840.10008.1.2.1")
    for end in ("release", "abort"):
        assoc = ae.associate("127.0.0.1", w.outside, ae_title=CLIENT_AE)
        assert assoc.is_established
        wait_until(lambda: w.node.registry.call("receivers", "count_children")["active"] == 1)
        getattr(assoc, end)()
        wait_until(lambda: w.node.registry.call("receivers", "count_children")["specs"] == 0)
    gate = w.node.registry.call("listener:outside", "inspect")
    assert gate["open_associations"] == 0


def test_a_stop_does_not_wait_for_a_worker_that_never_answers(world):
    import time

    w = world(dimse_timeout=120.0)
    stalled, release = threading.Event(), threading.Event()

    def stall(_item):
        stalled.set()
        release.wait(60)
        return 0

    for wk in w.workers:
        wk.answer = stall
    assert w.send(w.study("s", series=1, per_series=1)) == [0]
    assert stalled.wait(10)
    started = time.monotonic()
    assert w.node.stop(timeout=30)  # the sender's stop is overdue: its association is aborted
    assert time.monotonic() - started < 15  # shutdown 5 s + interrupt: far below dimse_timeout
    release.set()
