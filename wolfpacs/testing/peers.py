"""Simulated peers on loopback: AI workers, a hospital PACS, a hospital sending studies.

They are real DICOM peers (pynetdicom), used by ``wolfpacs demo`` and the
tests: a :class:`SimulatedWorker` stores what it receives and, once a study
has been quiet for ``quiet`` seconds, sends back a derived series to the
node's inside port; a :class:`SimulatedPACS` stores what it receives.
"""

from __future__ import annotations

import hashlib
import logging
import random
import socket
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydicom import dcmread
from pydicom.filereader import read_file_meta_info
from pydicom.uid import generate_uid
from pynetdicom import AE, _config, evt
from pynetdicom.events import EventHandlerType
from pynetdicom.presentation import PresentationContext, build_context
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    SecondaryCaptureImageStorage,
    Verification,
)

from wolfpacs.dicom.uids import UNCOMPRESSED
from wolfpacs.testing.synthetic import derived_instance

__all__ = [
    "Received", "SimulatedPACS", "SimulatedWorker", "configure_pynetdicom", "context",
    "dataset_digest", "free_port", "nodelay_handlers", "send_files", "set_nodelay", "wait_port",
]  # fmt: skip

logger = logging.getLogger(__name__)


# -- pynetdicom, configured (never subclassed) for the simulated peers ---------------------


def configure_pynetdicom() -> None:
    """Set pynetdicom's process-wide flags for the simulated peers (not the node's data path).

    - ``STORE_RECV_CHUNKED_DATASET``: a received dataset is written to a file
      as its P-DATA arrives and never decoded (handlers get ``dataset_path``);
    - ``STORE_SEND_CHUNKED_DATASET``: ``send_c_store(path)`` streams the file;
    - ``UNRESTRICTED_STORAGE_SERVICE``: accept every storage SOP class,
      private ones included, in the transfer syntax the peer proposes first.
    """
    _config.STORE_RECV_CHUNKED_DATASET = True
    _config.STORE_SEND_CHUNKED_DATASET = True
    _config.UNRESTRICTED_STORAGE_SERVICE = True


def set_nodelay(event: evt.Event) -> None:
    """EVT_CONN_OPEN handler: no Nagle delay on the association's socket."""
    sock = getattr(event.assoc.dul.socket, "socket", None)
    if sock is not None:
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError as exc:  # a socket already closed by the peer
            logger.debug("TCP_NODELAY not set: %s", exc)


def nodelay_handlers() -> list[EventHandlerType]:
    return [(evt.EVT_CONN_OPEN, set_nodelay)]


def context(sop_class_uid: str, transfer_syntax: str) -> PresentationContext:
    """One proposed context: that SOP class in exactly that transfer syntax (pass-through)."""
    return build_context(sop_class_uid, [transfer_syntax])


def wait_port(port: int, timeout: float = 20.0) -> None:
    """Return once something accepts connections on 127.0.0.1:``port``.

    Raises:
        TimeoutError: nothing did within ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    while True:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        if time.monotonic() > deadline:
            raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout} s")
        time.sleep(0.01)


RETRIES = 60  # a worker's attempts to hand a derived series back
RETRY_PAUSE = 1.0  # seconds between them


def _ephemeral_low() -> int:
    """The first port of the kernel's ephemeral range, whence outgoing connections' ports."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768  # Linux's default


_EPHEMERAL_LOW = _ephemeral_low()
_given: set[int] = set()  # handed out by this process: not again while most are not
_given_lock = threading.Lock()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now, for a server to bind soon.

    It lies below the ephemeral range: a port from that range (what binding
    port 0 gives) can become the local port of any outgoing connection, a
    sender's or a DCMTK tool's, before the caller binds it (EADDRINUSE).

    Raises:
        OSError: no free port found.
    """
    low = max(_EPHEMERAL_LOW // 2, 1024)
    for _ in range(1000):
        port = random.randrange(low, _EPHEMERAL_LOW)
        with _given_lock:
            if port in _given:
                continue
            if len(_given) > (_EPHEMERAL_LOW - low) // 2:  # long ago, most of them: forget
                _given.clear()
            _given.add(port)
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue  # taken: try another
        return port
    raise OSError(f"no free port in {low}-{_EPHEMERAL_LOW - 1}")


@dataclass(frozen=True)
class Received:
    study_uid: str
    series_uid: str
    sop_instance_uid: str
    digest: str  # sha256 of the dataset bytes as they arrived (file meta excluded)
    calling_ae: str


def dataset_digest(path: Path) -> str:
    """SHA-256 of a received file's dataset: what was on the wire, after the file meta."""
    with open(path, "rb") as fp:
        ds = dcmread(fp, stop_before_pixels=True)
        offset = 132 + ds.file_meta.get("FileMetaInformationGroupLength", 0) + 12
        fp.seek(offset)
        return hashlib.sha256(fp.read()).hexdigest()


