"""The store's timing of results: what awaits one, the first that counts, overdue noted once.

On both backends (the ``store`` fixture, tests/postgres.py), but for SQLite's index and file."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pytest

from wolfpacs.state.sqlite import SQLiteStore
from wolfpacs.state.store import DESTINATION, WORKER, QueueItem

FIXTURE = Path(__file__).parent / "fixtures" / "state-2026-11-26.sqlite3"


class Paths:
    """A new spool path each call: every instance is a row of its own."""

    def __init__(self) -> None:
        self.n = 0

    def __call__(self, target: str) -> str:
        self.n += 1
        return f"spool/{target}/{self.n}.dcm"


def deliver(store, paths, worker: str, at: float, *, study="1.2.1", pool="lung", client="c"):
    """An instance of ``client``'s study queued for ``worker`` and delivered at ``at``."""
    row = store.enqueue(QueueItem(worker, WORKER, paths(worker), client, study, "1.2.3", "9.1",
                                  "1.2.840.10008.1.2.1", 10, at, pool=pool))  # fmt: skip
    store.delivered(row, at)


def result(store, paths, worker: str, at: float, *, study="1.2.1", pool="lung", client="c",
           path: str | None = None):  # fmt: skip
    """A derived instance from ``worker`` enqueued at ``at``: what enqueue_result says."""
    item = QueueItem("pacs", DESTINATION, path or paths("pacs"), client, study, "1.2.3", "9.2",
                     "1.2.840.10008.1.2.1", 10, at, pool=pool)  # fmt: skip
    return store.enqueue_result(item, worker)


def awaiting(store, pools=("lung",)):
    return [(r["study_uid"], r["pool"], r["worker"], r["delivered_at"])
            for r in store.awaiting_results(list(pools))]  # fmt: skip


def test_a_delivery_arms_a_route_and_the_first_result_from_its_worker_is_timed(store):
    paths = Paths()
    store.insert_route("c", "1.2.1", "lung-a", 100.0, "lung")
    assert awaiting(store) == []  # routed, nothing delivered yet: nothing awaited
    deliver(store, paths, "lung-a", 110.0)
    deliver(store, paths, "lung-a", 130.0)  # the clock restarts at each delivery
    assert awaiting(store) == [("1.2.1", "lung", "lung-a", 130.0)]
    assert result(store, paths, "lung-a", 175.5) == pytest.approx(45.5)
    assert awaiting(store) == []
    assert result(store, paths, "lung-a", 180.0) is None  # the first only
    (study,) = store.study("1.2.1")
    assert (study["result_at"], study["derived_in"]) == (175.5, 2)  # every result counted in
    deliver(store, paths, "lung-a", 200.0)  # more after a result: awaited no more
    assert awaiting(store) == []


def test_only_the_pools_asked_for_are_listed_and_none_without_one(store):
    paths = Paths()
    for n, (worker, pool) in enumerate([("lung-a", "lung"), ("mr-a", "stroke")]):
        store.insert_route("c", f"1.2.{n}", worker, 100.0, pool)
        deliver(store, paths, worker, 110.0 + n, study=f"1.2.{n}", pool=pool)
    assert awaiting(store, ["lung"]) == [("1.2.0", "lung", "lung-a", 110.0)]
    assert [r[1] for r in awaiting(store, ["lung", "stroke"])] == ["lung", "stroke"]
    assert store.awaiting_results([]) == []
    (row,) = store.awaiting_results(["lung"])
    assert row == {"client": "c", "study_uid": "1.2.0", "pool": "lung", "worker": "lung-a",
                   "delivered_at": 110.0, "overdue_at": None}  # fmt: skip


def test_a_result_counts_from_the_worker_the_last_delivery_reached_not_one_moved_from(store):
    paths = Paths()
    store.insert_route("c", "1.2.1", "lung-a", 100.0, "lung")
    deliver(store, paths, "lung-a", 110.0)
    store.move_studies("lung-a", "lung-b", ["1.2.1"], client="c")
    deliver(store, paths, "lung-b", 120.0)  # the rest went to lung-b
    assert result(store, paths, "lung-a", 130.0) is None  # taken home, but lung-b owes one
    assert awaiting(store) == [("1.2.1", "lung", "lung-b", 120.0)]
    assert result(store, paths, "lung-b", 150.0) == 30.0
    assert awaiting(store) == []


def test_a_study_moved_after_its_last_delivery_awaits_the_worker_that_has_it(store):
    paths = Paths()
    store.insert_route("c", "1.2.1", "lung-a", 100.0, "lung")
    deliver(store, paths, "lung-a", 110.0)
    store.move_studies("lung-a", "lung-b", ["1.2.1"], client="c")  # nothing left to hand on
    assert awaiting(store) == [("1.2.1", "lung", "lung-a", 110.0)]
    assert result(store, paths, "lung-a", 140.0) == 30.0


