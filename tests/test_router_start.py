"""The router's start: no call to the store from its supervisor's thread (OTP's handle_continue)."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from supervisors import ChildSpec, Registry, Supervisor
from tests.conftest import wait_until
from tests.test_router import config
from wolfpacs.config.live import LiveConfig
from wolfpacs.node.messages import DRAINING
from wolfpacs.node.router import Router
from wolfpacs.node.store import StoreActor, StoreClient


class SlowStore:
    """The store, but its worker states come only once ``gate`` is set."""

    def __init__(self, inner: StoreClient) -> None:
        self.inner = inner
        self.gate = threading.Event()
        self.loading = threading.Event()

    def worker_states(self) -> dict[str, str]:
        self.loading.set()
        assert self.gate.wait(10), "the test never let the store answer"
        return self.inner.worker_states()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def test_a_slow_store_blocks_neither_the_supervisor_nor_a_first_route(stores):
    registry = Registry()
    sup = Supervisor.start([ChildSpec("store", lambda: StoreActor.start(registry, stores.new))])
    slow = SlowStore(StoreClient(registry))
    try:
        slow.inner.set_worker_state("gpu-a", DRAINING)  # else gpu-a, first by name, would do
        spec = ChildSpec("router", lambda: Router.start(registry, LiveConfig(config()), slow))
        ref = sup.proxy().start_child(spec).get(timeout=2)  # not a wait for the store
        assert slow.loading.wait(5)  # the load is under way, in the router's own thread
        with ThreadPoolExecutor(1) as pool:
            answer = pool.submit(registry.call, "router", Router.route, "sthlm", "1.1")
            # The route waits in the inbox behind the load (and the first sweep).
            wait_until(lambda: ref.actor_inbox.qsize() >= 2, what="the route in the inbox")
            slow.gate.set()
            assert answer.result(timeout=10) == "gpu-b"  # the drained gpu-a was known
    finally:
        slow.gate.set()
        sup.stop()
