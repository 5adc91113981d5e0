"""Results that never come back: overdue computed when asked, and a node that says so —
the verb, the gauge, the latency histogram, the status page and one audit line."""

from __future__ import annotations

import json
from dataclasses import replace

from pydicom import dcmread

from tests.conftest import wait_until
from tests.test_web import get
from wolfpacs.cli.ctl import parse_verb
from wolfpacs.config.model import Config, NodeConfig, Pool, Worker
from wolfpacs.node.board import AWAITING
from wolfpacs.node.results import overdue, overdue_counts, tracked_pools
from wolfpacs.ops.render import render

CONFIG = Config(
    node=NodeConfig(),
    workers=(Worker("lung-a", "127.0.0.1", 1, "LUNG_A", "lung"),
             Worker("lung-b", "127.0.0.1", 2, "LUNG_B", "lung"),
             Worker("mr-a", "127.0.0.1", 3, "MR_A", "stroke")),
    pools=(Pool("lung", result_timeout=60.0), Pool("stroke", result_timeout=0.0)),
)  # fmt: skip
KEYS = {"study", "client", "pool", "worker", "delivered_at", "waiting_s"}


def route(study: str, worker: str, delivered_at: float, pool: str = "lung", noted=None):
    return {"client": "c", "study_uid": study, "pool": pool, "worker": worker,
            "delivered_at": delivered_at, "overdue_at": noted}  # fmt: skip


def test_a_route_is_overdue_past_its_pools_timeout_the_longest_waiting_first():
    awaiting = [route("1", "lung-a", 940.0), route("2", "lung-b", 900.0),
                route("3", "lung-a", 990.0)]  # fmt: skip
    found = overdue(awaiting, CONFIG, 1000.0)
    assert [(o.study_uid, o.waiting_s) for o in found] == [("2", 100.0)]  # "1": at 60 s
    later = overdue(awaiting, CONFIG, 1030.5)
    assert [(o.study_uid, o.waiting_s) for o in later] == [("2", 130.5), ("1", 90.5)]
    (shown,) = [o.shown() for o in found]
    assert shown == {"study": "2", "client": "c", "pool": "lung", "worker": "lung-b",
                     "delivered_at": 900.0, "waiting_s": 100.0}  # fmt: skip


def test_only_pools_with_a_timeout_are_tracked_and_old_routes_count_in_their_workers():
    assert tracked_pools(CONFIG) == ["lung"]
    awaiting = [
        route("1", "mr-a", 0.0, pool="stroke"),  # a pool without a timeout
        route("2", "lung-a", 0.0, pool=""),  # from before pools: lung-a's pool, lung
        route("3", "mr-a", 0.0, pool=""),  # from before pools: mr-a's, stroke
        route("4", "gone", 0.0, pool=""),  # its worker removed: cannot be placed
        route("5", "gone", 0.0),  # ... but this one's pool is known
    ]
    found = overdue(awaiting, CONFIG, 1000.0)
    assert [(o.study_uid, o.pool, o.key[2]) for o in found] == [("2", "lung", ""),
                                                               ("5", "lung", "lung")]  # fmt: skip
    assert overdue_counts(awaiting, CONFIG, 1000.0) == {
        ("lung", "lung-a"): 1, ("lung", "lung-b"): 0, ("lung", "gone"): 1,
    }  # fmt: skip
    assert overdue(awaiting, replace(CONFIG, pools=()), 1000.0) == []


def test_the_verb_is_parsed_and_rendered_as_a_table():
    assert parse_verb(["overdue"]) == ("overdue", {})
    rows = [{"study": "1.2.3", "client": "sthlm", "pool": "lung", "worker": "lung-a",
             "delivered_at": 1.8e9, "waiting_s": 1500.0}]  # fmt: skip
    lines = render("overdue", rows, now=1.8e9 + 1500).splitlines()
    assert lines[0].split() == ["STUDY", "CLIENT", "POOL", "WORKER", "DELIVERED", "WAITING"]
    assert lines[1].split() == ["1.2.3", "sthlm", "lung", "lung-a", "25", "min", "ago", "25",
                                "min"]  # fmt: skip
    assert render("overdue", []) == "(none)"


