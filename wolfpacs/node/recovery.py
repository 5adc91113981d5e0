"""Recovery at start: make the spool and the queue agree, and replay the runtime changes.

Plain functions over a :class:`~wolfpacs.state.spool.Spool` and a
:class:`~wolfpacs.state.store.Store`, run before the tree starts (never
while receivers work), testable without actors.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from wolfpacs.config.live import Change, apply, describe
from wolfpacs.config.model import ConfigError
from wolfpacs.dicom.peek import PeekError, peek
from wolfpacs.state.spool import owner_of
from wolfpacs.state.store import DESTINATION, WORKER, QueueItem

if TYPE_CHECKING:
    import os

    from wolfpacs.config.model import Config
    from wolfpacs.dicom.peek import RoutingTags
    from wolfpacs.state.spool import Spool
    from wolfpacs.state.store import Store

__all__ = ["owner_by_route", "recover", "replay", "requeue"]

logger = logging.getLogger(__name__)


def recover(spool: Spool, store: Store, config: Config) -> Config:
    """Make ``spool`` and ``store``'s queue agree; the live config (``config`` and its changes).

    A queue row whose file is not where the row says but elsewhere in the
    spool (a crash in the middle of a move) is pointed at it. A row whose
    file is gone was delivered just before a crash, or its instance was
    never acknowledged (its move into the queue had not reached the disk
    when its row was written): the row goes. A file with no row gets one
    again from its own tags: queue rows are not fsynced (the file is), so
    a power loss may take the row of an acknowledged instance; one never
    acknowledged is then sent too (at least once). A file that is no DICOM
    goes to ``dead/``, a copy cut by a crash (``.part``) is removed.

    ``spool`` must be prepared (its directories exist). A runtime change
    that no longer fits the file (edited since) is skipped with an error in
    the log, so that the node can always start.

    With several nodes on one store, a node reconciles its own queue only:
    the store's rows of its node (``store`` is made for it), and the files
    of its own queue directory. A row of its own whose file lies in another
    node's directory of a shared spool (a row it adopted) is kept while the
    file is there; a file of its directory whose row another node adopted
    is that node's, and left alone. (With ``synchronous_commit = off`` a
    PostgreSQL crash may lose a queue row of a fsynced file: only the node
    whose directory holds the file rebuilds it, at its next start, so a
    node that never comes back leaves such a file unqueued; it is not lost,
    but waits in its directory for a node of that id.)
    """
    files = spool.queued_files()
    for path in sorted(store.queued_paths() - files):
        if spool.path(path).exists():  # another node's file, adopted; or a file from before
            continue
        found = spool.find(path.rsplit("/", 1)[-1])
        if found is not None and store.repath(path, found):
            files.discard(found)
            logger.warning("queue row of %s found its file at %s", path, found)
        else:
            logger.warning("queue row of %s had no file (delivered, or never "
                           "acknowledged, before a crash)", path)  # fmt: skip
            store.drop_missing({path})
    changes = store.runtime_changes()
    live = replay(config, changes)
    kinds = {**{d.name: DESTINATION for d in live.destinations},
             **{w.name: WORKER for w in live.workers}}  # fmt: skip
    for orphan in sorted(files - store.queued_paths(all_nodes=True)):
        _adopt(spool, store, orphan, kinds, live)
    spool.recount()
    queued = store.queued_paths()
    if queued:
        logger.info("%d queued instances to deliver", len(queued))
    if changes:
        logger.info("%d runtime changes applied to %s", len(changes), config.source)
    return live


def requeue(spool: Spool, store: Store, target: str, kind: str, before: float) -> int:
    """At run time, after a store outage: the files of ``target``'s queue written before
    ``before`` (``time.time()``) that have no queue row get theirs again; how many.

    Those are acknowledged instances whose row a database crash lost, or
    instances whose commit the outage cut short (the receiver answered
    0xA702 and kept the file, not knowing whether the row was written):
    sent though maybe never acknowledged, at least once. Only the caller's
    target (its sender, which alone deletes its rows and files, calls it
    between two batches), only files that name their client (every file
    since clients were kept in names; older ones wait for :func:`recover`
    at the next start), and only files older than the outage: a receiver
    still at work has a newer file, and its own commit is idempotent by
    path anyway.

    Raises:
        UnavailableError: the store is unavailable again (the caller retries).
    """
    rows = {item.path for item in store.items_of(target)}
    directory = spool.queues / target
    requeued = 0
    for path in sorted(directory.glob("*")) if directory.is_dir() else []:
        rel = spool.rel(path)  # as its row keeps it: under spool_dir, shared or not
        owner = owner_of(rel)
        if rel in rows or path.suffix == ".part" or owner is None:
            continue
        try:
            stat = path.stat()
            if stat.st_mtime >= before:
                continue
            tags = peek(path)
        except (OSError, PeekError):  # delivered meanwhile, or unreadable: recover() sees to it
            continue
        enqueue_file(store, rel, target=target, kind=kind, owner=owner, tags=tags, stat=stat)
        requeued += 1
    if requeued:
        logger.warning("%d queue rows of %s re-created from their files after a store outage",
                       requeued, target, extra={"event": "requeued"})  # fmt: skip
    return requeued


def replay(config: Config, changes: list[Change]) -> Config:
    """``config`` with each change that still fits it applied, in order."""
    for n, change in enumerate(changes, 1):
        try:
            config = apply(config, [change])
        except ConfigError as exc:  # the file was edited since: keep the node startable
            what = describe(change)
            logger.error("runtime change %d (%s) no longer fits; skipped: %s", n, what, exc)
    return config


def _adopt(spool: Spool, store: Store, rel: str, kinds: dict[str, str], live: Config) -> None:
    """Give a spool file without a queue row its row again, or say why it cannot have one.

    ``kinds``: each configured target's kind (worker or destination).
    """
    path = spool.path(rel)
    if path.suffix == ".part":
        logger.info("removing %s: a copy cut short by a crash", rel)
        spool.remove(rel)
        return
    target = path.parent.name
    try:
        tags = peek(path)
    except PeekError as exc:
        if not path.exists():  # delivered meanwhile, by a node that had adopted its row
            return
        spool.bury(path, {"reason": f"spool file without a queue row, unreadable: {exc}",
                          "target": target}, kind="refused")  # fmt: skip
        return
    if target not in kinds:
        spool.bury(path, {"reason": f"spool file without a queue row for {target}, "
                          "which is no longer configured", "target": target,
                          "study_uid": tags.study_uid,
                          "sop_instance_uid": tags.sop_instance_uid},
                   kind="target_removed")  # fmt: skip
        return
    owner = owner_of(rel) or owner_by_route(store, live, tags.study_uid, target, kinds[target])
    if owner is None:
        spool.bury(path, {"reason": f"spool file without a queue row for {target}, whose study "
                          f"{tags.study_uid} more than one client has, or none",
                          "target": target, "study_uid": tags.study_uid,
                          "sop_instance_uid": tags.sop_instance_uid},
                   kind="owner_unknown")  # fmt: skip
        return
    enqueue_file(store, rel, target=target, kind=kinds[target], owner=owner, tags=tags,
                 stat=path.stat())  # fmt: skip
    logger.warning("queue row of %s re-created from the file (lost in a power cut?)", rel)


def enqueue_file(
    store: Store, rel: str, *, target: str, kind: str, owner: str, tags: RoutingTags,
    stat: os.stat_result,
) -> None:  # fmt: skip
    """A queue row again for the spool file ``rel`` of ``owner``'s instance (its ``tags``, as
    peeked), in the pool of its study's route: what recovery and ``requeue`` both make."""
    store.enqueue(QueueItem(
        target, kind, rel, owner, tags.study_uid, tags.sop_class_uid, tags.sop_instance_uid,
        tags.transfer_syntax, stat.st_size, stat.st_mtime,
        pool=pool_by_route(store, owner, tags.study_uid, target, kind),
    ))  # fmt: skip


def pool_by_route(store: Store, client: str, study_uid: str, target: str, kind: str) -> str:
    """The pool of the route a re-created row belongs to (files and dead letters from
    before rows named it): the one whose worker is ``target`` (for a result: any of the
    client's); ``""`` if the study has none."""
    routes = [r for r in store.routes_of(study_uid) if r.client == client]
    mine = [r for r in routes if r.worker == target] if kind == WORKER else routes
    return mine[0].pool if mine else ""


def owner_by_route(
    store: Store, live: Config, study_uid: str, target: str, kind: str
) -> str | None:
    """Whose study an instance for ``target`` is, where nothing else says (files and dead
    letters from before queue rows named their client).

    The one client whose study of that UID went to that worker (or whose
    destination that is); None if no client's, or more than one client's, does.
    """

    def home(client: str) -> str | None:
        settings = live.client(client)
        return settings.destination if settings is not None else None

    routes = store.routes_of(study_uid)
    if kind == WORKER:
        owners = {r.client for r in routes if r.worker == target}
    else:
        owners = {r.client for r in routes if home(r.client) == target}
    return owners.pop() if len(owners) == 1 else None
