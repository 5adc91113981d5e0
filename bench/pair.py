"""Two nodes on one PostgreSQL database behind haproxy: the bench's ``wolfpacs-pg-pair-8``.

Nodes ``node-a`` and ``node-b`` (each its own data_dir, one ``spool_dir``
with ``shared_spool = true``, as ``docs/deployment/`` sets them) share four
DCMTK workers; haproxy runs the shipped ``docs/deployment/haproxy.cfg``
with its frontends and servers moved to loopback ports (:func:`on_loopback`),
all else as shipped (mode tcp, leastconn, ``/readyz`` checks on each node's
HTTP port). The workers are ``storescp --fork``: two nodes may deliver to one
worker at once (the halves of a study that came through different nodes).
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from bench import harness
from bench.harness import storescps
from wolfpacs.testing.peers import free_port, wait_port

HAPROXY = Path("/usr/sbin/haproxy")
SHIPPED = Path(__file__).resolve().parent.parent / "docs" / "deployment" / "haproxy.cfg"
NODE_IDS = ("node-a", "node-b")


def available() -> bool:
    """Whether haproxy is installed (PostgreSQL: :func:`bench.postgres.available`)."""
    return HAPROXY.exists() or shutil.which("haproxy") is not None


def on_loopback(
    text: str, outside: int, inside: int, nodes: dict[str, tuple[int, int, int]]
) -> str:
    """The shipped config, its frontends and its servers (by node_id: outside, inside and
    HTTP ports) on loopback; all else as shipped.

    Raises:
        ValueError: a line to move is not in ``text`` once (the shipped config changed).
    """
    moves = {"bind :11112\n": f"bind 127.0.0.1:{outside}\n",
             "bind :11113\n": f"bind 127.0.0.1:{inside}\n"}  # fmt: skip
    for name, (out, ins, http) in nodes.items():
        moves[f" {name}:11112 check port 9111"] = f" 127.0.0.1:{out} check port {http}"
        moves[f" {name}:11113 check port 9111"] = f" 127.0.0.1:{ins} check port {http}"
    for old, new in moves.items():
        if text.count(old) != 1:
            raise ValueError(f"haproxy.cfg: {old!r} is not there once")
        text = text.replace(old, new)
    return text


@dataclass
class Pair:
    """Two running nodes, their shared workers and haproxy in front."""

    outside: int  # haproxy's outside frontend: where the hospitals send
    nodes: list[harness.Node]
    worker_dirs: list[Path]
    client_aes: list[str]

    @property
    def pids(self) -> list[int]:
        return [n.pid for n in self.nodes]

    def store_counts(self) -> dict[str, float]:
        """Both nodes' store operations and busy seconds, summed (``Node.store_counts``), and
        each node's operations (``node-a_store_operations``: how haproxy spread the work)."""
        total: dict[str, float] = {}
        for node_id, node in zip(NODE_IDS, self.nodes, strict=True):
            for name, value in node.store_counts().items():
                total[name] = total.get(name, 0.0) + value
                if name == "store_operations":
                    total[f"{node_id}_{name}"] = value
        return total


def _ready(port: int, timeout: float = 60) -> None:
    """Until the node's ``/readyz`` answers 200 (haproxy's check would put it in the pool)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as answer:
                if answer.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass  # not yet: 503 or not listening
        if time.monotonic() > deadline:
            raise TimeoutError(f"/readyz on {port} did not answer 200")
        time.sleep(0.05)


@contextlib.contextmanager
def pair(root: Path, store: str, *, workers: int, clients: int) -> Iterator[Pair]:
    """Nodes ``node-a`` and ``node-b`` on the PostgreSQL database of ``store``, ``workers``
    storescp --fork workers in pool ``p`` and ``clients`` clients (as :func:`harness.node`),
    behind haproxy. Everything is stopped, and the directories removed, after.

    Raises:
        TimeoutError: a node or haproxy did not come up.
    """
    root.mkdir(parents=True, exist_ok=True)
    dirs = [root / f"worker{i}" for i in range(workers)]
    spool = root / "spool"
    with storescps([(d, f"WORKER{i}") for i, d in enumerate(dirs)], fork=True) as ports, \
            contextlib.ExitStack() as stack:  # fmt: skip
        nodes: list[harness.Node] = []
        pacs_port = free_port()  # nothing listens: the bench's studies go to workers only
        for node_id in NODE_IDS:
            here = root / node_id
            here.mkdir(exist_ok=True)
            outside, inside, http = free_port(), free_port(), free_port()
            config = harness._write_config(here, "fsync", clients, (outside, inside, pacs_port),
                                           ports, http_port=http, store=store)  # fmt: skip
            config.write_text(config.read_text().replace("[node]\n", (
                f'[node]\nnode_id = "{node_id}"\nspool_dir = "{spool}"\nshared_spool = true\n'
            ), 1))  # fmt: skip
            command = [sys.executable, "-m", "wolfpacs", "run", "--config", str(config)]
            with open(here / "node.log", "ab") as log:
                process = subprocess.Popen([*command, "--log-level", "warning"], stdout=log,
                                           stderr=log)  # fmt: skip
            stack.callback(_stop, process)
            nodes.append(harness.Node(outside, inside, config, here / "node", dirs,
                                      root / "pacs", process,
                                      [f"BENCH{i}" for i in range(clients)], http))  # fmt: skip
        for node in nodes:
            for port in (node.outside, node.inside):
                wait_port(port, timeout=60)
            _ready(node.http_port)
        front = free_port(), free_port()
        moved = {node_id: (n.outside, n.inside, n.http_port)
                 for node_id, n in zip(NODE_IDS, nodes, strict=True)}  # fmt: skip
        (root / "haproxy.cfg").write_text(on_loopback(SHIPPED.read_text(), *front, moved))
        binary = str(HAPROXY if HAPROXY.exists() else shutil.which("haproxy"))
        with open(root / "haproxy.log", "ab") as log:
            proxy = subprocess.Popen([binary, "-db", "-f", str(root / "haproxy.cfg")],
                                     stdout=log, stderr=log)  # fmt: skip
        stack.callback(_stop, proxy)
        wait_port(front[0])
        try:
            yield Pair(front[0], nodes, dirs, nodes[0].client_aes)
        finally:
            stack.close()
            shutil.rmtree(root, ignore_errors=True)


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(60)
    except subprocess.TimeoutExpired:  # why: a stuck node must not hang the bench's next run
        process.kill()
        process.wait()
