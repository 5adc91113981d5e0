"""Runtime changes through one node reach the other: two `wolfpacs run` sharing a PostgreSQL.

DCMTK on both sides (storescu as the hospital, storescp as the workers and the PACS); two
node processes with the same config file but their own ports and data_dir, one store. Each
change is made with `wolfpacs ctl` on one node and seen through the other's `ctl --json`
and through where the other routes a new study.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from pydicom import dcmread

from integration.peers import NodeProcess, StoreSCP, storescu
from wolfpacs.testing.peers import free_port
from wolfpacs.testing.synthetic import write_study

CLIENT_AE = "STHLM_SECRET"
WORKERS = {"GPU_A": "gpu-a", "GPU_B": "gpu-b", "GPU_C": "gpu-c"}
PROPAGATION = 3.0  # seconds a change may take to show through the other node's ctl


def wait_until(check, timeout: float = 30.0) -> float:
    """Poll ``check`` until true; the seconds it took (fails past ``timeout``)."""
    started = time.monotonic()
    while not check():
        assert time.monotonic() - started < timeout, "not within the deadline"
        time.sleep(0.05)
    return time.monotonic() - started


class Node:
    def __init__(self, root: Path, url: str, workers: list[StoreSCP], pacs: StoreSCP) -> None:
        root.mkdir(parents=True)
        self.outside, self.inside = free_port(), free_port()
        self.process = NodeProcess(
            root,
            f"""
            [node]
            bind = "127.0.0.1"
            outside_port = {self.outside}
            inside_port = {self.inside}
            data_dir = "{root / "data"}"
            node_id = "{root.name}"
            store = "{url}"
            http_port = {free_port()}
            retry_initial = 0.1
            retry_max = 0.5
            idle_release = 0.5

            [[destinations]]
            name = "sthlm-pacs"
            host = "127.0.0.1"
            port = {pacs.port}
            ae_title = "PACS"

            [[clients]]
            name = "stockholm"
            ae_title = "{CLIENT_AE}"
            calling_ae_titles = ["HOSPITAL"]
            destination = "sthlm-pacs"
            pool = "stroke"
            """
            + "".join(
                f"""
            [[workers]]
            name = "{WORKERS[w.ae_title]}"
            host = "127.0.0.1"
            port = {w.port}
            ae_title = "{w.ae_title}"
            pool = "stroke"
            """
                for w in workers
            ),
        )

    def start(self) -> Node:
        self.process.start(self.outside, self.inside)
        return self

    def ctl(self, *words: str) -> Any:
        done = subprocess.run(
            [sys.executable, "-m", "wolfpacs", "ctl", "--config", str(self.process.config),
             "--json", *words],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    def workers(self) -> dict[str, dict[str, Any]]:
        return {w["name"]: w for w in self.ctl("workers")}

    def send(self, files: list[Path]) -> None:
        done = storescu(files, self.outside, CLIENT_AE, "HOSPITAL", "-xe")
        assert done.returncode == 0, done.stdout + done.stderr


@pytest.fixture
def pair(tmp_path, postgres_url):
    workers = [StoreSCP(tmp_path, ae).start() for ae in WORKERS]
    pacs = StoreSCP(tmp_path, "PACS").start()
    # Both nodes are configured with gpu-a and gpu-b; GPU_C is there to be added at runtime.
    nodes = [Node(tmp_path / name, postgres_url, workers[:2], pacs) for name in "ab"]
    try:
        for node in nodes:
            node.start()
        yield (*nodes, workers)
    finally:
        codes = [node.process.stop() for node in nodes if node.process.proc is not None]
        for peer in (*workers, pacs):
            peer.stop()
        assert codes == [0] * len(codes), "SIGTERM should stop each node cleanly"


def holders(workers: list[StoreSCP], files: list[Path]) -> set[str]:
    """The AE titles of the workers that received any of ``files``' study."""
    uid = str(dcmread(files[0], stop_before_pixels=True).StudyInstanceUID)
    return {w.ae_title for w in workers if uid in w.studies()}


def test_a_drain_through_b_holds_for_a_new_study_through_a(pair, tmp_path):
    a, b, workers = pair
    assert b.ctl("drain", "gpu-a") == {"worker": "gpu-a", "state": "draining"}
    took = wait_until(lambda: a.workers()["gpu-a"]["state"] in ("draining", "drained"))
    assert took < PROPAGATION
    # Both workers idle: without the drain, the tie would go to gpu-a (first by name).
    for n in range(2):
        files = write_study(tmp_path / f"new{n}", series=1, per_series=3)
        a.send(files)
        wait_until(lambda files=files: holders(workers, files))
        assert holders(workers, files) == {"GPU_B"}


def test_a_worker_added_through_a_shows_in_b_and_b_routes_to_it(pair, tmp_path):
    a, b, workers = pair
    added = a.ctl("add-worker", "gpu-c", "--host", "127.0.0.1", "--port", str(workers[2].port),
                  "--ae-title", "GPU_C", "--pool", "stroke")  # fmt: skip
    assert added == {"added": "worker", "name": "gpu-c"}
    took = wait_until(lambda: "gpu-c" in b.workers())
    assert took < PROPAGATION
    for worker in ("gpu-a", "gpu-b"):  # so that a new study can only go to gpu-c
        a.ctl("drain", worker)
    wait_until(lambda: {w["state"] for n, w in b.workers().items() if n != "gpu-c"}
               <= {"draining", "drained"}, timeout=PROPAGATION)  # fmt: skip
    files = write_study(tmp_path / "new", series=1, per_series=3)
    b.send(files)
    wait_until(lambda: len(workers[2].received()) == 3)
    assert holders(workers, files) == {"GPU_C"}


def test_a_move_through_b_sends_the_study_s_next_instances_through_a_to_the_new_worker(
    pair, tmp_path
):
    a, b, workers = pair
    files = write_study(tmp_path / "s", series=2, per_series=3)
    a.send(files[:3])  # the first series, through A: A caches its route
    wait_until(lambda: holders(workers, files[:3]))
    (home,) = holders(workers, files[:3])
    source = WORKERS[home]
    target = "gpu-b" if source == "gpu-a" else "gpu-a"
    uid = a.ctl("studies")[0]["study_uid"]
    moved = b.ctl("move", source, "--to", target, "--studies", uid)
    assert moved["moved_studies"] == [uid]
    took = wait_until(lambda: a.ctl("inspect", "changes")["state"]["applied"] >= 1)
    assert took < PROPAGATION
    a.send(files[3:])  # the second series, through A
    new_home = next(w for w in workers if WORKERS[w.ae_title] == target)
    wait_until(lambda: len(new_home.received()) == 3)
    old_home = next(w for w in workers if w.ae_title == home)
    assert len(old_home.received()) == 3  # nothing more went to the worker it left
    assert "handed on" not in a.process.logs()  # routed there, not queued for the old one
