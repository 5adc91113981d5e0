"""The SQLite store: idempotent writes, the queue, open studies, its schema's versions."""

from __future__ import annotations

import sqlite3
from dataclasses import replace

import pytest

from wolfpacs.state import schema
from wolfpacs.state.sqlite import ENQUEUE, SQLiteStore
from wolfpacs.state.store import DESTINATION, WORKER, QueueItem


@pytest.fixture
def store(tmp_path) -> SQLiteStore:
    store = SQLiteStore(tmp_path / "state.sqlite3", durable=False)
    store.open()
    yield store
    store.close()


def item(path: str, study: str = "1.2.1", target: str = "gpu-a", kind: str = WORKER) -> QueueItem:
    return QueueItem(target, kind, path, study, "1.2.840.10008.5.1.4.1.1.2", "9." + path,
                     "1.2.840.10008.1.2.1", 100, 1000.0)  # fmt: skip


def test_a_route_is_insert_if_absent(store):
    first = store.insert_route("1.2.1", "sthlm", "gpu-a", 10.0)
    second = store.insert_route("1.2.1", "gbg", "gpu-b", 20.0)
    assert first == second and second.worker == "gpu-a" and second.client == "sthlm"
    assert store.get_route("9.9") is None


def test_enqueue_is_idempotent_by_path_and_counts_once(store):
    store.insert_route("1.2.1", "sthlm", "gpu-a", 10.0)
    a = store.enqueue(item("spool/gpu-a/x.dcm"))
    assert store.enqueue(item("spool/gpu-a/x.dcm")) == a
    assert store.study("1.2.1")["instances_in"] == 1  # a retried enqueue counts nothing
    assert len(store.next_items("gpu-a")) == 1


def test_queue_order_delivery_and_counters(store):
    store.insert_route("1.2.1", "sthlm", "gpu-a", 10.0)
    ids = [store.enqueue(item(f"spool/gpu-a/{n}.dcm")) for n in range(3)]
    store.enqueue(item("spool/pacs/d.dcm", target="pacs", kind=DESTINATION))
    assert [i.id for i in store.next_items("gpu-a")] == ids
    assert [i.id for i in store.next_items("gpu-a", limit=1, after_id=ids[0])] == [ids[1]]
    store.delivered(ids[0], at=50.0)
    store.delivered(ids[0], at=51.0)  # twice: no double count
    study = store.study("1.2.1")
    assert study["instances_delivered"] == 1 and study["derived_in"] == 1
    assert study["last_activity_at"] == 50.0
    stats = store.queue_stats()
    assert stats["gpu-a"]["instances"] == 2 and stats["pacs"]["kind"] == DESTINATION


def test_failed_attempts_are_counted(store):
    store.insert_route("1.2.1", "sthlm", "gpu-a", 10.0)
    row = store.enqueue(item("spool/gpu-a/x.dcm"))
    assert store.failed_attempt(row, "0xA700") == 1
    assert store.failed_attempt(row, "0xA700") == 2
    assert store.next_items("gpu-a")[0].last_error == "0xA700"


def test_open_studies_counts_recent_or_queued(store):
    store.insert_route("old-queued", "c", "gpu-a", 10.0)
    store.insert_route("old-done", "c", "gpu-a", 10.0)
    store.insert_route("recent", "c", "gpu-b", 500.0)
    store.enqueue(replace(item("spool/gpu-a/q.dcm", study="old-queued"), enqueued_at=20.0))
    assert store.open_studies(["gpu-a", "gpu-b", "gpu-c"], cutoff=100.0) == {
        "gpu-a": 1, "gpu-b": 1, "gpu-c": 0,
    }  # fmt: skip


def test_worker_states_persist(tmp_path):
    path = tmp_path / "s.sqlite3"
    store = SQLiteStore(path)
    store.open()
    store.set_worker_state("gpu-a", "draining")
    store.close()
    again = SQLiteStore(path)
    again.open()
    assert again.worker_states() == {"gpu-a": "draining"}
    again.close()


def test_drop_missing_rows(store):
    store.enqueue(item("spool/gpu-a/gone.dcm"))
    store.enqueue(item("spool/gpu-a/here.dcm"))
    assert store.drop_missing({"spool/gpu-a/gone.dcm"}) == 1
    assert store.queued_paths() == {"spool/gpu-a/here.dcm"}


