"""The node's HTTP port: Prometheus metrics, health, readiness, and a status page.

- ``/metrics``: the Prometheus text format (:mod:`wolfpacs.node.metrics`,
  :mod:`wolfpacs.ops.gauges`).
- ``/healthz``: the process is up and every actor of the tree is alive.
- ``/readyz``: both listeners accept connections, the store takes a write,
  the spool is below its limits.
- ``/``: a status page that refreshes itself: workers, queues, the tree,
  recent studies, dead letters — from the same verbs as ``wolfpacs ctl``.

Health and readiness answer 200 or 503 with a JSON body saying what is
wrong. The port is loopback by default (``[node] http_bind``).
"""

from __future__ import annotations

import html
import json
import logging
import socket
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

import pykka

from supervisors import Registry, SupervisedActor, Supervisor
from wolfpacs.ops import render

if TYPE_CHECKING:
    from collections.abc import Callable

    from wolfpacs.config.model import NodeConfig
    from wolfpacs.node.metrics import Metrics
    from wolfpacs.node.store import StoreClient
    from wolfpacs.ops.admin import Admin
    from wolfpacs.state.spool import Spool

__all__ = ["REQUIRED", "Site", "Web"]

logger = logging.getLogger(__name__)

# Every actor a node needs: registered names (supervisors included).
REQUIRED = ("store", "router", "senders", "receivers", "listener:outside", "listener:inside",
            "control")  # fmt: skip
REFRESH = 2  # seconds between two loads of the status page


@dataclass(frozen=True, kw_only=True)
class Site:
    """What the pages are made of: the node's parts they read.

    ``settings``: the node's ``[node]``; ``root()``: the tree's root while it runs.
    """

    settings: NodeConfig
    registry: Registry
    root: Callable[[], pykka.ActorRef[Supervisor] | None]
    store: StoreClient
    spool: Spool
    metrics: Metrics
    admin: Admin


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, site: Site) -> None:
        super().__init__((site.settings.http_bind, site.settings.http_port), _Handler)
        self.site = site


class Web(SupervisedActor):
    """Registered as ``web``; the server runs in a thread linked to it."""

    def __init__(self, site: Site) -> None:
        super().__init__()
        self.site = site
        self.server: ThreadingHTTPServer | None = None

    def on_start(self) -> None:
        self.site.registry.register("web", self.actor_ref)
        settings = self.site.settings
        self.server = _Server(self.site)
        self.start_thread(self.server.serve_forever, name="web")
        logger.info("HTTP port on %s:%d (metrics, health, status)", settings.http_bind,
                    settings.http_port)  # fmt: skip

    def on_stop(self) -> None:
        self._close()

    def on_failure(self, *_exc_info: object) -> None:
        self._close()

    def _close(self) -> None:
        server, self.server = self.server, None
        if server is not None:
            server.shutdown()
            server.server_close()

    def inspect(self) -> dict[str, Any]:
        settings = self.site.settings
        return {"address": f"{settings.http_bind}:{settings.http_port}"}


def health(site: Site) -> tuple[bool, dict[str, Any]]:
    """(healthy, body): the root and every required actor alive."""
    problems = []
    root = site.root()
    if root is None or not root.is_alive():
        problems.append("the supervision tree is not running")
    for name in REQUIRED:
        ref = site.registry.whereis(name)
        if ref is None or not ref.is_alive():
            problems.append(f"{name} is not running (restarting?)")
    return not problems, {"status": "fail" if problems else "ok", "problems": problems}


def readiness(site: Site) -> tuple[bool, dict[str, Any]]:
    """(ready, body): listeners accept, the store takes a write, the spool has room."""
    problems = []
    settings = site.settings
    for side, port in (("outside", settings.outside_port), ("inside", settings.inside_port)):
        host = "127.0.0.1" if settings.bind in ("0.0.0.0", "::") else settings.bind
        try:
            socket.create_connection((host, port), timeout=2).close()
        except OSError as exc:
            problems.append(f"{side} port {port} does not accept connections: {exc}")
    try:
        site.store.ping(timeout=5)
    except Exception as exc:  # unavailable, locked, read-only, disk full: all "not ready"
        problems.append(f"the store takes no write: {exc}")
    full = site.spool.full()
    if full:
        problems.append(full)
    return not problems, {"status": "fail" if problems else "ok", "problems": problems}


