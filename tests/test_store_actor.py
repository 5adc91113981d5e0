"""The store in the tree: it answers the interface and nothing else; a broken backend restarts."""

from __future__ import annotations

import sqlite3

import pytest

from supervisors import ChildSpec, Registry, Supervisor, join
from tests.conftest import wait_until
from wolfpacs.node.store import StoreActor, StoreClient, StoreRequest
from wolfpacs.state.sqlite import SQLiteStore
from wolfpacs.state.store import OPERATIONS


class FailingDisk(SQLiteStore):
    """SQLite whose reads fail as a dying disk's do, while ``failing`` is set."""

    failing = False

    def get_route(self, client: str, study_uid: str, pool: str = ""):
        if FailingDisk.failing:
            raise sqlite3.OperationalError("disk I/O error")
        return super().get_route(client, study_uid, pool)


@pytest.fixture
def store(tmp_path):
    registry = Registry()
    path = tmp_path / "state.sqlite3"
    opened: list[SQLiteStore] = []

    def backend() -> SQLiteStore:
        opened.append(FailingDisk(path, durable=False))
        return opened[-1]

    sup = Supervisor.start([ChildSpec("store", lambda: StoreActor.start(registry, backend))])
    client = StoreClient(registry, timeout=5)
    client.opened = opened  # type: ignore[attr-defined]
    yield client
    FailingDisk.failing = False
    sup.stop()


def test_the_client_has_every_operation_of_the_interface():
    public = {name for name in vars(StoreClient) if not name.startswith("_")}
    assert public == OPERATIONS | {"fenced"}  # and the one way to make a fenced client
    assert "close" not in OPERATIONS and "open" not in OPERATIONS


def test_the_actor_answers_the_interface_and_refuses_the_rest(store):
    store.insert_route("sthlm", "1.2.1", "gpu-a", 10.0)
    with pytest.raises(ValueError, match="no operation 'close'"):
        store.registry.ask("store", StoreRequest("close"))
    with pytest.raises(AttributeError):
        store.registry.call("store", "close")  # the backend's methods are not the actor's
    assert store.get_route("sthlm", "1.2.1").worker == "gpu-a"  # still open, still serving
    assert len(store.opened) == 1


def test_a_broken_backend_fails_its_caller_then_is_opened_afresh(store):
    store.insert_route("sthlm", "1.2.1", "gpu-a", 10.0)
    first = store.registry.whereis("store")
    FailingDisk.failing = True
    with pytest.raises(sqlite3.OperationalError):
        store.get_route("sthlm", "1.2.1")
    FailingDisk.failing = False
    assert join(first, timeout=10) is not None  # the actor crashed, as it must
    assert (
        store.get_route("sthlm", "1.2.1").worker == "gpu-a"
    )  # its successor opened the file again
    assert len(store.opened) == 2 and store.registry.whereis("store") is not first


def test_a_callers_mistake_does_not_reopen_the_backend(store):
    with pytest.raises(sqlite3.ProgrammingError):
        store.get_route("sthlm", ["not", "a", "UID"])  # type: ignore[arg-type]
    assert store.get_route("sthlm", "9.9") is None and len(store.opened) == 1


def test_the_actor_forgets_idle_studies_in_batches_and_then_waits_a_day(tmp_path, monkeypatch):
    monkeypatch.setattr("wolfpacs.node.store.PURGE_BATCH", 2)
    registry, path = Registry(), tmp_path / "state.sqlite3"
    backend = SQLiteStore(path, durable=False)
    backend.open()
    for n in range(5):
        backend.insert_route("c", f"old.{n}", "gpu-a", 1000.0)  # decades ago
    backend.insert_route("c", "new", "gpu-a", 4e9)  # in a century
    backend.close()
    ref = StoreActor.start(registry, lambda: SQLiteStore(path, durable=False), lambda: 30.0)
    store = StoreClient(registry)
    try:
        registry.tell("store", "purge")  # what the timer sends, a minute after the start
        wait_until(lambda: store.count_studies() == 1, what="the old studies forgotten")
        assert store.studies()[0]["study_uid"] == "new"
        assert ref.proxy().purged.get() == 0  # done: the count is reset for tomorrow
    finally:
        ref.stop()
