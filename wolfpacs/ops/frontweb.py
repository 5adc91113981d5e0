"""The HTTP port of a node of several processes, served by its supervisor.

Each child serves its own on a private loopback port
(:func:`wolfpacs.node.processes.child_config`); the supervisor serves the
node's ``[node] http_port``:

- ``/metrics``: every running child's samples, one per name and labels
  (:func:`add_up`: counters and a child's queue and spool add up; a gauge
  that says the same of the node everywhere, such as a worker's state, is
  its largest value), plus the supervisor's own
  ``wolfpacs_processes{state}`` and ``wolfpacs_process_restarts_total``;
- ``/healthz``: 200 while the supervisor is within its restart intensity,
  with each process's state;
- ``/readyz``: 200 while at least one child answers its ``/readyz`` with 200;
- ``/`` and ``/api/<verb>``: the access rules of :mod:`wolfpacs.ops.access`
  decided here (on the real client's address), then the first running
  child's page, a table of the processes above it; ``/login`` forwarded.
"""

from __future__ import annotations

import html
import json
import logging
import math
import re
import threading
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

from wolfpacs.ops.access import Access, decide, metrics_allowed

if TYPE_CHECKING:
    from wolfpacs.config.model import NodeConfig
    from wolfpacs.node.processes import ProcessSupervisor

__all__ = ["FrontWeb", "add_up"]

logger = logging.getLogger(__name__)

CHILD_TIMEOUT = 10.0  # seconds a child's page may take
# The gauges of what each process holds of its own: the node's is their sum.
ADDITIVE = frozenset({
    "wolfpacs_queue_instances", "wolfpacs_queue_bytes", "wolfpacs_spool_bytes",
    "wolfpacs_spool_max_bytes",  # each process's share (child_config)
})  # fmt: skip
_SAMPLE = re.compile(r"^([A-Za-z_:][A-Za-z0-9_:]*(?:\{.*\})?)\s+(\S+)$")


def add_up(expositions: list[str]) -> str:
    """Prometheus text expositions as one: a sample per name and labels.

    Counters, histograms and untyped samples add up, and so do the gauges of
    what each process holds of its own (:data:`ADDITIVE`); any other gauge
    says the same of the node in every process (a worker's state, the free
    disk, the nodes sharing the store) and is its largest value, not N times
    it. Values are written in full (``1e+11`` would round a byte count).
    """
    comments: dict[str, None] = {}
    types: dict[str, str] = {}
    order: dict[str, float] = {}
    for text in expositions:
        for line in text.splitlines():
            if line.startswith("#"):
                comments.setdefault(line, None)
                parts = line.split()
                if len(parts) >= 4 and parts[1] == "TYPE":
                    types[parts[2]] = parts[3]
                continue
            found = _SAMPLE.match(line.strip())
            if found is None:
                continue
            try:
                value = float(found.group(2))
            except ValueError:
                continue
            key = found.group(1)
            name = key.split("{", 1)[0]
            if key not in order:
                order[key] = value
            elif types.get(name) == "gauge" and name not in ADDITIVE:
                order[key] = max(order[key], value)
            else:
                order[key] += value
    by_name: dict[str, list[str]] = {}
    for key, value in order.items():
        by_name.setdefault(key.split("{", 1)[0], []).append(f"{key} {_number(value)}")
    lines = []
    for comment in comments:  # "# HELP name ..." then "# TYPE name ...", then its samples
        lines.append(comment)
        parts = comment.split()
        if len(parts) >= 3 and parts[1] == "TYPE":
            name = parts[2]
            for suffix in ("", "_total", "_created", "_bucket", "_sum", "_count"):
                lines += by_name.pop(name + suffix, [])
    for samples in by_name.values():
        lines += samples
    return "\n".join(lines) + "\n"


def _number(value: float) -> str:
    """A sample's value in full: ``7``, ``123456789012``, ``0.25``, ``+Inf``."""
    if math.isnan(value) or math.isinf(value):
        return "NaN" if math.isnan(value) else ("+Inf" if value > 0 else "-Inf")
    if value.is_integer() and abs(value) < 2**53:
        return str(int(value))
    return repr(value)  # the shortest text that reads back as the same float