def test_rows_of_a_moved_study_are_not_offered_to_the_worker_it_left(store):
    store.insert_route("1.2.1", "c", "gpu-a", 10.0)
    store.insert_route("1.2.2", "c", "gpu-a", 10.0)
    store.enqueue(item("spool/gpu-a/1.dcm", study="1.2.1"))
    store.enqueue(item("spool/gpu-a/2.dcm", study="1.2.2"))
    moved = store.move_studies("gpu-a", "gpu-b", ["1.2.1"])
    assert moved == [{"study_uid": "1.2.1", "delivered": 0, "queued": 1}]
    assert [i.study_uid for i in store.next_items("gpu-a")] == ["1.2.2"]
    ((row, worker),) = store.moved_items("gpu-a")
    assert row.study_uid == "1.2.1" and worker == "gpu-b"


def test_moving_without_a_list_moves_open_studies_only(store):
    store.insert_route("old", "c", "gpu-a", 10.0)
    store.insert_route("new", "c", "gpu-a", 1000.0)
    assert [m["study_uid"] for m in store.move_studies("gpu-a", "gpu-b", cutoff=500.0)] == ["new"]


def test_what_runs_per_instance_looks_studies_up_by_key(store):
    """The routing table may hold 10,000 studies: a scan per instance would be felt."""
    db = store._database
    plans = [
        db.execute(f"EXPLAIN QUERY PLAN {ENQUEUE}", (1,) * 10).fetchall(),
        db.execute(  # what the trigger runs for each queue row
            "EXPLAIN QUERY PLAN UPDATE studies SET instances_in = instances_in + 1, "
            "last_activity_at = ? WHERE study_uid = ?", (1, 1),
        ).fetchall(),
    ]  # fmt: skip
    steps = [row[3] for plan in plans for row in plan]
    assert any("studies USING INDEX" in step for step in steps), steps
    assert not any(step.startswith("SCAN studies") for step in steps), steps


def test_an_instance_is_counted_in_once_by_the_trigger(store):
    store.insert_route("1.2.1", "sthlm", "gpu-a", 10.0)
    assert store.enqueue_received(item("spool/gpu-a/x.dcm")) is None
    store.enqueue(item("spool/gpu-a/x.dcm"))  # a retried call: counted already
    store.enqueue(item("spool/pacs/y.dcm", target="pacs", kind=DESTINATION))
    (row,) = store._database.execute(
        "SELECT instances_in, derived_in, last_activity_at FROM studies"
    ).fetchall()
    assert row == (1, 1, 1000.0)
    store.insert_route("1.2.1", "sthlm", "gpu-b", 11.0)  # insert-if-absent: still gpu-a
    store._database.execute("UPDATE studies SET worker = 'gpu-b'")  # a move, as the router does
    assert store.enqueue_received(item("spool/gpu-a/z.dcm")) == "gpu-b"


def test_a_new_database_records_its_schema_version(tmp_path):
    store = SQLiteStore(tmp_path / "state.sqlite3")
    store.open()
    store.close()
    with sqlite3.connect(tmp_path / "state.sqlite3") as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == schema.VERSION >= 1


def test_a_database_from_before_versions_is_taken_as_version_1_with_its_rows(tmp_path):
    path = tmp_path / "state.sqlite3"
    with sqlite3.connect(path) as db:  # what every node before versions made: no user_version
        db.executescript(schema.MIGRATIONS[0])
        db.execute("INSERT INTO studies (study_uid, client, worker, routed_at, last_activity_at) "
                   "VALUES ('1.2.1', 'sthlm', 'gpu-a', 1.0, 1.0)")  # fmt: skip
    store = SQLiteStore(path)
    store.open()
    try:
        assert store.get_route("1.2.1").worker == "gpu-a"
    finally:
        store.close()
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == schema.VERSION


def test_a_database_of_a_newer_wolfpacs_is_refused_and_left_alone(tmp_path):
    path = tmp_path / "state.sqlite3"
    with sqlite3.connect(path) as db:
        db.execute(f"PRAGMA user_version = {schema.VERSION + 1}")
    with pytest.raises(schema.SchemaError, match=r"newer than this WolfPACS knows"):
        SQLiteStore(path).open()
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == schema.VERSION + 1
        assert not db.execute("SELECT name FROM sqlite_master").fetchall()  # nothing created
