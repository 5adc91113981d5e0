"""The store in the supervision tree: the actor that owns the backend, and the client actors use.

:class:`StoreActor`, registered as ``store``, opens a backend
(:class:`wolfpacs.state.store.Backend`) in its own thread and runs every
operation there, one at a time. It answers :class:`StoreRequest` s for the
operations of :class:`~wolfpacs.state.store.Store` and nothing else: no
caller can close its connection or reach past the interface.

:class:`~wolfpacs.node.storeclient.StoreClient` is the
:class:`~wolfpacs.state.store.Store` the other actors, the operator's
verbs and the HTTP port hold (re-exported here).

It publishes the queues (``queue_stats()``) and the routes awaiting a
result (``awaiting_results()`` of the pools that track results) on its
``board`` every ``PUBLISH_EVERY`` seconds, between two operations: the
gauges read them there and never wait for the store
(:mod:`wolfpacs.node.board`). At the same tick it writes the audit line of
each route newly overdue (:mod:`wolfpacs.node.results`), once: the store
notes the route as logged (``mark_overdue``), across restarts and nodes.

Errors: an operation's exception goes back to the caller unchanged, but for
one that means the backend cannot be reached (:meth:`Backend.is_broken`: a
server or connection lost, a failing disk): an outage, ridden out, not a
crash (:mod:`wolfpacs.node.outage`). The caller gets ``UnavailableError``
(the operation was under way: it may have committed); the actor closes the
backend and stays registered, *unavailable*: it answers every request at
once with :class:`StoreDownError` (the operation did not run), so that a
receiver answers 0xA702 and ``/readyz`` 503 at once, while a linked thread
tries to open a backend with a capped backoff. When one opens, the actor
opens its own (in its own thread: SQLite's connections are bound to one),
serves again, and tells every sender (:class:`~wolfpacs.node.messages.StoreBack`):
queue rows a database crash lost are made again from the spool. A backend
out of reach at ``on_start`` leaves the actor started, unavailable. So an
outage of any length costs no restart, and restart intensity keeps its
meaning. An error of ``open`` no waiting cures (a database of a newer
WolfPACS) fails the start, or crashes the actor from its linked thread: its
supervisor decides. Committed state is whole: each operation is a
transaction. A caller that finds no store in ``timeout`` s gets ``UnavailableError``.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import pykka

from supervisors import Registry, SupervisedActor, UnavailableError
from wolfpacs.node.board import AWAITING, PUBLISH_EVERY, QUEUES, Board
from wolfpacs.node.messages import StoreBack
from wolfpacs.node.outage import describe, unreachable, wait_open
from wolfpacs.node.results import overdue, tracked_pools
from wolfpacs.node.storeclient import NAME, StoreClient, StoreDownError, StoreRequest
from wolfpacs.state.store import OPERATIONS, Backend

if TYPE_CHECKING:
    from wolfpacs.config.model import Config

# The client, its requests and StoreDownError live in node.storeclient (what callers hold).
__all__ = ["StoreActor", "StoreClient", "StoreDownError", "StoreRequest"]

PURGE_FIRST = 60.0  # seconds after a start before the first purge: let recovery's rush pass
PURGE_EVERY = 86400.0  # seconds between two purges
PURGE_BATCH = 500  # studies forgotten in one transaction
_PURGE = "purge"
_PUBLISH = "publish"
_REOPEN = "reopen"  # from the linked thread: the backend can be reached again

logger = logging.getLogger(__name__)
R = TypeVar("R")


class StoreActor(SupervisedActor):
    """Registered as ``store``: owns one backend, opened by ``open_backend()`` at its start.

    It also forgets, once a day (and soon after it starts), the studies idle
    for longer than ``retention_days()`` (0: never), a few hundred to a
    transaction, each batch a message of its own so that the enqueues of
    received instances get their turn between; then it compacts the history
    of runtime changes. ``config()``, the node's live config, says which
    pools track results and their timeouts (None: none does). ``probe_backend()``:
    the backend an outage's tries open (quicker to give up; default ``open_backend``).
    """

    def __init__(
        self,
        registry: Registry,
        open_backend: Callable[[], Backend],
        retention_days: Callable[[], float] = lambda: 0.0,
        *,
        board: Board | None = None,
        config: Callable[[], Config] | None = None,
        probe_backend: Callable[[], Backend] | None = None,
    ) -> None:
        super().__init__()
        self.registry = registry
        self._open_backend = open_backend
        self._probe_backend = probe_backend or open_backend  # quicker tries, in an outage
        self._retention_days = retention_days
        self._config = config
        self.board = board or Board()
        self._backend: Backend | None = None
        self.purged = 0  # studies forgotten by this actor
        # Operations answered by this actor, by name: each is one transaction of the backend
        # (a round trip or more to a server). `inspect store` shows them; the bench counts them.
        self.operations: Counter[str] = Counter()
        self.busy_s = 0.0  # seconds spent answering them: how near the one thread is to full
        self._down: str | None = None  # why the store is unavailable; None: it is not
        self._down_since = 0.0  # time.monotonic() when it became so
        self._down_at = 0.0  # and time.time(): what a file's mtime is compared with
        self._waiting = False  # a linked thread tries to open a backend
        self._stopping = threading.Event()  # tells that thread to give up

    @property
    def backend(self) -> Backend:
        if self._backend is None:
            raise StoreDownError(f"the store is unavailable: {self._down or 'not open'}")
        return self._backend

    def on_start(self) -> None:
        backend = self._open_backend()
        try:
            backend.open()
        except Exception as exc:
            if not unreachable(backend, exc):
                raise  # no waiting cures it: the start fails, the supervisor decides
            self._lose(exc, describe(backend), during=None)
        else:
            self._backend = backend
        self.registry.register(NAME, self.actor_ref)
        self.send_after(PURGE_FIRST, _PURGE)
        self._publish()

    def on_stop(self) -> None:
        self._close()

    def on_failure(self, *_exc_info: object) -> None:
        self._close()

    def _close(self) -> None:
        self._stopping.set()
        backend, self._backend = self._backend, None
        if backend is not None:
            backend.close()

    def _lose(self, exc: BaseException, where: str, during: str | None) -> None:
        """The backend cannot be reached: close it, answer "unavailable", wait for it.

        ``during``: the operation that found it so (None: the first open).
        """
        backend, self._backend = self._backend, None
        if backend is not None:
            with contextlib.suppress(Exception):  # it is broken already: close what is left
                backend.close()
        if self._down is None:
            self._down_since = time.monotonic()
            self._down_at = time.time()
        self._down = " ".join(str(exc).split()) or type(exc).__name__
        if during is not None:
            logger.warning(
                "store: lost the store at %s during %s (%s); new instances are refused (0xA702) "
                "until it is back", where, during, self._down, extra={"event": "store_unavailable"},
            )  # fmt: skip
        if not self._waiting:
            self._waiting = True
            self.start_thread(self._wait_for_backend, name="store-reopen")

    def _wait_for_backend(self) -> None:
        """In a linked thread: until a backend opens; then the actor opens its own.

        What ``wait_open`` raises (an error no waiting cures) crashes the actor.
        """
        backend = wait_open(self._probe_backend, self._stopping, "store")
        if backend is None:
            return  # the actor stops
        backend.close()  # a probe: the actor's own is opened in its own thread
        with contextlib.suppress(pykka.ActorDeadError):
            self.actor_ref.tell(_REOPEN)

    def _reopen(self) -> None:
        """The linked thread found the backend reachable: open the actor's own."""
        self._waiting = False
        backend = self._open_backend()
        try:
            backend.open()
        except Exception as exc:
            if not unreachable(backend, exc):
                raise  # told: the actor crashes, its supervisor decides
            self._lose(exc, describe(backend), during=None)  # gone again at once: wait on
            return
        self._backend = backend
        logger.info("store: available again after %.1f s: new instances are taken",
                    time.monotonic() - self._down_since,
                    extra={"event": "store_available"})  # fmt: skip
        self._down = None
        # Rows a crash of the database lost, or whose commit it cut short: each sender
        # gives the files of its queue from before the outage their row again.
        back = StoreBack(self._down_at)
        for name in self.registry.names():
            if name.startswith("sender:"):
                self.registry.tell(name, back)

    def _run(self, operation: str, *args: Any) -> Any:
        """``operation`` of the backend; an outage if it finds the backend unreachable.

        Raises:
            StoreDownError: the store is unavailable (the operation did not run).
            UnavailableError: the operation found the backend unreachable (it may
                have committed all the same).
            Exception: the operation's, unchanged.
        """
        backend = self.backend
        try:
            return getattr(backend, operation)(*args)
        except Exception as exc:
            if not unreachable(backend, exc):
                raise
            self._lose(exc, describe(backend), during=operation)
            raise UnavailableError(
                f"the store was lost during {operation} (it may have committed): {self._down}"
            ) from exc

    def on_receive(self, message: Any) -> Any:
        if isinstance(message, StoreRequest):
            if message.operation not in OPERATIONS:
                raise ValueError(f"the store has no operation {message.operation!r}")
            if self._backend is None:
                raise StoreDownError(f"the store is unavailable: {self._down or 'not open'}")
            if message.fence is not None:
                message.fence.check()  # here, in turn with every other operation: no race
            self.operations[message.operation] += 1
            started = time.perf_counter()
            try:
                return self._run(message.operation, *message.args)
            finally:
                self.busy_s += time.perf_counter() - started
        if message == _PURGE:
            self._tick(self._purge, PURGE_FIRST, _PURGE)
            return None
        if message == _PUBLISH:
            self._tick(self._publish, PUBLISH_EVERY, _PUBLISH)
            return None
        if message == _REOPEN:
            self._reopen()
            return None
        return super().on_receive(message)

    def _tick(self, work: Callable[[], None], again: float, message: str) -> None:
        """A timer's ``work``; while the store is unavailable, the timer again in ``again`` s.

        A told message that raised would crash the actor: an outage must not.
        """
        if self._backend is not None:
            with contextlib.suppress(UnavailableError):  # lost under it: _run began the wait
                work()
                return
        self.send_after(again, message)

    def _purge(self) -> None:
        """One batch of the daily purge; the next batch, or the next day, by message."""
        days = self._retention_days()
        if days > 0:
            forgotten = self._run("purge", time.time() - days * 86400, PURGE_BATCH)
            self.purged += forgotten
            if forgotten == PURGE_BATCH:
                self.actor_ref.tell(_PURGE)  # more: after what waits in the inbox
                return
            compacted = self._run("compact_runtime_changes")
            if self.purged or compacted:
                logger.info("purge: %d studies idle over %g days forgotten, %d runtime changes "
                            "compacted", self.purged, days, compacted)  # fmt: skip
        self.purged = 0
        self.send_after(PURGE_EVERY, _PURGE)

    def _publish(self) -> None:
        """The queues on the board, and the next publication in ``PUBLISH_EVERY`` s.

        A tick a blocked store misses leaves the last queues to age: the
        gauges then call them unknown, rather than wait for the store.
        """
        if self._backend is None:  # unavailable (at the start): the next tick
            self.send_after(PUBLISH_EVERY, _PUBLISH)
            return
        self.board.publish(QUEUES, self._run("queue_stats"))
        config = self._config() if self._config is not None else None
        pools = tracked_pools(config) if config is not None else []
        awaiting = self._run("awaiting_results", pools) if pools else []
        self.board.publish(AWAITING, awaiting)
        if config is not None and awaiting:
            self._log_overdue(config, awaiting)
        self.send_after(PUBLISH_EVERY, _PUBLISH)

    def _log_overdue(self, config: Config, awaiting: list[dict[str, Any]]) -> None:
        """The audit line of each route newly overdue: the one the store notes now."""
        now = time.time()
        late = {o.key: o for o in overdue(awaiting, config, now) if not o.noted}
        if not late:
            return
        for key in self._run("mark_overdue", list(late), now):
            o = late[key]
            logger.warning(
                "study %s of client %s: no result from worker %s of pool %s for %.0f s since "
                "its last delivery (result_timeout %g s)", o.study_uid, o.client, o.worker,
                o.pool, o.waiting_s, config.pool_settings(o.pool).result_timeout,
                extra={"event": "overdue", "study": o.study_uid, "client": o.client,
                       "worker": o.worker, "pool": o.pool, "waiting_s": round(o.waiting_s, 3)},
            )  # fmt: skip

    def inspect(self) -> dict[str, Any]:
        counted = {"operations": sum(self.operations.values()), "busy_s": round(self.busy_s, 6),
                   "by_operation": dict(self.operations.most_common())}  # fmt: skip
        if self._backend is None:
            return {"state": "unavailable", "error": self._down,
                    "for_s": round(time.monotonic() - self._down_since, 1), **counted}  # fmt: skip
        return {**self._backend.describe(), "state": "available",
                "studies": self._run("count_studies"), **counted}  # fmt: skip
