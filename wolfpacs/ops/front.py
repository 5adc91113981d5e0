"""The front of a node of several processes: its one control socket, served by its supervisor.

With ``[node] processes`` > 1 the node's control socket (and TCP control
port, if set) belongs to the process supervisor
(:mod:`wolfpacs.node.processes`), which forwards each request to a child's
private socket (``data_dir/processes/<n>/control.sock``), same protocol
(:mod:`wolfpacs.ops.control`):

- ``tree``: every running child's tree, under the processes as the top
  level (each ``process:<n>`` with its pid, node_id and restarts);
- ``kill process:<n>``: the supervisor's own: ``kill -9`` of that child
  (opt-in with ``fault_injection``, as ``kill ACTOR``); its restart shows in
  ``tree`` and in ``/metrics``;
- ``queues``: every child's own queue rows, added up by target (an error
  while a child is restarting: a total without its part would mislead);
- any other verb: the first running child, in order. The store-backed
  verbs (workers, studies, nodes, drain, move...) answer the same from any
  child (the store is the truth; the changes watcher carries a change to the
  siblings within a second). Not aggregated: the per-process parts of a
  reply (a worker's ``up`` and ``last_success``, ``inspect ACTOR``, ``kill
  ACTOR``, ``retry``, ``dead``... are the first running child's).

A child that does not answer is skipped (reading verbs) or its error is the
reply; the front never raises into its connection.
"""

from __future__ import annotations

import contextlib
import hmac
import logging
import socket
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgpack

from wolfpacs.ops.control import MAX_REQUEST, READING, ControlClient, ControlError

if TYPE_CHECKING:
    from wolfpacs.config.model import NodeConfig
    from wolfpacs.node.processes import ProcessSupervisor

__all__ = ["ChildControls", "FrontControl", "PROCESS_PREFIX"]

logger = logging.getLogger(__name__)

PROCESS_PREFIX = "process:"  # kill's argument that names a process, not an actor
CHILD_TIMEOUT = 60.0  # seconds a child may take to answer a forwarded verb


class ChildControls:
    """Calls verbs on the children's private control sockets (one connection per call)."""

    def __init__(self, supervisor: ProcessSupervisor, paths: dict[str, Path]) -> None:
        self.supervisor = supervisor
        self.paths = paths

    def running(self) -> list[dict[str, Any]]:
        return [c for c in self.supervisor.which_children() if c["state"] == "running"]

    def forward(self, id: str, verb: str, args: dict[str, Any]) -> Any:
        """``verb`` on child ``id``; raises :class:`ControlError`."""
        client = ControlClient(self.paths[id], timeout=CHILD_TIMEOUT, reconnect=0.5)
        try:
            return client.call(verb, **args)
        finally:
            client.close()

    def handle(self, verb: str, args: dict[str, Any], fault_injection: bool) -> Any:
        """The result of ``verb`` for the whole node (see the module); raises ControlError."""
        if verb == "kill" and str(args.get("actor", "")).startswith(PROCESS_PREFIX):
            return self._kill(str(args["actor"]), fault_injection)
        if verb == "tree":
            return self._tree()
        if verb == "queues":
            return self._queues()
        running = self.running()
        if not running:
            raise ControlError("no process of the node is running (restarting?)")
        errors = []
        for child in running:
            try:
                return self.forward(child["id"], verb, args)
            except ControlError as exc:
                if verb not in READING or "cannot reach" not in str(exc):
                    raise  # the verb's own answer, or a change that may have been done
                errors.append(f"process {child['id']}: {exc}")
        raise ControlError("; ".join(errors))

    def _kill(self, actor: str, fault_injection: bool) -> dict[str, Any]:
        if not fault_injection:
            raise ControlError(
                "fault injection is disabled: set [node] fault_injection = true, "
                "or WOLFPACS_FAULT_INJECTION=1 in the node's environment"
            )
        id = actor.removeprefix(PROCESS_PREFIX)
        try:
            pid = self.supervisor.kill(id)
        except KeyError as exc:
            raise ControlError(str(exc.args[0])) from None
        return {"killed": actor, "pid": pid}

    def _tree(self) -> dict[str, Any]:
        processes = []
        whence: dict[str, Any] = {}
        for child in self.supervisor.which_children():
            entry: dict[str, Any] = {
                "id": f"{PROCESS_PREFIX}{child['id']}", "pid": child["pid"],
                "alive": child["state"] == "running", "restarts": child["restarts"],
                "children": [],
            }  # fmt: skip
            if child["last_exit"] is not None:
                entry["last_exit"] = f"exit code {child['last_exit']}"
            if entry["alive"]:
                try:
                    tree = self.forward(child["id"], "tree", {})
                except ControlError as exc:
                    entry["error"] = str(exc)
                else:
                    entry["node_id"] = (tree.get("node") or {}).get("node_id")
                    whence = whence or {k: tree.get(k) for k in ("node", "peers")}
                    entry["children"] = [tree]
            processes.append(entry)
        counts = self.supervisor.count_children()
        return {
            "id": "wolfpacs", "strategy": "processes", "alive": self.supervisor.escalated is None,
            "restarts": self.supervisor.restarts(), "children": processes,
            "processes": counts, **whence,
        }  # fmt: skip

    def _queues(self) -> list[dict[str, Any]]:
        summed: dict[tuple[str, str], dict[str, Any]] = {}
        children = self.supervisor.which_children()
        for child in children:
            if child["state"] != "running":  # a part unknown is no total: say so
                raise ControlError(f"process {child['id']} is {child['state']}: its queue "
                                   "is not known now")  # fmt: skip
        for child in children:
            for row in self.forward(child["id"], "queues", {}):
                key = (str(row.get("target")), str(row.get("kind")))
                if key not in summed:
                    summed[key] = dict(row)
                    continue
                total = summed[key]
                for name in ("instances", "bytes"):
                    total[name] = (total.get(name) or 0) + (row.get(name) or 0)
                ages = [a for a in (total.get("oldest_age_s"), row.get("oldest_age_s")) if a]
                total["oldest_age_s"] = max(ages) if ages else None
        return [summed[k] for k in sorted(summed)]


