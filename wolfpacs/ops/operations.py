"""The operator's side of one node: its verbs, the control socket, the HTTP port, the gauges.

Made from a :class:`~wolfpacs.node.tree.Node` (``Node(config,
operations=Operations)``): it hands each part only the services it uses,
and gives the node its last children, ``control`` and ``web``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from supervisors import ChildSpec
from wolfpacs.ops.admin import Admin
from wolfpacs.ops.control import Control
from wolfpacs.ops.gauges import NodeCollector
from wolfpacs.ops.web import Site, Web

if TYPE_CHECKING:
    from wolfpacs.node.tree import Node

__all__ = ["Operations"]


class Operations:
    """The verbs (:attr:`admin`) of ``node``, and the actors that serve them."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self.admin = Admin(
            registry=node.registry, live=node.live, spool=node.spool, metrics=node.metrics,
            store=node.store, root=lambda: node.root, sender_spec=node.sender_spec,
            lease=node.lease,
        )  # fmt: skip
        collector = NodeCollector(node.metrics.board, node.live, lambda: node.root, node.spool)
        node.metrics.registry.register(collector)

    def children(self) -> list[ChildSpec]:
        node, admin = self.node, self.admin
        # The file's [node] settings: the sockets' addresses do not change at runtime.
        settings = node.config.node
        site = Site(
            settings=settings, registry=node.registry, root=lambda: node.root, store=node.store,
            spool=node.spool, metrics=node.metrics, admin=admin,
        )  # fmt: skip
        control = ChildSpec(
            "control", lambda: Control.start(node.registry, admin, node.live.get().node)
        )
        web = ChildSpec("web", lambda: Web.start(site))
        return [control, *([web] if settings.http_port else [])]
