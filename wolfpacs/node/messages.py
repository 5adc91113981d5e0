"""The plain data the node's actors give each other: messages, and what they are started with.

Strings, numbers and frozen dataclasses only, so that an actor could move
to another process or node without its callers changing (``DESIGN.md``).

- To a sender (``sender:<target>``): :data:`WAKE`, :data:`HAND_OVER`, :data:`REPORT`,
  :data:`RETRY_NOW`; :class:`StoreBack`, from the store.
- To the router: :class:`TargetHealth`, from a worker's sender.
- From the router: :class:`Routed` (where a series goes), :class:`Home`
  (where a result goes); its refusals :class:`NoWorkerError`,
  :class:`NoPoolError` and :class:`NotHomeError` (with one of
  :data:`UNKNOWN_STUDY`, :data:`NOT_YOUR_STUDY`, :data:`AMBIGUOUS_STUDY`).
- A receiver is started with the :class:`Peer` on the other end; a sender
  with its :class:`Target`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from wolfpacs.config.secrets import masked
from wolfpacs.state.store import DESTINATION, WORKER

if TYPE_CHECKING:
    from wolfpacs.config.model import Config

__all__ = [
    "ACTIVE", "AMBIGUOUS_STUDY", "DRAINING", "HAND_OVER", "INSIDE", "NOT_YOUR_STUDY", "OUTSIDE",
    "REPORT", "RETRY_NOW", "UNKNOWN_STUDY", "WAKE", "Home", "NoPoolError", "NoWorkerError",
    "NotHomeError", "Peer", "Routed", "StoreBack", "Target", "TargetHealth", "shown_called_ae",
    "targets",
]  # fmt: skip

WAKE = "wake"  # there may be work in the queue
HAND_OVER = "hand_over"  # studies were moved away from this worker: pass their instances on
REPORT = "report"  # tell the router whether the target is up (a restarted router asks)
RETRY_NOW = "retry_now"  # an operator asks: end any backoff and try the peer now

OUTSIDE = "outside"  # the port clients send studies to
INSIDE = "inside"  # the port workers send derived series to

ACTIVE = "active"  # a worker's state: takes new studies
DRAINING = "draining"  # takes no new study; its open studies finish


@dataclass(frozen=True)
class StoreBack:
    """The store serves again after an outage that began at ``since`` (``time.time()``).

    A queue row committed just before a database crash may be lost with it
    (queue rows do not wait for the WAL flush: the spool's file rebuilds
    them), and a row whose commit the outage cut short may or may not exist:
    the sender gives the files of its queue from before ``since`` that have
    no row their row again (:func:`wolfpacs.node.recovery.requeue`).
    """

    since: float


@dataclass(frozen=True)
class TargetHealth:
    """A worker's sender to the router: whether its worker can be reached now."""

    name: str
    up: bool


def shown_called_ae(side: str, called_ae: str) -> str:
    """A called AE title as it may be shown: on the outside port it is a client's secret
    (or a near miss of one), so masked."""
    return masked(called_ae) if side == OUTSIDE else called_ae


@dataclass(frozen=True)
class Peer:
    """Who is on the other end of an association."""

    side: str
    name: str  # the client's or the worker's name
    calling_ae: str
    called_ae: str
    address: str
    port: int

    @property
    def shown_called_ae(self) -> str:
        return shown_called_ae(self.side, self.called_ae)

    def __str__(self) -> str:
        kind = "client" if self.side == OUTSIDE else "worker"
        where = f"{self.calling_ae}@{self.address}:{self.port}"
        return f"{kind} {self.name} ({where} -> {self.shown_called_ae})"


@dataclass(frozen=True)
class Target:
    """Where a sender delivers: a worker or a destination."""

    name: str
    kind: str
    host: str
    port: int
    ae_title: str
    tls: bool = False
    tls_check_hostname: bool = True  # its certificate must name ``host``


def targets(config: Config) -> list[Target]:
    """Every worker and destination of ``config``: each has a sender."""
    return [
        *(
            Target(w.name, WORKER, w.host, w.port, w.ae_title, w.tls, w.tls_check_hostname)
            for w in config.workers
        ),
        *(
            Target(d.name, DESTINATION, d.host, d.port, d.ae_title, d.tls, d.tls_check_hostname)
            for d in config.destinations
        ),
    ]


@dataclass(frozen=True)
class Home:
    """Where a derived instance goes: the client that owns its study, and its destination."""

    client: str
    destination: str
    pool: str = ""  # the key of the route the result belongs to (see Routed)


@dataclass(frozen=True)
class Routed:
    """Where an instance of a series goes: ``worker``, its study's route being the one in
    pool ``pool`` (the key of its queue rows, see :class:`~wolfpacs.state.store.Route`);
    or nowhere, ``discard``: a rule (``rule``, its index) says so."""

    worker: str = ""
    pool: str = ""
    discard: bool = False
    rule: int | None = None


class NoWorkerError(RuntimeError):
    """The client's pool has no active worker: the instance cannot be taken now."""


class NoPoolError(RuntimeError):
    """No rule of the client matched the series, and the client has no default pool.

    Not kept: a rule added later may take the series when it is sent again.
    """


UNKNOWN_STUDY = "unknown_study"
NOT_YOUR_STUDY = "not_your_study"
AMBIGUOUS_STUDY = "ambiguous_study"


class NotHomeError(RuntimeError):
    """A derived instance the node will not take home; ``reason`` says why in one word."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
