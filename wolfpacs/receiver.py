"""A receiver: the actor behind one accepted association, on either port.

For each C-STORE it peeks the routing tags, asks the router where the
instance goes, moves the received file into that target's spool queue,
commits the queue row, wakes the sender, and only then answers success.
Any failure before that answers a failure status and keeps nothing.

Error contract: :meth:`store` never raises for bad input or a busy node;
it returns the DICOM status to answer (see :mod:`wolfpacs.status`). A
receiver that crashes aborts its own association and is not restarted
(its association is gone); the other associations do not notice.
"""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pykka
from pykka.messages import ProxyCall

from supervisors import Registry, SupervisedActor, UnavailableError
from wolfpacs.metrics import Metrics
from wolfpacs.peek import PeekError, peek
from wolfpacs.router import NoWorkerError
from wolfpacs.sender import WAKE
from wolfpacs.status import Status, response
from wolfpacs.store import DESTINATION, WORKER, QueueItem

if TYPE_CHECKING:
    from pydicom.dataset import Dataset
    from pynetdicom.association import Association

    from wolfpacs.spool import Spool

__all__ = ["INSIDE", "OUTSIDE", "Peer", "Receiver"]

logger = logging.getLogger(__name__)

OUTSIDE = "outside"  # clients send studies
INSIDE = "inside"  # workers send derived series


@dataclass(frozen=True)
class Peer:
    """Who is on the other end of an association (plain data)."""

    side: str
    name: str  # the client's or the worker's name
    calling_ae: str
    called_ae: str
    address: str
    port: int

    def __str__(self) -> str:
        kind = "client" if self.side == OUTSIDE else "worker"
        return (
            f"{kind} {self.name} ({self.calling_ae}@{self.address}:{self.port} -> {self.called_ae})"
        )


class Receiver(SupervisedActor):
    """One association's receiver; a temporary child of the ``receivers`` supervisor."""

    def __init__(
        self,
        registry: Registry,
        spool: Spool,
        peer: Peer,
        assoc: Association | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        super().__init__()
        self.registry = registry
        self.spool = spool
        self.peer = peer
        self.assoc = assoc
        self.metrics = metrics or Metrics()
        self.started = time.monotonic()
        self.instances = 0
        self.bytes = 0
        self.refused = 0
        self.last_status: int | None = None

    def on_start(self) -> None:
        if self.assoc is not None:
            # The association's own thread ending is the one sure sign that it is over,
            # whatever raced with its start (pynetdicom's close event may come first).
            self.start_thread(self._watch, self.assoc, name=f"watch-{self.peer.name}")

    def _watch(self, assoc: Association) -> None:
        assoc.join()
        how = "released" if assoc.is_released else "aborted" if assoc.is_aborted else "closed"
        with contextlib.suppress(pykka.ActorDeadError):
            self.actor_ref.tell(ProxyCall(("closed",), (how,), {}))

    def store(self, path: str, sop_instance_uid: str = "") -> int | Dataset:
        """Take one received instance (a file pynetdicom wrote); the status to answer."""
        started = time.monotonic()
        status = self._store(Path(path), sop_instance_uid, started)
        code = status if isinstance(status, int) else int(status.Status)
        self.last_status = code
        self.metrics.answered(code)
        if code != Status.SUCCESS:
            self.refused += 1
        return status

    def _store(self, path: Path, sop_instance_uid: str, started: float) -> int | Dataset:
        try:
            tags = peek(path)
        except PeekError as exc:
            code = Status.NO_STUDY_UID if exc.missing_study else Status.UNREADABLE
            logger.warning(
                "%s: instance %s refused (0x%04X): %s", self.peer, sop_instance_uid, code, exc
            )
            return response(code, str(exc))
        try:
            if self.peer.side == OUTSIDE:
                target = self.registry.call("router", "route", self.peer.name, tags.study_uid)
                kind = WORKER
            else:
                target = self.registry.call(
                    "router", "return_route", tags.study_uid, self.peer.name
                )
                kind = DESTINATION
                if target is None:
                    return self._unknown_study(path, tags)
            size = path.stat().st_size
            self.spool.check_room(size)
            rel = self.spool.admit(path, target, tags.sop_instance_uid)
            item = QueueItem(
                target, kind, rel, tags.study_uid, tags.sop_class_uid, tags.sop_instance_uid,
                tags.transfer_syntax, size, time.time(),
            )  # fmt: skip
            try:
                self.registry.call("store", "enqueue", item)
            except UnavailableError:
                # The store may still commit the row: leave the file; if no row comes,
                # recovery at the next start removes it (it was never acknowledged).
                raise
            except Exception:
                self.spool.remove(rel)  # no row, not acknowledged: not kept
                raise
        except NoWorkerError as exc:
            logger.warning("%s: study %s refused: %s", self.peer, tags.study_uid, exc)
            return response(Status.NO_WORKER, str(exc))
        except UnavailableError as exc:
            logger.warning(
                "%s: instance %s refused, node busy: %s", self.peer, tags.sop_instance_uid, exc
            )
            return response(Status.BUSY, "node busy, try again")
        except OSError as exc:
            logger.error("%s: instance %s refused: %s", self.peer, tags.sop_instance_uid, exc)
            return response(Status.OUT_OF_RESOURCES, str(exc.strerror or exc))
        self.registry.tell(f"sender:{target}", WAKE)
        self.instances += 1
        self.bytes += size
        self.metrics.received(self.peer.side, self.peer.name, size, time.monotonic() - started)
        return Status.SUCCESS

    def _unknown_study(self, path: Path, tags: Any) -> Dataset | int:
        reason = {
            "reason": f"unknown study: no study {tags.study_uid} was routed by this node",
            "worker": self.peer.name,
            "calling_ae": self.peer.calling_ae,
            "study_uid": tags.study_uid,
            "sop_instance_uid": tags.sop_instance_uid,
            "sop_class_uid": tags.sop_class_uid,
            "transfer_syntax": tags.transfer_syntax,
        }
        self.spool.bury(path, reason, kind="unknown_study")
        logger.warning("%s: derived instance %s of unknown study %s kept in dead/",
                       self.peer, tags.sop_instance_uid, tags.study_uid)  # fmt: skip
        return response(Status.UNKNOWN_STUDY, "unknown StudyInstanceUID")

    def closed(self, how: str) -> None:
        """The association has ended: log its one line and stop (once)."""
        if self.actor_stopped.is_set():
            return
        logger.info(
            "association %s: %s after %.1f s, %d instances, %d bytes, %d refused",
            self.peer, how, time.monotonic() - self.started, self.instances, self.bytes,
            self.refused,
            extra={"event": "association", "side": self.peer.side, "peer": self.peer.name,
                   "outcome": how, "instances": self.instances, "bytes": self.bytes},
        )  # fmt: skip
        self.assoc = None
        self.stop()

    def on_stop(self) -> None:
        self._abort("the node is stopping")

    def on_failure(self, *_exc_info: object) -> None:
        self._abort("its receiver crashed")

    def _abort(self, why: str) -> None:
        assoc, self.assoc = self.assoc, None
        if assoc is not None and assoc.is_established:
            logger.warning("association %s: aborted: %s", self.peer, why)
            assoc.abort()

    def inspect(self) -> dict[str, Any]:
        return {
            "peer": str(self.peer),
            "side": self.peer.side,
            "name": self.peer.name,
            "calling_ae": self.peer.calling_ae,
            "called_ae": self.peer.called_ae,
            "instances": self.instances,
            "bytes": self.bytes,
            "refused": self.refused,
            "age_s": time.monotonic() - self.started,
        }
