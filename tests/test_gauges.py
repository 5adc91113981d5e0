"""The gauges: a scrape never waits on an actor, and an unknown value says so."""

from __future__ import annotations

import shutil
import threading
import time

import pytest

from supervisors import ChildSpec, StartError
from tests.conftest import wait_until
from tests.test_router import config
from tests.test_web import get
from wolfpacs.config.live import LiveConfig
from wolfpacs.node.board import QUEUES, STALE_AFTER, WORKERS, Board
from wolfpacs.ops.gauges import NodeCollector
from wolfpacs.state.spool import Spool

PROMPT = 1.0  # seconds: a scrape took 2 s per busy sender, and forever on a blocked root


def scrape(w) -> tuple[float, str]:
    """(seconds taken, the text) of one /metrics."""
    start = time.monotonic()
    code, body = get(w, "/metrics")
    assert code == 200
    return time.monotonic() - start, body.decode()


def test_a_scrape_waits_neither_on_a_blocked_sender_nor_on_a_blocked_root(world):
    w = world()
    held, release = threading.Event(), threading.Event()

    def hold(_item: object) -> int:  # the worker keeps the sender in its C-STORE
        held.set()
        release.wait(30)
        return 0x0000

    for worker in w.workers:
        worker.answer = hold
    root = w.node.root
    stuck = threading.Event()

    def start_stuck():  # a child whose start holds the root's thread
        stuck.wait(30)
        raise RuntimeError("let go by the test")

    try:
        assert w.send(w.study("s", series=1, per_series=3)) == [0, 0, 0]
        assert held.wait(10)
        queued = '_queue_instances{kind="worker",target="gpu-'

        def three_queued() -> bool:  # published by the store within a second
            text = scrape(w)[1]
            return f'{queued}1"}} 3.0' in text or f'{queued}2"}} 3.0' in text

        wait_until(three_queued, what="3 queued")
        seconds, text = scrape(w)
        assert seconds < PROMPT, f"a scrape took {seconds:.2f} s behind a busy sender"
        assert 'wolfpacs_gauge_unknown{source="queues"} 0.0' in text
        # Known before the root is blocked (a slow answer serves the next scrape).
        wait_until(lambda: 'wolfpacs_gauge_unknown{source="restarts"} 0.0' in scrape(w)[1])

        pending = root.proxy().start_child(ChildSpec("stuck", start_stuck))
        seconds, text = scrape(w)
        assert seconds < PROMPT, f"a scrape took {seconds:.2f} s behind a blocked root"
        assert 'wolfpacs_gauge_unknown{source="restarts"} 1.0' in text
        # The last known restarts stay, and the queues are there as ever.
        assert 'wolfpacs_actor_restarts_total{actor_type="router"} 0.0' in text
        assert f"{queued}1" in text and f"{queued}2" in text
        stuck.set()
        with pytest.raises(StartError):
            pending.get(timeout=10)
        wait_until(lambda: 'wolfpacs_gauge_unknown{source="restarts"} 0.0' in scrape(w)[1])
    finally:
        stuck.set()
        release.set()


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def samples(collector: NodeCollector) -> dict[str, float]:
    """``name{label=value,...}`` (labels sorted) -> value, of one collect()."""
    found = {}
    for family in collector.collect():
        for s in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(s.labels.items()))
            found[f"{s.name}{{{labels}}}"] = s.value
    return found


