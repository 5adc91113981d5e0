"""The process supervisor: a node of several OS processes, supervised as OTP supervises actors.

With ``[node] processes = N`` (N > 1), ``wolfpacs run`` is this supervisor
and its children are N ``wolfpacs run --process n`` processes of the same
config, n from 1. Each child is a node in the sense of
:mod:`wolfpacs.state.leases`, with node_id ``<node_id>.<n>`` (kept across
its restarts, so that a restarted child takes its own queue rows back
under a new epoch), its own lease and its own rows, sharing the store and
both DICOM ports (``SO_REUSEPORT``: the kernel spreads associations) with
its siblings. Its queues are in the shared-spool layout,
``spool_dir/<node_id>.<n>/``, whatever ``shared_spool`` says: the siblings
share a disk, so a child that stays dead has its rows adopted by a live
sibling (:func:`child_config` says how a child's config differs).

The supervisor is OTP's, for OS processes:

- child specs (:class:`ProcessSpec`), all ``permanent``, started in order;
- a child that exits (any exit code, a ``kill -9`` included) is started
  again at once, and counted: more than ``max_restarts`` in ``max_seconds``
  (:class:`supervisors.RestartIntensity`) and the supervisor gives up:
  it stops the others and :meth:`ProcessSupervisor.run` returns
  :data:`EXIT_ESCALATED` (non-zero: systemd or the container runtime
  decides), as a supervisor that escalates to its parent;
- ordered shutdown (:meth:`ProcessSupervisor.stop`): SIGTERM to every
  child at once (each stops accepting and finishes its C-STOREs in
  progress), then waits for each within its ``shutdown`` seconds, and
  kills one that does not end in time.

It holds no DICOM state and starts no actor: deaths are learnt by polling
``waitpid`` (a process's end sends no message a thread can wait on
together with a stop request), every :data:`POLL` seconds.
"""

from __future__ import annotations

import ctypes
import dataclasses
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from supervisors import Restart, RestartIntensity
from wolfpacs.state.spool import PROCESSES

if TYPE_CHECKING:
    from wolfpacs.config.model import Config

__all__ = [
    "EXIT_ESCALATED", "PROCESS_INTENSITY", "ProcessSpec", "ProcessSupervisor", "child_argv",
    "child_config", "process_id", "stop_with_parent",
]  # fmt: skip

logger = logging.getLogger(__name__)

POLL = 0.1  # seconds between two looks for a child's end
EXIT_ESCALATED = 1  # too many deaths: the supervisor gave up
# As the tree's root: a process that crashes at every start must not loop for ever; a
# kill -9 now and then (the OOM killer, an operator) must not take the node down.
PROCESS_INTENSITY = {"max_restarts": 5, "max_seconds": 60.0}
PR_SET_PDEATHSIG = 1  # prctl(2)
CHILD_SHUTDOWN = 90.0  # seconds a child gets after SIGTERM (its own stop waits up to 60)


def stop_with_parent() -> bool:
    """Ask the kernel for SIGTERM when this process's parent (its supervisor) dies; whether
    it could (Linux's ``PR_SET_PDEATHSIG``; elsewhere the child's own look at its parent
    id, every half second once it runs, is all there is).

    A child busy starting (recovering its queue, waiting for its store) would otherwise
    notice late, and hold its queues from the supervisor that replaces the killed one.
    """
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return int(libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)) == 0
    except (OSError, AttributeError):
        return False


def process_id(node_id: str, index: int) -> str:
    """The node_id of the child ``index`` of node ``node_id``: ``<node_id>.<index>``."""
    return f"{node_id}.{index}"


