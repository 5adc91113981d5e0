"""The store, on SQLite and on PostgreSQL (tests/postgres.py): idempotent writes, the queue,
open studies; SQLite's query plans and its schema's versions."""

from __future__ import annotations

import shutil
import sqlite3
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wolfpacs.state import schema
from wolfpacs.state.sqlite import ENQUEUE, SQLiteStore
from wolfpacs.state.store import DESTINATION, WORKER, QueueItem


def item(
    path: str, study: str = "1.2.1", target: str = "gpu-a", kind: str = WORKER, client: str = "c"
) -> QueueItem:
    return QueueItem(target, kind, path, client, study, "1.2.840.10008.5.1.4.1.1.2",
                     "9." + path, "1.2.840.10008.1.2.1", 100, 1000.0)  # fmt: skip


def test_a_route_is_insert_if_absent(store):
    first = store.insert_route("sthlm", "1.2.1", "gpu-a", 10.0)
    second = store.insert_route("sthlm", "1.2.1", "gpu-b", 20.0)
    assert first == second and second.worker == "gpu-a" and second.client == "sthlm"
    assert store.get_route("sthlm", "9.9") is None


def test_the_same_uid_from_two_clients_is_two_studies(store):
    store.insert_route("sthlm", "1.2.1", "gpu-a", 10.0)
    store.insert_route("berlin", "1.2.1", "lung-a", 20.0)
    assert store.get_route("sthlm", "1.2.1").worker == "gpu-a"
    assert store.get_route("berlin", "1.2.1").worker == "lung-a"
    assert [(r.client, r.worker) for r in store.routes_of("1.2.1")] == [
        ("berlin", "lung-a"), ("sthlm", "gpu-a"),
    ]  # fmt: skip
    store.enqueue(item("spool/lung-a/x.dcm", target="lung-a", client="berlin"))
    studies = {s["client"]: s for s in store.study("1.2.1")}
    assert studies["berlin"]["instances_in"] == 1 and studies["sthlm"]["instances_in"] == 0
    assert studies["berlin"]["queued"] == {"lung-a": 1} and studies["sthlm"]["queued"] == {}


def test_results_may_come_only_from_a_worker_the_study_was_given(store):
    store.insert_route("sthlm", "1.2.1", "gpu-a", 10.0)
    store.insert_route("berlin", "1.2.1", "gpu-b", 10.0)
    assert store.owners("1.2.1", "gpu-a") == ["sthlm"]
    assert store.owners("1.2.1", "gpu-c") == []
    store.move_studies("gpu-a", "gpu-c", ["1.2.1"], client="sthlm")
    assert store.owners("1.2.1", "gpu-a") == ["sthlm"]  # moved from: its results still count
    assert store.owners("1.2.1", "gpu-c") == ["sthlm"]
    assert store.get_route("berlin", "1.2.1").worker == "gpu-b"  # the other's stays put
    store.move_studies("gpu-b", "gpu-c")  # now gpu-c holds the UID for both
    assert store.owners("1.2.1", "gpu-c") == ["berlin", "sthlm"]


def test_enqueue_is_idempotent_by_path_and_counts_once(store):
    store.insert_route("c", "1.2.1", "gpu-a", 10.0)
    a = store.enqueue(item("spool/gpu-a/x.dcm"))
    assert store.enqueue(item("spool/gpu-a/x.dcm")) == a
    assert store.study("1.2.1")[0]["instances_in"] == 1  # a retried enqueue counts nothing
    assert len(store.next_items("gpu-a")) == 1


def test_queue_order_delivery_and_counters(store):
    store.insert_route("c", "1.2.1", "gpu-a", 10.0)
    ids = [store.enqueue(item(f"spool/gpu-a/{n}.dcm")) for n in range(3)]
    store.enqueue(item("spool/pacs/d.dcm", target="pacs", kind=DESTINATION))
    assert [i.id for i in store.next_items("gpu-a")] == ids
    assert [i.id for i in store.next_items("gpu-a", limit=1, after_id=ids[0])] == [ids[1]]
    store.delivered(ids[0], at=1050.0)
    store.delivered(ids[0], at=1051.0)  # twice: no double count
    (study,) = store.study("1.2.1")
    assert study["instances_delivered"] == 1 and study["derived_in"] == 1
    assert study["last_activity_at"] == 1050.0
    stats = store.queue_stats()
    assert stats["gpu-a"]["instances"] == 2 and stats["pacs"]["kind"] == DESTINATION
    store.delivered(ids[1], at=1050.5)  # within the second: the activity stays where it is
    store.delivered(ids[2], at=20.0)  # nor does it go back in time
    assert store.study("1.2.1")[0]["last_activity_at"] == 1050.0


