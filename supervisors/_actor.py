"""SupervisedActor: a pykka actor whose end always reaches its supervisor."""

from __future__ import annotations

import contextlib
import logging
import sys
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Self

import pykka

from supervisors._exceptions import Killed, LinkedThreadError, StartError
from supervisors._exit import ExitReason, lifecycle_of, register

if TYPE_CHECKING:
    from types import TracebackType

__all__ = ["SupervisedActor", "join", "kill", "monitor"]

logger = logging.getLogger("supervisors")


@dataclass(frozen=True)
class _Crash:
    """A signal that makes the receiving actor raise, in its own thread."""

    error: type[Exception]
    text: str


class SupervisedActor(pykka.ThreadingActor):
    """A ``pykka.ThreadingActor`` that can be a supervisor's child.

    Write it as any pykka actor (``on_start``, ``on_receive``, ``on_stop``,
    methods called through a proxy). What it adds:

    - :meth:`start` returns only after ``on_start`` has run, and raises
      :class:`~supervisors.StartError` if ``on_start`` raised (OTP's
      synchronous ``start_link``). So ``on_start`` must not wait on the
      thread that starts it.
    - Whenever the actor's thread ends, its :class:`~supervisors.ExitReason`
      is delivered to whoever watches it (its supervisor, as a message):
      ``normal`` after a stop, ``error`` with the traceback text after an
      exception in ``on_start``, in a ``tell``-ed message, in ``on_stop`` or
      ``on_failure``, after :func:`kill`, or after a thread started with
      :meth:`start_thread` died. An exception in an ``ask`` goes to the
      caller's future and the actor lives on (pykka's contract).
    - :meth:`exit` stops it with a reason of its own choosing.
    - ``on_failure`` also runs when ``on_start`` raised, so that one hook
      releases what a half-done start took (pykka calls neither hook then).
    - Exceptions that :meth:`is_fatal` accepts (by default those listed in
      :attr:`fatal_errors`) that an ``ask`` raises go back to the caller, and
      then crash the actor: errors after which it cannot go on (a broken
      database connection), whoever asked.
    - :meth:`interrupt` is the hook a supervisor calls, from its own thread,
      when a stop is overdue: break whatever blocking call holds this actor.
    """

    fatal_errors: ClassVar[tuple[type[BaseException], ...]] = ()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._lifecycle = register(self.actor_ref)
        self._exit_reason: ExitReason | None = None
        self._failure: tuple[Any, Any, Any] | None = None
        self._timers: set[threading.Timer] = set()
        self._lifecycle.interrupt = self.interrupt

    @classmethod
    def start(cls, *args: Any, **kwargs: Any) -> pykka.ActorRef[Self]:
        """Start the actor and wait until its ``on_start`` has run.

        Raises:
            StartError: ``on_start`` raised; the actor has stopped, and
                ``reason`` carries the traceback text.
        """
        ref = super().start(*args, **kwargs)
        lifecycle = lifecycle_of(ref)
        lifecycle.wait_started()
        if lifecycle.start_failed:
            reason = lifecycle.wait()
            raise StartError(cls.__name__, reason.summary if reason else "unknown", reason)
        return ref

    def exit(self, reason: ExitReason) -> None:
        """Stop after the message being handled, reporting ``reason`` when the thread ends.

        Like Erlang's ``exit(Reason)`` from inside a process, without a
        traceback in the log. ``on_stop`` runs as after any stop.
        """
        if self._exit_reason is None:
            self._exit_reason = reason
        self.stop()

    def start_thread(
        self,
        target: Callable[..., object],
        *args: Any,
        name: str | None = None,
        **kwargs: Any,
    ) -> threading.Thread:
        """Run ``target(*args, **kwargs)`` in a daemon thread linked to this actor.

        If ``target`` raises, this actor crashes with
        :class:`~supervisors.LinkedThreadError` (its supervisor then decides),
        as a linked Erlang process would take its partner down. A normal
        return is not an error. The thread is a daemon so that an abandoned
        one never keeps the process alive; stop it in ``on_stop``.
        """
        thread_name = name or f"{self.actor_urn[-8:]}-{getattr(target, '__name__', 'thread')}"

        def run() -> None:
            try:
                target(*args, **kwargs)
            except BaseException:  # a dying thread of any kind takes its actor down
                text = traceback.format_exc()
                try:
                    self.actor_ref.tell(
                        _Crash(LinkedThreadError, f"linked thread {thread_name} died:\n{text}")
                    )
                except pykka.ActorDeadError:
                    logger.debug("thread %s died after its actor: %s", thread_name, text)

        thread = threading.Thread(target=run, name=thread_name, daemon=True)
        thread.start()
        return thread

    def is_fatal(self, exc: BaseException) -> bool:
        """Hook: must this error, raised by a call, end the actor? (``fatal_errors``)."""
        return isinstance(exc, self.fatal_errors)

    def interrupt(self) -> None:
        """Hook: break a blocking call so that a pending stop can be handled.

        Called from another thread (the supervisor's) after the child's
        ``shutdown`` time has passed without it stopping; keep it to a
        thread-safe act such as closing a socket. The default does nothing.
        """

    def send_after(self, delay: float, message: Any) -> threading.Timer:
        """Tell this actor ``message`` after ``delay`` seconds (Erlang's ``send_after``).

        Returns the timer, whose ``cancel()`` withdraws it. Timers still
        pending when the actor ends are cancelled; a message that finds the
        actor gone is dropped.
        """

        def fire() -> None:
            self._timers.discard(timer)
            with contextlib.suppress(pykka.ActorDeadError):
                self.actor_ref.tell(message)

        timer = threading.Timer(delay, fire)
        timer.daemon = True
        self._timers.add(timer)
        timer.start()
        return timer

    # pykka's loop methods are wrapped, not replaced: they are the only places
    # that see every way an actor can end (pykka 4's Actor._actor_loop).

    def _actor_loop(self) -> None:
        try:
            super()._actor_loop()
        except BaseException:
            self._record_failure(*sys.exc_info())
            raise
        finally:
            for timer in list(self._timers):
                timer.cancel()
            reason = self._exit_reason or ExitReason.normal()
            self._lifecycle.notify_exited(reason)

    def _actor_loop_setup(self) -> None:
        super()._actor_loop_setup()
        failed = self._exit_reason is not None and self._exit_reason.abnormal
        if failed and self._failure is not None:
            try:
                self.on_failure(*self._failure)
            except Exception:
                logger.exception("%s: on_failure after a failed on_start raised", self)
        self._lifecycle.notify_started(failed=failed, at=time.time())

    def _handle_failure(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._record_failure(exc_type, exc_value, tb)
        if self._failure is None:
            self._failure = (exc_type, exc_value, tb)
        super()._handle_failure(exc_type, exc_value, tb)

    def _record_failure(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # The first failure is the cause; later ones (in on_failure) are consequences.
        if self._exit_reason is None or not self._exit_reason.abnormal:
            self._exit_reason = ExitReason.from_exc_info(exc_type, exc_value, tb)

    def _handle_receive(self, message: Any) -> Any:
        if isinstance(message, _Crash):
            raise message.error(message.text)
        try:
            return super()._handle_receive(message)
        except BaseException as exc:
            if self.is_fatal(exc):
                # The caller of an ask gets the error; then the actor crashes, as it must.
                self.actor_ref.tell(_Crash(RuntimeError, f"fatal {type(exc).__name__}: {exc}"))
            elif not isinstance(exc, Exception):
                # pykka stops every actor on a BaseException: at least say why this one ended.
                self._record_failure(*sys.exc_info())
            raise


def kill(ref: pykka.ActorRef[Any], why: str = "killed") -> None:
    """Crash the actor as if its handler had raised: fault injection.

    The actor raises :class:`~supervisors.Killed` when it reaches this
    message in its inbox (a busy actor finishes its current message first,
    unlike Erlang's untrappable ``kill``).

    Raises:
        pykka.ActorDeadError: the actor is not running.
    """
    ref.tell(_Crash(Killed, why))


def monitor(ref: pykka.ActorRef[Any], listener: Callable[[ExitReason], None]) -> None:
    """Call ``listener(reason)`` once, when the actor's thread has ended.

    Called in the actor's thread at its end, or at once in the caller's if it
    has already ended, so that no exit is ever missed. Keep it short: a
    supervisor's listener only puts a message in its inbox.

    Raises:
        TypeError: ``ref`` is not a SupervisedActor's.
    """
    lifecycle_of(ref).add_listener(listener)


def join(ref: pykka.ActorRef[Any], timeout: float | None = None) -> ExitReason | None:
    """Wait until the actor's thread has ended and return why; None on timeout.

    Raises:
        TypeError: ``ref`` is not a SupervisedActor's.
    """
    return lifecycle_of(ref).wait(timeout)
