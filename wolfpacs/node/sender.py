"""A sender: delivers one target's queue (a worker or a destination) over one association.

It keeps an association open while it has work and releases it after ``idle_release`` seconds
without; it sends each spooled file as it is (chunked, never decoded), in queue order; it deletes a
file only after the peer answered success or warning. A peer that is down, refuses, or answers "out
of resources" is retried with capped exponential backoff; one that refuses an instance for good (a
SOP class or transfer syntax not accepted, a failure that says "never") sends it to ``dead/``.

How soon a peer that comes back gets its queue does not depend on how long it was away: while a
peer that could not be reached is in backoff, the sender probes it with a C-ECHO every
``probe_interval`` seconds, and the first answer ends the backoff (a peer that answered "out of
resources" is reachable: only its backoff brings the next attempt, so a busy peer is not pressed
harder). :data:`~wolfpacs.node.messages.RETRY_NOW` (``retry``, ``resume``) ends any backoff at
once. Idle, it C-ECHOes the peer at its start, every ``echo_interval``, every ``probe_interval``
while the peer is down. An unavailable store is waited for, never crashed on
(:mod:`wolfpacs.node.storewait`).
"""

from __future__ import annotations

import logging
import random
import threading
import time
from typing import TYPE_CHECKING, Any

from supervisors import Registry, SupervisedActor
from wolfpacs.dicom.association import Association
from wolfpacs.dicom.errors import AssociationError
from wolfpacs.dicom.part10 import Part10Error
from wolfpacs.dicom.status import Outcome, classify
from wolfpacs.node.fence import Fence
from wolfpacs.node.messages import HAND_OVER, REPORT, RETRY_NOW, WAKE, Target, TargetHealth
from wolfpacs.node.metrics import Metrics
from wolfpacs.node.outbound import PeerDownError, associate
from wolfpacs.node.storewait import StoreBack, StoreWait
from wolfpacs.state.store import WORKER

if TYPE_CHECKING:
    from wolfpacs.config.model import NodeConfig
    from wolfpacs.node.lease import Lease
    from wolfpacs.state.spool import Spool
    from wolfpacs.state.store import QueueItem, Store

__all__ = ["Sender"]

logger = logging.getLogger(__name__)

_RETRY = "retry"  # the backoff has passed
_IDLE = "idle"  # time to release an unused association
LEASE_WAIT = 0.5  # seconds between two looks at a lapsed lease
_ECHO = "echo"  # time for a health check
_PROBE = "probe"  # time to C-ECHO a peer in backoff
BATCH = 32
HAND_OVER_BATCH = 256
MAX_CONTEXTS = 120  # of the 128 a requestor may propose, leave room for Verification


