"""Keywords that check the DICOM Conformance Statement's facts against the running node.

``docs/conformance-statement.md`` is read as data: its Markdown tables (by the heading above
them) name the transfer syntaxes, the limits and their defaults, the status codes. Each is then
asked of the node the suites started, over real associations from pynetdicom (a real peer on
loopback, not a mock), or of ``wolfpacs config example``.
"""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

from hospital_network import HOSPITALS, NODE_ENV, REPO, ae
from robot.api.deco import keyword

STATEMENT = REPO / "docs" / "conformance-statement.md"
README = REPO / "README.md"


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


class Conformance:
    """A mixin of :class:`WolfPACS.WolfPACS`: needs the network's ``ports``."""

    ports: dict[str, int]

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

    def associate(self, side: str, contexts: list[tuple[str, str]]) -> Any:
        """An association from a hospital (outside) or a worker (inside) proposing ``contexts``."""
        from pynetdicom import AE

        if side == "outside":
            called, calling = HOSPITALS["stockholm"]
        else:
            called, calling = "WOLFPACS", ae("gpu-a")
        peer = AE(ae_title=calling)
        for abstract, syntax in contexts:
            peer.add_requested_context(abstract, [syntax])
        assoc = peer.associate("127.0.0.1", self.ports[side], ae_title=called)
        assert assoc.is_established, f"association to the {side} port not established"
        return assoc

    @keyword("The ${side} port accepts ${abstract} in ${syntax} when proposed")
    def accepts(self, side: str, abstract: str, syntax: str) -> None:
        assoc = self.associate(side, [(abstract, syntax)])
        try:
            got = [
                (str(c.abstract_syntax), str(c.transfer_syntax[0])) for c in assoc.accepted_contexts
            ]
            assert got == [(abstract, syntax)], f"accepted {got}, not {abstract} in {syntax}"
        finally:
            assoc.release()

    @keyword("The ${side} port refuses ${abstract} in ${syntax}")
    def refuses(self, side: str, abstract: str, syntax: str) -> None:
        """The node accepts the association (a CT context keeps it up) but not this pair."""
        keep = ("1.2.840.10008.5.1.4.1.1.2", "1.2.840.10008.1.2.1")
        assoc = self.associate(side, [keep, (abstract, syntax)])
        try:
            got = [
                (str(c.abstract_syntax), str(c.transfer_syntax[0])) for c in assoc.accepted_contexts
            ]
            assert (abstract, syntax) not in got, f"{abstract} in {syntax} was accepted"
        finally:
            assoc.release()

    @keyword("What the ${side} port says of itself in its A-ASSOCIATE-AC")
    def acceptor(self, side: str) -> dict[str, str]:
        """Maximum PDU length, implementation class UID and version name of the node's answer."""
        assoc = self.associate(side, [("1.2.840.10008.1.1", "1.2.840.10008.1.2")])
        try:
            peer = assoc.acceptor
            return {
                "maximum pdu length": str(peer.maximum_length),
                "implementation class uid": str(peer.implementation_class_uid),
                "implementation version name": str(peer.implementation_version_name),
            }
        finally:
            assoc.release()

    @keyword("The defaults of wolfpacs config example")
    def example_defaults(self) -> dict[str, str]:
        """Every ``[node]`` key of ``wolfpacs config example``, its value as text."""
        result = subprocess.run(
            [sys.executable, "-m", "wolfpacs", "config", "example"],
            capture_output=True,
            text=True,
            timeout=60,
            env=NODE_ENV,
        )
        assert result.returncode == 0, result.stderr
        node = tomllib.loads(result.stdout)["node"]
        return {key: str(value).lower() for key, value in node.items()}
