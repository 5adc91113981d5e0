"""A database outage: the store actor rides it out, without a restart, and serves again after.

On a PostgreSQL of the test's own (tests/postgres.py, ``own_postgres``),
stopped and started again as a crashed or cut-off server would be.
"""

from __future__ import annotations

import logging
import threading
import time

import pytest

from supervisors import ChildSpec, Registry, StartError, Supervisor, UnavailableError
from tests.conftest import wait_until
from wolfpacs.node import outage
from wolfpacs.node.store import StoreActor, StoreClient, StoreDownError
from wolfpacs.state.postgresql import PostgreSQLStore

QUICK = 1.0  # seconds: an unavailable store answers at once, far below the clients' timeout


@pytest.fixture
def database(own_postgres):
    return own_postgres, own_postgres.create()


def _tree(open_backend, registry: Registry):
    # Restart intensity of one: a single restart of the store would show as the tree's end.
    spec = ChildSpec("store", lambda: StoreActor.start(registry, open_backend))
    return Supervisor.start([spec], max_restarts=1, max_seconds=60)


def _serving(store: StoreClient):
    try:
        return store.get_route("sthlm", "1.2.1") or "no route"
    except UnavailableError:
        return None


def test_an_outage_is_answered_at_once_and_ridden_out_without_a_restart(database, caplog):
    caplog.set_level(logging.INFO, logger="wolfpacs")
    server, url = database
    registry = Registry()
    sup = _tree(lambda: PostgreSQLStore(url, timeout=2), registry)
    store = StoreClient(registry, timeout=10)
    try:
        store.insert_route("sthlm", "1.2.1", "gpu-a", 10.0)
        first = registry.whereis("store")
        server.stop()
        with pytest.raises(UnavailableError):  # the first to find it gone: maybe committed
            store.get_route("sthlm", "1.2.1")
        # From then on every request is answered at once, and none is run.
        for _ in range(20):
            began = time.monotonic()
            with pytest.raises(StoreDownError, match="unavailable"):
                store.insert_route("sthlm", "1.2.2", "gpu-a", 11.0)
            assert time.monotonic() - began < QUICK
        assert registry.call("store", StoreActor.inspect)["state"] == "unavailable"
        server.start()
        route = wait_until(lambda: _serving(store), timeout=30, what="the store serving again")
        assert route.worker == "gpu-a"  # committed before the outage, still there
        assert store.get_route("sthlm", "1.2.2") is None  # refused during it: never written
        assert registry.whereis("store") is first and first.is_alive()  # no restart
        assert sup.is_alive()
        assert "store_unavailable" in {getattr(r, "event", "") for r in caplog.records}
        assert "store_available" in {getattr(r, "event", "") for r in caplog.records}
    finally:
        sup.stop()


def test_a_store_out_of_reach_at_its_start_starts_unavailable_and_opens_when_it_can(database):
    server, url = database
    server.stop()
    registry = Registry()
    sup = _tree(lambda: PostgreSQLStore(url, timeout=1), registry)  # returns: no StartError
    store = StoreClient(registry, timeout=10)
    try:
        began = time.monotonic()
        with pytest.raises(StoreDownError):
            store.ping()
        assert time.monotonic() - began < QUICK
        server.start()
        assert wait_until(lambda: _serving(store), timeout=30, what="the store open") == "no route"
        store.insert_route("sthlm", "1.2.1", "gpu-a", 10.0)
        assert store.get_route("sthlm", "1.2.1").worker == "gpu-a"
    finally:
        sup.stop()


class _Newer:
    """A backend whose open fails as a database of a newer WolfPACS does: waiting is no cure."""

    def open(self) -> None:
        raise RuntimeError("the database is of a newer WolfPACS")

    def is_broken(self, exc: BaseException) -> bool:
        return False

    def close(self) -> None:
        pass


def test_an_error_waiting_does_not_cure_still_fails_the_start():
    with pytest.raises(StartError, match="newer WolfPACS"):
        StoreActor.start(Registry(), _Newer)


class _Flaky:
    """A backend that cannot be reached for its first ``failures`` opens."""

    opened = 0
    failures = 3

    def open(self) -> None:
        _Flaky.opened += 1
        if _Flaky.opened <= _Flaky.failures:
            raise ConnectionError("connection refused")

    def is_broken(self, exc: BaseException) -> bool:
        return isinstance(exc, ConnectionError)

    def close(self) -> None:
        pass

    def describe(self) -> dict[str, str]:
        return {"url": "postgresql://db/wolfpacs"}


def test_wait_open_backs_off_logs_and_stops_when_told(monkeypatch, caplog):
    monkeypatch.setattr(outage, "FIRST", 0.01)
    _Flaky.opened, _Flaky.failures = 0, 3
    said: list[str] = []
    with caplog.at_level(logging.WARNING, logger="wolfpacs.node.outage"):
        backend = outage.wait_open(_Flaky, threading.Event(), "start", said.append)
    assert isinstance(backend, _Flaky) and _Flaky.opened == 4
    assert (
        said == ["the store at postgresql://db/wolfpacs cannot be reached: connection refused"] * 3
    )
    # (caplog hears every thread: only this wait's lines count, not another test's leftovers)
    lines = [r for r in caplog.records if "postgresql://db/wolfpacs" in r.getMessage()]
    assert len(lines) == 1  # one line per LOG_EVERY seconds, not one per try
    assert "/readyz is 503" in lines[0].getMessage()
    _Flaky.opened, _Flaky.failures = 0, 10**9
    stop = threading.Event()
    stop.set()
    assert outage.wait_open(_Flaky, stop) is None and _Flaky.opened == 0
    stop = threading.Event()
    threading.Timer(0.2, stop.set).start()
    assert outage.wait_open(_Flaky, stop) is None and _Flaky.opened >= 2
