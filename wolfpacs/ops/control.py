"""The control endpoint: the shell's and ctl's way into a running node.

A Unix socket at ``data_dir/control.sock`` (mode 0600: only the node's
user may connect), and optionally TCP on 127.0.0.1 with a token. On a
connection, requests and replies alternate, each one msgpack map::

    request  {"id": 7, "verb": "workers", "args": {...}, "token": "..."}   # token: TCP only
    reply    {"id": 7, "ok": true, "result": ...}
             {"id": 7, "ok": false, "error": "why"}

A request that is malformed, unauthenticated or refused gets an error reply
and changes nothing; the connection and the node go on. Each connection is
served in a thread of its own, so a slow verb holds up no other shell.
"""

from __future__ import annotations

import contextlib
import hmac
import logging
import os
import socket
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgpack

from supervisors import Registry, SupervisedActor
from wolfpacs.ops.verbs import AdminError

if TYPE_CHECKING:
    from wolfpacs.config.model import NodeConfig
    from wolfpacs.ops.admin import Admin

__all__ = ["Control", "ControlClient", "ControlError"]

logger = logging.getLogger(__name__)

MAX_REQUEST = 1 << 20  # bytes; a request is a verb and a few arguments
MAX_CONNECTIONS = 32  # shells and scripts at once
IDLE_TIMEOUT = 3600.0  # seconds a connection may stay silent (a shell left open)


class ControlError(Exception):
    """The node answered a request with an error, or could not be reached."""


class Control(SupervisedActor):
    """Registered as ``control``; owns the listening sockets and their connections."""

    def __init__(self, registry: Registry, admin: Admin, node: NodeConfig) -> None:
        super().__init__()
        self.registry = registry
        self.admin = admin
        self.node = node
        self.path = Path(node.control_path)
        self._listeners: list[tuple[socket.socket, bool]] = []
        self._connections: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._closing = False
        self.served = 0

    def on_start(self) -> None:
        self.registry.register("control", self.actor_ref)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.unlink(missing_ok=True)  # a socket file left by a crash
        unix = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        unix.bind(str(self.path))
        # data_dir is 0700 (Spool.prepare), so nobody else reaches the socket even
        # before this: no process-wide umask games while other threads create files.
        os.chmod(self.path, 0o600)
        unix.listen(16)
        self._listeners.append((unix, False))
        if self.node.control_port:
            tcp = socket.create_server(("127.0.0.1", self.node.control_port), reuse_port=False)
            self._listeners.append((tcp, True))
        for sock, is_tcp in self._listeners:
            self.start_thread(self._accept, sock, is_tcp, name="control-accept")

    def on_stop(self) -> None:
        self._close()

    def on_failure(self, *_exc_info: object) -> None:
        self._close()

    def _close(self) -> None:
        self._closing = True
        for sock, _ in self._listeners:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        with self._lock:
            connections, self._connections = self._connections, set()
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            conn.close()
        self.path.unlink(missing_ok=True)

    def _accept(self, listener: socket.socket, tcp: bool) -> None:
        """Accept connections until the socket closes (linked: a failure crashes the actor)."""
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                if self._closing:
                    return
                raise
            with self._lock:
                full = len(self._connections) >= MAX_CONNECTIONS
                if not full:
                    self._connections.add(conn)
            if full:
                logger.warning("control: %d connections open; one more refused", MAX_CONNECTIONS)
                conn.close()
                continue
            conn.settimeout(IDLE_TIMEOUT)  # a silent or never-reading client frees its thread
            threading.Thread(
                target=self._serve, args=(conn, tcp), name="control-connection", daemon=True
            ).start()

    def _serve(self, conn: socket.socket, tcp: bool) -> None:
        """Answer one connection's requests until it closes; never raises."""
        unpacker = msgpack.Unpacker(raw=False, max_buffer_size=MAX_REQUEST)
        try:
            while True:
                data = conn.recv(65536)
                if not data:
                    return
                unpacker.feed(data)
                for request in unpacker:
                    conn.sendall(msgpack.packb(self.handle(request, tcp), use_bin_type=True))
        except (ValueError, msgpack.UnpackException) as exc:  # not msgpack: say so, hang up
            logger.warning("control: unreadable request: %s", exc)
            with contextlib.suppress(OSError):
                error = {"id": None, "ok": False, "error": f"unreadable request: {exc}"}
                conn.sendall(msgpack.packb(error))
        except OSError as exc:
            logger.info("control connection closed: %s", exc)
        finally:
            with self._lock:
                self._connections.discard(conn)
            conn.close()

    def handle(self, request: Any, tcp: bool = False) -> dict[str, Any]:
        """One reply for one request (public for tests); never raises."""
        if not isinstance(request, dict):
            return {"id": None, "ok": False, "error": "a request must be a map"}
        rid = request.get("id")
        verb, args = request.get("verb"), request.get("args") or {}
        if tcp:
            token = request.get("token")
            if not isinstance(token, str) or not hmac.compare_digest(
                token.encode(), self.node.control_token.encode()
            ):
                logger.warning("control: unauthenticated request refused")
                return {"id": rid, "ok": False, "error": "unauthenticated"}
        if not isinstance(verb, str) or not isinstance(args, dict):
            return {"id": rid, "ok": False, "error": "a request needs a verb and a map of args"}
        try:
            result = self.admin.call(verb, {str(k).replace("-", "_"): v for k, v in args.items()})
        except AdminError as exc:
            return {"id": rid, "ok": False, "error": str(exc)}
        except Exception as exc:  # a bug in a verb: reported, logged, survived
            logger.exception("control: %s failed", verb)
            return {"id": rid, "ok": False, "error": f"internal error: {type(exc).__name__}: {exc}"}
        self.served += 1
        return {"id": rid, "ok": True, "result": result}

    def inspect(self) -> dict[str, Any]:
        with self._lock:
            connections = len(self._connections)
        return {"socket": str(self.path), "tcp_port": self.node.control_port or None,
                "connections": connections, "requests_served": self.served}  # fmt: skip


