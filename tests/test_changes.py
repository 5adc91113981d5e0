"""Runtime changes reach every node sharing a store (wolfpacs.node.changes, state.notify).

The store's part on both backends (the history read by seq, moves recorded, NOTIFY at
commit on PostgreSQL); then nodes in-process: two sharing one PostgreSQL (with and without
notifications, and the delay each gives), and one on SQLite whose file another process
writes (polling only).
"""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Callable
from typing import Any

import psycopg
import pytest

from supervisors import UnavailableError
from wolfpacs.config.live import MOVE, apply
from wolfpacs.node.messages import ACTIVE, DRAINING
from wolfpacs.node.router import Router
from wolfpacs.ops.verbs import AdminError
from wolfpacs.state.notify import RECONNECTED, ChangeListener
from wolfpacs.state.postgresql import PostgreSQLStore
from wolfpacs.state.sqlite import SQLiteStore

DEADLINE = 5.0  # seconds a test waits for a change to show (it should take one at most)


def wait_for(check: Callable[[], Any], deadline: float = DEADLINE) -> float:
    """Poll ``check`` until it is true; the seconds it took (fails past ``deadline``)."""
    started = time.monotonic()
    while not check():
        assert time.monotonic() - started < deadline, "not within the deadline"
        time.sleep(0.005)
    return time.monotonic() - started


# -- the store -------------------------------------------------------------------------


def test_the_history_is_read_by_seq(store):
    assert store.last_change() == 0 and store.changes_since(0) == []
    store.add_runtime_change("worker", "gpu-c", {"name": "gpu-c"})
    store.add_runtime_change("worker", "gpu-c", None)
    history = store.changes_since(0)
    assert [(kind, name, table) for _, kind, name, table in history] == [
        ("worker", "gpu-c", {"name": "gpu-c"}), ("worker", "gpu-c", None),
    ]  # fmt: skip
    first, last = history[0][0], history[1][0]
    assert first < last == store.last_change()
    assert [n for n, *_ in store.changes_since(first)] == [last]
    assert store.changes_since(last) == []


def test_a_move_with_an_origin_is_recorded_in_the_same_history(store):
    store.insert_route("sthlm", "1.2.1", "gpu-a", time.time(), "stroke")
    store.move_studies("gpu-a", "gpu-b", ["1.2.1"])  # a node's own re-route: not recorded
    assert store.changes_since(0) == []
    store.move_studies("gpu-b", "gpu-c", ["1.2.1"], origin="node-b")
    store.move_studies("gpu-b", "gpu-c", ["1.2.1"], origin="node-b")  # nothing moved: nothing
    [(_, kind, name, table)] = store.changes_since(0)
    assert (kind, name, table) == (MOVE, "gpu-b", {"to": "gpu-c", "origin": "node-b"})
    assert store.runtime_changes() == [(MOVE, "gpu-b", {"to": "gpu-c", "origin": "node-b"})]


def test_a_move_in_the_history_changes_no_config(tmp_path):
    from wolfpacs.cli.demo import demo_config
    from wolfpacs.testing.peers import SimulatedPACS, SimulatedWorker

    config = demo_config(tmp_path, SimulatedPACS("PACS"), [SimulatedWorker("GPU_A", 1)], 1, 2)
    assert apply(config, [(MOVE, "gpu-a", {"to": "gpu-b", "origin": "x"})]) == config


def listening(url: str) -> tuple[ChangeListener, list[str], threading.Event]:
    heard: list[str] = []
    listener = ChangeListener(url, heard.append)
    stop = threading.Event()
    threading.Thread(target=listener.run, args=(stop,), daemon=True).start()
    wait_for(lambda: RECONNECTED in heard)
    return listener, heard, stop


def test_postgresql_notifies_at_commit_and_a_broken_listener_connects_again(postgres_url, postgres):
    store = PostgreSQLStore(postgres_url)
    store.open()
    listener, heard, stop = listening(postgres_url)
    try:
        store.add_runtime_change("worker", "gpu-c", None)
        wait_for(lambda: "changes" in heard)
        store.set_worker_state("gpu-a", DRAINING)
        wait_for(lambda: "states" in heard)
        # The listening connection killed (as a server restart or a network cut would):
        # it connects again by itself, and says so (what was sent meanwhile is lost).
        with psycopg.connect(postgres_url, autocommit=True) as db:
            db.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query LIKE "
                "'LISTEN%%' AND pid <> pg_backend_pid()"
            )
        wait_for(lambda: heard.count(RECONNECTED) == 2)
        assert listener.failures == 1
        store.delete_worker_state("gpu-a")
        wait_for(lambda: heard.count("states") == 2)
    finally:
        stop.set()
        store.close()