def test_a_batch_delivered_at_once_counts_as_one_by_one_would(store):
    store.insert_route("c", "1.2.1", "gpu-a", 10.0)
    store.insert_route("c", "1.2.2", "gpu-a", 10.0)
    a1, a2, a3 = (store.enqueue(item(f"spool/gpu-a/{n}.dcm")) for n in range(3))
    b1 = store.enqueue(item("spool/gpu-a/b.dcm", study="1.2.2"))
    d1 = store.enqueue(item("spool/pacs/d.dcm", target="pacs", kind=DESTINATION))
    store.move_studies("gpu-a", "gpu-b", ["1.2.2"])  # b1 now reaches a worker its study left
    gone, following = store.delivered_next([a1, a2, b1, d1, a1, 999_999], "gpu-a")
    assert gone == [a1, a2, b1, d1]  # in the order given, once each; no such row: left out
    assert [i.id for i in following] == [a3]
    (one,), (two,) = store.study("1.2.1"), store.study("1.2.2")
    assert (one["instances_delivered"], one["derived_delivered"], one["delivered_elsewhere"],
            one["delivered_to"]) == (2, 1, 0, "gpu-a")  # fmt: skip
    assert (two["instances_delivered"], two["delivered_elsewhere"], two["delivered_to"]) == (
        1, 1, "gpu-a")  # fmt: skip
    assert one["delivered_at"] > 1000.0 and one["last_activity_at"] > 1000.0
    assert store.delivered_next([a1, b1], "gpu-a") == ([], following)  # counted already
    assert store.study("1.2.1")[0]["instances_delivered"] == 2


def test_failed_attempts_are_counted(store):
    store.insert_route("c", "1.2.1", "gpu-a", 10.0)
    row = store.enqueue(item("spool/gpu-a/x.dcm"))
    assert store.failed_attempt(row, "0xA700") == 1
    assert store.failed_attempt(row, "0xA700") == 2
    assert store.next_items("gpu-a")[0].last_error == "0xA700"


def test_open_studies_counts_recent_or_queued(store):
    store.insert_route("c", "old-queued", "gpu-a", 10.0)
    store.insert_route("c", "old-done", "gpu-a", 10.0)
    store.insert_route("c", "recent", "gpu-b", 500.0)
    store.insert_route("d", "recent", "gpu-b", 500.0)  # another client's: another study
    store.enqueue(replace(item("spool/gpu-a/q.dcm", study="old-queued"), enqueued_at=20.0))
    assert store.open_studies(["gpu-a", "gpu-b", "gpu-c"], cutoff=100.0) == {
        "gpu-a": 1, "gpu-b": 2, "gpu-c": 0,
    }  # fmt: skip
    assert store.open_studies_of("worker", "gpu-b", cutoff=100.0) == 2
    assert store.open_studies_of("client", "c", cutoff=100.0) == 2


@pytest.mark.sqlite_only
def test_a_delivery_moves_the_activity_without_a_statement_of_its_own_but_once_a_second(store):
    """The study's activity is read back by the count's own UPDATE: a round trip fewer per
    instance on a server. (SQLite's statements stand for the server's here.)"""
    store.insert_route("c", "1.2.1", "gpu-a", 10.0)
    ids = [store.enqueue(replace(item(f"spool/gpu-a/{n}.dcm"), enqueued_at=1000.0))
           for n in range(4)]  # fmt: skip
    ran: list[str] = []
    store._database.set_trace_callback(ran.append)
    for n, row in enumerate(ids):
        store.delivered(row, at=1050.0 + n / 10)  # four deliveries within one second
    store._database.set_trace_callback(None)
    touches = [sql for sql in ran if sql.startswith("UPDATE studies SET last_activity_at")]
    assert len(touches) == 1, ran
    assert store.study("1.2.1")[0]["last_activity_at"] == 1050.0


