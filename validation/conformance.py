"""Keywords that check the DICOM Conformance Statement's facts against the running node.

``docs/conformance-statement.md`` is read as data: its Markdown tables (by the heading above
them) name the transfer syntaxes, the association policies, the limits and their defaults, the
status codes. Each is then asked of the node the suites started: over real associations from
pynetdicom (a real peer on loopback, not a mock), PDUs made by hand where no peer would send
them, and the node's effective config (``wolfpacs ctl config --export``). Values are compared
exactly, as text: an AE title is case-sensitive.
"""

from __future__ import annotations

import json
import struct
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

from hospital_network import HOSPITALS, NODE_ENV, REPO, ae
from pydicom import dcmread
from pydicom.uid import generate_uid
from robot.api.deco import keyword

from wolfpacs.dicom import acse
from wolfpacs.dicom.errors import AssociationError
from wolfpacs.dicom.pdu import LAST, P_DATA_TF, PDU_PDV
from wolfpacs.testing.synthetic import ct_instance, write

STATEMENT = REPO / "docs" / "conformance-statement.md"
README = REPO / "README.md"
CT, MR = "1.2.840.10008.5.1.4.1.1.2", "1.2.840.10008.5.1.4.1.1.4"
VERIFICATION, EXPLICIT, IMPLICIT = "1.2.840.10008.1.1", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2"
# The keys the suites set themselves (free ports on loopback): their defaults are read from
# `wolfpacs config example`, every other key's from the running node.
SET_BY_THE_SUITES = ("outside_port", "inside_port")


def tables(path: Path) -> dict[str, list[dict[str, str]]]:
    """Every Markdown table of ``path``, by the text of the heading above it: rows as dicts."""
    found: dict[str, list[dict[str, str]]] = {}
    heading, header = "", None
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("#"):
            heading, header = line.lstrip("#").strip(), None
        elif line.startswith("|"):
            cells = [c.strip().strip("`") for c in line.strip().strip("|").split("|")]
            if header is None:
                header = [c.lower() for c in cells]
            elif not set(line) <= set("|-: "):
                found.setdefault(heading, []).append(dict(zip(header, cells, strict=False)))
        else:
            header = None
    return found