class FrontWeb:
    """The node's HTTP port in the supervisor (see the module); :meth:`start`, :meth:`close`.

    ``ports``: each child's private HTTP port, by its id.
    """

    def __init__(
        self, node: NodeConfig, supervisor: ProcessSupervisor, ports: dict[str, int]
    ) -> None:
        self.node = node
        self.supervisor = supervisor
        self.ports = ports
        self.server: ThreadingHTTPServer | None = None

    def start(self) -> None:
        """Bind and serve. Raises ``OSError`` (a port in use)."""
        front = self

        class Handler(_Handler):
            pass

        Handler.front = front
        self.server = ThreadingHTTPServer((self.node.http_bind, self.node.http_port), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True, name="front-web").start()

    def close(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    def running(self) -> list[str]:
        return [c["id"] for c in self.supervisor.which_children() if c["state"] == "running"]

    def fetch(self, id: str, path: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
        """GET ``path`` of child ``id``: (status, body). Raises ``OSError``."""
        request = urllib.request.Request(f"http://127.0.0.1:{self.ports[id]}{path}",
                                         headers=headers or {})  # fmt: skip
        try:
            with urllib.request.urlopen(request, timeout=CHILD_TIMEOUT) as answer:
                return int(answer.status), bytes(answer.read())
        except urllib.error.HTTPError as exc:
            return int(exc.code), bytes(exc.read())

    def metrics(self) -> str:
        token = self.node.metrics_token
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        texts = []
        for id in self.running():
            try:
                status, body = self.fetch(id, "/metrics", headers)
            except OSError as exc:
                logger.info("metrics of process %s: %s", id, exc)
                continue
            if status == 200:
                texts.append(body.decode("utf-8", "replace"))
        counts = self.supervisor.count_children()
        own = [
            "# HELP wolfpacs_processes The node's OS processes, by state",
            "# TYPE wolfpacs_processes gauge",
            *(f'wolfpacs_processes{{state="{s}"}} {n}' for s, n in counts.items()),
            "# HELP wolfpacs_process_restarts_total Restarts of the node's processes",
            "# TYPE wolfpacs_process_restarts_total counter",
            f"wolfpacs_process_restarts_total {self.supervisor.restarts()}",
        ]
        return add_up([*texts, "\n".join(own)])

    def ready(self) -> tuple[bool, dict[str, Any]]:
        problems = []
        for id in self.running():
            try:
                status, body = self.fetch(id, "/readyz")
            except OSError as exc:
                problems.append(f"process {id}: {exc}")
                continue
            if status == 200:
                return True, {"status": "ok", "ready_process": id}
            problems.append(f"process {id}: {body.decode('utf-8', 'replace')}")
        return False, {"status": "fail", "problems": problems or ["no process is running"]}

    def healthy(self) -> tuple[bool, dict[str, Any]]:
        escalated = self.supervisor.escalated
        return escalated is None, {
            "status": "ok" if escalated is None else "fail",
            "problems": [escalated] if escalated else [],
            "processes": self.supervisor.which_children(),
        }

    def page(self, path: str, headers: dict[str, str]) -> tuple[int, bytes, str]:
        for id in self.running():
            try:
                status, body = self.fetch(id, path, headers)
            except OSError:
                continue
            if path.startswith("/api/"):
                return status, body, "application/json"
            text = body.decode("utf-8", "replace")
            table = _processes(self.supervisor.which_children(), id)
            text = text.replace("<h2>", f"{table}<h2>", 1)
            return status, text.encode(), "text/html; charset=utf-8"
        return 503, b"no process of the node is running\n", "text/plain"


def _processes(children: list[dict[str, Any]], shown: str) -> str:
    rows = "".join(
        f"<tr><td>{html.escape(c['id'])}</td><td>{c['pid']}</td><td>{c['state']}</td>"
        f"<td>{c['restarts']}</td></tr>"
        for c in children
    )
    return (f"<h2>Processes</h2><table id=processes><tr><th>process</th><th>pid</th>"
            f"<th>state</th><th>restarts</th></tr>{rows}</table>"
            f"<p>Below: process {html.escape(shown)}'s view (the store's, and its own "
            f"actors).</p>")  # fmt: skip


class _Handler(BaseHTTPRequestHandler):
    front: FrontWeb

    def do_GET(self) -> None:
        front, node = self.front, self.front.node
        path = self.path.partition("?")[0]
        try:
            if path == "/metrics":
                if metrics_allowed(self.headers.get("Authorization") or "", node.metrics_token):
                    self._send(200, front.metrics().encode(), "text/plain; version=0.0.4")
                else:
                    self._send(401, b'{"error": "/metrics needs its token"}', "application/json")
            elif path in ("/healthz", "/readyz"):
                ok, body = front.healthy() if path == "/healthz" else front.ready()
                self._send(200 if ok else 503, json.dumps(body).encode(), "application/json")
            elif path in ("/", "/index.html", "/login") or path.startswith("/api/"):
                self._forward()
            else:
                self._send(404, b"not found\n", "text/plain")
        except Exception:
            logger.exception("web: %s failed", path)
            self._send(500, b"internal error, logged\n", "text/plain")

    def _forward(self) -> None:
        node = self.front.node
        if self.path != "/login":
            access = decide(self.headers.get("Authorization") or "",
                            self.headers.get("Cookie") or "", self.client_address[0],
                            node.http_token)  # fmt: skip
            if access is not Access.GRANTED:
                code = 403 if access is Access.LOOPBACK_ONLY else 401
                self._send(code, b'{"error": "not allowed (see the node\'s http_token)"}',
                           "application/json")  # fmt: skip
                return
        # The child trusts loopback, or the token: this request passed the front's check.
        headers = {"Authorization": f"Bearer {node.http_token}"} if node.http_token else {}
        self._send(*self.front.page(self.path, headers))

    def _send(self, code: int, body: bytes, kind: str) -> None:
        self.send_response(code)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("web: " + format, *args)
