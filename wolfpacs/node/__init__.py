"""The node: its supervision tree of actors, from the listeners to the senders.

In the order data flows: :mod:`~wolfpacs.node.listener` (a port),
:mod:`~wolfpacs.node.gate` (who may associate on it, and how many at once),
:mod:`~wolfpacs.node.receiver` (one association: peek, route,
spool, commit, answer), :mod:`~wolfpacs.node.router` (study → worker),
:mod:`~wolfpacs.node.sender` (one target's queue over one association);
:mod:`~wolfpacs.node.store` (the store's actor and its typed client),
:mod:`~wolfpacs.node.messages` (the plain data between them),
:mod:`~wolfpacs.node.metrics` (what they count), :mod:`~wolfpacs.node.recovery`
(the spool and the queue made to agree at start), :mod:`~wolfpacs.node.changes`
(the runtime changes other nodes sharing the store made, made live here), and
:mod:`~wolfpacs.node.tree`, the one declaration of the tree.

It may import :mod:`supervisors`, :mod:`wolfpacs.dicom`,
:mod:`wolfpacs.state` and :mod:`wolfpacs.config`; never
:mod:`wolfpacs.ops`, :mod:`wolfpacs.cli` or :mod:`wolfpacs.testing`.
"""

from wolfpacs.node.tree import DataDirInUseError, Node, Operations

__all__ = ["DataDirInUseError", "Node", "Operations"]
