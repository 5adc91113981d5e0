"""The node's HTTP port: Prometheus metrics, health, readiness, a status page, JSON views.

- ``/metrics``: the Prometheus text format (:mod:`wolfpacs.node.metrics`,
  :mod:`wolfpacs.ops.gauges`).
- ``/healthz``: the process is up and every actor of the tree is alive.
- ``/readyz``: both listeners accept connections, the store takes a write,
  the spool is below its limits.
- ``/``: a status page that refreshes itself: pools (reachable workers of
  each, a pool with none marked), workers, overdue results (studies whose
  result has not come back in time), queues, the tree, recent studies, dead
  letters — from the same verbs as ``wolfpacs ctl``.
- ``/api/<verb>``: a reading verb's result as JSON (``/api/studies?worker=gpu-a``).
- ``/login``, ``/logout``: the session of a browser, when a token is set.

Health and readiness answer 200 or 503 with a JSON body saying what is
wrong. The port is loopback by default (``[node] http_bind``); who may see
the rest is :mod:`wolfpacs.ops.access`'s.
"""

from __future__ import annotations

import html
import json
import logging
import socket
import time
import urllib.parse
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

import pykka

from supervisors import Registry, SupervisedActor, Supervisor
from wolfpacs.ops import render
from wolfpacs.ops.access import (
    COOKIE,
    SESSION_SECONDS,
    Access,
    decide,
    is_token,
    login_page,
    metrics_allowed,
    session_cookie,
)
from wolfpacs.ops.verbs import AdminError

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
REQUIRED = ("store", "lease", "router", "senders", "receivers", "listener:outside",
            "listener:inside", "control")  # fmt: skip
REFRESH = 2  # seconds between two loads of the status page
# The verbs a JSON view answers (reading ones only), and the query arguments each takes.
VIEWS = {
    "workers": (), "clients": (), "destinations": (), "queues": (), "dead": (), "tree": (),
    "stats": (), "studies": ("worker", "client", "limit"), "study": ("uid",), "overdue": (),
    "nodes": (),
}  # fmt: skip
MAX_FORM = 4096  # bytes of a login form


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
        ("Overdue results", "overdue", {}, render.COLUMNS["overdue"]),
        ("Queues", "queues", {}, render.COLUMNS["queues"]),
        ("Nodes", "nodes", {}, render.COLUMNS["nodes"]),
        ("Recent studies", "studies", {"limit": 20}, render.COLUMNS["studies"]),
        ("Dead letters", "dead", {}, render.COLUMNS["dead"]),
    ):
        rows = None
        try:
            rows = admin.call(verb, args)
            shown = _table(verb, rows, columns)
        except Exception as exc:  # shown, not raised: the page is for a node in trouble too
            shown = f"<p class=error>{html.escape(str(exc))}</p>"
        if verb == "workers":  # the pools are the workers' rows, counted by pool
            sections.append(f"<h2>Pools</h2>{_pools(rows) if rows is not None else shown}")
        sections.append(f"<h2>{title}</h2>{shown}")
    try:
        tree = html.escape(render.render("tree", admin.call("tree")))  # and whose, its peers
    except Exception as exc:
        tree = html.escape(f"unavailable: {exc}")
    sections.insert(4, f"<h2>Supervision tree</h2><pre id=tree>{tree}</pre>")
    name = html.escape(site.settings.ae_title)
    now = time.strftime("%Y-%m-%d %H:%M:%S")
    return (
        f"<!doctype html><html><head><meta charset=utf-8>"
        f"<meta http-equiv=refresh content={REFRESH}><title>WolfPACS node {name}</title>"
        f"<style>{_STYLE}</style></head><body><h1>WolfPACS node {name}</h1>"
        f"<p>{now} &middot; <a href=/metrics>metrics</a> &middot; <a href=/healthz>health</a>"
        f" &middot; <a href=/readyz>readiness</a></p>{''.join(sections)}</body></html>"
    )


def _pools(workers: list[dict[str, Any]]) -> str:
    """Each pool's reachable workers of its total; a pool with none is marked as an error.

    Reachable: the worker answered its sender's last association or C-ECHO
    (``up`` true). One not heard from yet (``up`` None) counts as not, as in
    the gauge ``wolfpacs_pool_reachable_workers``, and is said so.
    """
    pools: dict[str, list[int]] = {}
    for row in workers:
        counts = pools.setdefault(str(row.get("pool")), [0, 0, 0])  # up, not known, all
        counts[0] += row.get("up") is True
        counts[1] += row.get("up") is None
        counts[2] += 1
    if not pools:
        return "<p>(none)</p>"
    rows = []
    for pool, (up, unknown, total) in sorted(pools.items()):
        shown = f"{up}/{total}"
        if unknown:
            shown += f" ({unknown} not heard from yet)"
        if not up:  # said in words too, not only in red: new studies wait in the queue
            shown += " &mdash; no worker reachable: new studies are taken, queued until one is back"
        rows.append(f"<tr{' class=error' if not up else ''}><td class=pool>{html.escape(pool)}"
                    f"</td><td class=reachable>{shown}</td></tr>")  # fmt: skip
    return f"<table id=pools><tr><th>pool</th><th>reachable</th></tr>{''.join(rows)}</table>"


