"""Nodes' leases in the store, on SQLite and on PostgreSQL: register, renew, expiry, adoption
(one of two racing adopters wins), and the fence a late node meets (wolfpacs.state.leases)."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from tests.conftest import wait_until
from tests.test_store import item

LONG = 60.0  # a lease that does not run out during a test
SHORT = 0.3  # one that does, soon


def node(stores: Any, node_id: str) -> Any:
    """A store of the test's database, open, for node ``node_id``."""
    store = stores.new()
    store.node_id = node_id
    store.open()
    stores._opened.append(store)
    return store


def by_id(store: Any) -> dict[str, dict[str, Any]]:
    return {n["node_id"]: n for n in store.nodes()}


def dead(store: Any, node_id: str) -> bool:
    return by_id(store)[node_id]["state"] == "dead"


def test_a_node_registers_with_a_new_epoch_at_every_start(stores):
    a = node(stores, "a")
    first = a.register_node(LONG)
    assert a.renew_lease(first, LONG)
    again = a.register_node(LONG)  # started again
    assert again == first + 1
    assert not a.renew_lease(first, LONG)  # the old incarnation is fenced
    assert a.renew_lease(again, LONG)
    seen = by_id(a)["a"]
    assert seen["state"] == "alive" and seen["epoch"] == again and seen["queued"] == 0
    assert seen["last_heartbeat"] <= seen["expires_at"] and seen["adopted_from"] == []


def test_a_lease_not_renewed_expires_and_a_renewal_before_adoption_holds(stores):
    a = node(stores, "a")
    epoch = a.register_node(SHORT, True)
    wait_until(lambda: dead(a, "a"), timeout=5, what="the lease to expire")
    assert a.renew_lease(epoch, LONG)  # nobody adopted it: the epoch is the fence, not the clock
    assert by_id(a)["a"]["state"] == "alive"


def test_a_live_node_adopts_the_queue_of_a_dead_one_and_the_late_node_meets_the_fence(stores):
    a, b = node(stores, "a"), node(stores, "b")
    epoch_a = a.register_node(SHORT, True)
    rows = [
        a.enqueue(item(f"spool/a/{t}/{n}.dcm", study=f"1.{t}", target=t))
        for t in ("w1", "w2")
        for n in (1, 2)
    ]
    b.enqueue(item("spool/b/w1/9.dcm", target="w1"))
    epoch_b = b.register_node(LONG)
    assert b.adopt_expired(epoch_b) == []  # a is alive still
    wait_until(lambda: dead(b, "a"), timeout=5, what="a's lease to expire")
    [taken] = b.adopt_expired(epoch_b)
    assert taken["node_id"] == "a" and taken["rows"] == 4 and taken["targets"] == ["w1", "w2"]
    assert taken["epoch"] == epoch_a + 1
    assert {i.id for i in b.next_items("w1") + b.next_items("w2")} >= set(rows)
    assert [i.path for i in b.next_items("w1")][-1] == "spool/b/w1/9.dcm"
    # the late node: none of its adopted rows is its own any more
    assert a.next_items("w1") == [] and a.items_of("w2") == []
    assert a.delivered(rows[0]) is False
    assert a.delivered_next([rows[1]], "w1") == ([], [])
    assert a.failed_attempt(rows[2], "late") == 0
    assert a.remove_item(rows[2]) is False and a.retarget(rows[3], "w9", "x") is False
    assert not a.renew_lease(epoch_a, LONG)  # and it learns so at its next renewal
    assert b.delivered(rows[0]) is True  # the adopter's to deliver
    seen = by_id(b)
    assert seen["a"]["adopted_by"] == "b" and seen["a"]["state"] == "dead"
    assert seen["a"]["queued"] == 0 and seen["b"]["queued"] == 4
    assert seen["b"]["adopted_from"] == ["a"]
    assert b.adopt_expired(epoch_b) == []  # nothing left to take


def test_of_two_racing_adopters_exactly_one_takes_a_dead_nodes_queue(stores):
    a, b, c = node(stores, "a"), node(stores, "b"), node(stores, "c")
    a.register_node(SHORT, True)
    for n in range(20):
        a.enqueue(item(f"spool/a/w1/{n}.dcm", target="w1"))
    epochs = {b: b.register_node(LONG), c: c.register_node(LONG)}
    wait_until(lambda: dead(b, "a"), timeout=5, what="a's lease to expire")
    start = threading.Barrier(2)
    results: dict[str, list[dict[str, Any]]] = {}

    def adopt(name: str, epoch: int) -> None:  # a connection of its own, in its thread
        store = stores.new()
        store.node_id = name
        store.open()
        try:
            start.wait()
            results[name] = store.adopt_expired(epoch)
        finally:
            store.close()

    threads = [threading.Thread(target=adopt, args=(s.node_id, e)) for s, e in epochs.items()]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    winners = [name for name, taken in results.items() if taken]
    assert len(results) == 2 and len(winners) == 1
    assert results[winners[0]][0]["rows"] == 20
    assert by_id(b)["a"]["adopted_by"] == winners[0] and by_id(b)[winners[0]]["queued"] == 20