def test_a_value_never_published_or_gone_stale_shows_as_unknown_never_vanishes():
    clock = Clock()
    board = Board(clock)
    collector = NodeCollector(board, LiveConfig(config()), lambda: None)
    seen = samples(collector)
    assert seen["wolfpacs_gauge_unknown{source=queues}"] == 1
    assert seen["wolfpacs_gauge_unknown{source=workers}"] == 1
    assert seen["wolfpacs_gauge_unknown{source=restarts}"] == 1
    assert seen["wolfpacs_gauge_unknown{source=sender:gpu-a}"] == 1
    assert seen["wolfpacs_queue_instances{kind=worker,target=gpu-a}"] == 0
    assert seen["wolfpacs_worker_state{state=unknown,worker=gpu-a}"] == 1
    assert "wolfpacs_worker_open_studies{worker=gpu-a}" not in seen

    board.publish(QUEUES, {"gpu-a": {"kind": "worker", "instances": 4, "bytes": 40,
                                     "oldest": time.time()}})  # fmt: skip
    board.publish(WORKERS, {"states": {"gpu-a": "active", "gpu-b": "draining"},
                            "open_studies": {"gpu-a": 2}})  # fmt: skip
    board.publish("sender:gpu-a", False)
    board.publish("sender:pacs", True)
    seen = samples(collector)
    assert seen["wolfpacs_gauge_unknown{source=queues}"] == 0
    assert seen["wolfpacs_gauge_unknown{source=workers}"] == 0
    assert seen["wolfpacs_queue_instances{kind=worker,target=gpu-a}"] == 4
    assert seen["wolfpacs_worker_state{state=down,worker=gpu-a}"] == 1
    assert seen["wolfpacs_worker_state{state=drained,worker=gpu-b}"] == 1
    assert seen["wolfpacs_worker_open_studies{worker=gpu-a}"] == 2
    assert seen["wolfpacs_target_up{kind=worker,target=gpu-a}"] == 0
    assert seen["wolfpacs_target_up{kind=destination,target=pacs}"] == 1
    assert seen["wolfpacs_gauge_unknown{source=sender:gpu-b}"] == 1  # not published yet

    clock.now += STALE_AFTER + 1  # the store and the router have missed their ticks
    seen = samples(collector)
    assert seen["wolfpacs_gauge_unknown{source=queues}"] == 1
    assert seen["wolfpacs_gauge_unknown{source=workers}"] == 1
    assert seen["wolfpacs_queue_instances{kind=worker,target=gpu-a}"] == 4  # the last known
    assert seen["wolfpacs_worker_open_studies{worker=gpu-a}"] == 2
    assert seen["wolfpacs_gauge_unknown{source=sender:gpu-a}"] == 0  # published on change


def test_a_pool_whose_every_worker_is_down_or_unknown_has_none_reachable():
    board = Board()
    collector = NodeCollector(board, LiveConfig(config()), lambda: None)
    seen = samples(collector)
    assert seen["wolfpacs_pool_workers{pool=stroke}"] == 2
    assert seen["wolfpacs_pool_reachable_workers{pool=stroke}"] == 0  # not known: not reachable

    board.publish("sender:gpu-a", True)
    board.publish("sender:gpu-b", False)
    assert samples(collector)["wolfpacs_pool_reachable_workers{pool=stroke}"] == 1
    board.publish("sender:gpu-a", False)  # every worker down
    seen = samples(collector)
    assert seen["wolfpacs_pool_reachable_workers{pool=stroke}"] == 0
    assert seen["wolfpacs_pool_workers{pool=stroke}"] == 2
    board.publish("sender:pacs", True)  # a destination is no worker of any pool
    assert samples(collector)["wolfpacs_pool_reachable_workers{pool=stroke}"] == 0


def test_the_spool_gauges_show_its_limits_its_bytes_and_the_free_disk(tmp_path):
    spool = Spool(tmp_path, max_bytes=10 << 20, min_free=5 << 20)
    spool.prepare()
    collector = NodeCollector(Board(), LiveConfig(config()), lambda: None, spool)
    spool.queued_bytes = 1234  # as if an instance of that size were queued
    seen = samples(collector)
    assert seen["wolfpacs_spool_max_bytes{}"] == 10 << 20
    assert seen["wolfpacs_disk_min_free_bytes{}"] == 5 << 20
    assert seen["wolfpacs_spool_bytes{}"] == 1234
    disk = shutil.disk_usage(tmp_path)
    assert 0 < seen["wolfpacs_disk_free_bytes{}"] <= disk.total
    assert seen["wolfpacs_gauge_unknown{source=disk}"] == 0

    spool.root = tmp_path / "gone"  # data_dir unreadable: the last known value, said unknown
    seen = samples(collector)
    assert seen["wolfpacs_gauge_unknown{source=disk}"] == 1
    assert 0 < seen["wolfpacs_disk_free_bytes{}"] <= disk.total
    # Without a spool (as in the tests above), no room gauges at all.
    assert not any("spool" in k or "disk" in k for k in samples(NodeCollector(
        Board(), LiveConfig(config()), lambda: None)))  # fmt: skip