def status_page(site: Site) -> str:
    """The status page, from the shell's verbs (no second source of truth)."""
    admin = site.admin
    sections = []
    for title, verb, args, columns in (
        ("Workers", "workers", {}, render.COLUMNS["workers"]),
        ("Queues", "queues", {}, render.COLUMNS["queues"]),
        ("Recent studies", "studies", {"limit": 20}, render.COLUMNS["studies"]),
        ("Dead letters", "dead", {}, render.COLUMNS["dead"]),
    ):
        try:
            rows = admin.call(verb, args)
        except Exception as exc:  # shown, not raised: the page is for a node in trouble too
            sections.append(f"<h2>{title}</h2><p class=error>{html.escape(str(exc))}</p>")
            continue
        sections.append(f"<h2>{title}</h2>{_table(verb, rows, columns)}")
    try:
        tree = html.escape(render.tree(admin.call("tree")))
    except Exception as exc:
        tree = html.escape(f"unavailable: {exc}")
    sections.insert(2, f"<h2>Supervision tree</h2><pre id=tree>{tree}</pre>")
    name = html.escape(site.settings.ae_title)
    now = time.strftime("%Y-%m-%d %H:%M:%S")
    return (
        f"<!doctype html><html><head><meta charset=utf-8>"
        f"<meta http-equiv=refresh content={REFRESH}><title>WolfPACS node {name}</title>"
        f"<style>{_STYLE}</style></head><body><h1>WolfPACS node {name}</h1>"
        f"<p>{now} &middot; <a href=/metrics>metrics</a> &middot; <a href=/healthz>health</a>"
        f" &middot; <a href=/readyz>readiness</a></p>{''.join(sections)}</body></html>"
    )


def _table(verb: str, rows: list[dict[str, Any]], columns: list[str]) -> str:
    if not rows:
        return "<p>(none)</p>"
    keys = [c.split(":")[0] for c in columns]
    head = "".join(f"<th>{html.escape(c.split(':')[-1])}</th>" for c in columns)
    body = "".join(
        "<tr>" + "".join(
            f"<td class={k}>{html.escape(render.cell(row.get(k)))}</td>" for k in keys
        ) + "</tr>"
        for row in rows
    )  # fmt: skip
    return f"<table id={verb}><tr>{head}</tr>{body}</table>"


_STYLE = (
    "body{font-family:sans-serif;margin:1.5em;color:#222}table{border-collapse:collapse;"
    "margin-bottom:1em}td,th{border:1px solid #ccc;padding:.2em .6em;text-align:left;"
    "font-size:.9em;max-width:30em;overflow-wrap:anywhere}th{background:#eee}"
    "pre{background:#f6f6f6;padding:.6em}.error{color:#b00}"
)


class _Handler(BaseHTTPRequestHandler):
    """One request; the site is the server's."""

    server: _Server

    def do_GET(self) -> None:
        site = self.server.site
        path = self.path.split("?", 1)[0]
        try:
            if path == "/metrics":
                self._send(200, site.metrics.exposition(), "text/plain; version=0.0.4")
            elif path in ("/healthz", "/readyz"):
                ok, body = (health if path == "/healthz" else readiness)(site)
                self._send(200 if ok else 503, json.dumps(body).encode(), "application/json")
            elif path in ("/", "/index.html"):
                self._send(200, status_page(site).encode(), "text/html; charset=utf-8")
            else:
                self._send(404, b"not found\n", "text/plain")
        except Exception:  # a bug in a page: a 500 and a log line, the server goes on
            logger.exception("web: %s failed", path)
            self._send(500, b"internal error, logged\n", "text/plain")

    def _send(self, code: int, body: bytes, kind: str) -> None:
        self.send_response(code)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("web: " + format, *args)
