"""Why an actor ended, and the record that tells its watchers when it has."""

from __future__ import annotations

import logging
import threading
import traceback
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from types import TracebackType

    import pykka

__all__ = ["ExitKind", "ExitReason", "Lifecycle", "describe_exception", "lifecycle_of"]

logger = logging.getLogger("supervisors")


class ExitKind(StrEnum):
    """How an actor ended, in OTP's words."""

    NORMAL = "normal"  # it stopped itself, or someone called stop()
    SHUTDOWN = "shutdown"  # its supervisor stopped it
    ERROR = "error"  # an exception, a kill, a dead linked thread, or a supervisor giving up
    NOPROC = "noproc"  # watched after it was already gone: the reason is unknown


@dataclass(frozen=True)
class ExitReason:
    """Plain data saying why an actor ended; msgpack-friendly through ``as_dict``.

    ``summary`` is one line (``"ValueError('boom')"``), ``detail`` the
    traceback text where there is one.
    """

    kind: ExitKind
    summary: str = ""
    detail: str = ""

    @property
    def abnormal(self) -> bool:
        """True where OTP restarts a transient child: anything but normal or shutdown."""
        return self.kind in (ExitKind.ERROR, ExitKind.NOPROC)

    def __str__(self) -> str:
        return f"{self.kind}: {self.summary}" if self.summary else str(self.kind)

    def as_dict(self) -> dict[str, str]:
        return {"kind": str(self.kind), "summary": self.summary, "detail": self.detail}

    @classmethod
    def normal(cls) -> ExitReason:
        return cls(ExitKind.NORMAL)

    @classmethod
    def shutdown(cls) -> ExitReason:
        return cls(ExitKind.SHUTDOWN)

    @classmethod
    def error(cls, summary: str, detail: str = "") -> ExitReason:
        return cls(ExitKind.ERROR, summary, detail)

    @classmethod
    def from_exc_info(
        cls,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        tb: TracebackType | None,
    ) -> ExitReason:
        detail = "".join(traceback.format_exception(exc_type, exc_value, tb))
        return cls(ExitKind.ERROR, describe_exception(exc_value), detail)


def describe_exception(exc: BaseException | None) -> str:
    """One line: ``ValueError: boom``."""
    if exc is None:
        return "unknown error"
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


ExitListener = Callable[[ExitReason], None]


class Lifecycle:
    """When an actor has finished ``on_start``, when its thread has ended, and why.

    Set from the actor's own thread; read and waited on from any thread. A
    listener added after the exit is called at once, in the caller's thread,
    so that a watcher can never miss an exit (OTP's ``noproc`` race).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._started = threading.Event()
        self._exited = threading.Event()
        self._listeners: list[ExitListener] = []
        self.start_failed = False
        self.started_at: float | None = None
        self.reason: ExitReason | None = None
        # Set by a supervisor that gave up waiting for this actor to stop: from then
        # on it is dead to the world (its names are free), though its thread runs on.
        self.abandoned = False
        self.interrupt: Callable[[], None] = lambda: None

    def notify_started(self, *, failed: bool, at: float) -> None:
        self.start_failed = failed
        self.started_at = at
        self._started.set()

    def notify_exited(self, reason: ExitReason) -> None:
        """Record the exit, call the listeners, then wake the waiters.

        Listeners run before waiters wake, so whoever returns from
        :meth:`wait` knows every listener (a supervisor's inbox) has heard.
        A listener that raises is logged and skipped.
        """
        with self._lock:
            self.reason = reason
            listeners, self._listeners = self._listeners, []
        for listener in listeners:
            _call(listener, reason)
        self._started.set()
        self._exited.set()

    def add_listener(self, listener: ExitListener) -> None:
        with self._lock:
            if self.reason is None:
                self._listeners.append(listener)
                return
            reason = self.reason
        _call(listener, reason)

    def wait_started(self, timeout: float | None = None) -> bool:
        return self._started.wait(timeout)

    def wait(self, timeout: float | None = None) -> ExitReason | None:
        """Block until the actor's thread has ended; its reason, or None on timeout."""
        if self._exited.wait(timeout):
            return self.reason
        return None

    @property
    def exited(self) -> bool:
        return self._exited.is_set()


def _call(listener: ExitListener, reason: ExitReason) -> None:
    try:
        listener(reason)
    except Exception:
        logger.exception("exit listener %r failed", listener)


# Keyed by the ActorRef object itself: pykka hands out one ref per actor, and
# the record must outlive the actor for as long as anyone holds its ref.
_lifecycles: weakref.WeakKeyDictionary[pykka.ActorRef[Any], Lifecycle] = weakref.WeakKeyDictionary()
_lifecycles_lock = threading.Lock()


def register(ref: pykka.ActorRef[Any]) -> Lifecycle:
    lifecycle = Lifecycle()
    with _lifecycles_lock:
        _lifecycles[ref] = lifecycle
    return lifecycle


def lifecycle_of(ref: pykka.ActorRef[Any]) -> Lifecycle:
    """The lifecycle of a :class:`~supervisors.SupervisedActor`'s ref.

    Raises:
        TypeError: ``ref`` is not the ref of a SupervisedActor.
    """
    with _lifecycles_lock:
        lifecycle = _lifecycles.get(ref)
    if lifecycle is None:
        raise TypeError(f"{ref!r} is not the ref of a SupervisedActor")
    return lifecycle
