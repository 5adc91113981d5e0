"""The errors of the supervisors package, one class each."""

from __future__ import annotations

__all__ = [
    "ChildAlreadyPresentError",
    "ChildAlreadyStartedError",
    "ChildNotFoundError",
    "ChildRunningError",
    "InvalidSpecError",
    "Killed",
    "LinkedThreadError",
    "StartError",
    "SupervisorError",
]


class SupervisorError(Exception):
    """Base of every error a supervisor returns to a caller.

    A bad call never crashes the supervisor: the error travels back through
    the caller's future (pykka's contract for ``ask``), as OTP returns
    ``{error, Reason}``.
    """


class InvalidSpecError(SupervisorError, ValueError):
    """A child spec or supervisor flag is invalid.

    ``field`` names what is wrong (OTP's ``invalid_restart``,
    ``invalid_shutdown``, ``duplicate_child_name``...), ``value`` what was given.
    """

    def __init__(self, field: str, value: object, why: str) -> None:
        super().__init__(f"invalid {field} {value!r}: {why}")
        self.field = field
        self.value = value


class ChildNotFoundError(SupervisorError, LookupError):
    """No child spec with that id (OTP's ``{error, not_found}``)."""


class ChildRunningError(SupervisorError):
    """The child is running, so it cannot be restarted or deleted (``running``)."""


class ChildAlreadyStartedError(SupervisorError):
    """``start_child`` of an id whose child runs (``{already_started, Pid}``).

    ``ref`` is the running child's ``ActorRef``.
    """

    def __init__(self, child_id: str, ref: object) -> None:
        super().__init__(f"child {child_id!r} is already started")
        self.ref = ref


class ChildAlreadyPresentError(SupervisorError):
    """``start_child`` of an id whose spec exists, not running (``already_present``)."""


class StartError(SupervisorError):
    """An actor, or a child's ``start`` callable, failed to start.

    ``why`` is one line; ``reason`` the actor's :class:`~supervisors.ExitReason`
    (with the traceback text) where an actor's ``on_start`` raised.
    """

    def __init__(self, what: str, why: str, reason: object = None) -> None:
        super().__init__(f"{what} failed to start: {why}")
        self.why = why
        self.reason = reason


class LinkedThreadError(RuntimeError):
    """Raised inside an actor whose linked thread died, so that the actor crashes."""


class Killed(RuntimeError):  # noqa: N818 - named for what happened, as Erlang's `kill`
    """Raised inside an actor by :func:`supervisors.kill`: fault injection."""