def test_worker_states_persist(stores):
    store = stores.new(durable=True)
    store.open()
    store.set_worker_state("gpu-a", "draining")
    store.close()
    again = stores.opened(durable=True)
    assert again.worker_states() == {"gpu-a": "draining"}


def test_drop_missing_rows(store):
    store.enqueue(item("spool/gpu-a/gone.dcm"))
    store.enqueue(item("spool/gpu-a/here.dcm"))
    assert store.drop_missing({"spool/gpu-a/gone.dcm"}) == 1
    assert store.queued_paths() == {"spool/gpu-a/here.dcm"}


def test_rows_of_a_moved_study_are_not_offered_to_the_worker_it_left(store):
    store.insert_route("c", "1.2.1", "gpu-a", 10.0)
    store.insert_route("c", "1.2.2", "gpu-a", 10.0)
    store.enqueue(item("spool/gpu-a/1.dcm", study="1.2.1"))
    store.enqueue(item("spool/gpu-a/2.dcm", study="1.2.2"))
    moved = store.move_studies("gpu-a", "gpu-b", ["1.2.1"])
    assert moved == [{"client": "c", "study_uid": "1.2.1", "pool": "", "delivered": 0, "queued": 1}]
    assert [i.study_uid for i in store.next_items("gpu-a")] == ["1.2.2"]
    ((row, worker),) = store.moved_items("gpu-a")
    assert row.study_uid == "1.2.1" and worker == "gpu-b"


def test_moving_without_a_list_moves_open_studies_only(store):
    store.insert_route("c", "old", "gpu-a", 10.0)
    store.insert_route("c", "new", "gpu-a", 1000.0)
    assert [m["study_uid"] for m in store.move_studies("gpu-a", "gpu-b", cutoff=500.0)] == ["new"]


def _plan(store: SQLiteStore, sql: str, args: tuple[object, ...]) -> list[str]:
    return [row[3] for row in store._database.execute(f"EXPLAIN QUERY PLAN {sql}", args)]


@pytest.mark.sqlite_only
def test_what_runs_per_instance_looks_studies_up_by_key(store):
    """The routing table may hold 100,000 studies: a scan per instance would be felt."""
    steps = [
        *_plan(store, ENQUEUE, (1,) * 15),
        *_plan(store, "INSERT INTO studies (client, study_uid, pool, worker, routed_at, "
               "last_activity_at) VALUES (1, 1, 1, 1, 1, 1) ON CONFLICT (client, study_uid, "
               "pool) DO UPDATE SET instances_in = instances_in + 1", ()),  # the trigger
        *_plan(store, "SELECT * FROM queue q LEFT JOIN studies s ON s.client = q.client AND "
               "s.study_uid = q.study_uid AND s.pool = q.pool WHERE q.target = ? AND q.id > ?",
               (1, 1)),
    ]  # fmt: skip
    assert any("studies USING INDEX" in step for step in steps), steps
    assert not any(step.startswith("SCAN studies") for step in steps), steps


def _history(store: SQLiteStore, start: int, count: int) -> None:
    """``count`` long-idle studies of two clients on two workers, as years of routing leave."""
    with store._transaction(synced=False) as db:
        db.executemany(
            "INSERT INTO studies (client, study_uid, worker, routed_at, last_activity_at) "
            "VALUES (?, ?, ?, 10.0, 10.0)",
            [
                ("c" if n % 2 else "d", f"1.9.{n}", f"gpu-{'ab'[n % 2]}")
                for n in range(start, start + count)
            ],
        )


def _steps(store: SQLiteStore, view: str, args: tuple[object, ...]) -> int:
    """The SQLite VM's instructions a view takes (in thousands): deterministic, not a time."""
    counted = [0]

    def tick() -> int:
        counted[0] += 1
        return 0

    store._database.set_progress_handler(tick, 1000)
    try:
        getattr(store, view)(*args)
    finally:
        store._database.set_progress_handler(None, 0)
    return counted[0]


