"""The operator's housekeeping: dead letters (list, retry) and purges past retention.

Error contract: :class:`~wolfpacs.ops.verbs.AdminError` with the reason;
a dead letter that cannot be retried is left as it was.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from supervisors import Registry
from wolfpacs.node.messages import WAKE, targets
from wolfpacs.node.recovery import owner_by_route, pool_by_route
from wolfpacs.node.router import NotHomeError, Router
from wolfpacs.node.store import PURGE_BATCH
from wolfpacs.ops.verbs import AdminError
from wolfpacs.state.store import DESTINATION, WORKER, QueueItem

if TYPE_CHECKING:
    from wolfpacs.config.live import LiveConfig
    from wolfpacs.state.spool import Spool
    from wolfpacs.state.store import Store

__all__ = ["Housekeeping"]

logger = logging.getLogger(__name__)


@dataclass(kw_only=True, eq=False, repr=False)
class Housekeeping:
    """The dead, retry-dead and purge verbs of one node."""

    registry: Registry
    live: LiveConfig
    spool: Spool
    store: Store

    def dead(self) -> list[dict[str, Any]]:
        return [
            {**record, "id": str(record.get("file", "")).removesuffix(".dcm")}
            for record in self.spool.dead_letters()
        ]

    def purge(self, dry_run: bool = False) -> dict[str, Any]:
        """What the daily purges do, now: studies idle past ``retention_days`` (never one with
        instances queued), dead letters past ``dead_retention_days``, overridden runtime
        changes. In batches: the node goes on taking instances meanwhile."""
        node = self.live.get().node
        studies = 0
        if node.retention_days:
            cutoff = time.time() - node.retention_days * 86400
            while True:
                # the store actor's batches; a dry run counts them all at once
                batch = self.store.purge(cutoff, 1 << 62 if dry_run else PURGE_BATCH, dry_run)
                studies += batch
                if dry_run or batch < PURGE_BATCH:
                    break
        dead = 0
        if node.dead_retention_days:
            dead = self.spool.purge_dead(node.dead_retention_days * 86400, dry_run)
        compacted = self.store.compact_runtime_changes(dry_run)
        if not dry_run:
            logger.warning(
                "purge by an operator: %d studies, %d dead letters, %d runtime changes",
                studies, dead, compacted, extra={"event": "admin"},
            )  # fmt: skip
        return {"dry_run": dry_run, "studies": studies, "dead_letters": dead,
                "runtime_changes": compacted}  # fmt: skip

    def retry_dead(self, id: str | None = None, all: bool = False) -> dict[str, Any]:
        """Queue dead letters again for their target (a derived one: its study's destination)."""
        letters = [d for d in self.dead() if all or d["id"] == id]
        if not letters:
            raise AdminError("no such dead letter (see 'dead')" if id else "give ID or --all")
        retried, failed = [], {}
        for letter in letters:
            try:
                self._requeue(letter)
                retried.append(letter["id"])
            except AdminError as exc:
                failed[letter["id"]] = str(exc)
            except Exception as exc:  # one unreadable letter must not stop the others
                logger.exception("retry-dead %s failed", letter.get("id"))
                failed[letter["id"]] = f"{type(exc).__name__}: {exc}"
        return {"retried": retried, "not_retried": failed}

    def _requeue(self, letter: dict[str, Any]) -> None:
        spool = self.spool
        dead_file = spool.dead / letter["file"]
        target, kind = letter.get("target"), letter.get("target_kind", WORKER)
        owner, pool = letter.get("client"), letter.get("pool")
        if target is None:  # refused on the inside port: it may have a home now
            worker = letter.get("worker", "")
            try:
                home = self.registry.call(
                    "router", Router.return_route, letter["study_uid"], worker
                )
            except NotHomeError as exc:
                raise AdminError(f"still refused: {exc}") from None
            target, kind, owner, pool = home.destination, DESTINATION, home.client, home.pool
        if not any(t.name == target for t in targets(self.live.get())):
            raise AdminError(f"{target} is no longer configured")
        if owner is None:  # a letter from before letters named their client
            owner = owner_by_route(self.store, self.live.get(), letter["study_uid"], target, kind)
            if owner is None:
                raise AdminError(f"whose study {letter['study_uid']} is cannot be told")
        if pool is None:
            pool = pool_by_route(self.store, owner, letter["study_uid"], target, kind)
        size = dead_file.stat().st_size
        # A link, not a move: until its row is committed, the dead letter stays whole.
        rel = spool.adopt(dead_file, target, letter.get("sop_instance_uid", "instance"), owner)
        try:
            self.store.enqueue(QueueItem(
                target, kind, rel, owner, letter["study_uid"], letter["sop_class_uid"],
                letter["sop_instance_uid"], letter["transfer_syntax"], size, time.time(),
                pool=pool,
            ))  # fmt: skip
        except Exception:
            spool.remove(rel)
            raise
        dead_file.unlink(missing_ok=True)
        (spool.dead / f"{letter['id']}.json").unlink(missing_ok=True)
        self.registry.tell(f"sender:{target}", WAKE)
