"""A receiver: the actor behind one accepted association, on either port.

A thread linked to the actor serves the association: it answers C-ECHO,
and for each C-STORE writes the dataset into ``incoming/`` as it arrives
(keeping its first bytes), peeks the routing tags, asks the router where
the instance goes, moves the file into that target's spool queue, commits
the queue row, wakes the sender, and only then answers success. Any
failure before that answers a failure status and keeps nothing.

Error contract: :meth:`take` never raises: it returns the DICOM status to
answer (see :mod:`wolfpacs.dicom.status`), ``0x0110`` for an unexpected
error (logged with its traceback; the association is still in step, so it
goes on). Where the association itself is no longer sane (a protocol
error, a dataset over ``max_instance_bytes``, a silent peer) it is aborted,
logged. A receiver that crashes (its thread included) aborts its own
association and is not restarted (its association is gone); the other
associations do not notice.

Stopping: a receiver in the middle of a C-STORE finishes it (answers it)
and then aborts its association; one waiting for the next command aborts at
once. If the C-STORE takes longer than the receiver's shutdown time, its
supervisor's :meth:`Receiver.interrupt` aborts it.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import threading
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pykka

from supervisors import Registry, SupervisedActor, UnavailableError
from wolfpacs.dicom import dimse
from wolfpacs.dicom.errors import DatasetTooLargeError, PeerAbortedError, ProtocolError
from wolfpacs.dicom.part10 import file_meta
from wolfpacs.dicom.pdu import ABORT_UNEXPECTED_PARAMETER
from wolfpacs.dicom.peek import PeekError, RoutingTags, peek, peek_head
from wolfpacs.dicom.status import Answer, Status, response
from wolfpacs.node.incoming import HEAD_BYTES, Incoming, Overlapped
from wolfpacs.node.messages import HAND_OVER, OUTSIDE, WAKE, Peer
from wolfpacs.node.metrics import Metrics
from wolfpacs.node.router import (
    AMBIGUOUS_STUDY,
    NoPoolError,
    NotHomeError,
    NoWorkerError,
    Router,
)
from wolfpacs.node.rules import wanted_tags
from wolfpacs.node.store import StoreClient, StoreDownError
from wolfpacs.state.store import DESTINATION, WORKER, QueueItem

if TYPE_CHECKING:
    from wolfpacs.config.live import LiveConfig
    from wolfpacs.config.model import Config, NodeConfig
    from wolfpacs.dicom.association import Association, Context
    from wolfpacs.state.spool import Spool

__all__ = ["HEAD_BYTES", "Receiver"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Route:
    """Where an instance goes: ``target`` (a worker or a destination), for ``client``'s
    study, in its route of pool ``pool``; or, ``discard``, nowhere (rule ``rule``)."""

    worker: str
    client: str
    pool: str = ""
    discard: bool = False
    rule: int | None = None


@dataclass(frozen=True)
class _Closed:
    """From the association's thread to its actor: the association has ended, and how."""

    how: str