def _table(verb: str, rows: list[dict[str, Any]], columns: list[str]) -> str:
    if not rows:
        return "<p>(none)</p>"
    keys = [c.split(":")[0] for c in columns]
    head = "".join(f"<th>{html.escape(c.split(':')[-1])}</th>" for c in columns)
    body = "".join(
        "<tr>" + "".join(
            f"<td class={k}>{html.escape(render.shown(k, row.get(k)))}</td>" for k in keys
        ) + "</tr>"
        for row in rows
    )  # fmt: skip
    return f"<table id={verb}><tr>{head}</tr>{body}</table>"


_STYLE = (
    "body{font-family:sans-serif;margin:1.5em;color:#222}table{border-collapse:collapse;"
    "margin-bottom:1em}td,th{border:1px solid #ccc;padding:.2em .6em;text-align:left;"
    "font-size:.9em;max-width:30em;overflow-wrap:anywhere}th{background:#eee}"
    "pre{background:#f6f6f6;padding:.6em}.error{color:#b00}tr.error td{background:#fdd;"
    "font-weight:bold}"
)


class _Handler(BaseHTTPRequestHandler):
    """One request; the site is the server's."""

    server: _Server

    def do_GET(self) -> None:
        site = self.server.site
        path, _, query = self.path.partition("?")
        try:
            if path == "/metrics":
                if metrics_allowed(self._header("Authorization"), site.settings.metrics_token):
                    self._send(200, site.metrics.exposition(), "text/plain; version=0.0.4")
                else:
                    self._refused(401, "/metrics needs its token (Authorization: Bearer ...)")
            elif path in ("/healthz", "/readyz"):
                ok, body = (health if path == "/healthz" else readiness)(site)
                self._send(200 if ok else 503, json.dumps(body).encode(), "application/json")
            elif path == "/login":
                self._page(200, login_page(site.settings.ae_title))
            elif path == "/logout":
                self._redirect("/login", f"{COOKIE}=; Max-Age=0; Path=/; HttpOnly; SameSite=Strict")
            elif path in ("/", "/index.html") or path.startswith("/api/"):
                if self._allowed(path):
                    self._view(path, query)
            else:
                self._send(404, b"not found\n", "text/plain")
        except Exception:  # a bug in a page: a 500 and a log line, the server goes on
            logger.exception("web: %s failed", path)
            self._send(500, b"internal error, logged\n", "text/plain")

    def do_POST(self) -> None:
        """``/login``: the form's token, checked; a session cookie if it is the one."""
        settings = self.server.site.settings
        if self.path != "/login" or not settings.http_token:
            self._send(404, b"not found\n", "text/plain")
            return
        length = int(self.headers.get("Content-Length") or 0)
        if not 0 < length <= MAX_FORM:
            self._send(413 if length else 400, b"a login form only\n", "text/plain")
            return
        form = urllib.parse.parse_qs(self.rfile.read(length).decode("utf-8", "replace"))
        if is_token(form.get("token", [""])[0], settings.http_token):
            cookie = session_cookie(settings.http_token)
            self._redirect("/", f"{COOKIE}={cookie}; Max-Age={SESSION_SECONDS}; Path=/; "
                                "HttpOnly; SameSite=Strict")  # fmt: skip
        else:
            logger.warning("web: a wrong token from %s at /login", self.client_address[0])
            self._page(401, login_page(settings.ae_title, failed=True))

    def _allowed(self, path: str) -> bool:
        """Whether this request may see ``path``; if not, the refusal has been sent."""
        settings = self.server.site.settings
        access = decide(self._header("Authorization"), self._header("Cookie"),
                        self.client_address[0], settings.http_token)  # fmt: skip
        if access is Access.GRANTED:
            return True
        if access is Access.LOOPBACK_ONLY:
            self._refused(403, "this page is shown to loopback only: set [node] http_token "
                          "(or WOLFPACS_HTTP_TOKEN) to see it from elsewhere")  # fmt: skip
        elif path.startswith("/api/"):
            self._refused(401, "Authorization: Bearer <http_token> needed")
        else:
            self._page(401, login_page(settings.ae_title))
        return False

    def _view(self, path: str, query: str) -> None:
        site = self.server.site
        if not path.startswith("/api/"):
            self._page(200, status_page(site))
            return
        verb = path.removeprefix("/api/")
        if verb not in VIEWS:
            self._send(404, b'{"error": "no such view"}\n', "application/json")
            return
        args: dict[str, Any] = {
            key: values[-1] for key, values in urllib.parse.parse_qs(query).items()
            if key in VIEWS[verb]
        }  # fmt: skip
        if "limit" in args:
            args["limit"] = int(args["limit"]) if args["limit"].isdigit() else 50
        try:
            body, code = site.admin.call(verb, args), 200
        except AdminError as exc:
            body, code = {"error": str(exc)}, 404
        self._send(code, json.dumps(body, default=str).encode(), "application/json")

    def _header(self, name: str) -> str:
        return str(self.headers.get(name) or "")

    def _refused(self, code: int, why: str) -> None:
        body = json.dumps({"error": why}).encode()
        self.send_response(code)
        if code == 401:
            self.send_header("WWW-Authenticate", 'Bearer realm="WolfPACS"')
        self._finish(body, "application/json")

    def _page(self, code: int, text: str) -> None:
        self._send(code, text.encode(), "text/html; charset=utf-8")

    def _redirect(self, to: str, cookie: str) -> None:
        self.send_response(303)
        self.send_header("Location", to)
        self.send_header("Set-Cookie", cookie)
        self._finish(b"", "text/plain")

    def _send(self, code: int, body: bytes, kind: str) -> None:
        self.send_response(code)
        self._finish(body, kind)

    def _finish(self, body: bytes, kind: str) -> None:
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("web: " + format, *args)