# -- a node ---------------------------------------------------------------------------


def published_again(w) -> None:
    """Wait for the store's next publication: whatever its last one did is done."""
    board = w.node.metrics.board
    last = board.read(AWAITING).value
    wait_until(lambda: board.read(AWAITING).value is not last, what="a new publication")


def overdue_lines(caplog) -> list:
    return [r for r in caplog.records if getattr(r, "event", None) == "overdue"]


def test_a_silent_worker_is_overdue_until_its_result_comes_logged_once(world, caplog):
    w = world(pools=(Pool("demo", result_timeout=1.0),))
    for worker in w.workers:
        worker.quiet = 3600.0  # silent: it holds its derived series
    files = w.study("s", series=1, per_series=2)
    uid = str(dcmread(files[0], stop_before_pixels=True).StudyInstanceUID)
    assert w.send(files) == [0, 0]
    wait_until(lambda: w.delivered() == 2, what="the study at a worker")
    assert w.admin("overdue") == []  # delivered, not yet late
    (row,) = wait_until(lambda: w.admin("overdue"), timeout=10, what="the study overdue")
    assert set(row) == KEYS
    assert (row["study"], row["client"], row["pool"]) == (uid, "demo-hospital", "demo")
    assert row["worker"] in ("gpu-1", "gpu-2") and row["waiting_s"] > 1.0
    holder, other = row["worker"], {"gpu-1": "gpu-2", "gpu-2": "gpu-1"}[row["worker"]]

    def gauge(name: str, **labels: str) -> float:
        return w.node.metrics.value(name, **labels)  # this node's: w.node changes at a restart

    wait_until(lambda: gauge("wolfpacs_results_overdue", pool="demo", worker=holder) == 1)
    assert gauge("wolfpacs_results_overdue", pool="demo", worker=other) == 0
    code, page = get(w, "/")
    assert code == 200 and b"Overdue results" in page and uid.encode() in page
    code, body = get(w, "/api/overdue")
    assert code == 200 and [r["study"] for r in json.loads(body)] == [uid]

    wait_until(lambda: overdue_lines(caplog), what="the audit line")
    published_again(w)
    (line,) = overdue_lines(caplog)  # once, though still overdue at every tick
    assert (line.study, line.client, line.worker, line.pool) == (
        uid, "demo-hospital", holder, "demo")  # fmt: skip
    w.restart()  # noted in the store: a restarted node does not log it again
    wait_until(lambda: w.admin("overdue"), what="overdue after the restart")
    published_again(w)
    assert len(overdue_lines(caplog)) == 1

    w.workers[int(holder[-1]) - 1].answer_now(uid)
    wait_until(lambda: w.admin("overdue") == [], what="the result to clear it")
    wait_until(lambda: gauge("wolfpacs_results_overdue", pool="demo", worker=holder) == 0)
    latency = ("wolfpacs_result_latency_seconds", {"pool": "demo", "worker": holder})
    assert gauge(f"{latency[0]}_count", **latency[1]) == 1
    assert gauge(f"{latency[0]}_sum", **latency[1]) > 1.0
    assert gauge(f"{latency[0]}_count", pool="demo", worker=other) == 0


def test_a_worker_that_answers_in_time_is_never_overdue_and_its_latency_is_kept(world):
    w = world(pools=(Pool("demo", result_timeout=30.0),))
    assert w.send(w.study("s", series=1, per_series=2)) == [0, 0]
    wait_until(lambda: len(w.pacs.received) == 2, what="the derived series at the PACS")
    count = sum(w.node.metrics.value("wolfpacs_result_latency_seconds_count", pool="demo",
                                     worker=name) for name in ("gpu-1", "gpu-2"))  # fmt: skip
    assert count == 1  # one study, one first result: the rest of its series is not timed
    assert w.admin("overdue") == []
    assert not w.node.metrics.board.read(AWAITING).value  # answered: awaited no more
