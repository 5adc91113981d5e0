"""A new route made atomically (Store.create_route), on SQLite and on PostgreSQL: the choice
rule, every node's load, and two nodes (two stores on one database) racing from threads."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any

import pytest

from tests.test_store import item
from wolfpacs.state.choice import Candidate, Choice, least_loaded
from wolfpacs.state.postgresql import LOCKS, lock_key
from wolfpacs.state.store import Placement

TWO = [Candidate("gpu-a", 1), Candidate("gpu-b", 1)]


def choice(
    candidates: list[Candidate], cutoff: float = 100.0, removed: str | None = None
) -> Choice:
    """A choice among ``candidates`` at 600.0, of the studies open since ``cutoff``."""
    return Choice(tuple(candidates), cutoff, 600.0, removed)


def test_the_rule_avoids_then_prefers_healthy_then_load_per_capacity_then_name():
    a, b, c = Candidate("a", 1), Candidate("b", 2), Candidate("c", 1)
    assert least_loaded([a, b, c], {"a": 1, "b": 1, "c": 1}).name == "b"  # 1/2 < 1/1
    assert least_loaded([a, b, c], {"a": 1, "b": 2, "c": 1}).name == "a"  # a tie: by name
    assert least_loaded([a, b, c], {"a": 0, "b": 0, "c": 1}, avoid={"a"}).name == "b"
    assert least_loaded([a, replace(b, healthy=False)], {"a": 5}).name == "a"
    assert least_loaded([a], {"a": 9}, avoid={"a"}).name == "a"  # no other: taken all the same
    assert least_loaded([replace(a, healthy=False)], {}).name == "a"  # every one down
    with pytest.raises(ValueError, match="no candidate"):
        least_loaded([], {})


def test_a_new_route_goes_to_the_least_loaded_and_a_standing_one_stays(store):
    store.insert_route("c", "busy", "gpu-a", 500.0)
    placed = store.create_route("c", "1.1", "", choice(TWO))
    assert placed.chosen and placed.route.worker == "gpu-b"
    assert placed.open_studies == {"gpu-a": 1, "gpu-b": 0}
    assert store.owners("1.1", "gpu-b") == ["c"]  # assigned: its results can go home
    again = store.create_route("c", "1.1", "", choice([Candidate("gpu-a", 5)]))
    assert not again.chosen and again.route == placed.route and again.open_studies == {}


def test_load_counts_queued_studies_and_not_idle_ones(store):
    for n in range(3):
        store.insert_route("c", f"idle.{n}", "gpu-a", 10.0)  # idle since before the cutoff
    store.insert_route("c", "queued", "gpu-b", 10.0)
    store.enqueue(replace(item("spool/gpu-b/q.dcm", study="queued", target="gpu-b"),
                          enqueued_at=20.0))  # fmt: skip
    placed = store.create_route("c", "1.1", "", choice(TWO))
    assert placed.open_studies == {"gpu-a": 0, "gpu-b": 1} and placed.route.worker == "gpu-a"


def test_a_worker_holding_the_uid_for_another_client_is_avoided_if_it_can_be(store):
    store.insert_route("other", "1.1", "gpu-a", 500.0)
    store.insert_route("c", "busy.1", "gpu-b", 500.0)
    store.insert_route("c", "busy.2", "gpu-b", 500.0)
    assert store.create_route("c", "1.1", "", choice(TWO)).route.worker == "gpu-b"
    only_a = [Candidate("gpu-a", 1)]
    assert store.create_route("d", "1.1", "", choice(only_a)).route.worker == "gpu-a"


def test_the_route_of_a_removed_worker_is_moved_once(store):
    store.insert_route("c", "1.1", "gone", 10.0, "lung")
    store.insert_route("c", "busy", "gpu-a", 500.0, "lung")
    moved = store.create_route("c", "1.1", "lung", choice(TWO, removed="gone"))
    assert moved.chosen and moved.route.worker == "gpu-b" and moved.route.routed_at == 10.0
    (study,) = store.study("1.1")
    assert study["worker"] == "gpu-b" and study["moved_from"] == "gone"
    assert store.owners("1.1", "gpu-b") == ["c"] and store.owners("1.1", "gone") == ["c"]
    # A second node that also saw the removed worker finds the route moved: it stands.
    late = store.create_route("c", "1.1", "lung", choice([Candidate("gpu-a")], removed="gone"))
    assert not late.chosen and late.route.worker == "gpu-b"


def test_a_route_from_before_pools_whose_worker_was_removed_is_moved(store):
    store.insert_route("c", "1.1", "gone", 10.0)  # pool '': written before pools
    placed = store.create_route("c", "1.1", "lung", choice(TWO, removed="gone"))
    assert placed.chosen and placed.route.pool == "" and placed.route.worker == "gpu-a"
    assert store.get_route("c", "1.1", "lung").worker == "gpu-a"


def test_no_candidate_for_a_new_route_is_the_callers_error(store):
    with pytest.raises(ValueError, match="no candidate"):
        store.create_route("c", "1.1", "lung", choice([]))
    assert store.get_route("c", "1.1", "lung") is None


def test_a_pools_lock_key_is_the_same_in_every_process_and_apart_from_other_programs():
    assert lock_key("route:lung") == (LOCKS, lock_key("route:lung")[1])
    assert lock_key("route:lung") != lock_key("route:stroke")
    assert all(-(2**31) <= n < 2**31 for n in lock_key("route:" + "x" * 300))
    # fixed by SHA-256, not by Python's per-process hash(): every node derives the same
    assert lock_key("route:") == (0x57504C42, 1882326369)


def race(stores: Any, nodes: int, work: Callable[[Any, int], Any]) -> list[Any]:
    """``work(store, n)`` for each node n, each in its own thread with its own store on the
    test's database (opened and closed in that thread), released at once."""
    start, answers, errors = threading.Barrier(nodes), [None] * nodes, []

    def run(n: int) -> None:
        store = stores.new()
        try:
            store.open()
            start.wait(30)
            answers[n] = work(store, n)
        except BaseException as exc:  # the test's thread reports it
            errors.append(exc)
            start.abort()
        finally:
            store.close()

    threads = [threading.Thread(target=run, args=(n,)) for n in range(nodes)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not errors, errors
    assert not any(thread.is_alive() for thread in threads)
    return answers


@pytest.mark.parametrize("capacities", [(1, 1), (2, 1)])
def test_two_nodes_racing_on_new_studies_of_one_pool_spread_them_evenly(stores, capacities):
    """Each node routes its own new studies, all at once: neither may pick a worker on loads
    the other is changing, so the spread is what one node alone would make."""
    stores.opened()  # the schema, made before the race
    pool = [Candidate("gpu-a", capacities[0]), Candidate("gpu-b", capacities[1])]
    per_node = 30

    def route(store: Any, n: int) -> list[Placement]:
        return [
            store.create_route("c", f"{n}.{k}", "lung", choice(pool, 0.0)) for k in range(per_node)
        ]

    placed = [p for node in race(stores, 2, route) for p in node]
    chosen = Counter(p.route.worker for p in placed)
    assert sum(chosen.values()) == 2 * per_node
    per_capacity = [chosen[c.name] / c.capacity for c in pool]
    assert abs(per_capacity[0] - per_capacity[1]) <= 1, chosen
    # One at a time: each choice saw every one made before it (so no two saw as many), and
    # the loads it saw were even at every step, not only at the end.
    seen = [p.open_studies for p in placed]
    assert sorted(sum(s.values()) for s in seen) == list(range(2 * per_node))
    assert all(abs(s["gpu-a"] / pool[0].capacity - s["gpu-b"] / pool[1].capacity) <= 1
               for s in seen), seen  # fmt: skip


def test_two_nodes_racing_on_the_same_new_studies_get_one_answer(stores):
    stores.opened()
    studies = [f"1.2.{k}" for k in range(30)]

    def route(store: Any, n: int) -> list[tuple[str, bool]]:
        # each node names only itself as the candidate: a second choice would show
        only = choice([Candidate(f"gpu-{n}")], 0.0)
        placed = [store.create_route("c", uid, "lung", only) for uid in studies]
        return [(p.route.worker, p.chosen) for p in placed]

    first, second = race(stores, 2, route)
    assert [w for w, _ in first] == [w for w, _ in second]
    assert all(a != b for (_, a), (_, b) in zip(first, second, strict=True))  # one chose each
    check = stores.opened()
    assert all(len(check.routes_of(uid)) == 1 for uid in studies)
    assert all(check.owners(uid, w) == ["c"] for uid, (w, _) in zip(studies, first, strict=True))


def test_two_routers_on_one_database_racing_on_new_studies_spread_them_evenly(stores):
    """Two nodes' routers (each its own store actor, on one database) route new studies of
    one client at once: the pool's two workers end with as many each."""
    from tests.test_router import Clock, Tree, config

    stores.opened()  # the schema, made before the race
    nodes = [Tree(stores.new, config(), Clock()) for _ in range(2)]
    try:

        def route(n: int) -> list[str]:
            return [nodes[n].route("sthlm", f"{n}.{k}") for k in range(20)]

        with ThreadPoolExecutor(2) as pool:
            chosen = Counter(w for worker in pool.map(route, range(2)) for w in worker)
        assert chosen == {"gpu-a": 20, "gpu-b": 20}, chosen
        # and either node finds every study where the other put it
        for n in range(2):
            for k in range(20):
                assert nodes[1 - n].route("sthlm", f"{n}.{k}") == nodes[n].route(
                    "sthlm", f"{n}.{k}"
                )
    finally:
        for node in nodes:
            node.stop()


def test_a_route_from_before_pools_moved_meanwhile_for_another_pool_stands(
    postgres_url, monkeypatch
):
    """Two nodes move one route from before pools (pool '') off a removed worker, each for
    its own pool (so under different locks): the second finds it moved and takes that."""
    from wolfpacs.state import placement
    from wolfpacs.state.postgresql import PostgreSQLStore

    first, second = (PostgreSQLStore(postgres_url, durable=False) for _ in range(2))
    for store in (first, second):
        store.open()
    try:
        first.insert_route("c", "1.1", "gone", 10.0)
        rule = placement.least_loaded

        def meanwhile(*args: Any, **kwargs: Any) -> Candidate:
            # the other node's move commits between this one's read and its update
            monkeypatch.setattr(placement, "least_loaded", rule)
            other = second.create_route(
                "c", "1.1", "stroke", choice([Candidate("st-a")], removed="gone")
            )
            assert other.chosen and other.route.worker == "st-a"
            return rule(*args, **kwargs)

        monkeypatch.setattr(placement, "least_loaded", meanwhile)
        late = first.create_route("c", "1.1", "lung", choice(TWO, removed="gone"))
        assert not late.chosen and late.route.worker == "st-a"
        assert first.get_route("c", "1.1", "lung").worker == "st-a"
    finally:
        for store in (first, second):
            store.close()
