"""Child specs and supervisor flags: OTP's names and defaults, validated up front."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any, TypeVar

from supervisors._exceptions import InvalidSpecError

if TYPE_CHECKING:
    from collections.abc import Iterable

    import pykka

__all__ = ["ChildSpec", "ChildType", "Restart", "Strategy", "validate_children", "validate_flags"]

DEFAULT_WORKER_SHUTDOWN = 5.0  # seconds; OTP's 5000 ms
# OTP gives a supervisor child `infinity`, so that it can stop its own subtree in full.
DEFAULT_SUPERVISOR_SHUTDOWN = math.inf


class Restart(StrEnum):
    """When a child that has ended is started again."""

    PERMANENT = "permanent"  # always
    TRANSIENT = "transient"  # only after an abnormal exit
    TEMPORARY = "temporary"  # never; its spec is deleted when it ends


class ChildType(StrEnum):
    WORKER = "worker"
    SUPERVISOR = "supervisor"


class Strategy(StrEnum):
    """What a supervisor restarts when one child must be restarted."""

    ONE_FOR_ONE = "one_for_one"  # that child
    ONE_FOR_ALL = "one_for_all"  # every child: all stopped, all started again in order
    REST_FOR_ONE = "rest_for_one"  # that child and the children started after it


E = TypeVar("E", bound=StrEnum)


def _enum(kind: type[E], name: str, value: object) -> E:
    if isinstance(value, str):  # a member is a str too
        with contextlib.suppress(ValueError):
            return kind(value)
    allowed = ", ".join(member.value for member in kind)
    raise InvalidSpecError(name, value, f"must be one of {allowed}")


@dataclass(frozen=True)
class ChildSpec:
    """How a supervisor starts, restarts and stops one child.

    Args:
        id: unique among the supervisor's children; a non-empty string.
        start: zero-argument callable that starts the child and returns its
            ``ActorRef`` (of a :class:`~supervisors.SupervisedActor`, a
            :class:`~supervisors.Supervisor` included). Called in the
            supervisor's thread; whatever it raises is a start failure.
        restart: ``"permanent"``, ``"transient"`` or ``"temporary"``.
        shutdown: seconds a stop may take before the child is abandoned and
            the fact logged; ``math.inf`` waits for ever. Default: 5 s for a
            worker, ``inf`` for a supervisor (OTP's defaults).
        type: ``"worker"`` or ``"supervisor"``.

    Raises:
        InvalidSpecError: naming the first bad field.
    """

    id: str
    start: Callable[[], pykka.ActorRef[Any]] = field(repr=False)
    restart: Restart = Restart.PERMANENT
    shutdown: float | None = None
    type: ChildType = ChildType.WORKER

    def __post_init__(self) -> None:
        if not isinstance(self.id, str) or not self.id:
            raise InvalidSpecError("child_id", self.id, "must be a non-empty string")
        if not callable(self.start):
            raise InvalidSpecError("start", self.start, "must be a zero-argument callable")
        # Frozen: the normalised values are written past __setattr__, once, here.
        object.__setattr__(self, "restart", _enum(Restart, "restart", self.restart))
        object.__setattr__(self, "type", _enum(ChildType, "child_type", self.type))
        shutdown = self.shutdown
        if shutdown is None:
            shutdown = (
                DEFAULT_SUPERVISOR_SHUTDOWN
                if self.type is ChildType.SUPERVISOR
                else DEFAULT_WORKER_SHUTDOWN
            )
        if isinstance(shutdown, bool) or not isinstance(shutdown, (int, float)):
            raise InvalidSpecError("shutdown", shutdown, "must be a number of seconds or math.inf")
        if math.isnan(shutdown) or shutdown < 0:
            raise InvalidSpecError("shutdown", shutdown, "must be >= 0")
        object.__setattr__(self, "shutdown", float(shutdown))

    @property
    def shutdown_seconds(self) -> float:
        """``shutdown`` as normalised: the seconds a stop may take (``math.inf``: for ever)."""
        assert self.shutdown is not None  # __post_init__ gives every spec its number
        return self.shutdown


def validate_children(children: Iterable[ChildSpec]) -> list[ChildSpec]:
    """The specs as a list, each a ChildSpec, no id twice.

    Raises:
        InvalidSpecError: ``child_spec`` for a non-spec, ``duplicate_child_name``.
    """
    specs: list[ChildSpec] = []
    seen: set[str] = set()
    for spec in children:
        if not isinstance(spec, ChildSpec):
            raise InvalidSpecError("child_spec", spec, "must be a ChildSpec")
        if spec.id in seen:
            raise InvalidSpecError("duplicate_child_name", spec.id, "ids must be unique")
        seen.add(spec.id)
        specs.append(spec)
    return specs


def validate_flags(strategy: object, max_restarts: object, max_seconds: object) -> Strategy:
    """Check a supervisor's flags; return the strategy as a :class:`Strategy`.

    Raises:
        InvalidSpecError: ``strategy``, ``intensity`` or ``period``, as OTP names them.
    """
    if isinstance(max_restarts, bool) or not isinstance(max_restarts, int) or max_restarts < 0:
        raise InvalidSpecError("intensity", max_restarts, "max_restarts must be an int >= 0")
    if (
        isinstance(max_seconds, bool)
        or not isinstance(max_seconds, (int, float))
        or not max_seconds > 0
    ):
        raise InvalidSpecError("period", max_seconds, "max_seconds must be a number > 0")
    return _enum(Strategy, "strategy", strategy)
