"""A peer that comes back gets its queue at once, however long its backoff had grown.

The backoffs here are 30 s: a delivery within a few seconds of the worker's
return can only come from a probe (C-ECHO), ``retry`` or ``resume``.
"""

from __future__ import annotations

import pytest

from tests.conftest import wait_until
from wolfpacs.ops.verbs import AdminError

LONG = {"retry_initial": 30.0, "retry_max": 30.0}


def _queued_behind_a_backoff(w) -> str:
    """Both workers down, a study acknowledged: the name of the worker it waits for."""
    for wk in w.workers:
        wk.stop()
    assert w.send(w.study("s", series=1, per_series=3)) == [0, 0, 0]
    waiting = wait_until(lambda: [q["target"] for q in w.admin("queues") if q["instances"]],
                         what="a queue")  # fmt: skip
    name = waiting[0]
    wait_until(lambda: w.node.registry.call(f"sender:{name}", "inspect")["backoff_s"] > 5,
               what="the sender in backoff")  # fmt: skip
    return name


def _worker(w, name: str) -> dict:
    return next(row for row in w.admin("workers") if row["name"] == name)


def test_a_worker_that_answers_a_probe_gets_its_queue_and_loses_its_last_error(world):
    w = world(**LONG)  # the default probe_interval: back within 10 s, as the README says
    name = _queued_behind_a_backoff(w)
    assert _worker(w, name)["state"] == "down" and _worker(w, name)["last_error"]
    for wk in w.workers:
        wk.start()
    wait_until(lambda: w.delivered() == 3, timeout=10, what="the queue delivered by the probe")
    # the rows go a moment after the worker has the files (after the batch's answers)
    wait_until(lambda: _worker(w, name)["queued"] == 0, what="the delivered rows gone")
    row = _worker(w, name)
    assert (row["state"], row["last_error"]) == ("active", None)


def test_retry_ends_a_backoff_without_probes(world):
    w = world(**LONG, probe_interval=0)
    name = _queued_behind_a_backoff(w)
    for wk in w.workers:
        wk.start()
    answer = w.admin("retry", target=name)
    assert answer == {"target": name, "kind": "worker", "queued": 3, "retrying": True}
    wait_until(lambda: w.delivered() == 3, timeout=5, what="the queue delivered by retry")
    with pytest.raises(AdminError, match="no worker or destination 'nobody'"):
        w.admin("retry", target="nobody")


def test_resume_tries_the_worker_now(world):
    w = world(**LONG, probe_interval=0)
    name = _queued_behind_a_backoff(w)
    for wk in w.workers:
        wk.start()
    w.admin("drain", worker=name)
    w.admin("resume", worker=name)
    wait_until(lambda: w.delivered() == 3, timeout=5, what="the queue delivered by resume")


def test_each_peer_is_asked_at_the_start_so_its_health_is_known_at_once(world):
    w = world(echo_interval=60.0)  # the default: without the first C-ECHO, a minute unknown
    seen = lambda: {row["name"]: row["up"] for row in w.admin("workers")}  # noqa: E731
    wait_until(lambda: seen() == {"gpu-1": True, "gpu-2": True}, timeout=5, what="both known")
    assert [wk.associations for wk in w.workers] == [1, 1]  # the C-ECHOs, nothing else