def child_config(config: Config, index: int, http_port: int) -> Config:
    """The config of the child ``index`` (from 1) of a node of several processes.

    What differs from the node's: its ``node_id`` (:func:`process_id` of the
    node's, which must be given); its spool in the shared layout (the
    siblings share the disk); its control socket at
    ``data_dir/processes/<index>/control.sock`` and its HTTP port on
    loopback at ``http_port`` (both private: the supervisor serves the
    node's own and forwards, :mod:`wolfpacs.ops.front`); no TCP control.
    ``shared_spool`` is kept as configured: it says whether *other nodes*
    may adopt the children's queues (the siblings always may). Each child
    may queue its share of ``spool_max_bytes`` (1/N of it, at least a byte:
    0 is no limit), so that the node never holds more than the limit; a
    child whose share is full answers 0xA700 while a sibling may have room.
    """
    node = config.node
    if not node.node_id:
        raise ValueError("a child process needs the node's node_id (the supervisor sets it)")
    share = max(node.spool_max_bytes // node.processes, 1) if node.spool_max_bytes else 0
    child = dataclasses.replace(
        node, node_id=process_id(node.node_id, index),
        control_socket=f"{PROCESSES}/{index}/control.sock", control_port=0,
        http_bind="127.0.0.1", http_port=http_port, audit_log=node.audit_log,
        spool_max_bytes=share,
    )  # fmt: skip
    return dataclasses.replace(config, node=child)


def child_argv(config_path: str, index: int, http_port: int, node_id: str) -> list[str]:
    """The command of the child ``index``: ``wolfpacs run`` with its hidden flags (this
    process's pid among them: a child that finds another parent stops at once)."""
    return [sys.executable, "-m", "wolfpacs", "run", "--config", config_path,
            "--process", str(index), "--process-http", str(http_port),
            "--process-node", node_id, "--process-supervisor", str(os.getpid())]  # fmt: skip


@dataclass(frozen=True)
class ProcessSpec:
    """One child: ``id`` (its index, as text), the command, and how long it may take to stop."""

    id: str
    argv: Sequence[str]
    shutdown: float = CHILD_SHUTDOWN
    restart: Restart = Restart.PERMANENT
    env: dict[str, str] | None = None

    def __post_init__(self) -> None:
        if not self.argv:
            raise ValueError(f"process {self.id}: an empty command")
        if self.shutdown <= 0:
            raise ValueError(f"process {self.id}: shutdown must be > 0 seconds")
        if self.restart is not Restart.PERMANENT:  # a node's process is always wanted
            raise ValueError(f"process {self.id}: only permanent processes are supported")


@dataclass
class _Child:
    spec: ProcessSpec
    process: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    started_at: float = 0.0
    last_exit: int | None = None
    history: list[float] = field(default_factory=list)


class ProcessSupervisor:
    """Starts, watches and restarts its children (see the module); thread-safe.

    ``on_restart(id, exit_code)`` is called (in :meth:`run`'s thread) after
    each restart; an exception in it is logged and ignored.

    Errors: :meth:`start` raises ``OSError`` if a child's command cannot be
    started (nothing runs then); later, a restart that cannot start counts
    as one more death.
    """

    def __init__(
        self,
        specs: Sequence[ProcessSpec],
        max_restarts: int = int(PROCESS_INTENSITY["max_restarts"]),
        max_seconds: float = PROCESS_INTENSITY["max_seconds"],
        on_restart: Callable[[str, int | None], None] | None = None,
    ) -> None:
        ids = [s.id for s in specs]
        if len(set(ids)) != len(ids):
            raise ValueError(f"duplicate process ids in {ids}")
        self.children = {s.id: _Child(s) for s in specs}
        self.intensity = RestartIntensity(max_restarts, max_seconds)
        self.on_restart = on_restart
        self.escalated: str | None = None  # why it gave up
        self._lock = threading.Lock()
        self._stopping = False

    def start(self) -> None:
        """Start every child, in order."""
        try:
            for child in self.children.values():
                self._spawn(child)
        except OSError:
            self.stop()
            raise

    def _spawn(self, child: _Child) -> None:
        env = None if child.spec.env is None else {**os.environ, **child.spec.env}
        child.process = subprocess.Popen(list(child.spec.argv), env=env)
        child.started_at = time.time()
        logger.info("process %s started: pid %d", child.spec.id, child.process.pid)

    def run(self, stop: threading.Event) -> int:
        """Watch the children until ``stop`` is set (then stop them: 0) or the supervisor
        gives up (:data:`EXIT_ESCALATED`, the others stopped)."""
        while not stop.wait(POLL):
            for child in self.children.values():
                if self._ended(child) and not self._restart(child):
                    self.stop()
                    return EXIT_ESCALATED
        self.stop()
        return 0

    def _ended(self, child: _Child) -> bool:
        with self._lock:
            process = child.process
            if self._stopping or process is None or process.poll() is None:
                return False
            child.last_exit = process.returncode
            return True

    def _restart(self, child: _Child) -> bool:
        """Start ``child`` again if the intensity allows; False: the supervisor gives up."""
        code, spec = child.last_exit, child.spec
        if not self.intensity.add():
            self.escalated = (
                f"process {spec.id} exited ({_said(code)}): more than "
                f"{self.intensity.max_restarts} restarts in {self.intensity.max_seconds:g} s"
            )
            logger.critical("giving up: %s", self.escalated)
            return False
        logger.error("process %s exited (%s): starting it again", spec.id, _said(code))
        with self._lock:
            if self._stopping:
                return True
            try:
                self._spawn(child)
            except OSError as exc:  # counted as one more death at the next look
                logger.error("process %s could not start again: %s", spec.id, exc)
                return True
            child.restarts += 1
            child.history = [*child.history[-9:], time.time()]
        if self.on_restart is not None:
            try:
                self.on_restart(spec.id, code)
            except Exception:
                logger.exception("on_restart of process %s failed", spec.id)
        return True

    def stop(self) -> bool:
        """SIGTERM to every child, then wait for each within its shutdown (else SIGKILL);
        True if each ended by itself. Idempotent."""
        with self._lock:
            self._stopping = True
            running = [c for c in self.children.values()
                       if c.process is not None and c.process.poll() is None]  # fmt: skip
        for child in running:
            assert child.process is not None
            child.process.send_signal(signal.SIGTERM)
        clean = True
        for child in reversed(running):
            assert child.process is not None
            try:
                child.process.wait(child.spec.shutdown)
            except subprocess.TimeoutExpired:
                logger.error("process %s did not stop in %g s: killed", child.spec.id,
                             child.spec.shutdown)  # fmt: skip
                child.process.kill()
                child.process.wait()
                clean = False
        return clean

    def kill(self, id: str) -> int:
        """``kill -9`` of the child ``id`` (fault injection); its pid. The supervisor
        restarts it as any dead child.

        Raises:
            KeyError: no child of that id, or it is not running.
        """
        with self._lock:
            child = self.children.get(id)
            process = None if child is None else child.process
            if process is None or process.poll() is not None:
                raise KeyError(f"no running process {id!r} (processes: "
                               f"{', '.join(self.children)})")  # fmt: skip
            process.kill()
            return process.pid

    def which_children(self) -> list[dict[str, Any]]:
        """Each child: ``id``, ``pid``, ``state`` (running|restarting|stopped), ``restarts``,
        ``started_at``, ``last_exit`` (its last exit code, None if it never ended)."""
        described = []
        with self._lock:
            for child in self.children.values():
                process = child.process
                alive = process is not None and process.poll() is None
                state = "running" if alive else "stopped" if self._stopping else "restarting"
                described.append({
                    "id": child.spec.id, "pid": process.pid if process else None,
                    "state": state, "restarts": child.restarts, "started_at": child.started_at,
                    "last_exit": child.last_exit,
                })  # fmt: skip
        return described

    def count_children(self) -> dict[str, int]:
        """How many children are in each state (all three named, zeros included)."""
        counts = {"running": 0, "restarting": 0, "stopped": 0}
        for child in self.which_children():
            counts[child["state"]] += 1
        return counts

    def restarts(self) -> int:
        """Restarts since the start, all children."""
        with self._lock:
            return sum(c.restarts for c in self.children.values())


def _said(code: int | None) -> str:
    if code is not None and code < 0:
        return f"signal {signal.Signals(-code).name}"
    return f"exit code {code}"
