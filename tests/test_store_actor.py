"""The store in the tree: it answers the interface and nothing else; a broken backend reopens.

On both backends (tests/postgres.py): a backend breaks as its driver says it does."""

from __future__ import annotations

import sqlite3

import pytest

from supervisors import ChildSpec, Registry, Supervisor, UnavailableError
from tests.conftest import wait_until
from wolfpacs.node.store import StoreActor, StoreClient, StoreDownError, StoreRequest
from wolfpacs.state.store import OPERATIONS


class Failing:
    """A backend whose reads fail as a dying disk's or a lost server's do, while ``failing``."""

    failing = False
    backend: object

    def __init__(self, backend) -> None:
        self.backend = backend

    def __getattr__(self, name: str):
        if name == "get_route" and Failing.failing:
            raise broken(self.backend)
        return getattr(self.backend, name)


def broken(backend) -> Exception:
    """What the driver of ``backend`` raises when its file or its server is gone."""
    if type(backend).__name__ == "SQLiteStore":
        return sqlite3.OperationalError("disk I/O error")
    import psycopg

    return psycopg.OperationalError("server closed the connection unexpectedly")


def mistake(backend) -> type[Exception]:
    """What the driver of ``backend`` raises for a caller's bad value."""
    if type(backend).__name__ == "SQLiteStore":
        return sqlite3.ProgrammingError
    import psycopg

    return psycopg.ProgrammingError


@pytest.fixture
def store(stores):
    registry = Registry()
    opened: list[Failing] = []

    def backend() -> Failing:
        opened.append(Failing(stores.new(durable=False)))
        return opened[-1]

    sup = Supervisor.start([ChildSpec("store", lambda: StoreActor.start(registry, backend))])
    client = StoreClient(registry, timeout=5)
    client.opened = opened  # type: ignore[attr-defined]
    yield client
    Failing.failing = False
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


def test_inspect_counts_the_operations_it_answered(store):
    store.insert_route("sthlm", "1.2.1", "gpu-a", 10.0)
    for _ in range(3):
        store.get_route("sthlm", "1.2.1")
    seen = store.registry.whereis("store").proxy().inspect().get(timeout=10)
    # the actor's own ticks (its queues published) are no request: not counted
    assert seen["by_operation"] == {"get_route": 3, "insert_route": 1}
    assert seen["operations"] == 4 and seen["studies"] == 1 and seen["busy_s"] > 0


def test_a_broken_backend_fails_its_caller_then_is_opened_afresh_without_a_restart(store):
    store.insert_route("sthlm", "1.2.1", "gpu-a", 10.0)
    first = store.registry.whereis("store")
    Failing.failing = True
    with pytest.raises(UnavailableError, match="may have committed") as raised:
        store.get_route("sthlm", "1.2.1")
    assert not isinstance(raised.value, StoreDownError)  # it ran: its outcome is unknown
    assert isinstance(raised.value.__cause__, type(broken(store.opened[0].backend)))
    Failing.failing = False
    # An outage, not a crash: the same actor, unavailable a moment, then on a new backend.
    route = wait_until(lambda: _answer(store), what="the store serving again")
    assert route.worker == "gpu-a"  # the committed route, read from the reopened backend
    assert store.registry.whereis("store") is first and first.is_alive()
    assert len(store.opened) >= 2


def _answer(store):
    try:
        return store.get_route("sthlm", "1.2.1")
    except StoreDownError:
        return None


def test_a_callers_mistake_does_not_reopen_the_backend(store):
    with pytest.raises(mistake(store.opened[0].backend)):
        store.get_route("sthlm", {"not": "a UID"})  # type: ignore[arg-type]
    assert store.get_route("sthlm", "9.9") is None and len(store.opened) == 1


def test_the_actor_forgets_idle_studies_in_batches_and_then_waits_a_day(stores, monkeypatch):
    monkeypatch.setattr("wolfpacs.node.store.PURGE_BATCH", 2)
    registry = Registry()
    backend = stores.new()
    backend.open()
    for n in range(5):
        backend.insert_route("c", f"old.{n}", "gpu-a", 1000.0)  # decades ago
    backend.insert_route("c", "new", "gpu-a", 4e9)  # in a century
    backend.close()
    ref = StoreActor.start(registry, stores.new, lambda: 30.0)
    store = StoreClient(registry)
    try:
        registry.tell("store", "purge")  # what the timer sends, a minute after the start
        wait_until(lambda: store.count_studies() == 1, what="the old studies forgotten")
        assert store.studies()[0]["study_uid"] == "new"
        assert ref.proxy().purged.get() == 0  # done: the count is reset for tomorrow
    finally:
        ref.stop()
