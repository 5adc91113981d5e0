"""Keywords that provoke the status codes no ordinary hospital or worker meets (statement, 3.4).

DCMTK's storescu sends only what is right, so these peers are made by hand: an association
opened with the node's own ACSE (:func:`wolfpacs.dicom.acse.request`, the requestor the senders
use towards workers), C-STOREs whose command names a SOP class of our choosing
(:meth:`~wolfpacs.dicom.association.Association.send_c_store`), and command sets of requests the
node does not serve, packed here element by element (PS3.7 annex E). Nothing of the node is
mocked: the messages go over a real socket to the ``wolfpacs run`` the suites started.

0xA702 ("send again") is what a hospital hears when a part of the node does not answer in time;
another program holding the state database's write lock makes that happen at will, for as long
as it holds it (:meth:`Statuses.lock_state`).
"""

from __future__ import annotations

import contextlib
import sqlite3
import struct
from pathlib import Path
from typing import Any

from hospital_network import HOSPITALS, WORKERS, Network
from pydicom.filereader import read_file_meta_info
from pydicom.uid import generate_uid
from robot.api.deco import keyword

from wolfpacs.dicom import acse
from wolfpacs.dicom.pdu import LAST, P_DATA_TF, PDU_PDV
from wolfpacs.testing.synthetic import ct_instance, write

CT = "1.2.840.10008.5.1.4.1.1.2"
MR = "1.2.840.10008.5.1.4.1.1.4"
VERIFICATION = "1.2.840.10008.1.1"
EXPLICIT = "1.2.840.10008.1.2.1"
IMPLICIT = "1.2.840.10008.1.2"
STUDY_ROOT_FIND = "1.2.840.10008.5.1.4.1.2.2.1"
N_GET_RQ, C_FIND_RQ = 0x0110, 0x0020
TIMEOUT = 30.0


def command_set(field: int, message_id: int, sop_class: str, dataset: bool) -> bytes:
    """A request's command set, Implicit VR LE: SOP class, field, message ID, dataset type."""
    uid = sop_class.encode() + (b"\x00" if len(sop_class) % 2 else b"")
    elements = [
        (0x0002, uid),
        (0x0100, struct.pack("<H", field)),
        (0x0110, struct.pack("<H", message_id)),
        (0x0800, struct.pack("<H", 0x0000 if dataset else 0x0101)),
    ]
    if field == N_GET_RQ:  # N-GET names its instance as Requested SOP Instance UID
        elements.append((0x1001, b"1.2.3.4\x00"))
    body = b"".join(struct.pack("<HHL", 0, tag, len(v)) + v for tag, v in elements)
    return struct.pack("<HHLL", 0, 0, 4, len(body)) + body


def status(code: int | None) -> str:
    return "no status" if code is None else f"0x{code:04X}"


