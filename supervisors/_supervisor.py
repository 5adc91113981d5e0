"""Supervisor: an actor that starts, watches and restarts its children, as OTP's supervisor."""

from __future__ import annotations

import contextlib
import logging
import math
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Self

import pykka
from pykka.messages import ProxyCall

from supervisors._actor import SupervisedActor
from supervisors._exceptions import (
    ChildAlreadyPresentError,
    ChildAlreadyStartedError,
    ChildNotFoundError,
    ChildRunningError,
    StartError,
)
from supervisors._exit import ExitReason, describe_exception, lifecycle_of
from supervisors._intensity import RestartIntensity
from supervisors._spec import (
    ChildSpec,
    ChildType,
    Restart,
    Strategy,
    validate_children,
    validate_flags,
)

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence
    from types import TracebackType

__all__ = ["Supervisor"]

logger = logging.getLogger("supervisors")

DESCRIBE_TIMEOUT = 2.0  # seconds a busy sub-supervisor may take to describe itself
INTERRUPT_GRACE = 1.0  # seconds an interrupted child has to end before it is abandoned
_SUPERVISOR_KEYS = ("strategy", "max_restarts", "max_seconds", "restarts_in_window", "children")


@dataclass(frozen=True)
class _ChildExit:
    urn: str
    reason: ExitReason


@dataclass(frozen=True)
class _TryAgain:
    """A failed restart, retried through the inbox rather than in a loop (as OTP)."""

    child_id: str


@dataclass
class _Child:
    spec: ChildSpec
    ref: pykka.ActorRef[Any] | None = None
    restarts: int = 0
    last_exit: ExitReason | None = None
    started_at: float | None = None
    restarting: bool = False