class _StorageSCP:
    """A pynetdicom storage SCP that records every instance it is given."""

    def __init__(self, ae_title: str, port: int | None = None) -> None:
        self.ae_title = ae_title
        self.port = port or free_port()
        # The status to answer each C-STORE with (before it is recorded); 0 records it.
        self.answer: Callable[[Received], int] = lambda _item: 0x0000
        # A fault to play, for chaos runs: "status" (answer 0xA700), "abort" (abort the
        # association mid-transfer), "stall" (answer only after ``stall`` seconds).
        self.fault: str | None = None
        self.stall = 0.0
        self.received: list[Received] = []
        self.associations = 0  # accepted so far
        self.changed = threading.Condition()
        self._server: Any = None

    def start(self) -> None:
        configure_pynetdicom()
        ae = AE(ae_title=self.ae_title)
        ae.maximum_pdu_size = 131072
        ae.add_supported_context(Verification, UNCOMPRESSED)
        handlers: list[EventHandlerType] = [
            (evt.EVT_C_STORE, self._on_store),
            (evt.EVT_CONN_OPEN, set_nodelay),
            (evt.EVT_ACCEPTED, self._on_accepted),
        ]
        self._server = ae.start_server(("127.0.0.1", self.port), block=False, evt_handlers=handlers)

    @property
    def running(self) -> bool:
        return self._server is not None

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server = None

    def _on_accepted(self, _event: evt.Event) -> None:
        with self.changed:
            self.associations += 1

    def _on_store(self, event: evt.Event) -> int:
        fault = self.fault
        if fault == "status":
            return 0xA700
        if fault == "abort":
            event.assoc.abort(block=False)
            return 0xA700
        if fault == "stall":
            time.sleep(self.stall)
        path = Path(event.dataset_path)
        ds = dcmread(path, stop_before_pixels=True)
        requested = event.assoc.requestor.primitive
        assert requested is not None  # an accepted association was asked for
        item = Received(
            str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID), str(ds.SOPInstanceUID),
            dataset_digest(path), requested.calling_ae_title.strip(),
        )  # fmt: skip
        status = self.answer(item)
        if status != 0x0000:
            return status
        with self.changed:
            self.received.append(item)
            self.changed.notify_all()
        self.stored(item, path)
        return 0x0000

    def stored(self, item: Received, path: Path) -> None:
        """Hook: called after each instance is recorded."""

    def wait_for(self, count: int, timeout: float) -> bool:
        """Wait until at least ``count`` instances have arrived."""
        with self.changed:
            return self.changed.wait_for(lambda: len(self.received) >= count, timeout)

    def series(self) -> dict[tuple[str, str], int]:
        """(study, series) → instances received."""
        counts: dict[tuple[str, str], int] = defaultdict(int)
        with self.changed:
            for item in self.received:
                counts[(item.study_uid, item.series_uid)] += 1
        return dict(counts)


class SimulatedPACS(_StorageSCP):
    """A hospital PACS: the destination of derived series."""


