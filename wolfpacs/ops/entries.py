"""The operator's runtime changes of clients, workers and destinations (add-*, remove-*).

Each change is checked against the whole config, persisted in the store,
then made live, in that order (:meth:`Entries.change`,
:mod:`wolfpacs.config.live`); a new target's sender is started, a removed
one's stopped, and what it still had queued is seen to by the router.
A client's rules change the same way (:mod:`wolfpacs.ops.rules`), under
the same lock.

Error contract: :class:`~wolfpacs.ops.verbs.AdminError` with the reason;
nothing is changed.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from supervisors import ChildSpec, Registry, Supervisor
from wolfpacs.config.live import apply, describe
from wolfpacs.config.model import SECTIONS
from wolfpacs.node.messages import Target, targets
from wolfpacs.node.router import Router
from wolfpacs.ops.verbs import AdminError

if TYPE_CHECKING:
    from collections.abc import Callable

    from wolfpacs.config.live import LiveConfig
    from wolfpacs.config.model import Config, Worker
    from wolfpacs.state.store import Store

__all__ = ["REFUSES_ALL", "Entries"]

logger = logging.getLogger(__name__)

# What a client with neither pool nor rules does, said where one is made.
REFUSES_ALL = "no pool and no rules: it refuses every series until add-rule gives it some"


@dataclass(kw_only=True, eq=False, repr=False)
class Entries:
    """The add-* and remove-* verbs of one node; changes one at a time (:attr:`lock`)."""

    registry: Registry
    live: LiveConfig
    store: Store
    sender_spec: Callable[[Target], ChildSpec]
    # Held by every change of the live config, here, in ops.rules and by the watcher of other
    # nodes' changes (node.changes): each reads the config, then sets one made from it, and
    # two at once would lose one of them. The live config's own (LiveConfig.changing).
    lock: threading.RLock = field(init=False)

    def __post_init__(self) -> None:
        self.lock = self.live.changing

    def _cutoff(self) -> float:
        return time.time() - self.live.get().node.study_idle_timeout

    def change(self, kind: str, name: str, table: dict[str, Any] | None) -> None:
        """Check a runtime change against the whole config, persist it, then make it live.

        The caller holds :attr:`lock`. Raises :class:`ConfigError` if the
        config it makes is invalid; then nothing is persisted or changed.
        """
        config = apply(self.live.get(), [(kind, name, table)])
        self.store.add_runtime_change(kind, name, table)
        self.live.set(config)
        logger.warning(
            "runtime change: %s", describe((kind, name, table)), extra={"event": "admin"}
        )

    def _add(self, kind: str, table: dict[str, Any]) -> dict[str, Any]:
        """Add an entry (and start its sender): persisted, live, then running; or nothing."""
        name = str(table.get("name", ""))
        with self.lock:
            config = self.live.get()
            if any(e.name == name for e in getattr(config, SECTIONS[kind])):
                raise AdminError(f"a {kind} named {name!r} exists; remove it first")
            self.change(kind, name, {k: v for k, v in table.items() if v not in (None, [])})
            target = next((t for t in targets(self.live.get()) if t.name == name), None)
            if target is not None:  # a worker or a destination: its sender starts now
                try:
                    self.registry.call("senders", Supervisor.start_child, self.sender_spec(target))
                except Exception as exc:
                    self.change(kind, name, None)  # undone, as if never added
                    raise AdminError(f"{kind} {name} not added: its sender failed: {exc}") from None
        return {"added": kind, "name": name}

    def add_client(
        self,
        name: str,
        ae_title: str,
        destination: str,
        pool: str | None = None,
        **optional: Any,
    ) -> dict[str, Any]:
        """``optional``: ``calling_ae_titles`` and ``allow`` (lists), ``tls_subject``,
        ``tls_fingerprint`` (its certificate's pin).

        Without ``pool`` the client has no default pool and, having no rules
        yet, refuses every series until ``add-rule`` gives it some (the
        result's ``note`` says so): safe while it is being set up, and what
        the file allows too.
        """
        added = self._add("client", {
            "name": name, "ae_title": ae_title, "destination": destination, "pool": pool,
            **_only(optional, "calling_ae_titles", "allow", "tls_subject", "tls_fingerprint"),
        })  # fmt: skip
        if pool is None:
            added["note"] = REFUSES_ALL
        return added

    def add_worker(
        self, name: str, host: str, port: int, ae_title: str, pool: str, **optional: Any
    ) -> dict[str, Any]:
        """``optional``: ``capacity`` (int), ``allow`` (a list of networks), ``tls`` and
        ``tls_check_hostname`` (bool), ``tls_subject``, ``tls_fingerprint``."""
        return self._add("worker", {
            "name": name, "host": host, "port": port, "ae_title": ae_title, "pool": pool,
            **_only(optional, "capacity", "allow", "tls", "tls_check_hostname", "tls_subject",
                    "tls_fingerprint"),
        })  # fmt: skip

    def add_destination(
        self, name: str, host: str, port: int, ae_title: str, **optional: Any
    ) -> dict[str, Any]:
        """``optional``: ``tls`` and ``tls_check_hostname`` (bool)."""
        return self._add("destination", {
            "name": name, "host": host, "port": port, "ae_title": ae_title,
            **_only(optional, "tls", "tls_check_hostname"),
        })  # fmt: skip

    def remove_client(self, name: str, force: bool = False) -> dict[str, Any]:
        with self.lock:
            if self.live.get().client(name) is None:
                raise AdminError(f"no client {name!r}")
            open_studies = self.store.open_studies_of("client", name, self._cutoff())
            if open_studies and not force:
                raise AdminError(
                    f"client {name} has {open_studies} open studies whose derived series would "
                    "have nowhere to go; wait, or --force"
                )
            self.change("client", name, None)
        return {"removed": "client", "name": name}

    def remove_worker(self, name: str, force: bool = False) -> dict[str, Any]:
        return self._remove_target("worker", name, force)

    def remove_destination(self, name: str, force: bool = False) -> dict[str, Any]:
        return self._remove_target("destination", name, force)

    def _remove_target(self, kind: str, name: str, force: bool) -> dict[str, Any]:
        """Remove a worker or destination; what it still had queued is seen to by the router.

        A removed worker's queued instances are routed anew to the rest of its
        pool (their studies recorded as moved); a removed destination's go to
        ``dead/``. Without ``--force`` a target with work is refused.
        """
        with self.lock:
            config = self.live.get()
            entry = getattr(config, kind)(name)
            if entry is None:
                raise AdminError(f"no {kind} {name!r}")
            users = [c.name for c in config.clients if c.destination == name]
            if users:  # even --force: a client without a destination is no valid config
                raise AdminError(f"destination {name} is named by clients {', '.join(users)}: "
                                 "remove them first")  # fmt: skip
            if kind == "worker":
                _last_of_a_named_pool(config, entry)
            busy = []
            queued = len(self.store.items_of(name))
            if queued:
                busy.append(f"{queued} queued instances")
            if kind == "worker":
                open_studies = self.store.open_studies_of("worker", name, self._cutoff())
                if open_studies:
                    busy.append(f"{open_studies} open studies")
            if busy and not force:
                where = "routed anew" if kind == "worker" else "sent to dead/"
                raise AdminError(
                    f"{kind} {name} has {' and '.join(busy)}; drain or move it first, "
                    f"or --force (its queued instances are then {where})"
                )
            self.change(kind, name, None)
            self.registry.call("senders", Supervisor.terminate_child, f"sender:{name}")
            self.registry.call("senders", Supervisor.delete_child, f"sender:{name}")
            if kind == "worker":
                self.store.delete_worker_state(name)  # a worker added again starts active
        swept = self.registry.call("router", Router.sweep_orphans)  # nobody sends those any more
        return {"removed": kind, "name": name, **swept}


def _last_of_a_named_pool(config: Config, worker: Worker) -> None:
    """Refuse to remove the last worker of a pool that a client or a rule names.

    Even with --force, as for a destination: the config left would name a
    pool nobody serves (the checker would refuse it too; this says who names it).
    """
    if len(config.pool(worker.pool)) > 1:
        return
    users = []
    for client in config.clients:
        why = [f"rules[{i}]" for i, rule in enumerate(client.rules) if rule.pool == worker.pool]
        why = (["its pool"] if client.pool == worker.pool else []) + why
        if why:
            users.append(f"{client.name} ({', '.join(why)})")
    if users:
        raise AdminError(
            f"worker {worker.name} is the last of pool {worker.pool!r}, which clients "
            f"{'; '.join(users)} name: add another worker to it first, or change them "
            "(remove-rule, remove-client)"
        )


def _only(optional: dict[str, Any], *known: str) -> dict[str, Any]:
    unknown = set(optional) - set(known)
    if unknown:
        raise AdminError(f"unknown arguments: {', '.join(sorted(unknown))}")
    return optional