class Supervisor(SupervisedActor):
    """Starts children in order, restarts them by strategy, stops them in reverse order.

    Start one with :meth:`start`; talk to it through ``ref.proxy()`` (each
    proxy call is an ``ask`` handled in the supervisor's thread). Every API
    error reaches the caller as a :class:`~supervisors.SupervisorError`
    through its future; the supervisor itself goes on.

    Exit decisions follow OTP: a permanent child is always restarted, a
    transient one only after an abnormal exit, a temporary one never (its
    spec is deleted when it ends). Each restart is counted; more than
    ``max_restarts`` within ``max_seconds`` and the supervisor gives up: it
    stops every child, in reverse order, and exits with an ``error`` reason
    (``reached_max_restart_intensity``), which its own supervisor sees as a
    crashed child.
    """

    def __init__(
        self,
        children: Iterable[ChildSpec] = (),
        strategy: Strategy | str = Strategy.ONE_FOR_ONE,
        max_restarts: int = 3,
        max_seconds: float = 5.0,
        name: str | None = None,
    ) -> None:
        super().__init__()
        self._strategy = validate_flags(strategy, max_restarts, max_seconds)
        self._initial = validate_children(children)
        self.name = name or f"supervisor-{self.actor_urn[-8:]}"
        self._intensity = RestartIntensity(max_restarts, max_seconds)
        self._ids: list[str] = []  # start order
        self._children: dict[str, _Child] = {}
        self._by_urn: dict[str, str] = {}  # running child's urn -> its id
        self._given_up = False

    @classmethod
    def start(
        cls,
        children: Sequence[ChildSpec] = (),
        strategy: Strategy | str = Strategy.ONE_FOR_ONE,
        max_restarts: int = 3,
        max_seconds: float = 5.0,
        name: str | None = None,
    ) -> pykka.ActorRef[Self]:
        """Start the supervisor and its children, left to right; return its ref.

        Returns after every child has started.

        Raises:
            InvalidSpecError: a bad flag or child spec (before anything starts).
            StartError: a child failed to start; those already started have
                been stopped again, in reverse order.
        """
        validate_flags(strategy, max_restarts, max_seconds)
        specs = validate_children(children)
        return super().start(specs, strategy, max_restarts, max_seconds, name)

    # -- lifecycle hooks (supervisor's thread) ---------------------------------

    def on_start(self) -> None:
        for spec in self._initial:
            child = self._add(spec)
            error = self._start(child)
            if error is not None:
                self._terminate(reversed(self._ids))
                raise StartError(f"child {spec.id!r} of {self.name!r}", error)

    def on_stop(self) -> None:
        self._terminate(reversed(self._ids))

    def on_failure(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # A supervisor that dies takes its children with it, as links do in OTP.
        self._terminate(reversed(self._ids))

    def on_receive(self, message: Any) -> Any:
        if isinstance(message, _ChildExit):
            self._on_child_exit(message.urn, message.reason)
            return None
        if isinstance(message, _TryAgain):
            child = self._children.get(message.child_id)
            if child is not None and child.restarting and not self._given_up:
                self._restart(child)
            return None
        return super().on_receive(message)

    # -- the API, called through a proxy ---------------------------------------

    def start_child(self, spec: ChildSpec) -> pykka.ActorRef[Any]:
        """Add ``spec`` at the end and start its child; return the child's ref.

        Raises:
            InvalidSpecError: ``spec`` is not a ChildSpec.
            ChildAlreadyStartedError: that id runs (``.ref`` is its ref).
            ChildAlreadyPresentError: that id exists, not running.
            StartError: the child failed to start; the spec is not kept.
        """
        validate_children([spec])
        existing = self._children.get(spec.id)
        if existing is not None:
            if existing.ref is not None:
                raise ChildAlreadyStartedError(spec.id, existing.ref)
            raise ChildAlreadyPresentError(f"child {spec.id!r} is already present")
        child = self._add(spec)
        error = self._start(child)
        if error is not None:
            self._delete(spec.id)
            raise StartError(f"child {spec.id!r}", error)
        assert child.ref is not None
        return child.ref

    def terminate_child(self, child_id: str) -> None:
        """Stop the child, keeping its spec (a temporary child's spec is deleted).

        Raises:
            ChildNotFoundError: no such id.
        """
        self._terminate([self._get(child_id).spec.id])

    def restart_child(self, child_id: str) -> pykka.ActorRef[Any]:
        """Start a child that is not running, from its kept spec; return its ref.

        Raises:
            ChildNotFoundError: no such id.
            ChildRunningError: it runs.
            StartError: it failed to start.
        """
        child = self._get(child_id)
        if child.ref is not None:
            raise ChildRunningError(f"child {child_id!r} is running")
        error = self._start(child)
        if error is not None:
            raise StartError(f"child {child_id!r}", error)
        assert child.ref is not None
        return child.ref

    def delete_child(self, child_id: str) -> None:
        """Forget the spec of a child that is not running.

        Raises:
            ChildNotFoundError: no such id.
            ChildRunningError: it runs.
        """
        if self._get(child_id).ref is not None:
            raise ChildRunningError(f"child {child_id!r} is running")
        self._delete(child_id)

    def which_children(self) -> list[tuple[str, pykka.ActorRef[Any] | None, str]]:
        """``(id, ref or None, type)`` of every child, in start order."""
        return [
            (cid, self._children[cid].ref, str(self._children[cid].spec.type)) for cid in self._ids
        ]

    def count_children(self) -> dict[str, int]:
        """OTP's counts: ``specs``, ``active`` (running), ``supervisors``, ``workers``."""
        kinds = [self._children[cid].spec.type for cid in self._ids]
        return {
            "specs": len(kinds),
            "active": sum(self._children[cid].ref is not None for cid in self._ids),
            "supervisors": kinds.count(ChildType.SUPERVISOR),
            "workers": kinds.count(ChildType.WORKER),
        }

    def describe(self) -> dict[str, Any]:
        """This subtree as plain data, for an inspection shell.

        A sub-supervisor that does not answer within ``DESCRIBE_TIMEOUT``
        appears with ``"children": None``.
        """
        return {
            "id": self.name,
            "type": str(ChildType.SUPERVISOR),
            "class": type(self).__name__,
            "urn": self.actor_urn,
            "alive": True,
            "strategy": str(self._strategy),
            "max_restarts": self._intensity.max_restarts,
            "max_seconds": self._intensity.max_seconds,
            "restarts_in_window": self._intensity.count(),
            "mailbox": _mailbox(self.actor_ref),
            "children": [self._describe_child(self._children[cid]) for cid in self._ids],
        }

    # -- machinery -------------------------------------------------------------

    def _add(self, spec: ChildSpec) -> _Child:
        child = _Child(spec)
        self._ids.append(spec.id)
        self._children[spec.id] = child
        return child

    def _delete(self, child_id: str) -> None:
        self._ids.remove(child_id)
        del self._children[child_id]

    def _get(self, child_id: str) -> _Child:
        child = self._children.get(child_id)
        if child is None:
            raise ChildNotFoundError(f"no child {child_id!r} in {self.name!r}")
        return child

    def _start(self, child: _Child) -> str | None:
        """Start one child and watch it; None, or why it failed (already logged)."""
        spec = child.spec
        try:
            ref = spec.start()
        except Exception as exc:  # any failure of a start callable is a start error, as in OTP
            why = str(exc) if isinstance(exc, StartError) else describe_exception(exc)
            logger.error("supervisor %r: child %r failed to start: %s", self.name, spec.id, why)
            return why
        try:
            lifecycle = lifecycle_of(ref)
        except TypeError as exc:
            ref.stop(block=False)
            logger.error("supervisor %r: child %r: %s", self.name, spec.id, exc)
            return str(exc)
        me, urn = self.actor_ref, ref.actor_urn

        def on_exit(reason: ExitReason) -> None:
            # A supervisor already gone has nobody left to restart anything.
            with contextlib.suppress(pykka.ActorDeadError):
                me.tell(_ChildExit(urn, reason))

        child.ref, child.restarting = ref, False
        child.started_at = lifecycle.started_at or time.time()
        self._by_urn[urn] = spec.id
        lifecycle.add_listener(on_exit)
        return None

    def _on_child_exit(self, urn: str, reason: ExitReason) -> None:
        child_id = self._by_urn.pop(urn, None)
        if child_id is None or self._given_up:
            return  # an exit of a child we stopped ourselves, or from before a restart
        child = self._children[child_id]
        child.ref, child.last_exit = None, reason
        restart = child.spec.restart
        if restart is Restart.PERMANENT or (restart is Restart.TRANSIENT and reason.abnormal):
            self._restart(child)
            return
        # A temporary child ending normally is routine (a receiver per association).
        log = logger.error if reason.abnormal else logger.debug
        log("supervisor %r: %s child %r exited (%s); not restarted",
            self.name, restart, child_id, reason)  # fmt: skip
        if restart is Restart.TEMPORARY:
            self._delete(child_id)

    def _restart(self, child: _Child) -> None:
        why = child.last_exit or ExitReason.error("failed to restart")
        if not self._intensity.add():
            logger.error(
                "supervisor %r: giving up: %d restarts in %.1f s exceeds max_restarts=%d "
                "(last: child %r, %s); stopping all children",
                self.name, self._intensity.count(), self._intensity.max_seconds,
                self._intensity.max_restarts, child.spec.id, why,
            )  # fmt: skip
            self._given_up = True
            self._terminate(reversed(self._ids))
            self.exit(
                ExitReason.error(
                    "reached_max_restart_intensity",
                    f"more than {self._intensity.max_restarts} restarts in "
                    f"{self._intensity.max_seconds} s; last: child {child.spec.id!r}, {why}",
                )
            )
            return
        logger.warning(
            "supervisor %r: restarting %s child %r after %s (%d of max %d restarts in %.1f s, %s)",
            self.name, child.spec.type, child.spec.id, why, self._intensity.count(),
            self._intensity.max_restarts, self._intensity.max_seconds, self._strategy,
        )  # fmt: skip
        failed = self._restart_by_strategy(child)
        if failed is not None:
            failed.restarting = True
            self.actor_ref.tell(_TryAgain(failed.spec.id))

    def _restart_by_strategy(self, child: _Child) -> _Child | None:
        """(Re)start what the strategy says; the child that failed to start, if any."""
        if self._strategy is Strategy.ONE_FOR_ONE:
            ids = [child.spec.id]
        elif self._strategy is Strategy.ONE_FOR_ALL:
            ids = list(self._ids)
        else:
            ids = self._ids[self._ids.index(child.spec.id) :]
        self._terminate(reversed(ids))
        for cid in ids:
            sibling = self._children.get(cid)
            if sibling is None:
                continue  # a temporary child: stopped above and never restarted
            sibling.restarts += 1
            if self._start(sibling) is not None:
                return sibling
        return None

    def _terminate(self, ids: Iterable[str]) -> None:
        """Stop these children in the order given; temporary ones lose their spec."""
        for cid in list(ids):
            child = self._children[cid]
            if child.ref is not None:
                self._shutdown(child)
            child.restarting = False
            if child.spec.restart is Restart.TEMPORARY:
                self._delete(cid)

    def _shutdown(self, child: _Child) -> None:
        """Ask one child to stop; wait its shutdown time for its thread to end, then abandon it."""
        ref, spec = child.ref, child.spec
        assert ref is not None
        child.ref = None
        self._by_urn.pop(ref.actor_urn, None)
        ref.stop(block=False)
        lifecycle = lifecycle_of(ref)
        shutdown = spec.shutdown_seconds
        reason = lifecycle.wait(None if math.isinf(shutdown) else shutdown)
        if reason is None:
            # OTP would kill it here; a thread can only be asked to let go of what blocks it.
            lifecycle.interrupt()
            reason = lifecycle.wait(min(shutdown, INTERRUPT_GRACE))
        if reason is None:
            lifecycle.abandoned = True
            logger.error(
                "supervisor %r: child %r did not stop within %.1f s; abandoned",
                self.name, spec.id, spec.shutdown,
            )  # fmt: skip
            child.last_exit = ExitReason.error("abandoned: did not stop within shutdown time")
        else:
            child.last_exit = reason if reason.abnormal else ExitReason.shutdown()

    def _describe_child(self, child: _Child) -> dict[str, Any]:
        ref, spec = child.ref, child.spec
        running = ref is not None
        info: dict[str, Any] = {
            "id": spec.id,
            "type": str(spec.type),
            "restart": str(spec.restart),
            "class": ref.actor_class.__name__ if ref is not None else None,
            "urn": ref.actor_urn if ref is not None else None,
            "alive": ref is not None and ref.is_alive(),
            "restarts": child.restarts,
            "last_exit": str(child.last_exit) if child.last_exit else None,
            "last_exit_detail": child.last_exit.detail if child.last_exit else None,
            "uptime": time.time() - (child.started_at or 0) if running else None,
            "mailbox": _mailbox(ref) if ref is not None else None,
        }
        if spec.type is ChildType.SUPERVISOR and ref is not None:
            try:
                describe = ProxyCall((Supervisor.describe.__name__,), (), {})
                sub: dict[str, Any] = ref.ask(describe, block=True, timeout=DESCRIBE_TIMEOUT)
            except (pykka.Timeout, pykka.ActorDeadError, AttributeError):
                sub = {"children": None}
            info["name"] = sub.get("id")
            for key in _SUPERVISOR_KEYS:
                info[key] = sub.get(key)
        return info


def _mailbox(ref: pykka.ActorRef[Any]) -> int | None:
    qsize = getattr(ref.actor_inbox, "qsize", None)
    return qsize() if qsize is not None else None
