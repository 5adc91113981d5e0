"""The chaos run's ledger: what was acknowledged, against what the peers really hold.

Pure bookkeeping over plain records, so that it can be checked on its own:
an acknowledged instance is *delivered* when a worker holds one with the
same SOPInstanceUID and the same dataset bytes, *altered* when a worker holds
one with other bytes, *dead* when it is in ``dead/`` with a reason, and
*lost* when none of these. A study held by two workers is *misrouted* (a
chaos run moves nothing); so is a derived instance at another client's PACS.

A dead letter is a failure too unless the run caused its kind on purpose
(``expected_dead``: a schedule that makes a peer refuse for good, say): a
lost route whose derived series ends in ``dead/`` as "unknown study" must
not pass for accounted.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Ledger", "Sent"]


@dataclass(frozen=True)
class Sent:
    """One instance a hospital (or a worker, for a derived one) sent, and its fate there."""

    sop_instance_uid: str
    study_uid: str
    owner: str  # the client it belongs to
    digest: str
    acknowledged: bool


@dataclass
class Ledger:
    """Counts for the run; :meth:`clean` says whether it proved what it must."""

    acknowledged: int = 0
    delivered: int = 0
    duplicated: int = 0
    altered: int = 0
    dead: int = 0
    lost: int = 0
    misrouted_studies: int = 0
    unexplained_dead: int = 0  # dead letters of a kind the run did not cause on purpose
    refused: int = 0
    derived_acknowledged: int = 0
    derived_delivered: int = 0
    derived_lost: int = 0
    derived_misrouted: int = 0
    restarts: dict[str, int] = field(default_factory=dict)
    crashes: int = 0
    node_kills: int = 0
    process_kills: int = 0  # kill -9 of one process of a node of several ([node] processes)
    power_cuts: int = 0
    node_exits: int = 0
    store_restarts: int = 0  # of the database server several nodes share
    adoptions: int = 0  # queues a live node took over from a dead one
    faults: int = 0
    wall_s: float = 0.0
    lost_examples: list[str] = field(default_factory=list)
    dead_kinds: dict[str, int] = field(default_factory=dict)

    @property
    def misrouted(self) -> int:
        return self.misrouted_studies + self.derived_misrouted

    def clean(self) -> bool:
        """No loss, nothing misrouted, nothing altered, no dead letter the run did not cause."""
        return not (
            self.lost or self.derived_lost or self.misrouted or self.altered
            or self.unexplained_dead
        )  # fmt: skip

    @classmethod
    def count(
        cls,
        sent: list[Sent],
        at_workers: dict[str, list[tuple[str, str, str]]],
        derived: list[Sent],
        at_pacs: dict[str, list[tuple[str, str, str]]],
        dead: dict[str, str],
        *,
        expected_dead: frozenset[str] = frozenset(),
    ) -> Ledger:
        """The ledger of a run.

        Args:
            sent: every instance the hospitals tried to send, acknowledged or not.
            at_workers: worker → (SOPInstanceUID, StudyInstanceUID, digest) it holds.
            derived: every derived instance the workers sent back.
            at_pacs: client → what its PACS holds, as for ``at_workers``.
            dead: SOPInstanceUID → kind (the reason in one word) of each dead letter.
            expected_dead: the kinds this run causes on purpose.
        """
        ledger = cls()
        for kind in dead.values():
            ledger.dead_kinds[kind] = ledger.dead_kinds.get(kind, 0) + 1
            if kind not in expected_dead:
                ledger.unexplained_dead += 1
        held: dict[str, list[str]] = defaultdict(list)  # uid → digests held
        studies: dict[str, set[str]] = defaultdict(set)  # study → workers holding it
        for worker, records in at_workers.items():
            for uid, study, digest in records:
                held[uid].append(digest)
                studies[study].add(worker)
        for item in sent:
            if not item.acknowledged:
                ledger.refused += 1
                continue
            ledger.acknowledged += 1
            digests = held.get(item.sop_instance_uid, [])
            if item.digest in digests:
                ledger.delivered += 1
                ledger.duplicated += digests.count(item.digest) - 1
            elif digests:
                ledger.altered += 1
            elif item.sop_instance_uid in dead:
                ledger.dead += 1
            else:
                ledger.lost += 1
                if len(ledger.lost_examples) < 10:
                    ledger.lost_examples.append(item.sop_instance_uid)
        ledger.misrouted_studies = sum(1 for owners in studies.values() if len(owners) > 1)
        where: dict[str, Counter[str]] = defaultdict(Counter)  # derived uid → clients holding
        for client, records in at_pacs.items():
            for uid, _study, _digest in records:
                where[uid][client] += 1
        for item in derived:
            if not item.acknowledged:
                continue
            ledger.derived_acknowledged += 1
            holders = where.get(item.sop_instance_uid, Counter())
            if item.owner in holders:
                ledger.derived_delivered += 1
            elif item.sop_instance_uid not in dead:
                ledger.derived_lost += 1
            ledger.derived_misrouted += sum(1 for c in holders if c != item.owner)
        return ledger

    def as_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "misrouted": self.misrouted, "clean": self.clean()}

    def render(self) -> str:
        rows = [
            ("instances acknowledged", self.acknowledged),
            ("  delivered (SOPInstanceUID and bytes)", self.delivered),
            ("  duplicated (delivered more than once)", self.duplicated),
            ("  in dead/ with a reason", self.dead),
            ("  altered on the way", self.altered),
            ("  LOST", self.lost),
            ("DEAD LETTERS the run did not cause on purpose", self.unexplained_dead),
            ("refused (the sender got a failure status)", self.refused),
            ("derived instances acknowledged", self.derived_acknowledged),
            ("  at their client's PACS", self.derived_delivered),
            ("  LOST", self.derived_lost),
            ("MISROUTED (studies on two workers, derived at another PACS)", self.misrouted),
            ("faults injected", self.faults),
            ("  actor crashes among them", self.crashes),
            ("kill -9 of a node", self.node_kills),
            ("kill -9 of one process of a node", self.process_kills),
            ("  with a power cut (LazyFS)", self.power_cuts),
            ("node exits by escalation", self.node_exits),
            ("restarts of the database server", self.store_restarts),
            ("queues adopted from a dead node", self.adoptions),
            ("actor restarts", sum(self.restarts.values())),
            ("wall time, s", round(self.wall_s, 1)),
        ]
        width = max(len(label) for label, _ in rows)
        lines = [f"{label.ljust(width)}  {value}" for label, value in rows]
        if self.restarts:
            lines.append(
                "restarts: " + ", ".join(f"{k} {v}" for k, v in sorted(self.restarts.items()))
            )
        if self.dead_kinds:
            lines.append("dead letters by kind: " + ", ".join(
                f"{k} {v}" for k, v in sorted(self.dead_kinds.items())))  # fmt: skip
        if self.lost_examples:
            lines.append("lost, e.g.: " + ", ".join(self.lost_examples))
        lines.append("CLEAN: nothing acknowledged was lost or misrouted" if self.clean()
                     else "FAILED: see LOST / MISROUTED / DEAD LETTERS above")  # fmt: skip
        return "\n".join(lines)