def test_a_result_that_overtakes_its_deliverys_commit_counts_untimed(store):
    """A fast worker answers before its sender has committed the delivery."""
    paths = Paths()
    store.insert_route("c", "1.2.1", "lung-a", 100.0, "lung")
    queued = QueueItem("lung-a", WORKER, paths("lung-a"), "c", "1.2.1", "1.2.3", "9.1",
                       "1.2.840.10008.1.2.1", 10, 105.0, pool="lung")  # fmt: skip
    row = store.enqueue(queued)
    assert result(store, paths, "lung-a", 108.0) is None  # no delivery time to count from
    store.delivered(row, 109.0)
    assert awaiting(store) == []  # answered already


def test_a_retried_enqueue_of_the_first_result_is_not_timed_twice(store):
    paths = Paths()
    store.insert_route("c", "1.2.1", "lung-a", 100.0, "lung")
    deliver(store, paths, "lung-a", 110.0)
    assert result(store, paths, "lung-a", 120.0, path="spool/pacs/r.dcm") == 10.0
    assert result(store, paths, "lung-a", 121.0, path="spool/pacs/r.dcm") is None
    assert store.study("1.2.1")[0]["derived_in"] == 1


def test_a_result_from_another_clients_study_of_the_same_uid_clears_nothing(store):
    paths = Paths()
    store.insert_route("sthlm", "1.2.1", "lung-a", 100.0, "lung")
    store.insert_route("berlin", "1.2.1", "lung-b", 100.0, "lung")
    deliver(store, paths, "lung-a", 110.0, client="sthlm")
    deliver(store, paths, "lung-b", 111.0, client="berlin")
    assert result(store, paths, "lung-b", 130.0, client="berlin") == 19.0
    assert [(r["client"], r["worker"]) for r in store.awaiting_results(["lung"])] == [
        ("sthlm", "lung-a")
    ]


def test_routes_from_before_pools_are_listed_for_the_caller_to_place(store):
    paths = Paths()
    store.insert_route("c", "1.2.1", "lung-a", 100.0)  # pool '': from before pools were kept
    deliver(store, paths, "lung-a", 110.0, pool="")
    assert awaiting(store, ["stroke"]) == [("1.2.1", "", "lung-a", 110.0)]
    assert result(store, paths, "lung-a", 112.0, pool="") == 2.0


def test_a_route_is_noted_overdue_once_and_not_once_answered(store):
    paths = Paths()
    for study in ("1.2.1", "1.2.2"):
        store.insert_route("c", study, "lung-a", 100.0, "lung")
        deliver(store, paths, "lung-a", 110.0, study=study)
    result(store, paths, "lung-a", 120.0, study="1.2.2")
    routes = [("c", "1.2.1", "lung"), ("c", "1.2.2", "lung")]
    assert store.mark_overdue(routes, 2000.0) == [("c", "1.2.1", "lung")]
    assert store.mark_overdue(routes, 2001.0) == []
    assert [r["overdue_at"] for r in store.awaiting_results(["lung"])] == [2000.0]


@pytest.mark.sqlite_only
def test_the_awaiting_routes_are_read_by_their_index(store):
    store.insert_route("c", "1.2.1", "lung-a", 100.0, "lung")
    with sqlite3.connect(store.path) as db:
        plan = db.execute(
            "EXPLAIN QUERY PLAN SELECT client FROM studies WHERE result_at IS NULL "
            "AND delivered_at IS NOT NULL AND pool IN ('', 'lung')"
        ).fetchall()
    assert "studies_awaiting" in str(plan)


@pytest.mark.sqlite_only
def test_a_study_answered_before_the_upgrade_awaits_no_result_after_it(tmp_path):
    """The fixture (see test_store): study 1 of sthlm had a derived instance; study 2 none."""
    path = tmp_path / "state.sqlite3"
    shutil.copyfile(FIXTURE, path)
    store = SQLiteStore(path, durable=False)
    store.open()
    try:
        paths, uid = Paths(), "1.2.826.0.1.3680043.10.{}".format
        deliver(store, paths, "gpu-a", 5000.0, study=uid(1), pool="", client="sthlm")
        deliver(store, paths, "gpu-b", 5000.0, study=uid(2), pool="", client="berlin")
        assert [r["study_uid"] for r in store.awaiting_results(["stroke"])] == [uid(2)]
    finally:
        store.close()