class Receiver(SupervisedActor):
    """One association's receiver; a temporary child of the ``receivers`` supervisor."""

    def __init__(
        self,
        registry: Registry,
        spool: Spool,
        store: StoreClient,
        peer: Peer,
        assoc: Association | None = None,
        *,
        metrics: Metrics | None = None,
        limits: NodeConfig | None = None,
        live: LiveConfig | None = None,
    ) -> None:
        super().__init__()
        self.registry = registry
        self.spool = spool
        self.store = store
        self.peer = peer
        self.assoc = assoc
        self.metrics = metrics or Metrics()
        self.max_instance_bytes = limits.max_instance_bytes if limits else 0
        self.started = time.monotonic()
        self.instances = 0
        self.bytes = 0
        self.refused = 0
        self.last_status: int | None = None
        # The router's answers for this association's series (outside) or studies (inside),
        # while the config stands: a route changes only by a move (enqueue_received says
        # so) or by a config change (the cache is dropped). None: ask the router every time.
        self.live = live
        self._turn = threading.Condition()  # between the association's thread and a stop
        self._storing = False  # a C-STORE is being taken: a stop waits for its answer
        self._stopping = False
        self._routes: dict[str, _Route] = {}
        self.discarded = 0
        self._routes_config: Config | None = None

    def on_start(self) -> None:
        if self.assoc is not None:
            self.start_thread(self._serve, self.assoc, name=f"receiver-{self.peer.name}")

    # -- the association, in the linked thread -------------------------------------------

    def _serve(self, assoc: Association) -> None:
        """Answer C-ECHO and C-STORE until the association ends; then tell the actor how."""
        try:
            how = self._commands(assoc)
        except BaseException:
            assoc.abort()
            raise  # the actor crashes with its thread: the supervisor logs why
        assoc.abort()  # a no-op after a release or the peer's abort
        assoc.close()
        with contextlib.suppress(pykka.ActorDeadError):
            self.actor_ref.tell(_Closed(how))

    def _commands(self, assoc: Association) -> str:
        # Errors are logged as text: a handler that keeps records (a test's) would keep
        # the exception, its frames and the association's buffers with it.
        try:
            while True:
                received = assoc.receive_command()
                if received is None:
                    return "released"
                context, command = received
                with self._turn:
                    if self._stopping:
                        return "aborted: the node is stopping"
                    self._storing = True
                try:
                    self._command(assoc, context, command)
                finally:
                    with self._turn:
                        self._storing = False
                        self._turn.notify_all()
                if not assoc.is_open:  # aborted: a command not served here
                    return "aborted"
        except DatasetTooLargeError as exc:
            logger.warning("association %s: aborted: %s (max_instance_bytes)", self.peer, str(exc))
            self.metrics.association(self.peer.side, "aborted", "too_large")
        except ProtocolError as exc:
            logger.warning("association %s: aborted: %s", self.peer, str(exc))
            self.metrics.association(self.peer.side, "aborted", "protocol")
        except PeerAbortedError as exc:
            logger.info("association %s: %s", self.peer, str(exc))
        except TimeoutError:
            logger.warning("association %s: aborted: silent for too long (network_timeout)",
                           self.peer)  # fmt: skip
            self.metrics.association(self.peer.side, "aborted", "timeout")
            return "timed out"
        return "aborted"

    def _command(self, assoc: Association, context: Context, command: dimse.Command) -> None:
        """Answer one command (a C-STORE after its dataset); refuse or abort the rest.

        Refused with a status (PS3.7): a C-STORE of another SOP class than its
        context's, or on a context that is no storage class (0x0122); a request
        this node does not serve (0x0211). Aborted: a command with no response
        defined (a response, or no such command).
        """
        if (refusal := dimse.refusal(command, context.abstract_syntax)) is not None:
            logger.warning("association %s: command 0x%04X (%s) on context %d answered "
                           "0x%04X, not served", self.peer, command.field,
                           command.sop_class_uid, context.id, refusal)  # fmt: skip
            assoc.refuse(context, command, refusal, self.max_instance_bytes)
            if command.field == dimse.C_STORE_RQ:
                self.refused += 1
                self.metrics.answered(refusal)
        elif command.field == dimse.C_ECHO_RQ and not command.has_dataset:
            assoc.send_command(context.id, dimse.echo_rsp(command))
        elif command.field == dimse.C_STORE_RQ and command.has_dataset:
            answer = self._c_store(assoc, context, command)
            assoc.send_command(context.id, dimse.store_rsp(command, answer.status, answer.comment))
        elif command.field == dimse.C_CANCEL_RQ and not command.has_dataset:
            pass  # no response: what it would cancel was answered (0x0211) already
        else:  # no response defined (PS3.7): a response, or no such command
            logger.warning("association %s: aborted: command 0x%04X is not served here",
                           self.peer, command.field)  # fmt: skip
            assoc.abort(ABORT_UNEXPECTED_PARAMETER)

    def _c_store(self, assoc: Association, context: Context, command: dimse.Command) -> Answer:
        """Receive one dataset into ``incoming/`` and :meth:`take` it; the answer."""
        meta = file_meta(command.sop_class_uid, command.sop_instance_uid,
                         context.transfer_syntax, assoc.calling_ae)  # fmt: skip
        incoming = Incoming(self.spool, meta)
        try:
            received = assoc.receive_dataset(context, incoming.write, limit=self.max_instance_bytes)
        except BaseException:
            incoming.close(fsync=False)
            incoming.discard()
            raise
        incoming.close(fsync=self.spool.durable)
        if incoming.error is not None:
            incoming.discard()
            error = incoming.error
            logger.error("%s: instance %s refused: %s", self.peer, command.sop_instance_uid,
                         str(error))  # fmt: skip
            return response(Status.OUT_OF_RESOURCES, str(error.strerror or error))
        tags = None
        with contextlib.suppress(PeekError):  # then peek() says what is wrong, from the file
            tags = peek_head(bytes(incoming.head), context.transfer_syntax,
                             command.sop_class_uid, command.sop_instance_uid,
                             self._wanted())  # fmt: skip
        return self.take(str(incoming.path), command.sop_instance_uid, tags,
                         synced=self.spool.durable, size=len(meta) + received)  # fmt: skip

    def take(
        self,
        path: str,
        sop_instance_uid: str = "",
        tags: RoutingTags | None = None,
        synced: bool = False,
        size: int | None = None,
    ) -> Answer:
        """Take one received instance (a whole file in ``incoming/``); the answer to send.

        The file is consumed: moved into a queue, into ``dead/``, or removed.
        ``tags`` are its routing tags if they are known already; ``synced``
        says the file was fsynced already.
        """
        try:
            answer = self._take(Path(path), sop_instance_uid, tags, synced, size)
        except Exception as exc:  # a bug or a fault the contract does not name: answered, logged
            # The traceback as text: a handler that keeps records (a test's) would keep the
            # exception's frames, and the association's buffers with them.
            logger.error("%s: instance %s refused (0x0110): unexpected error\n%s", self.peer,
                         sop_instance_uid, "".join(traceback.format_exception(exc)))  # fmt: skip
            del exc
            answer = response(Status.PROCESSING_FAILURE, "unexpected error in the node")
        if answer.status != Status.SUCCESS:
            Path(path).unlink(missing_ok=True)  # refused: nothing of it is kept
            self.refused += 1
        self.last_status = answer.status
        self.metrics.answered(answer.status)
        return answer

    def _take(
        self,
        path: Path,
        sop_instance_uid: str,
        tags: RoutingTags | None,
        synced: bool,
        size: int | None,
    ) -> Answer:
        started = time.monotonic()
        try:
            tags = tags or peek(path, self._wanted())
        except PeekError as exc:
            code = Status.NO_STUDY_UID if exc.missing_study else Status.UNREADABLE
            logger.warning(
                "%s: instance %s refused (0x%04X): %s", self.peer, sop_instance_uid, code, exc
            )
            return response(code, str(exc))
        try:
            kind = WORKER if self.peer.side == OUTSIDE else DESTINATION
            routed = self._route(tags)
            if routed.discard:
                return self._discard(path, tags, routed)
            target, client = routed.worker, routed.client
            size = path.stat().st_size if size is None else size
            self.spool.check_room(size)
            mark = self.spool.queue_mark(target)
            rel = self.spool.admit(path, target, tags.sop_instance_uid, synced, size,
                                   sync_later=True, owner=client)  # fmt: skip
            item = QueueItem(
                target, kind, rel, client, tags.study_uid, tags.sop_class_uid,
                tags.sop_instance_uid, tags.transfer_syntax, size, time.time(),
                pool=routed.pool,
            )  # fmt: skip
            try:
                # The queue directory's fsync runs while the store commits the row: both
                # are done before the answer. A row may name a file whose move is not yet
                # durable; after a crash recovery drops such a row (never acknowledged).
                sync = Overlapped(functools.partial(self.spool.sync_queue, target, mark))
                moved_to, waited = self._commit(item, sync)
                sync.check()
            except UnavailableError as exc:
                if not isinstance(exc, StoreDownError):
                    # The store may still commit the row: leave the file; if no row comes,
                    # recovery at the next start gives it one (sent though never
                    # acknowledged: at least once, as a resend by the client would make it).
                    raise
                # The store is unavailable and did not run the commit: nothing to keep.
                self.spool.remove(rel, recycle=False)
                raise
            except Exception:
                if sync.error is not None:  # the row is committed: take it back
                    self.store.drop_missing({rel})
                self.spool.remove(rel, recycle=False)  # not acknowledged: not kept
                raise
        except NoWorkerError as exc:
            logger.warning("%s: study %s refused: %s", self.peer, tags.study_uid, str(exc))
            return response(Status.NO_WORKER, str(exc))
        except NoPoolError as exc:
            logger.warning("%s: instance %s refused (0x%04X): %s", self.peer,
                           tags.sop_instance_uid, Status.NO_POOL, str(exc))  # fmt: skip
            return response(Status.NO_POOL, str(exc))
        except NotHomeError as exc:
            return self._not_home(path, tags, exc)
        except UnavailableError as exc:
            logger.warning(
                "%s: instance %s refused, node busy: %s", self.peer, tags.sop_instance_uid, exc
            )
            return response(Status.BUSY, "node busy, try again")
        except OSError as exc:
            logger.error("%s: instance %s refused: %s", self.peer, tags.sop_instance_uid, str(exc))
            return response(Status.OUT_OF_RESOURCES, str(exc.strerror or exc))
        if moved_to:  # the whole study moved: every series of it this association knows
            self._routes.clear()
        self.registry.tell(f"sender:{target}", HAND_OVER if moved_to else WAKE)
        self.instances += 1
        self.bytes += size
        self.metrics.received(self.peer.side, self.peer.name, size, time.monotonic() - started)
        if waited is not None:
            self._result(routed.pool, waited)
        return response(Status.SUCCESS)

    def _commit(self, item: QueueItem, sync: Overlapped) -> tuple[str | None, float | None]:
        """Commit ``item``'s queue row (``sync`` overlapping it): a client's instance, and
        the worker its study moved to meanwhile, if any; or a result, and the seconds since
        the delivery it answers, if it is its study's first from this worker."""
        if item.kind == WORKER:
            return self.store.enqueue_received(item, meanwhile=sync), None
        return None, self.store.enqueue_result(item, self.peer.name, meanwhile=sync)

    def _result(self, pool: str, seconds: float) -> None:
        """Time a study's first result from this worker, in its route's pool (a route from
        before pools: the worker's own)."""
        if not pool and self.live is not None:
            worker = self.live.get().worker(self.peer.name)
            pool = worker.pool if worker is not None else ""
        self.metrics.result(pool, self.peer.name, seconds)

    def _wanted(self) -> frozenset[int]:
        """The tags the clients' rules need (none on the inside: results are not ruled)."""
        if self.live is None or self.peer.side != OUTSIDE:
            return frozenset()
        return wanted_tags(self.live.get().clients)

    def _route(self, tags: RoutingTags) -> _Route:
        """Where this instance goes, and whose study it is; remembered for the association.

        Outside, the study is the peer's (a client's): its series goes to the
        pool its rules chose, to the study's worker there (or nowhere:
        discarded); inside, a result goes home to the destination of the
        client that owns the study.

        Raises:
            NoPoolError: (outside) no rule takes the series, and no default pool.
            NoWorkerError: (outside) no worker to take a new study.
            NotHomeError: (inside) the node will not take this derived instance.
        """
        config = self.live.get() if self.live is not None else None
        if config is None or config is not self._routes_config or len(self._routes) > 256:
            self._routes.clear()
            self._routes_config = config
        outside = self.peer.side == OUTSIDE
        key = tags.series_uid if outside else tags.study_uid
        found = self._routes.get(key)
        if found is not None:
            return found
        if outside:
            routed = self.registry.call(
                "router", Router.route_series, self.peer.name, tags.study_uid,
                tags.series_uid, dict(tags.attributes), self.peer.calling_ae,
            )  # fmt: skip
            found = _Route(routed.worker, self.peer.name, routed.pool, routed.discard,
                           routed.rule)  # fmt: skip
        else:
            home = self.registry.call("router", Router.return_route, tags.study_uid,
                                      self.peer.name)  # fmt: skip
            found = _Route(home.destination, home.client, home.pool)
        if config is not None:
            self._routes[key] = found
        return found

    def _discard(self, path: Path, tags: RoutingTags, routed: _Route) -> Answer:
        """A rule discards the series: answered success, forwarded nowhere, counted, logged."""
        path.unlink(missing_ok=True)
        self.discarded += 1
        self.metrics.discard(self.peer.name)
        logger.info(
            "%s: instance %s of series %s discarded (rules[%s])", self.peer,
            tags.sop_instance_uid, tags.series_uid, routed.rule,
            extra={"event": "discard", "study": tags.study_uid, "client": self.peer.name},
        )  # fmt: skip
        return response(Status.SUCCESS)

    def _not_home(self, path: Path, tags: RoutingTags, refusal: NotHomeError) -> Answer:
        """Keep a derived instance the node will not take home in ``dead/``; the answer."""
        self.spool.bury(path, {
            "reason": f"{refusal.reason.replace('_', ' ')}: {refusal}",
            "worker": self.peer.name, "calling_ae": self.peer.calling_ae,
            "study_uid": tags.study_uid, "sop_instance_uid": tags.sop_instance_uid,
            "sop_class_uid": tags.sop_class_uid, "transfer_syntax": tags.transfer_syntax,
        }, kind=refusal.reason)  # fmt: skip
        logger.warning("%s: derived instance %s kept in dead/ (%s): %s", self.peer,
                       tags.sop_instance_uid, refusal.reason, refusal)  # fmt: skip
        if refusal.reason == AMBIGUOUS_STUDY:
            return response(Status.AMBIGUOUS_STUDY, "StudyInstanceUID held for two clients")
        # Unknown, or another's: the same answer, so that a worker learns nothing of
        # the studies of hospitals it does not serve.
        return response(Status.UNKNOWN_STUDY, "unknown StudyInstanceUID")

    def on_receive(self, message: Any) -> Any:
        if isinstance(message, _Closed):
            self.closed(message.how)
            return None
        return super().on_receive(message)

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
        with self._turn:  # the C-STORE in progress gets its answer first
            self._stopping = True
            while self._storing:
                self._turn.wait()
        self._abort("the node is stopping")

    def interrupt(self) -> None:
        """A stop overdue (a C-STORE that takes too long): abort the association now."""
        self._abort("the node is stopping")

    def on_failure(self, *_exc_info: object) -> None:
        self._abort("its receiver crashed")

    def _abort(self, why: str) -> None:
        assoc, self.assoc = self.assoc, None
        if assoc is not None and assoc.is_open:
            logger.warning("association %s: aborted: %s", self.peer, why)
            assoc.abort()  # wakes the association's thread, which then ends

    def inspect(self) -> dict[str, Any]:
        return {
            "peer": str(self.peer),
            "side": self.peer.side,
            "name": self.peer.name,
            "calling_ae": self.peer.calling_ae,
            "called_ae": self.peer.shown_called_ae,
            "instances": self.instances,
            "bytes": self.bytes,
            "refused": self.refused,
            "age_s": time.monotonic() - self.started,
        }