class Sender(SupervisedActor):
    """Registered as ``sender:<target name>``; tell it :data:`~wolfpacs.node.messages.WAKE`.

    A crash aborts its association; the restarted sender starts from the
    queue in the store, so an instance being sent at the crash is sent again
    (at least once, never lost).
    """

    def __init__(
        self,
        registry: Registry,
        target: Target,
        node: NodeConfig,
        spool: Spool,
        store: Store,
        *,
        metrics: Metrics | None = None,
        fence: Fence | None = None,
        lease: Lease | None = None,
    ) -> None:
        super().__init__()
        self.lease = lease  # the node's: no batch is sent while it may have been adopted
        self.registry = registry
        self.store = store  # fenced with ``fence``, if there is one
        self.fence = fence
        self.target = target
        self.node = node
        self.spool = spool
        self.metrics = metrics or Metrics()
        self.assoc: Association | None = None
        self._proposed: set[tuple[str, str]] = set()
        self._failures = 0  # consecutive, for the backoff
        self._retry_at: float | None = None
        self._backoffs = 0  # numbers each backoff: a timer of an ended one is ignored
        self._handed_over_at = 0.0
        self._hand_over_due = True  # at start: a move may have happened while it was down
        self._next: list[QueueItem] = []  # the next batch, if the last call brought it
        self._idle_check = False  # an _IDLE is on its way
        self._lease_wait: threading.Timer | None = None  # a look at a lapsed lease, to come
        self._busy_at = 0.0  # monotonic time of the last batch sent
        self.up: bool | None = None
        self.last_error: str | None = None
        self.last_success: float | None = None
        self.delivered = 0
        self.delivered_bytes = 0
        self.dead = 0
        self.queued_hint = 0
        self.store_wait = StoreWait(self.name, self.send_after, self.actor_ref.tell)

    @property
    def name(self) -> str:
        return f"sender:{self.target.name}"

    def on_start(self) -> None:
        self.registry.register(self.name, self.actor_ref)
        self.metrics.board.publish(self.name, None)  # this life knows nothing of the peer yet
        self.actor_ref.tell(WAKE)  # whatever was queued before a restart
        if self.node.echo_interval > 0:
            # At once: a peer's health is known from the start (pools' reachable workers,
            # `workers`), not only after its first study or echo_interval.
            self.actor_ref.tell(_ECHO)

    def on_stop(self) -> None:
        self._close(release=True)

    def interrupt(self) -> None:
        """Abort the association a send is blocked on (called by the supervisor's thread)."""
        assoc = self.assoc
        if assoc is not None:
            logger.warning("%s: stop overdue: aborting the association", self.name)
            assoc.abort()  # the blocked read wakes with an error: the stop gets its turn

    def on_failure(self, *_exc_info: object) -> None:
        self._close(release=False)

    def _handle(self, message: Any) -> Any:
        if message == WAKE:
            if self._retry_at is None:
                self._drain()
            elif self.target.kind == WORKER and time.monotonic() - self._handed_over_at > 1.0:
                # Moved studies need no peer: hand them on even in backoff, but look for
                # them at most once a second, not at every instance queued meanwhile.
                self._hand_over()
        elif message == HAND_OVER:
            if self.target.kind == WORKER:
                self._hand_over()
            if self._retry_at is None:
                self._drain()  # it was a WAKE too
        elif isinstance(message, StoreBack):
            self.store_wait.back(message, self.spool, self.store, self.target)
        elif message == REPORT:
            if self.up is not None:
                self._tell_router(self.up)
        elif message == RETRY_NOW:
            if self._retry_at is not None:
                logger.info("%s: retrying now, as asked", self.name)
                self._failures = 0
                self._end_backoff()
            else:
                self._drain()
        elif isinstance(message, tuple) and message[0] in (_RETRY, _PROBE):
            kind, number = message
            if number != self._backoffs or self._retry_at is None:
                return None  # the timer of a backoff that has ended
            if kind == _RETRY:
                self._end_backoff()
            else:
                self._probe()
        elif message == _IDLE:
            self._idle_check = False
            idle = time.monotonic() - self._busy_at
            if idle < self.node.idle_release:  # work came meanwhile: look again later
                self._idle_check = True
                self.send_after(self.node.idle_release - idle, _IDLE)
            else:
                self._close(release=True)
        elif message == _ECHO:
            self._echo()
            if self.node.echo_interval > 0:
                down = self.up is False and self.node.probe_interval > 0
                self.send_after(
                    self.node.probe_interval if down else self.node.echo_interval, _ECHO
                )
        else:
            return super().on_receive(message)
        return None

    def on_receive(self, message: Any) -> Any:
        return self.store_wait.receive(self._handle, message)

    # -- delivery ------------------------------------------------------------------

    def _drain(self) -> None:
        """Send one batch; ask for another through the inbox, so other messages get a turn.

        Moved studies are looked for only when there may be some (at start,
        after a backoff, when told :data:`HAND_OVER`), not at every instance.
        """
        if self.lease is not None and not self.lease.valid():  # adopted, maybe: see node.lease
            if not (self._lease_wait and self._lease_wait.is_alive()):  # look again soon
                self._lease_wait = self.send_after(LEASE_WAIT, WAKE)
            return
        if self._hand_over_due and self.target.kind == WORKER:
            self._hand_over()
        items, self._next = self._next, []
        if not items:
            items = self.store.next_items(self.target.name, BATCH)
        self.store_wait.answered()
        self.queued_hint = len(items)
        if not items:
            return self._idle_soon()
        done: list[int] = []
        try:
            for item in items:
                self._deliver(item, items, done)
        except PeerDownError as down:
            self._backoff(str(down), probe=not down.reachable)
            return
        finally:
            self._busy_at = time.monotonic()
            if done:  # their rows go, and the next batch comes, in one call
                gone, self._next = self.store.delivered_next(done, self.target.name, BATCH)
                self._check_fence()
                self.spool.remove(*(item.path for item in items if item.id in gone))  # its own
        if self._next or not done:
            # More is known to be queued (or nothing was delivered, so nothing was asked):
            # the next batch on the next turn, after whatever else is in the inbox. Else a
            # receiver's WAKE comes with the next instance queued.
            self.actor_ref.tell(WAKE)
        else:  # the queue is empty: release if nothing comes (a worker may serve one at a time)
            self._idle_soon()

    def _idle_soon(self) -> None:
        """Release the association after ``idle_release`` s without work (one timer a period)."""
        if self.assoc is not None and not self._idle_check:
            self._idle_check = True
            self.send_after(self.node.idle_release, _IDLE)

    def _hand_over(self) -> None:
        """Pass queued instances of studies moved to another worker on to that worker.

        The file moves first, then its row: the other worker's sender cannot see
        the row before the file is in its queue, and recovery after a crash in
        between finds the file by its (unique) name.
        """
        self._handed_over_at = time.monotonic()
        self._next = []  # it may hold rows about to move: ask afresh after
        moved = self.store.moved_items(self.target.name, HAND_OVER_BATCH)
        self._hand_over_due = False  # (not before: an unavailable store leaves it due)
        for item, worker in moved:
            src = item.path
            if not self.spool.path(src).exists():  # moved already, before a crash: find it
                src = self.spool.find(src.rsplit("/", 1)[-1]) or src
            self._check_fence()
            path = self.spool.relocate(src, worker)
            self.store.retarget(item.id, worker, path)
        for worker in {worker for _, worker in moved}:
            self.registry.tell(f"sender:{worker}", WAKE)
        if moved:
            logger.info("%s: %d queued instances handed on after a move", self.name, len(moved))
        if len(moved) == HAND_OVER_BATCH:
            self.actor_ref.tell(HAND_OVER)  # more to hand on: next turn, after other messages

    def _deliver(self, item: QueueItem, batch: list[QueueItem], done: list[int]) -> None:
        """Send one queued instance; its id goes to ``done`` if the peer took it.

        Its row and file go after the batch (a crash before that sends it again).
        """
        path = self.spool.path(item.path)
        assoc = self._association(item, batch)
        context = assoc.context_for(item.sop_class_uid, item.transfer_syntax)
        if context is None:
            self._bury(
                item,
                f"{self.target.kind} {self.target.name} does not accept SOP class "
                f"{item.sop_class_uid} in transfer syntax {item.transfer_syntax}",
                None,
                "not_accepted",
            )
            return
        try:
            with self.spool.holding(item.path):  # never written over while it is read
                answer = assoc.send_c_store(
                    context, str(path), item.sop_class_uid, item.sop_instance_uid,
                    dimse_timeout=self.node.dimse_timeout,
                )  # fmt: skip
        except Part10Error as exc:  # only a hand in data_dir does this
            self._bury(item, f"spool file is not a DICOM file: {exc}", None, "refused")
            return
        except FileNotFoundError:  # raised by the file's open, before anything is sent
            # Only a bug or a hand in data_dir does this: say so loudly, keep a record.
            logger.error(
                "%s: spool file %s of queue row %d is missing", self.name, item.path, item.id
            )
            self._bury(item, "spool file missing: instance cannot be delivered", None, "missing")
            return
        except (AssociationError, OSError) as exc:  # association gone mid-send, or timed out
            self._close(release=False)
            raise PeerDownError(f"send failed: {str(exc) or type(exc).__name__}") from None
        if answer.status is None:
            self._close(release=False)
            raise PeerDownError("a C-STORE response without a status")
        status = answer.status
        self.metrics.peer_answered(status)
        outcome = classify(status)
        if outcome is Outcome.DELIVERED:
            done.append(item.id)
            self._succeeded(item)
        elif outcome is Outcome.RETRY:
            error = f"status 0x{status:04X} {answer.error_comment}".strip()
            attempts = self.store.failed_attempt(item.id, error)
            if attempts >= self.node.max_attempts:
                self._bury(item, f"gave up after {attempts} attempts: {error}", status, "gave_up")
                return
            raise PeerDownError(
                f"{error} (attempt {attempts} of {self.node.max_attempts})", reachable=True
            )
        else:
            comment = answer.error_comment
            self._bury(
                item, f"refused with status 0x{status:04X} {comment}".strip(), status, "refused"
            )

    def _association(self, item: QueueItem, batch: list[QueueItem]) -> Association:
        wanted = (item.sop_class_uid, item.transfer_syntax)
        if self.assoc is not None and self.assoc.is_open and wanted in self._proposed:
            return self.assoc
        self._close(release=True)
        proposals = [wanted]
        for other in batch:  # propose for the whole batch, so one association serves it
            pair = (other.sop_class_uid, other.transfer_syntax)
            if pair not in proposals and len(proposals) < MAX_CONTEXTS:
                proposals.append(pair)
        assoc = self._associate([(sop, [ts]) for sop, ts in proposals])
        self._proposed = set(proposals)
        return assoc

    def _associate(self, proposals: list[tuple[str, list[str]]]) -> Association:
        """Open an association proposing these contexts and Verification.

        Raises:
            PeerDownError: refused, rejected, aborted or timed out.
        """
        self.assoc = assoc = associate(self.target, self.node, proposals)
        self._health(True, None)
        return assoc

    def _close(self, release: bool) -> None:
        assoc, self.assoc = self.assoc, None
        self._proposed = set()
        if assoc is None:
            return
        if release and assoc.is_open:
            assoc.release(timeout=self.node.acse_timeout)  # aborts if it is not answered
        else:
            assoc.abort()
        assoc.close()

    def _succeeded(self, item: QueueItem) -> None:
        self._failures = 0
        self.delivered += 1
        self.delivered_bytes += item.size
        self.metrics.delivered(
            self.target.kind, self.target.name, item.size, time.time() - item.enqueued_at
        )
        self.last_success = time.time()
        self._health(True, None)

    def _check_fence(self) -> None:
        """Before a change to the spool. Raises: StaleGenerationError (see node.fence)."""
        if self.fence is not None:
            self.fence.check()

    def _bury(self, item: QueueItem, reason: str, status: int | None, kind: str) -> None:
        """The row, then its file: neither if another node adopted the row (state.leases)."""
        self._check_fence()
        record = {"reason": reason, "status": status, **item.describe()}
        if not self.store.remove_item(item.id):  # (a crash after: recovery queues the file)
            return
        path = self.spool.path(item.path)
        if path.exists():
            self.spool.bury(path, record, kind)
        else:
            logger.error("%s: dead letter without a file: %s", self.name, record)
            self.spool.on_dead(kind)
        self.dead += 1

    def _backoff(self, why: str, probe: bool) -> None:
        """Wait before the next attempt; with ``probe``, C-ECHO the peer meanwhile."""
        self._failures += 1
        self._backoffs += 1
        delay = min(self.node.retry_max, self.node.retry_initial * 2 ** (self._failures - 1))
        delay *= random.uniform(0.9, 1.1)  # so that many senders do not retry in step
        self._retry_at = time.monotonic() + delay
        self._health(False, why)
        logger.warning(
            "%s: %s; retrying in %.1f s (failure %d)", self.name, why, delay, self._failures
        )
        self.send_after(delay, (_RETRY, self._backoffs))
        if probe:
            self._probe_later()

    def _probe_later(self) -> None:
        """The next probe, if it comes before the retry (else the retry is the probe)."""
        interval = self.node.probe_interval
        retry_at = self._retry_at
        if interval > 0 and retry_at is not None and retry_at - time.monotonic() > interval:
            self.send_after(interval, (_PROBE, self._backoffs))

    def _end_backoff(self) -> None:
        self._retry_at = None
        self._hand_over_due = True
        self._drain()

    def _probe(self) -> None:
        """C-ECHO a peer in backoff: an answer ends the backoff, silence waits on."""
        self._close(release=False)  # none should be open in backoff; never leak one
        status, error = self._c_echo()
        if status != 0:
            self._health(False, error)  # the present reason, not the first one
            if status is None:  # silence: ask again; a failure answer waits on its backoff
                self._probe_later()
            return
        logger.info("%s: the %s answers again: delivering", self.name, self.target.kind)
        self._failures = 0
        self._end_backoff()

    def _echo(self) -> None:
        """The idle peer's health check (in backoff, the next retry or probe is)."""
        if self._retry_at is not None:
            return
        status, error = self._c_echo()
        self._health(status == 0, error)

    def _c_echo(self) -> tuple[int | None, str | None]:
        """C-ECHO the peer, on the open association or on a short one of its own: its
        status (None: it could not be asked) and why it is not success (None if it is)."""
        try:
            timeout = self.node.dimse_timeout
            if self.assoc is not None and self.assoc.is_open:
                status = self.assoc.send_c_echo(timeout)
            else:
                status = self._associate([]).send_c_echo(timeout)
                self._close(release=True)
        except PeerDownError as down:
            return None, str(down)
        except (AssociationError, OSError) as exc:  # the association broke under the echo
            self._close(release=False)
            return None, f"C-ECHO failed: {str(exc) or type(exc).__name__}"
        return status, None if status == 0 else f"C-ECHO answered 0x{status:04X}"

    def _health(self, up: bool, error: str | None) -> None:
        """The peer answered (``up``: its last error is history) or did not (``error``)."""
        self.last_error = None if up else error
        if up != self.up:
            self.up = up
            self.metrics.board.publish(self.name, up)  # for the gauges, which never ask
            self._tell_router(up)
            logger.info(
                "%s: %s is %s", self.name, self.target.kind, "up" if up else f"down ({error})"
            )

    def _tell_router(self, up: bool) -> None:
        if self.target.kind == WORKER:  # only workers are chosen between
            self.registry.tell("router", TargetHealth(self.target.name, up))

    def inspect(self) -> dict[str, Any]:
        return {
            "target": self.target.name,
            "kind": self.target.kind,
            "peer": f"{self.target.ae_title}@{self.target.host}:{self.target.port}",
            "up": self.up,
            "association_open": self.assoc is not None,
            "backoff_s": max(self._retry_at - time.monotonic(), 0) if self._retry_at else 0,
            "consecutive_failures": self._failures,
            "last_error": self.last_error,
            "last_success": self.last_success,
            "delivered": self.delivered,
            "delivered_bytes": self.delivered_bytes,
            "dead": self.dead,
        }
