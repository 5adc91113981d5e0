"""The watcher of other nodes' changes: the actor ``changes``, in every node's tree.

Nodes that share a store each make their own operator's runtime changes
at once (the verbs of :mod:`wolfpacs.ops`: persisted, then made live).
This actor makes the other nodes' changes true here too, the way a local
change is made, without persisting anything again (the store has it):

- **Runtime changes** (a client, worker or destination added or removed;
  a client's rules): the live config becomes the file's with every change
  in the store replayed (:func:`~wolfpacs.node.recovery.replay`), exactly
  what a restart would make. It is compared whole with the live one, so
  what is already live (this node's own changes; everything, after a
  restart of this actor) is not applied twice. The senders of targets
  that appeared start, those of targets that went stop (a target whose
  address changed restarts), and the router sees to the rows a removed
  target left.
- **Workers' states** (drain, resume): when the table differs from the
  last look, the router reads it again (:meth:`Router.reload_states`); a
  resumed worker's sender tries at once.
- **Moves**: recorded by the node that moved, in the same transaction, as
  a runtime change of kind :data:`~wolfpacs.config.live.MOVE`. For each
  one newer than the last look and made by another node (another
  ``origin``), the router forgets its cached routes to the worker the
  studies left (:meth:`Router.moved_away`: a route cache is otherwise
  trusted for ``CACHE_FRESH``) and that worker's sender hands its queued
  instances on. The first look after a start takes every move in the
  history as new: a restarted watcher cannot know which it had seen.

When: at each notification (PostgreSQL's ``LISTEN``, in a thread of this
actor: :mod:`wolfpacs.state.notify`) and every :data:`POLL_EVERY` second
in any case, so that lost notifications, or a store that sends none
(SQLite files shared by processes), cost at most that. A look is two small
queries (the latest change's ``seq``, the workers' states); the history is
read only when its ``seq`` moved.

Errors: a look that fails (the store unreachable, the router restarting)
is logged once per outage and tried again at the next tick; an outage of
the database never crashes this actor, so it spends none of the root's
restart intensity. A bug does crash it; its successor starts from the
tables. Its start asks nothing of the store (the first look is its first
message).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pykka

from supervisors import (
    ChildAlreadyPresentError,
    ChildAlreadyStartedError,
    ChildNotFoundError,
    Registry,
    StartError,
    SupervisedActor,
    Supervisor,
)
from wolfpacs.config.live import MOVE, describe
from wolfpacs.node.messages import ACTIVE, RETRY_NOW, Target, targets
from wolfpacs.node.recovery import replay
from wolfpacs.node.router import Router

if TYPE_CHECKING:
    from supervisors import ChildSpec
    from wolfpacs.config.live import Change, LiveConfig
    from wolfpacs.config.model import Config
    from wolfpacs.state.notify import ChangeListener
    from wolfpacs.state.store import Store

__all__ = ["NAME", "POLL_EVERY", "Changes"]

logger = logging.getLogger(__name__)

NAME = "changes"
NAME_ROUTER = "router"
POLL_EVERY = 1.0  # seconds between two looks without a notification
STOP_WAIT = 1.0  # seconds on_stop waits for the listening thread
_TICK = "tick"  # the periodic look, which schedules the next
_NOTIFIED = "notified"  # a look now, asked by the listening thread


class Changes(SupervisedActor):
    """Registered as ``changes``; applies the runtime changes other nodes made.

    ``file``: the config file's Config (what the store's history is laid
    on); ``sender_spec(target)``: a new target's sender's child spec;
    ``origin``: this node's name in the history (its own moves are
    skipped); ``listen(on_notify)``: a listener of the store's
    notifications, or None (polling only).
    """

    def __init__(
        self,
        registry: Registry,
        live: LiveConfig,
        file: Config,
        store: Store,
        sender_spec: Callable[[Target], ChildSpec],
        *,
        origin: str | None = None,
        listen: Callable[[Callable[[str], None]], ChangeListener] | None = None,
        poll_every: float = POLL_EVERY,
    ) -> None:
        super().__init__()
        self.registry = registry
        self.live = live
        self.file = file
        self.store = store
        self.sender_spec = sender_spec
        self.origin = origin
        self.poll_every = poll_every
        self.listener = listen(self._on_notify) if listen is not None else None
        self._quit = threading.Event()
        self._thread: threading.Thread | None = None
        self._pending = threading.Event()  # a _NOTIFIED is on its way: one is enough
        self._seq: int | None = None  # the latest change seen; None: none looked at yet
        self._states: dict[str, str] | None = None  # the workers' states at the last look
        self._failing = False
        self.looks = 0
        self.applied = 0  # changes of other nodes made live here (config, states, moves)
        self.failures = 0
        self.last_look_at: float | None = None

    def on_start(self) -> None:
        self.registry.register(NAME, self.actor_ref)
        if self.listener is not None:
            self._thread = self.start_thread(self.listener.run, self._quit, name="changes-listen")
        self.actor_ref.tell(_TICK)

    def on_stop(self) -> None:
        self._halt()

    def on_failure(self, *_exc_info: object) -> None:
        self._halt()

    def _halt(self) -> None:
        self._quit.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(STOP_WAIT)  # a connect in progress may outlast it: a daemon

    def _on_notify(self, _payload: str) -> None:
        """From the listening thread: look now (one look for a burst of notifications)."""
        if self._pending.is_set():
            return
        self._pending.set()
        with contextlib.suppress(pykka.ActorDeadError):  # stopping
            self.actor_ref.tell(_NOTIFIED)

    def on_receive(self, message: Any) -> Any:
        if message == _TICK:
            self.look()
            self.send_after(self.poll_every, _TICK)
            return None
        if message == _NOTIFIED:
            self._pending.clear()
            self.look()
            return None
        return super().on_receive(message)

    def look(self) -> None:
        """Make what other nodes changed since the last look true here.

        A failure is logged (once per outage) and left for the next look.
        """
        self.looks += 1
        try:
            self._look_states()
            self._look_changes()
        except Exception as exc:  # the store or the router away: try again next tick
            self.failures += 1
            if not self._failing:
                self._failing = True
                logger.warning("cannot look for other nodes' changes (trying again every "
                               "%g s): %s", self.poll_every, exc)  # fmt: skip
            return
        if self._failing:
            self._failing = False
            logger.info("looking for other nodes' changes again")
        self.last_look_at = time.time()

    def _look_states(self) -> None:
        states = self.store.worker_states()
        if states == self._states:
            return
        changed = self.registry.call(NAME_ROUTER, Router.reload_states)
        for name, state in changed.items():
            if state == ACTIVE:  # as a local resume: try the worker now, whatever its backoff
                self.registry.tell(f"sender:{name}", RETRY_NOW)
        self.applied += len(changed)
        self._states = states

    def _look_changes(self) -> None:
        seq = self.store.last_change()
        if seq == self._seq:
            return
        first, seen = self._seq is None, self._seq or 0
        removed: list[str] = []
        with self.live.changing:  # no local change between the read and the set
            history = self.store.changes_since(0)
            new = [change for change in history if change[0] > seen]
            config = [change[1:] for change in history if change[1] != MOVE]
            removed = self._apply(config, new)
        if removed:  # their senders are gone: nobody delivers what was queued for them
            self.registry.call(NAME_ROUTER, Router.sweep_orphans)
        for n, kind, name, table in new:
            if kind == MOVE and (table or {}).get("origin") != self.origin:
                # The first look takes the whole history as new (which moves did an earlier
                # life see?): cheap, but no news to log.
                self.registry.call(NAME_ROUTER, Router.moved_away, name)
                if not first:
                    self.applied += 1
                    what = describe((kind, name, table))
                    logger.info("runtime change %d of another node: %s", n, what,
                                extra={"event": "admin"})  # fmt: skip
        self._seq = history[-1][0] if history else 0

    def _apply(
        self, history: list[Change], new: list[tuple[int, str, str, dict[str, Any] | None]]
    ) -> list[str]:
        """Make the file with ``history`` replayed the live config; the targets removed.

        The senders first, then the config: a look that fails between leaves
        the old config live, and the next look does it all again (a sender
        started or stopped already is no error then). The caller holds
        ``live.changing``.
        """
        config = replay(self.file, history)
        old = self.live.get()
        if config == old:
            return []
        before = {t.name: t for t in targets(old)}
        after = {t.name: t for t in targets(config)}
        for name, target in before.items():
            if after.get(name) != target:  # gone, or its address changed: stop this one
                self._stop_sender(name)
        for name, target in after.items():
            if before.get(name) != target:
                self._start_sender(target)
        self.live.set(config)
        made = [change for change in new if change[1] != MOVE]
        if made:  # (this node's own among them, if others came between)
            logger.warning(
                "runtime changes to %d made live from the store: %s", made[-1][0],
                "; ".join(describe(change[1:]) for change in made), extra={"event": "admin"},
            )  # fmt: skip
        self.applied += len(made)
        return [name for name in before if name not in after]

    def _start_sender(self, target: Target) -> None:
        try:
            self.registry.call("senders", Supervisor.start_child, self.sender_spec(target))
        except (ChildAlreadyStartedError, ChildAlreadyPresentError):
            pass  # the senders supervisor restarted meanwhile, from the live config
        except StartError as exc:  # the change stands (it is the store's): say it here
            logger.error("the sender of %s %s, added on another node, did not start here: %s",
                         target.kind, target.name, exc)  # fmt: skip

    def _stop_sender(self, name: str) -> None:
        try:
            self.registry.call("senders", Supervisor.terminate_child, f"sender:{name}")
            self.registry.call("senders", Supervisor.delete_child, f"sender:{name}")
        except ChildNotFoundError:
            pass  # the senders supervisor restarted meanwhile, from the live config

    def inspect(self) -> dict[str, Any]:
        listener = self.listener
        return {
            "seq": self._seq,
            "origin": self.origin,
            "looks": self.looks,
            "applied": self.applied,
            "failures": self.failures,
            "last_look_at": self.last_look_at,
            "listening": listener.connected if listener is not None else None,
            "notifications": listener.notifications if listener is not None else None,
            "poll_every": self.poll_every,
        }