class SimulatedWorker(_StorageSCP):
    """An AI worker: for each study, once it has been quiet ``quiet`` s, a derived series back."""

    def __init__(
        self,
        ae_title: str,
        node_port: int | Sequence[int],
        port: int | None = None,
        node_ae_title: str = "WOLFPACS",
        quiet: float = 0.3,
    ) -> None:
        super().__init__(ae_title, port)
        # several inside ports: several nodes, any of which takes a derived series back
        self.node_ports = [node_port] if isinstance(node_port, int) else list(node_port)
        self._next_port = 0
        self.node_ae_title = node_ae_title
        self.quiet = quiet
        self.sent_back: list[str] = []  # derived instances the node acknowledged
        self.derived: dict[str, tuple[str, bool]] = {}  # every one sent: uid → (study, acked)
        self._timers: dict[str, threading.Timer] = {}
        self._sources: dict[str, list[Any]] = defaultdict(list)
        self._answering = 0  # derived series being sent right now
        self._lock = threading.Lock()

    @property
    def idle(self) -> bool:
        """No derived series due: none waiting for its study to go quiet, none being sent."""
        with self._lock:
            return not self._timers and not self._answering

    def stored(self, item: Received, path: Path) -> None:
        source = dcmread(path, stop_before_pixels=True)
        with self._lock:
            self._sources[item.study_uid].append(source)
            old = self._timers.pop(item.study_uid, None)
            if old is not None:
                old.cancel()
            timer = threading.Timer(self.quiet, self._answer, args=(item.study_uid,))
            timer.daemon = True
            self._timers[item.study_uid] = timer
            timer.start()

    def answer_now(self, study_uid: str) -> None:
        """Send the derived series of ``study_uid`` now, in this thread, not once the study
        has been quiet: a worker held silent (a long ``quiet``) answers at last."""
        with self._lock:
            timer = self._timers.get(study_uid)
        if timer is not None:
            timer.cancel()
        self._answer(study_uid)

    def _answer(self, study_uid: str) -> None:
        """Send one derived instance per source instance, in one new series.

        Like a real worker, it tries again (a few times, seconds apart) what the
        node did not take: the node may be restarting.
        """
        with self._lock:
            sources = self._sources.pop(study_uid, [])
            self._timers.pop(study_uid, None)
            self._answering += 1
        try:
            if sources:
                self._answer_with(study_uid, sources)
        finally:
            with self._lock:
                self._answering -= 1

    def _answer_with(self, study_uid: str, sources: list[Any]) -> None:
        series_uid = generate_uid()
        pending = [derived_instance(src, series_uid, n) for n, src in enumerate(sources, 1)]
        for ds in pending:
            self.derived[str(ds.SOPInstanceUID)] = (study_uid, False)
        for attempt in range(RETRIES):
            if attempt:
                time.sleep(RETRY_PAUSE)
            pending = self._send_back(pending)
            if not pending:
                return
        logger.error("%s: %d derived instances of %s not taken", self.ae_title, len(pending),
                     study_uid)  # fmt: skip

    def _send_back(self, derived: list[Any]) -> list[Any]:
        """Send to a node's inside port (the next that answers, if there are several);
        what it did not acknowledge."""
        ae = AE(ae_title=self.ae_title)
        ae.add_requested_context(SecondaryCaptureImageStorage)
        for _ in self.node_ports:
            with self._lock:
                port = self.node_ports[self._next_port % len(self.node_ports)]
                self._next_port += 1
            assoc = ae.associate("127.0.0.1", port, ae_title=self.node_ae_title,
                                 evt_handlers=nodelay_handlers())  # fmt: skip
            if assoc.is_established:
                break
        else:
            return derived
        left = []
        try:
            for ds in derived:
                status = assoc.send_c_store(ds) if assoc.is_established else None
                if status and "Status" in status and int(status.Status) == 0:
                    uid = str(ds.SOPInstanceUID)
                    self.sent_back.append(uid)
                    self.derived[uid] = (self.derived[uid][0], True)
                else:
                    left.append(ds)
        finally:
            if assoc.is_established:
                assoc.release()
        return left


def send_files(
    paths: list[Path], port: int, called_ae: str, calling_ae: str = "HOSPITAL"
) -> list[int]:
    """Send files to ``127.0.0.1:port`` on one association, as a hospital would; their statuses."""
    configure_pynetdicom()
    ae = AE(ae_title=calling_ae)
    pairs = []
    for path in paths:  # one context per SOP class and transfer syntax, as the files are
        meta = read_file_meta_info(path)
        pair = (str(meta.MediaStorageSOPClassUID), str(meta.TransferSyntaxUID))
        if pair not in pairs:
            pairs.append(pair)
    contexts = [context(sop, ts) for sop, ts in pairs]
    assoc = ae.associate("127.0.0.1", port, contexts, ae_title=called_ae,
                         evt_handlers=nodelay_handlers())  # fmt: skip
    if not assoc.is_established:
        raise ConnectionError(f"association with {called_ae}@127.0.0.1:{port} failed")
    statuses = []
    try:
        for path in paths:
            answer = assoc.send_c_store(path)
            statuses.append(int(answer.Status) if "Status" in answer else -1)
    finally:
        assoc.release()
    return statuses