def test_a_node_whose_own_lease_lapsed_or_epoch_moved_adopts_nothing(stores):
    a, b = node(stores, "a"), node(stores, "b")
    a.register_node(SHORT, True)
    a.enqueue(item("spool/a/w1/1.dcm", target="w1"))
    epoch_b = b.register_node(SHORT, True)
    wait_until(lambda: dead(b, "a") and dead(b, "b"), timeout=5, what="both leases to expire")
    assert b.adopt_expired(epoch_b) == []  # it may be adopted itself: it takes nothing
    assert b.renew_lease(epoch_b, LONG)
    assert b.adopt_expired(epoch_b + 1) == []  # not its epoch
    assert b.adopt_expired(epoch_b)[0]["rows"] == 1


def test_rows_a_late_node_queues_after_its_adoption_stay_its_own_and_are_adopted_later(stores):
    a, b = node(stores, "a"), node(stores, "b")
    a.register_node(SHORT, True)
    a.enqueue(item("spool/a/w1/1.dcm", target="w1"))
    epoch_b = b.register_node(LONG)
    wait_until(lambda: dead(b, "a"), timeout=5, what="a's lease to expire")
    assert b.adopt_expired(epoch_b)[0]["rows"] == 1
    late = a.enqueue(item("spool/a/w1/2.dcm", target="w1"))  # it did not know yet
    assert [i.id for i in a.next_items("w1")] == [late]
    [again] = b.adopt_expired(epoch_b)  # a dead node is adopted again while it owns rows
    assert again["node_id"] == "a" and again["rows"] == 1 and a.next_items("w1") == []


def test_a_node_that_comes_back_takes_a_new_epoch_and_only_its_own_rows(stores):
    a, b = node(stores, "a"), node(stores, "b")
    epoch_a = a.register_node(SHORT, True)
    a.enqueue(item("spool/a/w1/1.dcm", target="w1"))
    epoch_b = b.register_node(LONG)
    wait_until(lambda: dead(b, "a"), timeout=5, what="a's lease to expire")
    b.adopt_expired(epoch_b)
    back = a.register_node(LONG)
    assert back == epoch_a + 2  # one for the adoption, one for the return
    assert a.next_items("w1") == [] and len(b.next_items("w1")) == 1
    seen = by_id(a)["a"]
    assert seen["state"] == "alive" and seen["adopted_by"] is None


def test_rows_from_before_nodes_were_kept_become_the_first_registered_nodes(stores):
    legacy = node(stores, "")
    old = legacy.enqueue(item("spool/w1/1.dcm", target="w1"))
    a = node(stores, "a")
    assert a.next_items("w1") == []
    a.register_node(LONG)
    assert [i.id for i in a.next_items("w1")] == [old]
    assert a.queued_paths() == {"spool/w1/1.dcm"} == a.queued_paths(all_nodes=True)


def test_a_node_whose_spool_is_its_own_is_never_adopted_its_queue_waits(stores):
    a, b = node(stores, "a"), node(stores, "b")
    a.register_node(SHORT, shared_spool=False)
    a.enqueue(item("spool/w1/1.dcm", target="w1"))
    epoch_b = b.register_node(LONG, shared_spool=True)
    wait_until(lambda: dead(b, "a"), timeout=5, what="a's lease to expire")
    assert b.adopt_expired(epoch_b) == []
    seen = by_id(b)["a"]
    assert seen["queued"] == 1 and seen["adopted_by"] is None and seen["shared_spool"] is False


def test_a_dead_node_that_owns_nothing_can_be_forgotten_and_no_other(stores):
    a, b = node(stores, "a"), node(stores, "b")
    a.register_node(SHORT)
    row = a.enqueue(item("spool/a/w1/1.dcm", target="w1"))
    epoch_b = b.register_node(LONG)
    for refused, why in (("b", "is alive"), ("nobody", "no node 'nobody'")):
        with pytest.raises(ValueError, match=why):
            b.forget_node(refused)
    wait_until(lambda: dead(b, "a"), timeout=5, what="a's lease to expire")
    with pytest.raises(ValueError, match="still owns 1 queued instances"):
        b.forget_node("a")  # its queue would have no one to deliver it
    assert set(by_id(b)) == {"a", "b"}  # refused: nothing changed
    a.remove_item(row)  # delivered, say, by a itself before it went
    assert b.forget_node("a") == {"forgot": "a"}
    assert set(by_id(b)) == {"b"}
    assert b.renew_lease(epoch_b, LONG)  # the others' leases go on
    assert a.register_node(LONG) == 1  # started again after all: it registers afresh
