"""The HTTP port of a node that waits for its store at start: 503 on every path, saying why.

``wolfpacs run`` with a store that cannot be reached yet (compose starts
the database and the nodes together) waits for it before the tree starts
(:meth:`wolfpacs.node.tree.Node.wait_for_store`). Meanwhile a load
balancer's check, an orchestrator's probe or an operator's ``curl`` of
``/readyz`` or ``/healthz`` gets 503 and a JSON body saying what the node
waits for, not a refused connection that says nothing. :class:`Starting`
is closed before the tree's own HTTP port (:mod:`wolfpacs.ops.web`) binds
the same address.

Errors: the address in use is ``OSError`` from the constructor (the
caller goes on without it: the wait does not depend on it).
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable

    from wolfpacs.config.model import NodeConfig

__all__ = ["Starting"]


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    problem: Callable[[], str]


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:
        body = json.dumps({"status": "starting", "problems": [self.server.problem()]}).encode()
        self.send_response(503)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Retry-After", "5")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        """A probe every few seconds is no news: not logged."""


class Starting:
    """503 on ``[node] http_bind``:``http_port`` until :meth:`close`; ``problem()`` says why."""

    def __init__(self, settings: NodeConfig, problem: Callable[[], str]) -> None:
        self._server = _Server((settings.http_bind, settings.http_port), _Handler)
        self._server.problem = problem
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="http-starting", daemon=True
        )
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