class FrontControl:
    """The node's control socket(s), in threads of the supervisor's process; :meth:`close`."""

    def __init__(self, node: NodeConfig, children: ChildControls) -> None:
        self.node = node
        self.children = children
        self.path = Path(node.control_path)
        self._listeners: list[tuple[socket.socket, bool]] = []
        self._closing = False

    def start(self) -> None:
        """Bind and accept. Raises ``OSError`` (a socket in use)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.unlink(missing_ok=True)  # a socket file left by a crash
        unix = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        unix.bind(str(self.path))
        self.path.chmod(0o600)
        unix.listen(16)
        self._listeners.append((unix, False))
        if self.node.control_port:
            tcp = socket.create_server(("127.0.0.1", self.node.control_port))
            self._listeners.append((tcp, True))
        for sock, tcp_ in self._listeners:
            threading.Thread(target=self._accept, args=(sock, tcp_), daemon=True,
                             name="front-control").start()  # fmt: skip

    def close(self) -> None:
        self._closing = True
        for sock, _ in self._listeners:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        self.path.unlink(missing_ok=True)

    def _accept(self, listener: socket.socket, tcp: bool) -> None:
        while not self._closing:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn, tcp), daemon=True,
                             name="front-connection").start()  # fmt: skip

    def _serve(self, conn: socket.socket, tcp: bool) -> None:
        unpacker = msgpack.Unpacker(raw=False, max_buffer_size=MAX_REQUEST)
        try:
            while data := conn.recv(65536):
                unpacker.feed(data)
                for request in unpacker:
                    conn.sendall(msgpack.packb(self.handle(request, tcp), use_bin_type=True))
        except (ValueError, OSError, msgpack.UnpackException) as exc:
            logger.info("control connection closed: %s", exc)
        finally:
            conn.close()

    def handle(self, request: Any, tcp: bool = False) -> dict[str, Any]:
        """One reply for one request; never raises."""
        if not isinstance(request, dict):
            return {"id": None, "ok": False, "error": "a request must be a map"}
        rid, verb, args = request.get("id"), request.get("verb"), request.get("args") or {}
        if tcp and not (
            isinstance(token := request.get("token"), str)
            and hmac.compare_digest(token.encode(), self.node.control_token.encode())
        ):
            return {"id": rid, "ok": False, "error": "unauthenticated"}
        if not isinstance(verb, str) or not isinstance(args, dict):
            return {"id": rid, "ok": False, "error": "a request needs a verb and a map of args"}
        try:
            result = self.children.handle(verb, args, self.node.fault_injection)
        except ControlError as exc:
            return {"id": rid, "ok": False, "error": str(exc)}
        except Exception as exc:
            logger.exception("control: %s failed", verb)
            return {"id": rid, "ok": False, "error": f"internal error: {type(exc).__name__}: {exc}"}
        return {"id": rid, "ok": True, "result": result}