@pytest.mark.sqlite_only
@pytest.mark.parametrize(
    ("view", "args"),
    [
        ("studies", (None, None, 50)), ("studies", ("gpu-a", None, 50)),
        ("studies", (None, "c", 50)), ("open_studies_of", ("worker", "gpu-a", 1000.0)),
        ("open_studies_of", ("client", "c", 1000.0)), ("open_studies", (["gpu-a"], 1000.0)),
        ("purge", (500.0, 500, True)), ("study", ("1.9.7",)),
    ],
)  # fmt: skip
def test_the_operators_views_do_not_grow_with_the_history(store, view, args):
    """What `workers`, `clients`, `studies` and a purge ask costs the same at 10x the history."""
    store.insert_route("c", "open", "gpu-a", 2000.0)
    _history(store, 0, 1000)
    before = _steps(store, view, args)
    _history(store, 1000, 9000)
    after = _steps(store, view, args)
    assert after <= 2 * before + 2, f"{view}: {before}k -> {after}k VM steps at 10x the studies"


def test_an_instance_is_counted_in_once_by_the_trigger(store):
    store.insert_route("c", "1.2.1", "gpu-a", 10.0)
    assert store.enqueue_received(item("spool/gpu-a/x.dcm")) is None
    store.enqueue(item("spool/gpu-a/x.dcm"))  # a retried call: counted already
    store.enqueue(item("spool/pacs/y.dcm", target="pacs", kind=DESTINATION))
    (row,) = store._rows("SELECT instances_in, derived_in, last_activity_at FROM studies")
    assert tuple(row) == (1, 1, 1000.0)
    store.insert_route("c", "1.2.1", "gpu-b", 11.0)  # insert-if-absent: still gpu-a
    with store._transaction() as db:  # a move, as the router does
        db.execute("UPDATE studies SET worker = 'gpu-b'")
    assert store.enqueue_received(item("spool/gpu-a/z.dcm")) == "gpu-b"


def test_a_workers_instance_of_a_study_purged_an_instant_before_makes_it_again(store):
    store.enqueue(item("spool/gpu-a/x.dcm", study="9.9"))  # no route: purged meanwhile
    assert store.get_route("c", "9.9").worker == "gpu-a"
    assert store.owners("9.9", "gpu-a") == ["c"]  # its results can still go home


def test_a_purge_forgets_idle_studies_in_small_steps_but_never_a_queued_one(store):
    for n in range(5):
        store.insert_route("c", f"old.{n}", "gpu-a", 10.0)
    store.insert_route("c", "new", "gpu-a", 1000.0)
    store.enqueue(replace(item("spool/gpu-a/q.dcm", study="old.4"), enqueued_at=20.0))
    assert store.purge(cutoff=500.0, dry_run=True) == 4
    assert store.count_studies() == 6
    assert store.purge(cutoff=500.0, limit=3) == 3
    assert store.purge(cutoff=500.0, limit=3) == 1
    assert store.purge(cutoff=500.0, limit=3) == 0
    assert sorted(r["study_uid"] for r in store.studies()) == ["new", "old.4"]
    assert store.owners("old.0", "gpu-a") == []  # its assignments went with it


def test_runtime_changes_are_compacted_to_the_last_of_each_entry(store):
    for port in (1, 2):
        store.add_runtime_change("worker", "gpu-x", {"name": "gpu-x", "port": port})
    store.add_runtime_change("client", "c", {"name": "c"})
    store.add_runtime_change("worker", "gpu-y", {"name": "gpu-y"})
    store.add_runtime_change("worker", "gpu-y", None)
    assert store.compact_runtime_changes(dry_run=True) == 2
    assert store.compact_runtime_changes() == 2
    assert store.runtime_changes() == [
        ("worker", "gpu-x", {"name": "gpu-x", "port": 2}), ("client", "c", {"name": "c"}),
        ("worker", "gpu-y", None),
    ]  # fmt: skip


@pytest.mark.sqlite_only
def test_a_new_database_records_its_schema_version(tmp_path):
    store = SQLiteStore(tmp_path / "state.sqlite3")
    store.open()
    store.close()
    with sqlite3.connect(tmp_path / "state.sqlite3") as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == schema.VERSION >= 1


