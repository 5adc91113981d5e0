"""A node of two processes (``[node] processes = 2``) between DCMTK peers: the kernel spreads
associations over both (SO_REUSEPORT), every study lands whole on one worker, a child killed
with ``kill -9`` is started again by the supervisor and loses nothing acknowledged, and
SIGTERM stops every process with exit 0.

How we know both processes received: each child's own control socket
(``data/processes/<n>/control.sock``) answers ``stats`` with its own counters, among them its
accepted associations on the outside port.
"""

from __future__ import annotations

import os
import threading
import urllib.request
from pathlib import Path
from typing import Any

from integration.conftest import CLIENT_AE
from integration.peers import acknowledged, storescu
from tests.conftest import wait_until
from wolfpacs.ops.control import ControlClient
from wolfpacs.testing.synthetic import write_study

LEASE = 2  # seconds


def control(cluster: Any, process: str = "") -> ControlClient:
    """The node's control socket (the supervisor's), or one child's own."""
    where = cluster.data / "processes" / process if process else cluster.data
    return ControlClient(where / "control.sock", reconnect=30)


def processes(cluster: Any) -> dict[str, dict[str, Any]]:
    """The tree's top level: process id -> its entry (pid, alive, restarts, node_id)."""
    tree = control(cluster).call("tree")
    return {p["id"].removeprefix("process:"): p for p in tree["children"]}


def all_up(cluster: Any, count: int = 2) -> dict[str, dict[str, Any]] | None:
    seen = processes(cluster)
    up = len(seen) == count and all(p["alive"] and p.get("node_id") for p in seen.values())
    return seen if up else None


def accepted(cluster: Any, process: str) -> float:
    counters = control(cluster, process).call("stats")["counters"]
    return sum(v for k, v in counters.items()
               if k.startswith("wolfpacs_associations_total") and "side=outside" in k
               and "outcome=accepted" in k)  # fmt: skip


def send_all(batches: list[list[Path]], port: int) -> list[str]:
    """Each batch over its own association, all at once; the acknowledged files."""
    done: list[str] = []
    lock = threading.Lock()

    def one(files: list[Path]) -> None:
        sent = storescu(files, port, CLIENT_AE)
        with lock:
            done.extend(acknowledged(sent.stdout + sent.stderr))

    threads = [threading.Thread(target=one, args=(b,)) for b in batches]
    for t in threads:
        t.start()
    for t in threads:
        t.join(180)
    return done


def studies_in_halves(root: Path, count: int) -> tuple[list[list[Path]], dict[str, list[Path]]]:
    """``count`` studies of two series; each series one batch (so two associations a study)."""
    batches, by_study = [], {}
    for n in range(count):
        files = write_study(root / f"study{n}", series=2, per_series=4, rows=16, columns=16)
        batches += [files[:4], files[4:]]
        by_study[f"study{n}"] = files
    return batches, by_study


def metrics(cluster: Any) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{cluster.http}/metrics", timeout=30) as r:
        return str(r.read().decode())


def test_two_processes_share_the_ports_and_each_study_lands_whole_on_one_worker(cluster, tmp_path):
    c = cluster(processes=2, lease_seconds=LEASE).start()
    wait_until(lambda: all_up(c), timeout=60, what="both processes up")
    batches, by_study = studies_in_halves(tmp_path, 4)
    done = send_all(batches, c.outside)
    assert len(done) == 32
    # Both processes took associations (1 in 128 that the kernel's hash gives all 8 to one).
    counts = {p: accepted(c, p) for p in ("1", "2")}
    assert sum(counts.values()) == 8 and all(counts.values()), counts
    wait_until(lambda: c.delivered() == 32, timeout=60, what="every instance delivered")
    received = c.received()
    from pydicom import dcmread

    for files in by_study.values():
        uids = {str(dcmread(f, stop_before_pixels=True).SOPInstanceUID) for f in files}
        holders = [ae for ae, got in received.items() if uids & set(got)]
        assert len(holders) == 1 and uids <= set(received[holders[0]]), holders
    summed = metrics(c)
    assert 'wolfpacs_processes{state="running"} 2' in summed
    ready = urllib.request.urlopen(f"http://127.0.0.1:{c.http}/readyz", timeout=30)
    assert ready.status == 200


