"""Queue rows whose target is no longer configured: rerouted, or to ``dead/``.

The router sweeps them at its start and every minute (a worker or
destination removed while the node was down, or just now by a race with a
receiver that had routed to it). Only this node's own rows: each node sweeps
its own.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from wolfpacs.node.messages import WAKE, NoWorkerError, targets
from wolfpacs.state.store import WORKER

if TYPE_CHECKING:
    from supervisors import Registry
    from wolfpacs.config.model import Config
    from wolfpacs.state.spool import Spool
    from wolfpacs.state.store import Store

__all__ = ["sweep"]

logger = logging.getLogger(__name__)


def sweep(
    config: Config,
    store: Store,
    spool: Spool,
    registry: Registry,
    route: Callable[[str, str, str | None], str],
) -> dict[str, int]:
    """See to queued rows whose target ``config`` no longer has; how many of each fate.

    A removed worker's rows go to the worker their study routes to now
    (``route(client, study_uid, pool)``: the router's, which routes the study
    anew if need be and records it as moved); a removed destination's rows,
    and rows whose study can go nowhere, go to ``dead/``. Their sender is
    gone, so nothing else touches them meanwhile.

    Raises:
        UnavailableError: the store did not answer (the router tries at its next sweep).
    """
    counts = {"rerouted": 0, "dead_letters": 0}
    known = {t.name for t in targets(config)}
    for target in [t for t in store.queue_stats() if t not in known]:
        for item in store.items_of(target):
            why = f"destination {target} was removed"
            if item.kind == WORKER:
                try:
                    if store.get_route(item.client, item.study_uid, item.pool) is None:
                        raise NoWorkerError("its study has no route")
                    worker = route(item.client, item.study_uid, item.pool or None)
                except NoWorkerError as exc:
                    why = f"worker {target} was removed and {exc}"
                else:
                    path = spool.relocate(item.path, worker)
                    store.retarget(item.id, worker, path)
                    registry.tell(f"sender:{worker}", WAKE)
                    counts["rerouted"] += 1
                    continue
            letter = {**item.describe(), "reason": why}
            spool.bury(spool.path(item.path), letter, kind="target_removed")
            store.remove_item(item.id)
            counts["dead_letters"] += 1
    if any(counts.values()):
        logger.warning("orphaned queue rows: %s", counts, extra={"event": "admin"})
    return counts
