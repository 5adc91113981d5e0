"""The operator's side: verbs, the control socket, metrics, the HTTP port, logs.

- :mod:`~wolfpacs.ops.admin`: the verbs (drain, move, add-worker, ...);
- :mod:`~wolfpacs.ops.control`: the socket they come in on, and its client;
- :mod:`~wolfpacs.ops.web`, :mod:`~wolfpacs.ops.gauges`: health, readiness,
  the status page, ``/metrics``;
- :mod:`~wolfpacs.ops.render`: what people read, shared by ctl, shell and page;
- :mod:`~wolfpacs.ops.logs`: log lines and the audit log;
- :mod:`~wolfpacs.ops.operations`: all of it, made for one node.

It sits on :mod:`wolfpacs.node` (and what the node stands on); the node
never imports it. Only :mod:`wolfpacs.cli` is above it.
"""

from wolfpacs.ops.admin import Admin
from wolfpacs.ops.control import ControlClient, ControlError
from wolfpacs.ops.operations import Operations
from wolfpacs.ops.verbs import VERBS, AdminError

__all__ = ["VERBS", "Admin", "AdminError", "ControlClient", "ControlError", "Operations"]
