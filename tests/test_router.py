"""The router: stickiness under any interleaving, least-loaded choice, restarts.

On both backends (``stores``: tests/postgres.py)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from supervisors import ChildSpec, Registry, Supervisor, join, kill
from wolfpacs.config import Client, Config, Destination, NodeConfig, Worker
from wolfpacs.config.live import LiveConfig
from wolfpacs.node.messages import TargetHealth
from wolfpacs.node.router import (
    AMBIGUOUS_STUDY,
    NOT_YOUR_STUDY,
    UNKNOWN_STUDY,
    Home,
    NotHomeError,
    NoWorkerError,
    Router,
    choose_worker,
)
from wolfpacs.node.store import StoreActor, StoreClient
from wolfpacs.state.store import WORKER, Backend, QueueItem


class Clock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def config(capacities: dict[str, int] | None = None, idle: float = 600.0) -> Config:
    capacities = capacities or {"gpu-a": 1, "gpu-b": 1}
    return Config(
        node=NodeConfig(study_idle_timeout=idle),
        destinations=(Destination("pacs", "127.0.0.1", 1, "PACS"),),
        clients=(
            Client("sthlm", "STHLM", "pacs", "stroke"),
            Client("gbg", "GBG", "pacs", "stroke"),
        ),
        workers=tuple(
            Worker(n, "127.0.0.1", 2, n.upper(), "stroke", c) for n, c in capacities.items()
        ),
    )


class Tree:
    """A store and a router under one supervisor, as in the node."""

    def __init__(self, backend: Callable[[], Backend], cfg: Config, clock: Clock | None = None):
        self.live = LiveConfig(cfg)
        self.registry = Registry()
        reg = self.registry
        self.store = StoreClient(reg)
        self.sup = Supervisor.start(
            [
                ChildSpec("store", lambda: StoreActor.start(reg, backend)),
                ChildSpec(
                    "router",
                    lambda: Router.start(reg, self.live, self.store, clock=clock or Clock()),
                ),
            ],
            max_restarts=100,
        )

    def route(self, client: str, study: str) -> str:
        return self.registry.call("router", Router.route, client, study)

    def kill(self, name: str) -> None:
        ref = self.registry.whereis(name)
        kill(ref)
        join(ref, timeout=10)

    def stop(self) -> None:
        self.sup.stop()


@pytest.fixture
def tree(stores):
    """Trees on a new database each, of each backend in turn (tests/postgres.py)."""
    trees: list[Tree] = []

    def make(cfg: Config | None = None, clock: Clock | None = None) -> Tree:
        trees.append(Tree(stores.fresh(), cfg or config(), clock))
        return trees[-1]

    yield make
    for t in trees:
        t.stop()


def test_a_study_stays_on_its_worker_and_another_clients_uid_is_another_study(tree):
    t = tree()
    first = t.route("sthlm", "1.1")
    assert t.route("sthlm", "1.1") == first
    # the same UID from another client: its own study, on another worker of the pool, so
    # that the results of the two can never be confused
    other = t.route("gbg", "1.1")
    assert other != first and t.route("gbg", "1.1") == other
    assert t.route("sthlm", "1.1") == first
    assert {r.client: r.worker for r in t.store.routes_of("1.1")} == {"sthlm": first, "gbg": other}


def test_least_loaded_by_capacity(tree):
    t = tree(config({"gpu-a": 2, "gpu-b": 1}))
    chosen = [t.route("sthlm", f"1.{n}") for n in range(6)]
    assert chosen == ["gpu-a", "gpu-b", "gpu-a", "gpu-b", "gpu-a", "gpu-a"]
    assert chosen.count("gpu-a") == 4


def test_idle_studies_stop_counting_but_queued_ones_do_not(tree, tmp_path):
    clock = Clock()
    t = tree(config(idle=60), clock)
    assert t.route("sthlm", "old") == "gpu-a"
    clock.now += 120  # "old" has been idle for longer than study_idle_timeout
    assert t.route("sthlm", "new-1") == "gpu-a"
    # a study with an instance still queued stays open however old it is
    queued = QueueItem(
        "gpu-a", WORKER, "spool/gpu-a/x.dcm", "sthlm", "new-1", "1.2", "1.3", "1.2", 1
    )
    t.store.enqueue(replace(queued, enqueued_at=clock.now))
    clock.now += 120
    assert t.route("sthlm", "new-2") == "gpu-b"


def test_unknown_client_and_empty_pool_refuse(tree):
    t = tree()
    with pytest.raises(NoWorkerError, match="unknown client"):
        t.route("nobody", "1.1")
    t2 = tree()
    for name in ("gpu-a", "gpu-b"):
        t2.store.set_worker_state(name, "draining")
    t2.kill("router")  # a restarted router reads the states back
    with pytest.raises(NoWorkerError, match="no active worker"):
        t2.route("sthlm", "1.1")


def test_a_worker_known_down_gets_no_new_study(tree):
    t = tree()
    t.registry.call("router", Router.target_health, "gpu-a", False)
    assert [t.route("sthlm", f"1.{n}") for n in range(3)] == ["gpu-b"] * 3
    t.registry.tell("router", TargetHealth("gpu-b", False))  # as a sender tells it
    t.registry.call("router", Router.inspect)  # (told before this call: handled by now)
    assert t.route("sthlm", "2.0") == "gpu-a"  # all down: the least loaded still takes it


def test_results_go_home_only_from_a_worker_the_study_was_given(tree):
    t = tree()
    worker = t.route("gbg", "1.1")
    stranger = next(w for w in ("gpu-a", "gpu-b") if w != worker)

    def home(uid: str, worker: str) -> Home:
        return t.registry.call("router", Router.return_route, uid, worker)

    found = home("1.1", worker)
    assert (found.client, found.destination, found.pool) == ("gbg", "pacs", "stroke")
    with pytest.raises(NotHomeError) as refused:
        home("1.1", stranger)
    assert refused.value.reason == NOT_YOUR_STUDY
    with pytest.raises(NotHomeError) as refused:
        home("9.9", worker)
    assert refused.value.reason == UNKNOWN_STUDY


def test_one_worker_holding_a_uid_for_two_clients_is_never_guessed_between(tree):
    t = tree(config({"gpu-a": 1}))  # a pool of one: the collision cannot be avoided
    assert t.route("sthlm", "1.1") == t.route("gbg", "1.1") == "gpu-a"
    with pytest.raises(NotHomeError) as refused:
        t.registry.call("router", Router.return_route, "1.1", "gpu-a")
    assert refused.value.reason == AMBIGUOUS_STUDY


def test_restarts_rebuild_the_same_table(tree):
    t = tree()
    before = {f"1.{n}": t.route("sthlm", f"1.{n}") for n in range(10)}
    t.kill("router")
    assert {s: t.route("sthlm", s) for s in before} == before
    t.kill("store")
    assert {s: t.route("sthlm", s) for s in before} == before


def test_choose_worker_prefers_healthy_then_load_then_name():
    a, b, c = (Worker(n, "h", 1, n, "p", cap) for n, cap in (("a", 1), ("b", 2), ("c", 1)))
    assert choose_worker([a, b, c], {"a": 1, "b": 1, "c": 1}, set()).name == "b"
    assert choose_worker([a, b, c], {"a": 1, "b": 2, "c": 1}, set()).name == "a"
    assert choose_worker([a, b, c], {}, {"a", "b"}).name == "c"


STUDIES = st.lists(st.sampled_from([f"1.2.{n}" for n in range(12)]), min_size=1, max_size=15)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    associations=st.lists(
        st.tuples(st.sampled_from(["sthlm", "gbg"]), STUDIES), min_size=1, max_size=5
    ),
    crash_after=st.integers(0, 20),
)
def test_stickiness_under_any_interleaving_and_a_router_crash(stores, associations, crash_after):
    """Concurrent associations send instances of overlapping studies; the router may crash.

    Two clients send the same UIDs too: each client's study is sticky on its own.
    """
    t = Tree(stores.fresh(), config({"gpu-a": 1, "gpu-b": 2, "gpu-c": 1}))
    answers: dict[tuple[str, str], set[str]] = {}
    lock = threading.Lock()
    sent = threading.Semaphore(0)

    def association(client: str, studies: list[str]) -> None:
        for study in studies:
            worker = t.route(client, study)
            with lock:
                answers.setdefault((client, study), set()).add(worker)
            sent.release()

    try:
        with ThreadPoolExecutor(len(associations)) as pool:
            futures = [pool.submit(association, c, s) for c, s in associations]
            total = sum(len(s) for _, s in associations)
            for _ in range(min(crash_after, total)):
                sent.acquire()
            t.kill("router")
            for f in futures:
                f.result(timeout=30)
        for (client, study), workers in answers.items():
            assert len(workers) == 1, f"study {study} of {client} went to {workers}"
            (route,) = [r for r in t.store.routes_of(study) if r.client == client]
            assert workers == {route.worker}
    finally:
        t.stop()
