"""Two `wolfpacs run` nodes on one PostgreSQL and one spool directory: a node killed with
``kill -9`` has its queue adopted and delivered by the other (``shared_spool``), or waits for
its return (without); ``wolfpacs ctl nodes --json`` tells which node is alive, which dead."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

from integration.conftest import CLIENT_AE
from integration.peers import NodeProcess, StoreSCP, acknowledged, storescu
from tests.conftest import wait_until
from wolfpacs.testing.peers import free_port
from wolfpacs.testing.synthetic import write_study

LEASE = 2  # seconds: a node silent this long is dead
SLACK = 8  # seconds past the lease for the adopter's tick, its senders and the workers' writes


class Node:
    """One `wolfpacs run` of the pair: its own data_dir and ports, the pair's store and spool."""

    def __init__(self, root: Path, node_id: str, pair: Pair) -> None:
        self.node_id = node_id
        self.outside, self.inside, self.http = free_port(), free_port(), free_port()
        workers = "".join(
            f'\n[[workers]]\nname = "{w.ae_title.lower()}"\nhost = "127.0.0.1"\n'
            f'port = {w.port}\nae_title = "{w.ae_title}"\npool = "stroke"\n'
            for w in pair.workers
        )
        # Shared: one spool directory for both; else each its own (data_dir/spool).
        spool = f'spool_dir = "{pair.spool}"\nshared_spool = true' if pair.shared else ""
        (root / node_id).mkdir(parents=True)
        self.process = NodeProcess(root / node_id, f"""
[node]
node_id = "{node_id}"
store = "{pair.store}"
{spool}
lease_seconds = {LEASE}
bind = "127.0.0.1"
outside_port = {self.outside}
inside_port = {self.inside}
http_port = {self.http}
data_dir = "data"
retry_initial = 0.1
retry_max = 0.5
idle_release = 0.5

[[destinations]]
name = "sthlm-pacs"
host = "127.0.0.1"
port = {pair.pacs.port}
ae_title = "PACS"

[[clients]]
name = "stockholm"
ae_title = "{CLIENT_AE}"
destination = "sthlm-pacs"
pool = "stroke"
{workers}""")  # fmt: skip

    def start(self) -> Node:
        self.process.start(self.outside, self.inside)
        return self

    def ctl(self, *words: str) -> object:
        done = subprocess.run(
            [sys.executable, "-m", "wolfpacs", "ctl", "--config", str(self.process.config),
             "--json", *words], capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)


class Pair:
    """Nodes a and b, two DCMTK workers (down until asked) and a PACS."""

    def __init__(self, root: Path, store: str, shared: bool) -> None:
        self.store, self.shared, self.spool = store, shared, root / "spool"
        self.workers = [StoreSCP(root, ae) for ae in ("GPU_A", "GPU_B")]
        self.pacs = StoreSCP(root, "PACS").start()
        self.a, self.b = Node(root, "node-a", self).start(), Node(root, "node-b", self).start()

    def delivered(self) -> int:
        return sum(len(w.received()) for w in self.workers)

    def nodes(self, via: Node) -> dict[str, dict]:
        return {n["node_id"]: n for n in via.ctl("nodes")}  # type: ignore[union-attr]

    def stop(self) -> None:
        for node in (self.a, self.b):
            if node.process.proc is not None:
                node.process.stop()
        for peer in (*self.workers, self.pacs):
            peer.stop()


def send_study(pair: Pair, tmp_path: Path) -> int:
    """A study of 10 instances to node a, every one acknowledged while no worker is up."""
    files = write_study(tmp_path / "study", series=2, per_series=5, rows=16, columns=16)
    sent = storescu(files, pair.a.outside, CLIENT_AE)
    assert len(acknowledged(sent.stdout + sent.stderr)) == len(files), sent.stderr
    return len(files)