def test_a_child_killed_with_instances_queued_is_restarted_and_nothing_acknowledged_is_lost(
    cluster, tmp_path
):
    c = cluster(processes=2, lease_seconds=LEASE, fault_injection=True).start(workers=False)
    before = wait_until(lambda: all_up(c), timeout=60, what="both processes up")
    batches, _ = studies_in_halves(tmp_path, 2)
    done = send_all(batches, c.outside)
    assert len(done) == 16
    queued = {n["node_id"]: n["queued"] for n in control(c).call("nodes")}
    victim = max(before, key=lambda p: queued.get(before[p]["node_id"], 0))
    assert queued[before[victim]["node_id"]] > 0  # it holds acknowledged instances
    killed = control(c).call("kill", actor=f"process:{victim}")
    assert killed["pid"] == before[victim]["pid"]

    def restarted() -> bool:
        now = all_up(c)
        return bool(now) and now[victim]["restarts"] == 1 and now[victim]["pid"] != killed["pid"]

    wait_until(restarted, timeout=60, what="the killed process started again")
    assert processes(c)[victim]["node_id"] == before[victim]["node_id"]  # the same node again
    for worker in c.workers:
        worker.start()
    wait_until(lambda: c.delivered() == 16, timeout=90, what="every acknowledged instance")
    assert "wolfpacs_process_restarts_total 1" in metrics(c)


def test_sigterm_stops_every_process_and_the_supervisor_exits_0(cluster):
    c = cluster(processes=2, lease_seconds=LEASE).start()
    pids = [p["pid"] for p in wait_until(lambda: all_up(c), timeout=60, what="up").values()]
    assert c.node.stop() == 0
    for pid in pids:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            continue
        raise AssertionError(f"process {pid} outlived its supervisor's SIGTERM")
    assert "stopped: every process ended" in c.node.logs()


def test_a_queue_outlives_a_change_of_processes_both_ways(cluster, tmp_path):
    c = cluster(processes=1, lease_seconds=LEASE).start(workers=False)
    batches, _ = studies_in_halves(tmp_path, 2)
    assert len(send_all(batches[:2], c.outside)) == 8  # queued by the node as one process
    assert c.node.stop() == 0
    config = c.node.config.read_text()
    c.node.config.write_text(config.replace("processes = 1", "processes = 2"))
    c.node.start(c.outside, c.inside)
    wait_until(lambda: all_up(c), timeout=60, what="both processes up")
    assert len(send_all(batches[2:], c.outside)) == 8  # queued by its processes

    def adopted() -> bool:  # the node as one process is dead: a process took its queue
        nodes = {n["node_id"]: n for n in control(c).call("nodes")}
        solo = [n for id, n in nodes.items() if "." not in id]
        return len(solo) == 1 and solo[0]["queued"] == 0 and bool(solo[0]["adopted_by"])

    wait_until(adopted, timeout=30, what="the queue of the node as one process adopted")
    assert c.node.stop() == 0
    c.node.config.write_text(config)  # one process again: it adopts what its processes queued
    for worker in c.workers:
        worker.start()
    c.node.start(c.outside, c.inside)
    wait_until(lambda: c.delivered() == 16, timeout=60, what="both queues delivered")


def test_a_supervisor_killed_with_kill_9_is_replaced_at_once_its_orphans_stop_by_themselves(
    cluster, tmp_path
):
    c = cluster(processes=2, lease_seconds=LEASE).start()
    old = [p["pid"] for p in wait_until(lambda: all_up(c), timeout=60, what="up").values()]
    c.node.kill9()  # the supervisor only: its children notice and stop, finishing their work
    c.node.start(c.outside, c.inside)  # as systemd would, at once
    new = wait_until(lambda: all_up(c), timeout=90, what="the new supervisor's processes")
    assert not set(old) & {p["pid"] for p in new.values()}
    for pid in old:
        wait_until(lambda pid=pid: not Path(f"/proc/{pid}").exists() or "Z" in _state(pid),
                   timeout=60, what=f"orphan {pid} to stop")  # fmt: skip
    assert "giving up" not in c.node.logs()
    batches, _ = studies_in_halves(tmp_path, 1)
    assert len(send_all(batches, c.outside)) == 8
    wait_until(lambda: c.delivered() == 8, timeout=60, what="delivered by the new processes")


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "gone"