class Statuses(Network):
    """Hand-made DIMSE messages from a hospital, and the state database held by someone else."""

    last_result: str  # the SOPInstanceUID of the last result a worker sent (WolfPACS.py)
    state_lock: sqlite3.Connection | None = None  # the other program's connection, holding it

    def hand_made(self, hospital: str) -> Any:
        """An association from ``hospital`` proposing Verification, CT and MR (in Explicit LE)."""
        secret, calling = HOSPITALS[hospital]
        return acse.request(
            ("127.0.0.1", self.ports["outside"]),
            [(VERIFICATION, [IMPLICIT]), (CT, [EXPLICIT]), (MR, [EXPLICIT])],
            calling_ae=calling, called_ae=secret, max_pdu=16384,
            connect_timeout=TIMEOUT, acse_timeout=TIMEOUT, timeout=TIMEOUT,
        )  # fmt: skip

    def instance(self, modality: str = "CT") -> Path:
        """A new instance of a new study (CT, or MR), Explicit VR LE, written under ``sent/``."""
        assert self.root is not None
        ds = ct_instance(str(generate_uid()), str(generate_uid()), 1)
        if modality == "MR":
            ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = MR
        ds.Modality = modality
        path = self.root / "sent" / "hand-made" / f"{ds.SOPInstanceUID}.dcm"
        write(ds, path)
        return path

    def store(self, assoc: Any, context_sop_class: str, path: Path) -> str:
        """C-STORE ``path`` on the context of ``context_sop_class``, its command naming the
        SOP class and instance of the file's meta; the status answered."""
        meta = read_file_meta_info(path)
        agreed = [c for c in assoc.contexts.values() if c.abstract_syntax == context_sop_class]
        assert agreed, f"the node accepted no context for {context_sop_class}"
        context = agreed[0]
        sop_class, sop_instance = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
        rsp = assoc.send_c_store(context, str(path), str(sop_class), str(sop_instance))
        if rsp.status != 0x0000:
            self.refused.add(str(sop_instance))
        return status(rsp.status)

    @keyword(
        "Hospital ${hospital} sends an MR image on the context it agreed for CT, a CT image on "
        "the Verification context, then a CT image on its own"
    )
    def wrong_context(self, hospital: str) -> list[str]:
        """All three on one association: the statuses answered."""
        assoc = self.hand_made(hospital)
        try:
            return [
                self.store(assoc, CT, self.instance("MR")),
                self.store(assoc, VERIFICATION, self.instance("CT")),
                self.store(assoc, CT, self.instance("CT")),
            ]
        finally:
            assoc.release()

    @keyword("Hospital ${hospital} sends an instance whose dataset is no DICOM, then a good one")
    def unreadable(self, hospital: str) -> list[str]:
        """A file meta followed by text, then a whole CT instance, on one association."""
        junk, good = self.instance("CT"), self.instance("CT")
        data = junk.read_bytes()
        meta_end = 132 + 12 + int.from_bytes(data[140:144], "little")  # after (0002,0000)'s value
        junk.write_bytes(data[:meta_end] + b"this is no dataset, only text " * 40)
        assoc = self.hand_made(hospital)
        try:
            return [self.store(assoc, CT, junk), self.store(assoc, CT, good)]
        finally:
            assoc.release()

    @keyword("Hospital ${hospital} asks for an N-GET and a C-FIND, then echoes")
    def unserved(self, hospital: str) -> list[str]:
        """Both requests on the CT context (the node accepts no other for them); then C-ECHO.

        The statuses answered, each checked to answer its own request (field | 0x8000, the
        request's message ID): N-GET, C-FIND, C-ECHO.
        """
        assoc = self.hand_made(hospital)
        try:
            ct = assoc.context_for(CT, EXPLICIT)
            answers = []
            assoc.send_command(ct.id, command_set(N_GET_RQ, 41, CT, dataset=False))
            answers.append(self.answer(assoc, N_GET_RQ, 41))
            assoc.send_command(ct.id, command_set(C_FIND_RQ, 42, STUDY_ROOT_FIND, dataset=True))
            # The identifier: QueryRetrieveLevel = STUDY, Explicit VR LE, in one last PDV.
            identifier = b"\x08\x00\x52\x00CS\x06\x00STUDY "
            assoc.sock.sendall(
                PDU_PDV.pack(P_DATA_TF, len(identifier) + 6, len(identifier) + 2, ct.id, LAST)
                + identifier
            )
            answers.append(self.answer(assoc, C_FIND_RQ, 42))
            answers.append(status(assoc.send_c_echo(TIMEOUT)))
            return answers
        finally:
            assoc.release()

    def answer(self, assoc: Any, field: int, message_id: int) -> str:
        received = assoc.receive_command()
        assert received is not None, "the node released the association instead of answering"
        _, rsp = received
        got = (rsp.field, rsp.message_id, rsp.has_dataset)
        assert got == (field | 0x8000, message_id, False), f"not the response to {field}: {got}"
        return status(rsp.status)

    @keyword("Nothing refused is kept: not in the spool, not in dead/, not at a worker")
    def nothing_refused_kept(self) -> None:
        """No instance answered a failure status so far (on the outside port) is queued, in
        ``dead/``, left in ``incoming/`` or delivered. Queued and dead files carry their
        SOPInstanceUID in their names, files in ``incoming/`` (named at random) in their
        bytes; the spool is looked at first, so that one delivered meanwhile is at its
        worker."""
        assert self.refused, "no instance was refused: nothing to look for"
        names = [p.name for d in ("spool", "dead") for p in (self.data / d).rglob("*")]
        kept = {uid for uid in self.refused if any(uid in name for name in names)}
        assert not kept, f"refused, yet kept in the spool or dead/: {sorted(kept)}"
        arriving = [*self.data.glob("incoming/*"), *self.data.glob("processes/*/incoming/*")]
        for path in arriving:
            with contextlib.suppress(OSError):  # taken meanwhile
                data = path.read_bytes()
                left = {uid for uid in self.refused if uid.encode() in data}
                assert not left, f"refused, yet left in {path.name}: {sorted(left)}"
        for name in WORKERS:
            delivered = self.refused & set(self.peers[name].held())
            assert not delivered, f"refused, yet delivered to {name}: {sorted(delivered)}"

    @keyword("The last result is at no hospital's PACS")
    def result_nowhere(self) -> None:
        """The last result a worker sent is held by no PACS (a refused one, kept in ``dead/``:
        look for its dead letter first, so that a result on its way would have arrived)."""
        for hospital in HOSPITALS:
            held = self.peers[f"{hospital}-pacs"].held()
            assert self.last_result not in held, f"the result is at {hospital}'s PACS"

    # -- the state database, held by another program -----------------------------------------

    @keyword("Another program holds the write lock of the state database")
    def lock_state(self) -> None:
        """``BEGIN EXCLUSIVE`` on ``data_dir/state.sqlite3`` (as a backup tool or a stray
        ``sqlite3`` shell might): the node's writes wait until :meth:`unlock_state`."""
        db = sqlite3.connect(self.data / "state.sqlite3", isolation_level=None, timeout=TIMEOUT)
        db.execute("BEGIN EXCLUSIVE")
        self.state_lock = db

    @keyword("The other program lets go of the state database")
    def unlock_state(self) -> None:
        db, self.state_lock = self.state_lock, None
        if db is not None:
            db.rollback()
            db.close()