# -- nodes sharing a store -------------------------------------------------------------


def state_of(world, worker: str) -> str:
    return world.node.registry.call("router", Router.worker_state, worker)


def sender_of(world, name: str) -> bool:
    return world.node.registry.whereis(f"sender:{name}") is not None


def changes_of(world) -> dict[str, Any]:
    """The watcher's inspect(); {} while it restarts, or is busy (waiting for the store)."""
    try:
        state = world.admin("inspect", actor="changes")["state"]
    except AdminError:  # between two lives
        return {}
    return state if state and "looks" in state else {}


def store_is_back(w) -> bool:
    try:
        return w.node.store.ping()
    except UnavailableError:  # StoreDownError too: still reconnecting
        return False


@pytest.fixture
def pair(world, postgres_url, monkeypatch):
    """Two nodes on one PostgreSQL database; ``pair(notifications=False)`` for polling only
    on the second."""
    from wolfpacs.node import tree

    def make(notifications: bool = True):
        a = world(store=postgres_url, node_id="node-a")  # (two nodes: two ids, two leases)
        if not notifications:
            monkeypatch.setattr(tree.Node, "listen", lambda self: None)
        b = world(store=postgres_url, node_id="node-b")
        return a, b

    return make


def test_a_drain_a_resume_and_an_added_worker_reach_the_other_node(pair):
    a, b = pair()
    wait_for(lambda: changes_of(b)["listening"])
    a.admin("drain", worker="gpu-1")
    wait_for(lambda: state_of(b, "gpu-1") == DRAINING)
    a.admin("resume", worker="gpu-1")
    wait_for(lambda: state_of(b, "gpu-1") == ACTIVE)
    port = b.workers[0].port
    a.admin("add-worker", name="gpu-c", host="127.0.0.1", port=port, ae_title="GPU_C",
            pool="demo")  # fmt: skip
    wait_for(lambda: b.node.live.get().worker("gpu-c") is not None and sender_of(b, "gpu-c"))
    assert [w["name"] for w in b.admin("workers")] == ["gpu-1", "gpu-2", "gpu-c"]
    a.admin("remove-worker", name="gpu-c")
    wait_for(lambda: b.node.live.get().worker("gpu-c") is None and not sender_of(b, "gpu-c"))
    # Each node applied the other's changes once, and its own never again.
    assert changes_of(a)["applied"] == 0
    assert changes_of(b)["applied"] == 4  # drain, resume, add, remove


def test_a_change_made_here_is_not_made_again_nor_after_the_watcher_restarts(pair):
    a, b = pair()
    a.admin("add-worker", name="gpu-c", host="127.0.0.1", port=a.workers[0].port,
            ae_title="GPU_C", pool="demo")  # fmt: skip
    a.admin("drain", worker="gpu-c")
    wait_for(lambda: state_of(b, "gpu-c") == DRAINING)
    live = a.node.live.get()
    looks = changes_of(a)["looks"]
    wait_for(lambda: changes_of(a)["looks"] >= looks + 2)  # it has looked since
    assert changes_of(a)["applied"] == 0 and a.node.live.get() is live  # not even re-set
    a.admin("kill", actor="changes")
    # (None while it restarts)
    wait_for(lambda: (s := changes_of(a)).get("looks", 0) >= 2 and s["seq"] is not None)
    assert changes_of(a)["applied"] == 0 and a.node.live.get() is live
    assert sender_of(a, "gpu-c")


def test_a_move_on_one_node_makes_the_other_forget_its_cached_route(pair):
    a, b = pair()
    route = a.node.registry.call("router", Router.route, "demo-hospital", "1.2.9")  # cached on A
    other = "gpu-2" if route == "gpu-1" else "gpu-1"
    moved = b.admin("move", worker=route, to=other, studies=["1.2.9"])
    assert moved["studies"] == 1
    wait_for(lambda: changes_of(a)["applied"] == 1)
    assert a.node.registry.call("router", Router.route, "demo-hospital", "1.2.9") == other
    assert changes_of(b)["applied"] == 0  # its own move


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_move_elsewhere_hands_this_node_s_queue_for_the_worker_on(world, backend, request):
    # Backoffs of a minute: only the hand-over the move asks for explains a quick delivery.
    url = request.getfixturevalue("postgres_url") if backend == "postgresql" else "sqlite"
    a = world(store=url, retry_initial=60.0, retry_max=60.0)
    a.workers[0].stop()  # gpu-1's worker: the study goes to it (first by name), and waits
    files = a.study("s", series=1, per_series=4, study_uid="1.2.826.0.1.77")
    assert a.send(files) == [0] * 4
    assert a.node.registry.call("router", Router.route, "demo-hospital", "1.2.826.0.1.77") == (
        "gpu-1"
    )
    wait_for(lambda: a.admin("inspect", actor="sender:gpu-1")["state"]["backoff_s"] > 0)
    # Another node moves the study (here: another process on the store, as its router would).
    other = PostgreSQLStore(url) if backend == "postgresql" else SQLiteStore(a.node.db_path)
    other.open()
    try:
        moved = other.move_studies("gpu-1", "gpu-2", ["1.2.826.0.1.77"], 0.0, None, "node-z")
        assert moved[0]["queued"] == 4
    finally:
        other.close()
    wait_for(lambda: len(a.workers[1].received) == 4)
    assert a.node.registry.call("router", Router.route, "demo-hospital", "1.2.826.0.1.77") == (
        "gpu-2"
    )


