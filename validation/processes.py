"""A node of several processes (``[node] processes = N``): the keywords that look at them.

The operator sees the processes where the README says: ``wolfpacs ctl tree`` (the processes at
the top, each with its pid, restarts and node id ``<node_id>.<n>``), ``wolfpacs ctl nodes``
(each process a node of the store, with what it holds), ``ctl kill process:<n>`` (``kill -9``
of one, with ``fault_injection``) and ``/metrics`` (added up, with ``wolfpacs_processes``).
"""

from __future__ import annotations

import os
from typing import Any

from hospital_network import Network, poll
from pydicom.uid import generate_uid
from robot.api.deco import keyword

MAX_STUDIES = 16  # no study split over two processes: 1 in 2**16 with two (the kernel's hash)


class Processes(Network):
    """Keywords about the processes of the node."""

    def processes(self) -> dict[str, dict[str, Any]]:
        """``ctl tree``'s top level: process number → pid, alive, restarts, node_id."""
        tree = self.ctl("tree")
        return {p["id"].removeprefix("process:"): p for p in tree["children"]}

    @keyword("The node runs ${count} processes")
    def runs(self, count: str) -> dict[str, dict[str, Any]]:
        """Polls ``ctl tree`` until ``count`` processes run, each a node of its own id."""

        def up() -> dict[str, dict[str, Any]] | None:
            seen = self.processes()
            alive = all(p["alive"] and p.get("node_id") for p in seen.values())
            return seen if len(seen) == int(count) and alive else None

        return poll(up, f"{count} processes running", timeout=60)

    @keyword("The pids of the node's processes")
    def pids(self) -> list[int]:
        return [int(p["pid"]) for p in self.processes().values()]

    @keyword("Hospital ${hospital} sends studies until every process of the node holds some")
    def spread(self, hospital: str) -> list[str]:
        """New studies, each two series of two instances on two associations, while the workers
        are down, until ``ctl nodes`` shows every process holding queued instances and the two
        associations of one study at least were taken by two processes (which process takes an
        association is the kernel's choice: at most ``MAX_STUDIES`` studies); the studies."""
        count = len(self.processes())
        studies, split = [], False
        before = self.queued_by_process()
        for _ in range(MAX_STUDIES):
            study, took = str(generate_uid()), set()
            for description in ("HEAD", "NECK"):
                files = self.write_series(study, 2, description=description)
                self.expect_acknowledged(hospital, study, description, files)
                after = self.queued_by_process()
                took |= {n for n, queued in after.items() if queued > before.get(n, 0)}
                before = after
            studies.append(study)
            split = split or len(took) > 1
            if split and len(before) == count and all(before.values()):
                return studies
        raise AssertionError(
            f"{MAX_STUDIES} studies, and not every process took one, or none was split"
        )

    def queued_by_process(self) -> dict[str, int]:
        """Each process's node id → the instances it holds queued (``ctl nodes``)."""
        return {n["node_id"]: n["queued"] for n in self.ctl("nodes") if "." in n["node_id"]}

    def expect_acknowledged(self, hospital: str, study: str, description: str, files: Any) -> None:
        raise NotImplementedError  # the hospitals' keyword, in WolfPACS.py

    @keyword("Kill process ${n} of the node")
    def kill_process(self, n: str) -> int:
        """``ctl kill process:<n>`` (``kill -9`` of that process); its pid."""
        self.killed = (n, self.processes()[n]["node_id"])
        return int(self.ctl("kill", f"process:{n}")["pid"])

    @keyword("The killed process runs again as the same node, restarted ${count} time")
    def runs_again(self, count: str) -> None:
        n, node_id = self.killed

        def again() -> bool:
            p = self.processes().get(n)
            return bool(p and p["alive"] and p["restarts"] == int(count) and p.get("node_id"))

        poll(again, f"process {n} running again after {count} restart", timeout=60)
        after = self.processes()[n]["node_id"]
        assert after == node_id, f"process {n} came back as {after}, not {node_id}"

    @keyword("No process of ${pids} is left")
    def none_left(self, pids: list[int]) -> None:
        def gone(pid: int) -> bool:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return True
            with open(f"/proc/{pid}/stat") as stat:  # a zombie is gone, not yet reaped
                return stat.read().rsplit(")", 1)[1].split()[0] == "Z"

        left = [pid for pid in pids if not gone(pid)]
        assert not left, f"processes {left} outlived the node's SIGTERM"