# Verbs that only look: safe to send again after a broken connection.
READING = frozenset({
    "tree", "inspect", "workers", "clients", "rules", "destinations", "studies", "study",
    "queues", "overdue", "dead", "stats", "config", "names", "nodes",
})  # fmt: skip


def _final(exc: BaseException) -> bool:
    return isinstance(exc, ControlError)  # unreachable for ``reconnect`` s already


class ControlClient:
    """Calls verbs on a node; reconnects (for up to ``reconnect`` s) if the node restarts it."""

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        host: str = "127.0.0.1",
        port: int | None = None,
        token: str | None = None,
        timeout: float = 60.0,
        reconnect: float = 10.0,
    ) -> None:
        self.path, self.host, self.port, self.token = path, host, port, token
        self.timeout, self.reconnect = timeout, reconnect
        self._sock: socket.socket | None = None
        self._unpacker = msgpack.Unpacker(raw=False)
        self._next_id = 0

    def _connect(self) -> socket.socket:
        deadline = time.monotonic() + self.reconnect
        while True:
            try:
                if self.path is not None:
                    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                    sock.settimeout(self.timeout)
                    sock.connect(os.fspath(self.path))
                else:
                    sock = socket.create_connection((self.host, self.port or 0), self.timeout)
                return sock
            except OSError as exc:
                if time.monotonic() > deadline:
                    where = self.path or f"{self.host}:{self.port}"
                    raise ControlError(f"cannot reach the node at {where}: {exc}") from None
                time.sleep(0.1)  # the control actor is restarting: its socket comes back

    def call(self, verb: str, **args: Any) -> Any:
        """The result of ``verb``; raises :class:`ControlError` with the node's reason."""
        self._next_id += 1
        request: dict[str, Any] = {"id": self._next_id, "verb": verb, "args": args}
        if self.token is not None:
            request["token"] = self.token
        for attempt in (1, 2):
            sent = False
            try:
                if self._sock is None:
                    self._sock = self._connect()
                    self._unpacker = msgpack.Unpacker(raw=False)
                sent = True
                reply = self._exchange(request)
                break
            except (OSError, ControlError) as exc:
                self.close()
                # A verb that changes things is never sent twice: it may have been done.
                again = attempt == 1 and (not sent or verb in READING) and not _final(exc)
                if not again:
                    raise ControlError(str(exc)) from None
        if not reply.get("ok"):
            raise ControlError(reply.get("error", "error"))
        return reply.get("result")

    def _exchange(self, request: dict[str, Any]) -> dict[str, Any]:
        assert self._sock is not None
        self._sock.sendall(msgpack.packb(request, use_bin_type=True))
        while True:
            for reply in self._unpacker:
                answer: dict[str, Any] = reply
                return answer
            data = self._sock.recv(65536)
            if not data:
                raise OSError("the node closed the control connection")
            self._unpacker.feed(data)

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
