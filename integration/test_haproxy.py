"""Two nodes behind haproxy, from the shipped docs/deployment/haproxy.cfg, on one PostgreSQL.

The config is the shipped one with its addresses moved to free loopback
ports (:func:`on_loopback`: the bind lines and the server lines, nothing
else). DCMTK's storescu sends studies through haproxy: both nodes get
associations (each node's log has the associations it served), and every
study lands whole on one worker. Then the node serving a study is killed
with ``kill -9`` in the middle of it: haproxy's check marks it down, the
hospital sends again what was not acknowledged (storescu, through haproxy:
the other node takes it, to the study's worker), and nothing acknowledged
is lost: the killed node, started again, delivers what it had queued.
With haproxy-backup.cfg, node-a takes every association while it is up and
node-b takes over once node-a is killed.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
from pydicom import dcmread

from integration.conftest import CLIENT_AE, Cluster
from integration.peers import ENV, NodeProcess, acknowledged, storescu, tool
from tests.conftest import need_program, wait_until
from wolfpacs.testing.peers import free_port, wait_port
from wolfpacs.testing.synthetic import write_study

DEPLOYMENT = Path(__file__).resolve().parent.parent / "docs" / "deployment"
RELEASED = re.compile(r"association client stockholm .* released after")


class Node:
    """One node of the pair: its process and ports."""

    def __init__(self, name: str, process: NodeProcess, outside: int, inside: int, http: int):
        self.name, self.process = name, process
        self.outside, self.inside, self.http = outside, inside, http

    def start(self) -> None:
        self.process.start(self.outside, self.inside)

    def associations(self) -> int:
        """Clients' associations this node served to their end (its log says each)."""
        return len(RELEASED.findall(self.process.logs()))


def on_loopback(text: str, outside: int, inside: int, nodes: list[Node]) -> str:
    """The shipped config, its frontends and servers on loopback ports; all else as shipped."""
    moves = {"bind :11112\n": f"bind 127.0.0.1:{outside}\n",
             "bind :11113\n": f"bind 127.0.0.1:{inside}\n"}  # fmt: skip
    for node in nodes:
        moves[f" {node.name}:11112 check port 9111"] = (
            f" 127.0.0.1:{node.outside} check port {node.http}"
        )
        moves[f" {node.name}:11113 check port 9111"] = (
            f" 127.0.0.1:{node.inside} check port {node.http}"
        )
    for old, new in moves.items():
        assert text.count(old) == 1, old  # the shipped config changed: change this too
        text = text.replace(old, new)
    return text


class Haproxy:
    def __init__(self, root: Path, config: str) -> None:
        self.config = root / "haproxy.cfg"
        self.config.write_text(config)
        self.log = root / "haproxy.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, port: int) -> None:
        binary = need_program("haproxy", "apt-get install -y haproxy", "/usr/sbin/haproxy")
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen([binary, "-db", "-f", str(self.config)],
                                         stdout=log, stderr=log)  # fmt: skip
        wait_port(port)

    def says(self, text: str) -> bool:
        return text in self.log.read_text(errors="replace")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)


@pytest.fixture
def pair(tmp_path, postgres_url, request):
    """Workers, a PACS, nodes a and b on one PostgreSQL, and haproxy in front: from the
    shipped haproxy.cfg, or the one the test names (``parametrize(..., indirect=True)``)."""
    shipped = DEPLOYMENT / getattr(request, "param", "haproxy.cfg")
    need_program("haproxy", "apt-get install -y haproxy", "/usr/sbin/haproxy")
    # Two nodes: two ids, one shared spool (a live node adopts a dead one's queue), short leases.
    shared = str(tmp_path / "spool")
    first = Cluster(tmp_path / "a", store=postgres_url, node_id="node-a", spool_dir=shared,
                    shared_spool=True, lease_seconds=2)  # fmt: skip
    nodes = [Node("node-a", first.node, first.outside, first.inside, first.http)]
    ports = (free_port(), free_port(), free_port())
    text = first.node.config.read_text().replace('node_id = "node-a"', 'node_id = "node-b"')
    for old, new in zip((first.outside, first.inside, first.http), ports, strict=True):
        text = re.sub(rf"(_port = ){old}\b", rf"\g<1>{new}", text)
    (tmp_path / "b").mkdir()
    nodes.append(Node("node-b", NodeProcess(tmp_path / "b", text), *ports))
    front = (free_port(), free_port())
    haproxy = Haproxy(tmp_path, on_loopback(shipped.read_text(), *front, nodes))
    first.start()
    nodes[1].start()
    haproxy.start(front[0])
    try:
        yield first, nodes, haproxy, front[0]
    finally:
        haproxy.stop()
        for node in nodes[1:]:
            if node.process.proc is not None:
                assert node.process.stop() == 0, node.process.logs()[-3000:]
        # the first node and the peers: the cluster fixture's way
        code = first.stop()
        assert code in (0, None), first.node.logs()[-3000:]


def study_of(path: Path) -> str:
    return str(dcmread(path, stop_before_pixels=True).StudyInstanceUID)


def workers_of(cluster: Cluster) -> dict[str, set[str]]:
    """Worker AE title → the studies it holds."""
    return {
        ae: {study_of(p) for p in received.values()} for ae, received in cluster.received().items()
    }


