"""The operator's runtime changes of clients, workers and destinations (add-*, remove-*).

Each change is checked against the whole config, persisted in the store,
then made live, in that order (:mod:`wolfpacs.config.live`); a new
target's sender is started, a removed one's stopped, and what it still
had queued is seen to by the router.

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
from wolfpacs.config.live import apply
from wolfpacs.config.model import SECTIONS
from wolfpacs.node.messages import Target, targets
from wolfpacs.node.router import Router
from wolfpacs.ops.verbs import AdminError

if TYPE_CHECKING:
    from collections.abc import Callable

    from wolfpacs.config.live import LiveConfig
    from wolfpacs.state.store import Store

__all__ = ["Entries"]

logger = logging.getLogger(__name__)


@dataclass(kw_only=True, eq=False, repr=False)
class Entries:
    """The add-* and remove-* verbs of one node; changes one at a time (a lock)."""

    registry: Registry
    live: LiveConfig
    store: Store
    sender_spec: Callable[[Target], ChildSpec]
    _changing: threading.Lock = field(default_factory=threading.Lock, init=False)

    def _cutoff(self) -> float:
        return time.time() - self.live.get().node.study_idle_timeout

    def _change(self, kind: str, name: str, table: dict[str, Any] | None) -> None:
        """Persist a runtime change, then make it live (in that order)."""
        config = apply(self.live.get(), [(kind, name, table)])
        self.store.add_runtime_change(kind, name, table)
        self.live.set(config)
        logger.warning(
            "%s %s %s at runtime", "added" if table else "removed", kind, name,
            extra={"event": "admin"},
        )  # fmt: skip

    def _add(self, kind: str, table: dict[str, Any]) -> dict[str, Any]:
        """Add an entry (and start its sender): persisted, live, then running; or nothing."""
        name = str(table.get("name", ""))
        with self._changing:
            config = self.live.get()
            if any(e.name == name for e in getattr(config, SECTIONS[kind])):
                raise AdminError(f"a {kind} named {name!r} exists; remove it first")
            self._change(kind, name, {k: v for k, v in table.items() if v not in (None, [])})
            target = next((t for t in targets(self.live.get()) if t.name == name), None)
            if target is not None:  # a worker or a destination: its sender starts now
                try:
                    self.registry.call("senders", Supervisor.start_child, self.sender_spec(target))
                except Exception as exc:
                    self._change(kind, name, None)  # undone, as if never added
                    raise AdminError(f"{kind} {name} not added: its sender failed: {exc}") from None
        return {"added": kind, "name": name}

    def add_client(
        self, name: str, ae_title: str, destination: str, pool: str, **optional: Any
    ) -> dict[str, Any]:
        """``optional``: ``calling_ae_titles`` and ``allow`` (lists), ``tls_subject``,
        ``tls_fingerprint`` (its certificate's pin)."""
        return self._add("client", {
            "name": name, "ae_title": ae_title, "destination": destination, "pool": pool,
            **_only(optional, "calling_ae_titles", "allow", "tls_subject", "tls_fingerprint"),
        })  # fmt: skip

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
        with self._changing:
            if self.live.get().client(name) is None:
                raise AdminError(f"no client {name!r}")
            open_studies = self.store.open_studies_of("client", name, self._cutoff())
            if open_studies and not force:
                raise AdminError(
                    f"client {name} has {open_studies} open studies whose derived series would "
                    "have nowhere to go; wait, or --force"
                )
            self._change("client", name, None)
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
        with self._changing:
            config = self.live.get()
            if getattr(config, kind)(name) is None:
                raise AdminError(f"no {kind} {name!r}")
            users = [c.name for c in config.clients if c.destination == name]
            if users:  # even --force: a client without a destination is no valid config
                raise AdminError(f"destination {name} is named by clients {', '.join(users)}: "
                                 "remove them first")  # fmt: skip
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
            self._change(kind, name, None)
            self.registry.call("senders", Supervisor.terminate_child, f"sender:{name}")
            self.registry.call("senders", Supervisor.delete_child, f"sender:{name}")
            if kind == "worker":
                self.store.delete_worker_state(name)  # a worker added again starts active
        swept = self.registry.call("router", Router.sweep_orphans)  # nobody sends those any more
        return {"removed": kind, "name": name, **swept}


def _only(optional: dict[str, Any], *known: str) -> dict[str, Any]:
    unknown = set(optional) - set(known)
    if unknown:
        raise AdminError(f"unknown arguments: {', '.join(sorted(unknown))}")
    return optional