@pytest.mark.sqlite_only
def test_a_database_from_before_versions_is_taken_as_version_1_with_its_rows(tmp_path):
    path = tmp_path / "state.sqlite3"
    with sqlite3.connect(path) as db:  # what every node before versions made: no user_version
        db.executescript(schema.MIGRATIONS[0])
        db.execute("INSERT INTO studies (study_uid, client, worker, routed_at, last_activity_at) "
                   "VALUES ('1.2.1', 'sthlm', 'gpu-a', 1.0, 1.0)")  # fmt: skip
    store = SQLiteStore(path)
    store.open()
    try:
        assert store.get_route("sthlm", "1.2.1").worker == "gpu-a"
    finally:
        store.close()
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == schema.VERSION


@pytest.mark.sqlite_only
def test_a_database_of_a_newer_wolfpacs_is_refused_and_left_alone(tmp_path):
    path = tmp_path / "state.sqlite3"
    with sqlite3.connect(path) as db:
        db.execute(f"PRAGMA user_version = {schema.VERSION + 1}")
    with pytest.raises(schema.SchemaError, match=r"newer than this WolfPACS knows"):
        SQLiteStore(path).open()
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == schema.VERSION + 1
        assert not db.execute("SELECT name FROM sqlite_master").fetchall()  # nothing created


FIXTURE = Path(__file__).parent / "fixtures" / "state-2026-11-26.sqlite3"


@pytest.mark.sqlite_only
def test_a_database_of_the_last_release_is_migrated_whole(tmp_path):
    """The fixture was made by the store of commit 5791cc6 (2026-11-26, before versions):
    three studies of sthlm and berlin, one moved from gpu-b to gpu-a; two queue rows (one for
    a worker, one derived for sthlm-pacs), one delivered; gpu-b draining; a worker added."""
    path = tmp_path / "state.sqlite3"
    shutil.copyfile(FIXTURE, path)
    store = SQLiteStore(path)
    store.open()
    try:
        uid = "1.2.826.0.1.3680043.10.{}".format
        assert [(r.client, r.worker) for r in store.routes_of(uid(1))] == [("sthlm", "gpu-a")]
        assert store.get_route("berlin", uid(2)).worker == "gpu-b"
        assert store.owners(uid(3), "gpu-b") == ["sthlm"]  # moved from there: may still answer
        rows = {
            (i.target, i.kind, i.client) for t in ("gpu-a", "sthlm-pacs") for i in store.items_of(t)
        }
        assert rows == {("gpu-a", WORKER, "sthlm"), ("sthlm-pacs", DESTINATION, "sthlm")}
        (study,) = store.study(uid(1))
        assert (study["instances_in"], study["derived_in"], study["queued"]) == (
            1, 1, {"gpu-a": 1, "sthlm-pacs": 1})  # fmt: skip
        assert store.study(uid(2))[0]["instances_delivered"] == 1
        assert store.worker_states() == {"gpu-b": "draining"}
        assert [c[1] for c in store.runtime_changes()] == ["gpu-c"]
    finally:
        store.close()
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == schema.VERSION


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    studies=st.lists(st.tuples(st.floats(0, 2000), st.booleans()), max_size=30),
    cutoff=st.floats(0, 2000),
    batch=st.integers(1, 7),
)
def test_a_purge_never_forgets_a_queued_study_or_one_active_in_the_window(
    stores, studies, cutoff, batch
):
    store = stores.opened(fresh=True)  # a new database each example
    try:
        for n, (active, queued) in enumerate(studies):
            store.insert_route("c", f"1.{n}", "gpu-a", active)
            if queued:
                store.enqueue(
                    replace(item(f"spool/gpu-a/{n}.dcm", study=f"1.{n}"), enqueued_at=active)
                )
        while store.purge(cutoff, limit=batch) == batch:
            pass
        kept = {r["study_uid"] for r in store.studies(limit=1000)}
        for n, (active, queued) in enumerate(studies):
            assert (f"1.{n}" in kept) == (queued or active >= cutoff), (n, active, queued)
    finally:
        store.close()
