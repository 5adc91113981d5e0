"""The router with rules: a pool per series, one worker per pool per study, kept decisions."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.test_router import Clock, Tree
from wolfpacs.config import Client, Config, Destination, NodeConfig, Worker
from wolfpacs.config.model import DISCARD, Condition, Rule
from wolfpacs.node.router import NoPoolError, Router

RULES = (
    Rule((Condition("Modality", "CT"), Condition("SeriesDescription", "(?i).*(chest|lung).*")),
         pool="lung"),
    Rule((Condition("Modality", "SR|PR|KO"),), action=DISCARD),
)  # fmt: skip
POOLS = {"stroke": ("st-a", "st-b"), "lung": ("lu-a", "lu-b", "lu-c")}


def config(default: str | None = "stroke") -> Config:
    return Config(
        node=NodeConfig(),
        destinations=(Destination("pacs", "127.0.0.1", 1, "PACS"),),
        clients=(
            Client("sthlm", "STHLM", "pacs", default, rules=RULES),
            Client("gbg", "GBG", "pacs", default, rules=RULES),
        ),
        workers=tuple(
            Worker(n, "127.0.0.1", 2, n.upper(), pool) for pool, ns in POOLS.items() for n in ns
        ),
    )


KINDS = {  # a series' attributes, and the pool its rules give it (None: discarded)
    "mr": ({"Modality": ("MR",)}, "stroke"),
    "chest": ({"Modality": ("CT",), "SeriesDescription": ("CT CHEST",)}, "lung"),
    "head": ({"Modality": ("CT",), "SeriesDescription": ("HEAD",)}, "stroke"),
    "sr": ({"Modality": ("SR",)}, None),
}


def route(t: Tree, client: str, study: str, series: str, kind: str):
    return t.registry.call("router", Router.route_series, client, study, series, KINDS[kind][0])


def test_each_series_goes_to_its_rules_pool_and_each_pool_of_a_study_to_one_worker(stores):
    t = Tree(stores.fresh(), config())
    try:
        answers = {kind: route(t, "sthlm", "1.1", f"1.1.{kind}", kind) for kind in KINDS}
        assert answers["sr"].discard and answers["sr"].rule == 1 and not answers["sr"].worker
        assert answers["chest"].worker in POOLS["lung"] and answers["chest"].rule == 0
        assert answers["mr"].worker in POOLS["stroke"] and answers["mr"].rule is None
        assert answers["head"].worker == answers["mr"].worker  # one stroke worker per study
        assert route(t, "sthlm", "1.1", "1.1.chest2", "chest").worker == answers["chest"].worker
        kept = t.store.get_series("sthlm", "1.1", "1.1.sr")
        assert (kept["action"], kept["rule"]) == (DISCARD, 1)
    finally:
        t.stop()


def test_a_series_keeps_its_first_decision_when_the_rules_change(stores):
    t = Tree(stores.fresh(), config())
    try:
        first = route(t, "sthlm", "1.1", "1.1.1", "chest")
        assert first.worker in POOLS["lung"]
        cfg = t.live.get()
        t.live.set(replace(cfg, clients=tuple(replace(c, rules=()) for c in cfg.clients)))
        t.kill("router")  # its cache goes with it: the store keeps the decision
        assert route(t, "sthlm", "1.1", "1.1.1", "chest") == first
        assert route(t, "sthlm", "1.1", "1.1.2", "chest").worker in POOLS["stroke"]  # new rules
    finally:
        t.stop()


def test_a_client_without_default_pool_refuses_what_no_rule_takes(stores):
    t = Tree(stores.fresh(), config(default=None))
    try:
        with pytest.raises(NoPoolError, match="no rule matched"):
            route(t, "sthlm", "1.1", "1.1.1", "mr")
        assert t.store.get_series("sthlm", "1.1", "1.1.1") is None  # refusals are not kept
        assert route(t, "sthlm", "1.1", "1.1.2", "chest").worker in POOLS["lung"]
    finally:
        t.stop()


def test_a_route_from_before_pools_serves_its_workers_pool(stores):
    t = Tree(stores.fresh(), config())
    try:
        t.store.insert_route("sthlm", "1.1", "st-b", 10.0)  # pool '': written before rules
        assert route(t, "sthlm", "1.1", "1.1.1", "mr").worker == "st-b"
        assert route(t, "sthlm", "1.1", "1.1.2", "chest").worker in POOLS["lung"]
    finally:
        t.stop()


SERIES = st.lists(
    st.tuples(st.sampled_from(["1.2.1", "1.2.2", "1.2.3"]), st.integers(0, 5),
              st.sampled_from(sorted(KINDS))),
    min_size=1, max_size=12,
)  # fmt: skip


@settings(
    max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    associations=st.lists(
        st.tuples(st.sampled_from(["sthlm", "gbg"]), SERIES), min_size=1, max_size=4
    ),
    crash_after=st.integers(0, 20),
)
def test_per_pool_stickiness_under_any_interleaving_and_a_router_crash(
    stores, associations, crash_after
):
    """Concurrent associations send series of overlapping studies; the router may crash.

    A series number stands for its UID within its study; the first kind sent of a series
    decides it (later instances of the series keep that decision, whatever they say).
    """
    t = Tree(stores.fresh(), config(), Clock())
    decided: dict[tuple[str, str, str], set[str | None]] = {}
    workers: dict[tuple[str, str, str], set[str]] = {}
    lock = threading.Lock()
    sent = threading.Semaphore(0)

    def association(client: str, series: list[tuple[str, int, str]]) -> None:
        for study, number, kind in series:
            routed = route(t, client, study, f"{study}.{number}", kind)
            pool = None if routed.discard else routed.pool
            with lock:
                decided.setdefault((client, study, f"{study}.{number}"), set()).add(pool)
                if not routed.discard:
                    workers.setdefault((client, study, routed.pool), set()).add(routed.worker)
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
        for key, pools in decided.items():
            assert len(pools) == 1, f"series {key} was decided twice: {pools}"
        for (client, study, pool), chosen in workers.items():
            assert len(chosen) == 1, f"{client}'s study {study} in {pool} went to {chosen}"
            assert chosen <= set(POOLS[pool])
    finally:
        t.stop()