def as_text(value: Any) -> str:
    """A TOML value as the statement writes it: numbers as Python prints them, text as is."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def c_store_rq(sop_class: str, sop_instance: str, message_id: int) -> bytes:
    """A C-STORE-RQ command set (Implicit VR LE, PS3.7 annex E) with a dataset."""

    def uid(text: str) -> bytes:
        return text.encode() + (b"\x00" if len(text) % 2 else b"")

    elements = [
        (0x0002, uid(sop_class)),
        (0x0100, struct.pack("<H", 0x0001)),
        (0x0110, struct.pack("<H", message_id)),
        (0x0700, struct.pack("<H", 0)),
        (0x0800, struct.pack("<H", 0x0000)),
        (0x1000, uid(sop_instance)),
    ]
    body = b"".join(struct.pack("<HHL", 0, tag, len(v)) + v for tag, v in elements)
    return struct.pack("<HHLL", 0, 0, 4, len(body)) + body


class Conformance:
    """A mixin of :class:`WolfPACS.WolfPACS`: needs the network's ``ports`` and ``root``."""

    ports: dict[str, int]
    root: Path | None
    config: Path

    @keyword("Statement table")
    def statement_table(self, heading: str) -> list[dict[str, str]]:
        """The rows of the statement's table under ``heading``."""
        rows = tables(STATEMENT).get(heading)
        assert rows, f"{STATEMENT.name} has no table under '{heading}'"
        return rows

    @keyword("README table")
    def readme_table(self, heading: str) -> list[dict[str, str]]:
        rows = tables(README).get(heading)
        assert rows, f"README has no table under '{heading}'"
        return rows

    def associate(
        self,
        side: str,
        contexts: list[tuple[str, list[str]]],
        ext_neg: list[Any] | None = None,
        handlers: list[Any] | None = None,
    ) -> Any:
        """An association from a hospital (outside) or a worker (inside) proposing ``contexts``
        (each SOP class with its transfer syntaxes, in that order)."""
        from pynetdicom import AE

        if side == "outside":
            called, calling = HOSPITALS["stockholm"]
        else:
            called, calling = "WOLFPACS", ae("gpu-a")
        peer = AE(ae_title=calling)
        for abstract, syntaxes in contexts:
            peer.add_requested_context(abstract, syntaxes)
        assoc = peer.associate("127.0.0.1", self.ports[side], ae_title=called,
                               ext_neg=ext_neg, evt_handlers=handlers or [])  # fmt: skip
        assert assoc.is_established, f"association to the {side} port not established"
        return assoc

    def agreed(self, side: str, contexts: list[tuple[str, list[str]]]) -> list[tuple[str, str]]:
        """(SOP class, transfer syntax) of each context the node accepts of ``contexts``."""
        assoc = self.associate(side, contexts)
        try:
            return [
                (str(c.abstract_syntax), str(c.transfer_syntax[0])) for c in assoc.accepted_contexts
            ]
        finally:
            assoc.release()

    @keyword("The ${side} port accepts ${abstract} in ${syntax} when proposed")
    def accepts(self, side: str, abstract: str, syntax: str) -> None:
        """Proposed with a CT context that keeps the association up if it is refused."""
        got = self.agreed(side, [(abstract, [syntax]), (CT, [EXPLICIT])])
        assert (abstract, syntax) in got, f"accepted {got}, not {abstract} in {syntax}"

    @keyword("The ${side} port refuses ${abstract} in ${syntax}")
    def refuses(self, side: str, abstract: str, syntax: str) -> None:
        """The node accepts the association (a CT context keeps it up) but not this pair."""
        got = self.agreed(side, [(CT, [EXPLICIT]), (abstract, [syntax])])
        assert (CT, EXPLICIT) in got, f"the CT context was not accepted: {got}"
        assert (abstract, syntax) not in got, f"{abstract} in {syntax} was accepted"

    @keyword("The ${side} port accepts ${abstract} in the first of ${syntaxes} proposed together")
    def accepts_first(self, side: str, abstract: str, syntaxes: list[str]) -> None:
        """One context proposing every one of ``syntaxes``, in that order."""
        got = self.agreed(side, [(abstract, list(syntaxes))])
        assert got == [(abstract, syntaxes[0])], f"accepted {got}, not the first {syntaxes[0]}"

    # -- association policies (3.2) -------------------------------------------------------

    def negotiation(self, side: str) -> tuple[Any, dict[str, tuple[bool, bool]]]:
        """The node's A-ASSOCIATE-AC (the PDU as pynetdicom decodes it) to a request that
        proposes all it may: an asynchronous operations window of 8, role selection for CT
        (SCU and SCP) and MR (SCU only), SOP class extended negotiation and a user identity.
        With the roles proposed."""
        from pynetdicom import build_role, evt
        from pynetdicom.pdu import A_ASSOCIATE_AC
        from pynetdicom.pdu_primitives import (
            AsynchronousOperationsWindowNegotiation,
            SOPClassExtendedNegotiation,
            UserIdentityNegotiation,
        )

        window = AsynchronousOperationsWindowNegotiation()
        window.maximum_number_operations_invoked = 8
        window.maximum_number_operations_performed = 8
        extended = SOPClassExtendedNegotiation()
        extended.sop_class_uid = CT
        extended.service_class_application_information = b"\x01"
        identity = UserIdentityNegotiation()
        identity.user_identity_type = 1
        identity.primary_field = b"radiographer"
        identity.positive_response_requested = True
        roles = {CT: (True, True), MR: (True, False)}
        answers: list[Any] = []

        def on_pdu(event: Any) -> None:
            if isinstance(event.pdu, A_ASSOCIATE_AC):
                answers.append(event.pdu)

        items = [window, extended, identity]
        items += [build_role(uid, scu_role=scu, scp_role=scp) for uid, (scu, scp) in roles.items()]
        contexts = [(VERIFICATION, [IMPLICIT]), (CT, [EXPLICIT]), (MR, [EXPLICIT])]
        assoc = self.associate(side, contexts, items, [(evt.EVT_PDU_RECV, on_pdu)])
        assoc.release()
        assert len(answers) == 1, f"{len(answers)} A-ASSOCIATE-AC seen"
        return answers[0], roles

    def said(self, side: str, item: str, value: str) -> str:
        """What the node's A-ASSOCIATE-AC, or its behaviour, shows of a row of table 3.2, in
        the statement's words: the row's item names the check; an item without one fails."""
        from pynetdicom import pdu_items as pi

        ac, roles = self.negotiation(side)
        user = list(ac.user_information.user_data)

        def of(kind: type) -> list[Any]:
            return [i for i in user if isinstance(i, kind)]

        if item == "application context name":
            return str(ac.application_context_name)
        if item == "maximum length received (announced)":
            return str(of(pi.MaximumLengthSubItem)[0].maximum_length_received)
        if item == "implementation class UID":
            return str(of(pi.ImplementationClassUIDSubItem)[0].implementation_class_uid)
        if item == "implementation version name":
            return str(of(pi.ImplementationVersionNameSubItem)[0].implementation_version_name)
        if item == "asynchronous operations":
            windows = of(pi.AsynchronousOperationsWindowSubItem)
            if not windows:  # its absence means one operation at a time (PS3.7 D.3.3.3)
                return "not supported (one operation at a time)"
            w = windows[0]
            invoked, performed = (
                w.maximum_number_operations_invoked,
                w.maximum_number_operations_performed,
            )
            return f"window {invoked}, {performed}"
        if item == "SCP/SCU role selection":
            answered = {str(i.sop_class_uid): (bool(i.scu_role), bool(i.scp_role))
                        for i in of(pi.SCP_SCU_RoleSelectionSubItem)}  # fmt: skip
            if answered == roles:
                return "answered as proposed for storage SOP classes"
            return f"answered {answered} to {roles}"
        if item == "extended negotiation":
            kinds = (pi.SOPClassExtendedNegotiationSubItem, pi.UserIdentitySubItemAC,
                     pi.SOPClassCommonExtendedNegotiationSubItem)  # fmt: skip
            answered = [type(i).__name__ for i in user if isinstance(i, kinds)]
            return "none" if not answered else ", ".join(answered)
        if item == "largest P-DATA-TF PDU read (length field)":
            return self.largest_pdu_read(side, int(value))
        raise AssertionError(f"no check for the row '{item}' of table 3.2: add one")

    @keyword("The ${side} port does as the statement says of ${item}: ${value}")
    def policy(self, side: str, item: str, value: str) -> None:
        got = self.said(side, item, value)
        assert got == value, (
            f"{item} on the {side} port: the node says {got!r}, the statement {value!r}"
        )

    def largest_pdu_read(self, side: str, length: int) -> str:
        """``length`` if the node reads a P-DATA-TF PDU of ``length`` bytes (its length field)
        and drops one of ``length`` + 1; else what it does."""
        if not self.reads_pdu(side, length):
            return f"less than {length}: a PDU of {length} bytes is dropped"
        if self.reads_pdu(side, length + 1):
            return f"more than {length}: a PDU of {length + 1} bytes is read"
        return str(length)

    def reads_pdu(self, side: str, length: int) -> bool:
        """Whether the node reads a C-STORE whose dataset comes in a first P-DATA-TF PDU of
        ``length`` bytes (any status answered), or drops the connection."""
        assert self.root is not None
        rows = int(((length + 65536) / 2) ** 0.5) + 1  # 16-bit pixels: a dataset over length
        ds = ct_instance(str(generate_uid()), str(generate_uid()), 1, rows=rows, columns=rows)
        path = write(ds, self.root / "sent" / "pdu" / f"{ds.SOPInstanceUID}.dcm")
        data = path.read_bytes()
        dataset = data[132 + 12 + int.from_bytes(data[140:144], "little") :]
        meta = dcmread(path, stop_before_pixels=True).file_meta
        if side == "outside":
            called, calling = HOSPITALS["stockholm"]
        else:
            called, calling = "WOLFPACS", ae("gpu-a")
        assoc = acse.request(("127.0.0.1", self.ports[side]), [(CT, [EXPLICIT])],
                             calling_ae=calling, called_ae=called, max_pdu=16384,
                             connect_timeout=30, acse_timeout=30, timeout=30)  # fmt: skip
        try:
            context = assoc.context_for(CT, EXPLICIT)
            assoc.send_command(context.id, c_store_rq(CT, str(meta.MediaStorageSOPInstanceUID), 7))
            first, rest = dataset[: length - 6], dataset[length - 6 :]
            assert rest, "the dataset fits in the first PDU"
            pdus = [PDU_PDV.pack(P_DATA_TF, length, length - 4, context.id, 0) + first]
            for start in range(0, len(rest), 1 << 20):
                piece = rest[start : start + (1 << 20)]
                end = LAST if start + (1 << 20) >= len(rest) else 0
                pdus.append(PDU_PDV.pack(P_DATA_TF, len(piece) + 6, len(piece) + 2,
                                         context.id, end) + piece)  # fmt: skip
            try:
                for pdu in pdus:
                    assoc.sock.sendall(pdu)
                answer = assoc.receive_command()
            except (AssociationError, OSError):
                return False
            return answer is not None
        finally:
            assoc.close()

    # -- limits and defaults (3.3) ----------------------------------------------------------

    @keyword("The node's effective config")
    def effective_config(self) -> dict[str, str]:
        """Every ``[node]`` key of the running node (``wolfpacs ctl config --export``), its
        value as text (:func:`as_text`); the keys the suites set are left out."""
        result = subprocess.run(
            [sys.executable, "-m", "wolfpacs", "ctl", "--config", str(self.config),
             "config", "--export"],
            capture_output=True, text=True, timeout=60, env=NODE_ENV,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        node = tomllib.loads(result.stdout)["node"]
        return {k: as_text(v) for k, v in node.items() if k not in SET_BY_THE_SUITES}

    @keyword("The defaults of wolfpacs config example for the keys the suites set")
    def example_defaults(self) -> dict[str, str]:
        """The keys :data:`SET_BY_THE_SUITES` of ``wolfpacs config example``, as text."""
        result = subprocess.run(
            [sys.executable, "-m", "wolfpacs", "config", "example"],
            capture_output=True, text=True, timeout=60, env=NODE_ENV,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        node = tomllib.loads(result.stdout)["node"]
        return {k: as_text(node[k]) for k in SET_BY_THE_SUITES}

    @keyword("The suites set no other key of the statement's limits")
    def set_keys(self, keys: list[str]) -> None:
        """The network's config sets none of ``keys`` but :data:`SET_BY_THE_SUITES`: the others'
        values read from the node are its defaults."""
        text = self.config.read_text()
        node = tomllib.loads(text)["node"]
        clash = sorted(k for k in keys if k in node and k not in SET_BY_THE_SUITES)
        assert not clash, f"the suite's config sets {clash}: the node's values are no defaults"

    @keyword("JSON")
    def as_json(self, value: Any) -> str:
        return json.dumps(value)