def test_a_node_killed_with_kill_9_has_its_queue_delivered_by_the_other(tmp_path, postgres_url):
    pair = Pair(tmp_path, postgres_url, shared=True)
    try:
        count = send_study(pair, tmp_path)
        assert list((pair.spool / "node-a").glob("*/*.dcm"))  # a queues under its own id
        pair.a.process.kill9()
        killed = time.monotonic()
        for worker in pair.workers:
            worker.start()
        wait_until(lambda: pair.delivered() == count, timeout=LEASE + SLACK,
                   interval=0.1, what="node b to deliver node a's queue")  # fmt: skip
        took = time.monotonic() - killed
        seen = pair.nodes(via=pair.b)
        assert seen["node-a"]["state"] == "dead" and seen["node-a"]["adopted_by"] == "node-b"
        assert seen["node-b"]["state"] == "alive" and seen["node-b"]["adopted_from"] == ["node-a"]
        wait_until(lambda: pair.nodes(via=pair.b)["node-b"]["queued"] == 0, timeout=10,
                   what="b's rows of a's queue to go")  # fmt: skip
        assert not list((pair.spool / "node-a").glob("*/*.dcm"))  # b removed a's files
        assert "adopted the queue of node node-a" in pair.b.process.logs()
        print(f"node b delivered node a's {count} instances {took:.1f} s after a's kill -9")
        pair.a.start()  # a comes back: a new epoch, nothing of its own left to send
        back = pair.nodes(via=pair.a)["node-a"]
        assert back["state"] == "alive" and back["adopted_by"] is None and back["queued"] == 0
        assert pair.delivered() == count  # nothing sent twice
    finally:
        pair.stop()


def test_without_a_shared_spool_a_dead_nodes_queue_waits_for_its_return(tmp_path, postgres_url):
    pair = Pair(tmp_path, postgres_url, shared=False)
    try:
        count = send_study(pair, tmp_path)
        pair.a.process.kill9()
        for worker in pair.workers:
            worker.start()
        dead = wait_until(lambda: (n := pair.nodes(via=pair.b))["node-a"]["state"] == "dead" and n,
                          timeout=LEASE + SLACK, what="node a to be seen dead")  # fmt: skip
        # Several of b's ticks after a's death, each one a chance to adopt (it must not):
        wait_until(
            lambda: (n := pair.nodes(via=pair.b))["node-b"]["last_heartbeat"]
            > dead["node-a"]["expires_at"] + LEASE and n, timeout=LEASE + SLACK,
            what="b's heartbeats after a's death",
        )  # fmt: skip
        seen = pair.nodes(via=pair.b)
        assert seen["node-a"]["queued"] == count and seen["node-a"]["adopted_by"] is None
        assert seen["node-b"]["adopted_from"] == [] and pair.delivered() == 0
        pair.a.start()  # its return: its own queue, from its own spool
        wait_until(lambda: pair.delivered() == count, timeout=30, interval=0.1,
                   what="node a to deliver its queue on its return")  # fmt: skip
    finally:
        pair.stop()


def test_a_paused_node_whose_queue_was_adopted_stops_when_it_wakes(tmp_path, postgres_url):
    pair = Pair(tmp_path, postgres_url, shared=True)
    try:
        count = send_study(pair, tmp_path)
        a = pair.a.process.proc
        assert a is not None
        a.send_signal(signal.SIGSTOP)  # paused (a long GC, a frozen VM, a cut network...)
        for worker in pair.workers:
            worker.start()
        wait_until(lambda: pair.delivered() == count, timeout=LEASE + SLACK,
                   interval=0.1, what="node b to deliver the paused node's queue")  # fmt: skip
        a.send_signal(signal.SIGCONT)  # it wakes: its epoch is gone, it must stop at once
        assert a.wait(30) == 1
        pair.a.process.proc = None
        logs = pair.a.process.logs()
        assert "is no longer its own" in logs and "delivers nothing more" in logs
        assert pair.nodes(via=pair.b)["node-a"]["adopted_by"] == "node-b"
    finally:
        pair.stop()
