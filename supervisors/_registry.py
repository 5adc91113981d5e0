"""Registry: names for actors whose refs change with every restart (Erlang's register/whereis)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar, overload

import pykka
from pykka.messages import ProxyCall

from supervisors._exit import lifecycle_of

__all__ = ["NameTakenError", "Registry", "UnavailableError"]

R = TypeVar("R")


def _name_of(method: str | Callable[..., Any]) -> str:
    return method if isinstance(method, str) else method.__name__


class NameTakenError(RuntimeError):
    """The name belongs to another live actor (Erlang's ``badarg`` from ``register/2``)."""


class UnavailableError(RuntimeError):
    """No actor under that name answered within the timeout (it is down or restarting)."""


def _live(ref: pykka.ActorRef[Any]) -> bool:
    """Alive, and not abandoned by its supervisor (which has started its successor)."""
    return ref.is_alive() and not lifecycle_of(ref).abandoned


class Registry:
    """A thread-safe map from names to the refs of running SupervisedActors.

    An actor registers itself in ``on_start``; the name is freed when its
    thread ends, before its supervisor hears of the exit, so that the
    restarted actor can take the same name. An actor its supervisor has
    abandoned (it did not stop in time) no longer holds its names either.
    Callers look a name up on every call, never keep a ref: that is how they
    survive restarts.

    One registry per tree (pass it to the actors) rather than a global one,
    so that several trees can live in one process.
    """

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._refs: dict[str, pykka.ActorRef[Any]] = {}

    def register(self, name: str, ref: pykka.ActorRef[Any]) -> None:
        """Give ``ref`` the name ``name`` until its thread ends.

        Raises:
            NameTakenError: another live actor has that name.
            TypeError: ``ref`` is not a SupervisedActor's.
        """
        lifecycle = lifecycle_of(ref)
        with self._changed:
            holder = self._refs.get(name)
            if holder is not None and holder is not ref and _live(holder):
                raise NameTakenError(f"{name!r} is registered to {holder}")
            self._refs[name] = ref
            self._changed.notify_all()
        lifecycle.add_listener(lambda _reason: self.unregister(name, ref))

    def unregister(self, name: str, ref: pykka.ActorRef[Any] | None = None) -> None:
        """Free ``name`` (only if it still belongs to ``ref``, where one is given)."""
        with self._changed:
            if ref is None or self._refs.get(name) is ref:
                self._refs.pop(name, None)
                self._changed.notify_all()

    def whereis(self, name: str) -> pykka.ActorRef[Any] | None:
        """The ref registered under ``name``, or None."""
        with self._changed:
            return self._refs.get(name)

    def wait_for(self, name: str, timeout: float) -> pykka.ActorRef[Any] | None:
        """The ref under ``name``, waiting up to ``timeout`` s for one to register."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                ref = self._refs.get(name)
                if ref is not None and _live(ref):
                    return ref
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                self._changed.wait(remaining)

    def names(self) -> dict[str, pykka.ActorRef[Any]]:
        """A snapshot of every registered name."""
        with self._changed:
            return dict(self._refs)

    def ask(
        self,
        name: str,
        message: Any,
        *,
        timeout: float = 10.0,
        meanwhile: Callable[[], object] | None = None,
    ) -> Any:
        """Ask the actor named ``name`` with ``message``; its answer (OTP's ``gen_server:call``).

        Waits through a restart: if the actor is missing or dies before it
        takes the message, the message goes to its successor, until
        ``timeout``. A message an actor has taken is never sent twice, so a
        request that is not idempotent is handled at most once.
        ``meanwhile``, if given, runs once in the caller's thread after the
        message is sent and before the wait for the answer: work of the
        caller's that can overlap.

        Raises:
            UnavailableError: no live actor took the message within ``timeout``.
            Exception: whatever the actor raised, unchanged; or what
                ``meanwhile`` raised (then the answer is not waited for).
        """
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            ref = self.wait_for(name, max(remaining, 0.0))
            if ref is None:
                raise UnavailableError(f"{name} did not answer within {timeout} s")
            try:
                future = ref.ask(message, block=False)
                if meanwhile is not None:
                    run, meanwhile = meanwhile, None
                    run()
                return future.get(timeout=max(deadline - time.monotonic(), 0.001))
            except pykka.ActorDeadError:
                continue  # it died before taking the message: ask its successor
            except pykka.Timeout:
                raise UnavailableError(f"{name} did not answer within {timeout} s") from None

    @overload
    def call(
        self,
        name: str,
        method: Callable[..., R],
        *args: Any,
        timeout: float = 10.0,
        meanwhile: Callable[[], object] | None = None,
        **kwargs: Any,
    ) -> R: ...

    @overload
    def call(
        self,
        name: str,
        method: str,
        *args: Any,
        timeout: float = 10.0,
        meanwhile: Callable[[], object] | None = None,
        **kwargs: Any,
    ) -> Any: ...

    def call(
        self,
        name: str,
        method: str | Callable[..., Any],
        *args: Any,
        timeout: float = 10.0,
        meanwhile: Callable[[], object] | None = None,
        **kwargs: Any,
    ) -> Any:
        """Call ``method`` of the actor named ``name``; its result (see :meth:`ask`).

        ``method`` is the method itself (``Router.route``: its name is what is
        sent, and a type checker sees the result's type and any misspelling),
        or its name.

        Raises:
            UnavailableError, Exception: as :meth:`ask`.
        """
        return self.ask(
            name, ProxyCall((_name_of(method),), args, kwargs), timeout=timeout, meanwhile=meanwhile
        )

    def cast(self, name: str, method: str | Callable[..., Any], *args: Any, **kwargs: Any) -> bool:
        """Call ``method`` of the actor named ``name`` without waiting (``gen_server:cast``).

        False if there is no such actor now. What it raises, it raises in its
        own thread: the actor crashes, as after any message told to it.
        """
        return self.tell(name, ProxyCall((_name_of(method),), args, kwargs))

    def tell(self, name: str, message: Any) -> bool:
        """Put ``message`` in the inbox of the actor named ``name``; False if there is none."""
        ref = self.whereis(name)
        if ref is None:
            return False
        try:
            ref.tell(message)
        except pykka.ActorDeadError:
            return False
        return True