def test_several_changes_at_once_are_all_applied_in_order(pair):
    a, b = pair()
    port = a.workers[0].port

    def add(name: str) -> None:
        a.admin("add-worker", name=name, host="127.0.0.1", port=port,
                ae_title=name.upper().replace("-", "_"), pool="demo")  # fmt: skip

    threads = [threading.Thread(target=add, args=(f"gpu-n{n}",)) for n in range(5)]
    for thread in threads:
        thread.start()
    b.admin("add-worker", name="gpu-x", host="127.0.0.1", port=port, ae_title="GPU_X",
            pool="demo")  # fmt: skip
    for thread in threads:
        thread.join()
    names = {f"gpu-n{n}" for n in range(5)} | {"gpu-x", "gpu-1", "gpu-2"}
    for node in (a, b):
        wait_for(lambda node=node: {w.name for w in node.node.live.get().workers} == names
                 and all(sender_of(node, name) for name in names))  # fmt: skip


def test_a_node_on_sqlite_sees_another_process_s_changes_by_polling(world, tmp_path):
    a = world()
    assert changes_of(a)["listening"] is None  # SQLite: nothing to listen to
    other = SQLiteStore(a.node.db_path)  # another process on the same file
    other.open()
    try:
        other.set_worker_state("gpu-2", DRAINING)
        other.add_runtime_change("destination", "pacs-2", {
            "name": "pacs-2", "host": "127.0.0.1", "port": a.pacs.port, "ae_title": "PACS",
        })  # fmt: skip
        took = wait_for(lambda: state_of(a, "gpu-2") == DRAINING and sender_of(a, "pacs-2"))
        assert took < 2.5
    finally:
        other.close()


def test_an_unreachable_store_is_looked_at_again_without_a_crash(pair, postgres_url):
    a, b = pair()
    name = postgres_url.rsplit("/", 1)[1]
    with psycopg.connect(postgres_url.rsplit("/", 1)[0] + "/postgres", autocommit=True) as db:
        # Every connection of the database refused a moment: the store's and the listener's.
        db.execute(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS false')
        db.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                   "WHERE datname = %s AND pid <> pg_backend_pid()", (name,))  # fmt: skip
        try:
            wait_for(lambda: changes_of(a).get("failures", 0) > 0, deadline=30)
        finally:
            db.execute(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS true')
    wait_for(lambda: changes_of(a).get("listening"), deadline=30)
    wait_for(lambda: store_is_back(a), deadline=30)  # its store actor rode the outage out too
    # It looks again, and a change made now shows (through the other node's store too).
    a.node.store.set_worker_state("gpu-1", DRAINING)
    wait_for(lambda: state_of(b, "gpu-1") == DRAINING, deadline=15)
    restarts = {c["id"]: c.get("restarts", 0) for c in a.node.describe()["children"]}
    assert restarts["changes"] == 0  # never crashed


@pytest.mark.parametrize("notifications", [True, False], ids=["notify", "polling"])
def test_how_long_a_drain_takes_to_reach_the_other_node(pair, notifications, capsys):
    a, b = pair(notifications)
    if notifications:
        wait_for(lambda: changes_of(b)["listening"])
    delays = []
    for n in range(6):
        state = DRAINING if n % 2 == 0 else ACTIVE
        started = time.monotonic()
        a.node.registry.call("router", Router.set_worker_state, "gpu-1", state)
        wait_for(lambda state=state: state_of(b, "gpu-1") == state)
        delays.append(time.monotonic() - started)
    with capsys.disabled():
        print(
            f"\npropagation ({'NOTIFY' if notifications else 'polling only'}): median "
            f"{statistics.median(delays) * 1000:.0f} ms, max {max(delays) * 1000:.0f} ms"
        )
    assert max(delays) < (0.5 if notifications else 1.5)
