"""OTP-style supervision for pykka actors.

A :class:`Supervisor` starts children from :class:`ChildSpec` s, learns of
every child's end by a message, and restarts them by strategy
(``one_for_one``, ``one_for_all``, ``rest_for_one``) within a restart
intensity, past which it gives up and escalates to its own supervisor.
Children are :class:`SupervisedActor` s; a supervisor is one too, so trees
nest. Nothing here knows about the program built on it.
"""

from supervisors._actor import SupervisedActor, join, kill, monitor
from supervisors._exceptions import (
    ChildAlreadyPresentError,
    ChildAlreadyStartedError,
    ChildNotFoundError,
    ChildRunningError,
    InvalidSpecError,
    Killed,
    LinkedThreadError,
    StartError,
    SupervisorError,
)
from supervisors._exit import ExitKind, ExitReason
from supervisors._intensity import RestartIntensity
from supervisors._registry import NameTakenError, Registry, UnavailableError
from supervisors._spec import ChildSpec, ChildType, Restart, Strategy
from supervisors._supervisor import Supervisor

__all__ = [
    "ChildAlreadyPresentError",
    "ChildAlreadyStartedError",
    "ChildNotFoundError",
    "ChildRunningError",
    "ChildSpec",
    "ChildType",
    "ExitKind",
    "ExitReason",
    "InvalidSpecError",
    "Killed",
    "LinkedThreadError",
    "NameTakenError",
    "Registry",
    "Restart",
    "RestartIntensity",
    "StartError",
    "Strategy",
    "SupervisedActor",
    "Supervisor",
    "SupervisorError",
    "UnavailableError",
    "join",
    "kill",
    "monitor",
]