def test_two_nodes_behind_haproxy_share_the_work_and_survive_a_kill9_mid_study(pair, tmp_path):
    cluster, nodes, haproxy, port = pair
    studies = [write_study(tmp_path / f"s{n}", series=2, per_series=3) for n in range(6)]
    for files in studies:  # one association per study, as a modality sends them
        sent = storescu(files, port, CLIENT_AE)
        assert len(acknowledged(sent.stdout + sent.stderr)) == 6, sent.stderr[-2000:]
    # Both nodes served: haproxy balanced the associations (leastconn), and each node's log
    # has a line for every association it served to its end.
    wait_until(lambda: sum(n.associations() for n in nodes) == 6, what="6 associations logged")
    assert all(n.associations() >= 1 for n in nodes), [n.associations() for n in nodes]
    wait_until(lambda: cluster.delivered() == 36, timeout=60, what="the 6 studies delivered")
    held = workers_of(cluster)
    for files in studies:  # each whole on one worker
        assert sum(study_of(files[0]) in s for s in held.values()) == 1

    # A long study; the node that takes it is killed in its middle.
    big = write_study(tmp_path / "big", series=1, per_series=150, rows=256, columns=256)
    uid = study_of(big[0])
    hospital = subprocess.Popen(
        [tool("storescu"), "-v", "-aet", "HOSPITAL", "-aec", CLIENT_AE, "127.0.0.1", str(port),
         *map(str, big)],
        env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    assert hospital.stdout is not None
    seen = []
    for line in hospital.stdout:  # storescu -v says each response as it comes
        seen.append(line)
        if len(acknowledged("".join(seen))) == 10:
            break
    victim = next(n for n in nodes if f"route: study {uid}" in n.process.logs())
    victim.process.kill9()
    output = "".join(seen) + hospital.communicate(timeout=120)[0]
    first_try = acknowledged(output)
    assert 0 < len(first_try) < len(big), "the kill came before or after the study"
    survivor = next(n for n in nodes if n is not victim)
    wait_until(lambda: haproxy.says(f"wolfpacs_outside/{victim.name} is DOWN"), timeout=30,
               what="haproxy's check marking the killed node down")  # fmt: skip

    # The hospital sends again what was not acknowledged: the other node takes it.
    again = [p for p in big if str(p) not in set(first_try)]
    served = survivor.associations()
    sent = storescu(again, port, CLIENT_AE)
    assert len(acknowledged(sent.stdout + sent.stderr)) == len(again), sent.stderr[-2000:]
    wait_until(lambda: survivor.associations() == served + 1, what="the survivor served it")
    # It found the study's route in the store (made by the killed node): no new route.
    assert f"route: study {uid}" not in survivor.process.logs()
    wait_until(lambda: cluster.delivered() >= 36 + len(again), timeout=60,
               what="the survivor's share delivered")  # fmt: skip

    # What the killed node acknowledged before it died: the survivor adopts its queue once
    # its lease (2 s) has expired, and delivers it from the shared spool.
    wait_until(lambda: cluster.delivered() == 36 + len(big), timeout=60,
               what="every instance of the big study delivered")  # fmt: skip
    assert f"adopted the queue of node {victim.name}" in survivor.process.logs()
    victim.start()  # back, with a new epoch and nothing of its old queue to send
    held = workers_of(cluster)
    assert sum(uid in s for s in held.values()) == 1  # whole on one worker
    delivered = {sop for r in cluster.received().values() for sop in r}
    acked = {str(dcmread(p, stop_before_pixels=True).SOPInstanceUID) for p in big}
    assert acked <= delivered  # nothing acknowledged is lost
    wait_until(lambda: haproxy.says(f"wolfpacs_outside/{victim.name} is UP"), timeout=30,
               what="haproxy's check marking it up again")  # fmt: skip


@pytest.mark.parametrize("pair", ["haproxy-backup.cfg"], indirect=True)
def test_with_the_backup_config_node_b_takes_over_when_node_a_is_killed(pair, tmp_path):
    cluster, (a, b), haproxy, port = pair
    for n in range(3):
        sent = storescu(write_study(tmp_path / f"s{n}", series=1, per_series=2), port, CLIENT_AE)
        assert len(acknowledged(sent.stdout + sent.stderr)) == 2, sent.stderr[-2000:]
    wait_until(lambda: a.associations() == 3, what="node-a serving them all")
    assert b.associations() == 0  # the backup is idle while node-a is up
    a.process.kill9()
    wait_until(lambda: haproxy.says("wolfpacs_outside/node-a is DOWN"), timeout=30,
               what="haproxy's check marking node-a down")  # fmt: skip
    sent = storescu(write_study(tmp_path / "after", series=1, per_series=2), port, CLIENT_AE)
    assert len(acknowledged(sent.stdout + sent.stderr)) == 2, sent.stderr[-2000:]
    wait_until(lambda: b.associations() == 1, what="node-b taking over")
    a.start()  # node-a back: what it acknowledged is delivered, and it is first again
    wait_until(lambda: cluster.delivered() == 8, timeout=60, what="all 8 instances delivered")
    wait_until(lambda: haproxy.says("wolfpacs_outside/node-a is UP"), timeout=30,
               what="node-a up again")  # fmt: skip
