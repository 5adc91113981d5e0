"""An AI worker that answers as a test tells it: how the node's senders handle what they hear.

DCMTK's storescp answers every C-STORE with success; the statement's section 3.5 is about the
other answers. :class:`ScriptedWorker` is a pynetdicom storage SCP (a real DICOM peer on
loopback, in this process) that takes the place of one of the network's workers, on its port
and AE title, and answers each C-STORE with the next status of a script (its last one for
ever), or rejects every association while told to. It records what it is sent and when: each
C-STORE and the status it answered, each C-ECHO, each association's calling AE title and
maximum length received, the longest P-DATA-TF PDU, and the dataset bytes of what it took.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hospital_network import HOSPITALS, WORKERS, Network, ae, poll
from pydicom import dcmread
from pydicom.uid import generate_uid
from robot.api.deco import keyword

from wolfpacs.testing.peers import configure_pynetdicom, set_nodelay
from wolfpacs.testing.synthetic import ct_instance, write

VERIFICATION = "1.2.840.10008.1.1"
TAKE_AND_ABORT = -1  # a script's "abort-after-taking": keep the instance, abort before answering
UNCOMPRESSED = ["1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2"]


@dataclass
class Heard:
    """What a :class:`ScriptedWorker` was sent, in order, with monotonic times."""

    stores: list[tuple[float, str, int]] = field(default_factory=list)  # (t, SOP, status)
    echoes: list[float] = field(default_factory=list)
    calls: list[tuple[str, int]] = field(default_factory=list)  # (calling AE, max length)
    proposed: set[str] = field(default_factory=set)  # every SOP class the node proposed
    connections: int = 0
    longest_pdu: int = 0  # the longest P-DATA-TF PDU's length field
    datasets: dict[str, str] = field(default_factory=dict)  # SOP → SHA-256 of its dataset
    copies: dict[str, list[str]] = field(default_factory=dict)  # SOP → each copy taken's SHA


class ScriptedWorker:
    """A storage SCP that answers C-STOREs with ``script`` (its last status for ever)."""

    def __init__(self, ae_title: str, port: int, script: list[int], max_pdu: int) -> None:
        self.ae_title, self.port, self.script = ae_title, port, list(script)
        self.max_pdu = max_pdu
        self.heard = Heard()
        self.lock = threading.Lock()
        self.ae: Any = None
        self.server: Any = None

    def start(self) -> None:
        from pynetdicom import AE, evt

        configure_pynetdicom()  # every storage SOP class; datasets as files, never decoded
        self.ae = AE(ae_title=self.ae_title)
        self.ae.maximum_pdu_size = self.max_pdu
        self.ae.add_supported_context(VERIFICATION, UNCOMPRESSED)
        handlers = [
            (evt.EVT_CONN_OPEN, self.on_connection),
            (evt.EVT_REQUESTED, self.on_request),
            (evt.EVT_PDU_RECV, self.on_pdu),
            (evt.EVT_C_ECHO, self.on_echo),
            (evt.EVT_C_STORE, self.on_store),
        ]
        self.server = self.ae.start_server(("127.0.0.1", self.port), block=False,
                                           evt_handlers=handlers)  # fmt: skip

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server = None

    def reject(self, rejecting: bool) -> None:
        """Reject every association (calling AE title not recognised, permanent) or none."""
        self.ae.require_calling_aet = ["NOT_THE_NODE"] if rejecting else []

    def on_connection(self, event: Any) -> None:
        set_nodelay(event)
        with self.lock:
            self.heard.connections += 1

    def on_request(self, event: Any) -> None:
        requestor = event.assoc.requestor  # its primitive: the A-ASSOCIATE-RQ as received
        calling = str(requestor.primitive.calling_ae_title).strip()
        proposed = {str(cx.abstract_syntax) for cx in requestor.requested_contexts}
        with self.lock:
            self.heard.calls.append((calling, requestor.maximum_length))
            self.heard.proposed |= proposed

    def on_pdu(self, event: Any) -> None:
        from pynetdicom.pdu import P_DATA_TF

        if isinstance(event.pdu, P_DATA_TF):
            with self.lock:
                self.heard.longest_pdu = max(self.heard.longest_pdu, event.pdu.pdu_length)

    def on_echo(self, _event: Any) -> int:
        with self.lock:
            self.heard.echoes.append(time.monotonic())
        return 0x0000

    def on_store(self, event: Any) -> int:
        path = Path(event.dataset_path)
        with open(path, "rb") as fp:  # the file pynetdicom wrote: its meta, then the dataset
            meta = dcmread(fp, stop_before_pixels=True).file_meta
            fp.seek(132 + meta.get("FileMetaInformationGroupLength", 0) + 12)
            digest = hashlib.sha256(fp.read()).hexdigest()
        sop = str(meta.MediaStorageSOPInstanceUID)
        with self.lock:
            status = self.script.pop(0) if len(self.script) > 1 else self.script[0]
            self.heard.stores.append((time.monotonic(), sop, status))
            taken = status == TAKE_AND_ABORT
            if taken or status in (0x0000, 0x0001, 0x0107, 0x0116) or 0xB000 <= status <= 0xBFFF:
                self.heard.datasets[sop] = digest
                self.heard.copies.setdefault(sop, []).append(digest)
        if taken:  # kept, and the association aborted before the answer: the node cannot know
            threading.Thread(target=event.assoc.abort, daemon=True).start()
            poll(lambda: event.assoc.is_aborted, "the association aborted", timeout=10)
            return 0x0000  # never sent: the association is gone
        return status


def parse_status(text: str) -> int:
    """``0xA700``; or ``abort-after-taking``: the instance kept, the association aborted
    before the answer."""
    return TAKE_AND_ABORT if text == "abort-after-taking" else int(text, 16)


class Answering(Network):
    """Keywords: a worker of the network replaced by a :class:`ScriptedWorker`."""

    scripted: dict[str, ScriptedWorker]

    def scripted_worker(self, name: str) -> ScriptedWorker:
        worker = getattr(self, "scripted", {}).get(name)
        assert worker is not None, f"worker {name} is not a scripted one"
        return worker

    @keyword("Worker ${name} is replaced by one that answers ${statuses}")
    def replace(self, name: str, statuses: str, max_pdu: str = "131072") -> None:
        """``statuses``: e.g. ``0xA700 0xA700 then 0x0000``; the last is answered for ever.
        Its storescp is stopped; the scripted worker takes its port and AE title."""
        assert name in WORKERS, f"no worker {name}"
        script = [parse_status(s) for s in statuses.replace("then", " ").split()]
        self.peers[name].stop()
        worker = ScriptedWorker(ae(name), self.peers[name].port, script, int(max_pdu))
        worker.start()
        self.scripted = {**getattr(self, "scripted", {}), name: worker}

    @keyword("Worker ${name} is itself again")
    def restore(self, name: str) -> None:
        """The scripted worker stopped (if any); its storescp started again."""
        worker = getattr(self, "scripted", {}).pop(name, None)
        if worker is not None:
            worker.stop()
        if name in self.peers:
            self.peers[name].start()

    def stop_scripted_peers(self) -> None:
        for worker in getattr(self, "scripted", {}).values():
            worker.stop()
        self.scripted = {}

    @keyword("Worker ${name} rejects every association")
    def rejects(self, name: str) -> None:
        self.scripted_worker(name).reject(True)

    @keyword("Worker ${name} accepts associations again")
    def accepts_again(self, name: str) -> None:
        self.scripted_worker(name).reject(False)

    @keyword("Wait until worker ${name} has refused ${count} associations")
    def wait_refused(self, name: str, count: str) -> None:
        worker = self.scripted_worker(name)
        poll(lambda: worker.heard.connections >= int(count), f"{count} connections to {name}")

    @keyword("Hospital ${hospital} sends one instance to pool lung")
    def send_to_lung(
        self, hospital: str, rows: str = "64", latin1_private: bool = False, sop_class: str = ""
    ) -> str:
        """One CT instance of a new study whose series goes to pool lung (a stockholm rule:
        SeriesDescription CHEST); acknowledged. Its SOPInstanceUID. ``latin1_private``: its
        text in ISO_IR 100 (Specific Character Set), with a private block of its maker."""
        assert self.root is not None
        ds = ct_instance(str(generate_uid()), str(generate_uid()), 1,
                         rows=int(rows), columns=int(rows))  # fmt: skip
        ds.SeriesDescription = "CHEST"
        if sop_class:
            ds.SOPClassUID = sop_class
        if latin1_private:
            ds.SpecificCharacterSet = "ISO_IR 100"
            ds.PatientName = "Åström^Björn"
            ds.InstitutionName = "Sjukhuset i Malmö"
            block = ds.private_block(0x0029, "WOLF VALIDATION", create=True)
            block.add_new(0x10, "LO", "privat värde")
            block.add_new(0x11, "OB", bytes(range(256)))
        ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
        path = write(ds, self.root / "sent" / "scripted" / f"{ds.SOPInstanceUID}.dcm")
        if sop_class:  # storescu refuses a SOP class it does not know: pynetdicom sends it
            statuses = [self.pynetdicom_sends(hospital, path, sop_class)]
        else:
            statuses = self.hospital_sends(hospital, [path], "1.2.840.10008.1.2.1")
        assert statuses == ["0x0000"], f"{statuses}\n{self.last_output[-2000:]}"
        self.last_sent = path
        return str(ds.SOPInstanceUID)

    def pynetdicom_sends(self, hospital: str, path: Path, sop_class: str) -> str:
        """``path`` (Explicit VR LE) sent by pynetdicom as ``hospital``; the status answered."""
        from pynetdicom import AE

        secret, calling = HOSPITALS[hospital]
        peer = AE(ae_title=calling)
        peer.add_requested_context(sop_class, ["1.2.840.10008.1.2.1"])
        assoc = peer.associate("127.0.0.1", self.ports["outside"], ae_title=secret)
        assert assoc.is_established, "the hospital's association was not established"
        try:
            answer = assoc.send_c_store(path)
            return f"0x{answer.Status:04X}" if "Status" in answer else "no answer"
        finally:
            assoc.release()

    @keyword(
        "Hospital ${hospital} sends an instance in ISO_IR 100 with private attributes to pool lung"
    )
    def send_latin1_private(self, hospital: str) -> str:
        return self.send_to_lung(hospital, latin1_private=True)

    @keyword("Worker ${name} is sent ${sop} ${count} times")
    def sent_times(self, name: str, sop: str, count: str) -> list[float]:
        """Wait for ``count`` C-STOREs of ``sop``; then, after a retry's time, still no more.
        The times of the C-STOREs."""
        worker = self.scripted_worker(name)

        def stores() -> list[float]:
            with worker.lock:
                return [t for t, s, _ in worker.heard.stores if s == sop]

        poll(lambda: len(stores()) >= int(count), f"{count} C-STOREs of {sop} at {name}")
        later = time.monotonic() + 2 * float(self.options.get("retry_max", "1.0"))
        poll(lambda: time.monotonic() > later, "a retry's time")
        times = stores()
        assert len(times) == int(count), f"{len(times)} C-STOREs of {sop}, not {count}"
        return times

    @keyword("The attempts are spaced by a doubling backoff")
    def doubling(self, times: list[float]) -> None:
        """Each gap at least 0.9 * min(retry_max, retry_initial * 2**k) (the node's jitter)."""
        initial = float(self.options.get("retry_initial", "0.2"))
        most = float(self.options.get("retry_max", "1.0"))
        gaps = [b - a for a, b in itertools.pairwise(times)]
        least = [0.9 * min(most, initial * 2**k) for k in range(len(gaps))]
        short = [(round(g, 3), round(m, 3)) for g, m in zip(gaps, least, strict=True) if g < m]
        assert gaps and not short, f"gaps {gaps}: shorter than the backoff {short}"

    @keyword("Worker ${name} got no C-ECHO between ${first} and ${last}")
    def no_echo(self, name: str, first: float, last: float) -> None:
        worker = self.scripted_worker(name)
        probes = [t for t in worker.heard.echoes if float(first) < t < float(last)]
        assert not probes, f"{len(probes)} C-ECHOs while it answered out of resources"

    @keyword("Worker ${name} holds ${sop}")
    def holds(self, name: str, sop: str) -> None:
        worker = self.scripted_worker(name)
        poll(lambda: sop in worker.heard.datasets, f"{sop} held by {name}")

    @keyword("Worker ${name} holds the dataset sent, byte for byte")
    def holds_same(self, name: str) -> None:
        path = self.last_sent
        sop = str(dcmread(path, stop_before_pixels=True).SOPInstanceUID)
        self.holds(name, sop)
        with open(path, "rb") as fp:
            meta = dcmread(fp, stop_before_pixels=True).file_meta
            fp.seek(132 + meta.get("FileMetaInformationGroupLength", 0) + 12)
            sent = hashlib.sha256(fp.read()).hexdigest()
        assert self.scripted_worker(name).heard.datasets[sop] == sent, "the dataset changed"

    @keyword("Worker ${name} took ${count} identical copies of the dataset sent")
    def copies(self, name: str, count: str) -> None:
        """Each copy of the last instance sent that ``name`` kept is the dataset sent."""
        path = self.last_sent
        sop = str(dcmread(path, stop_before_pixels=True).SOPInstanceUID)
        with open(path, "rb") as fp:
            meta = dcmread(fp, stop_before_pixels=True).file_meta
            fp.seek(132 + meta.get("FileMetaInformationGroupLength", 0) + 12)
            sent = hashlib.sha256(fp.read()).hexdigest()
        worker = self.scripted_worker(name)
        poll(lambda: len(worker.heard.copies.get(sop, [])) >= int(count), f"{count} copies")
        with worker.lock:
            taken = list(worker.heard.copies[sop])
        assert taken == [sent] * int(count), f"copies {taken}, sent {sent}"

    @keyword("No dead letter for ${sop}")
    def no_dead(self, sop: str) -> None:
        found = [n.name for n in (self.data / "dead").glob("*.json") if sop in n.read_text()]
        assert not found, f"dead letters of {sop}: {found}"

    @keyword("The queues are empty")
    def queues_empty(self) -> None:
        poll(lambda: not list((self.data / "spool").glob("*/*.dcm")), "the spool's queues empty")

    @keyword("The dead letter of ${sop} says status ${status} and ${kind}")
    def dead_with(self, sop: str, status: str, kind: str) -> dict[str, Any]:
        def find() -> dict[str, Any] | None:
            for note in (self.data / "dead").glob("*.json"):
                record = json.loads(note.read_text())
                if record.get("sop_instance_uid") == sop:
                    return record
            return None

        record = poll(find, f"a dead letter of {sop}")
        got = (record.get("status"), record.get("kind"))
        assert got == (parse_status(status), kind), f"dead letter {record}"
        return record

    @keyword("Worker ${name} was called by ${calling} announcing ${length}")
    def called_by(self, name: str, calling: str, length: str) -> None:
        """Every association the node opened to it: that calling AE title and maximum
        length received (its A-ASSOCIATE-RQ)."""
        calls = set(self.scripted_worker(name).heard.calls)
        assert calls == {(calling, int(length))}, f"the node's requests said {calls}"

    @keyword("The node proposed to worker ${name} only ${sop_classes}")
    def proposed_only(self, name: str, sop_classes: list[str]) -> None:
        proposed = self.scripted_worker(name).heard.proposed
        assert proposed and proposed <= set(sop_classes), f"the node proposed {sorted(proposed)}"

    @keyword("No PDU sent to worker ${name} was longer than ${length}")
    def pdus_within(self, name: str, length: str) -> None:
        longest = self.scripted_worker(name).heard.longest_pdu
        assert 0 < longest <= int(length), f"the longest P-DATA-TF PDU was {longest}"
