"""Black-box: two `wolfpacs run` nodes on one PostgreSQL agree on every study's worker.

The pair of integration/test_nodes.py (nodes a and b, each its own
data_dir, spool and ports; one database of the session's server, the
workers and the PACS shared). A study is routed where the database says,
whichever node it arrives through, and new studies racing through both
nodes are spread as one node would spread them (Store.create_route).
"""

from __future__ import annotations

import subprocess
from collections import Counter
from pathlib import Path

from pydicom import dcmread

from integration.conftest import CLIENT_AE
from integration.peers import ENV, acknowledged, storescu, tool
from integration.test_nodes import Pair
from tests.conftest import wait_until
from wolfpacs.testing.synthetic import write_study


def pair_up(tmp_path: Path, postgres_url: str) -> Pair:
    """Nodes a and b, each with its own spool, and both workers up. The workers take an
    association per process (storescp --fork), as a worker two nodes send to at once must:
    a storescp of one process holds the second node's association until the first's ends."""
    pair = Pair(tmp_path, postgres_url, shared=False)
    for worker in pair.workers:
        worker.accept.append("--fork")
        worker.start()
    # The nodes started before the workers and found them down: until each has seen both up
    # (its next probe), it would send every new study to the one it knows up.
    for node in (pair.a, pair.b):
        wait_until(
            lambda n=node: all(w["state"] == "active" for w in n.ctl("workers")),
            timeout=30,
            interval=0.2,
            what=f"{node.node_id} to see both workers up",
        )
    return pair


def send(port: int, files: list[Path]) -> None:
    result = storescu(files, port, CLIENT_AE, "HOSPITAL", "-xe")
    output = result.stdout + result.stderr
    assert result.returncode == 0 and len(acknowledged(output)) == len(files), output


def start_send(port: int, files: list[Path]) -> subprocess.Popen[bytes]:
    """storescu of ``files`` to ``port``, started (it runs beside the others)."""
    return subprocess.Popen(
        [tool("storescu"), "-xe", "-aet", "HOSPITAL", "-aec", CLIENT_AE, "127.0.0.1",
         str(port), *map(str, files)],
        env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip


def routes(url: str) -> dict[str, str]:
    """Study UID → worker, as the shared store has them."""
    import psycopg

    with psycopg.connect(url) as db:
        return dict(db.execute("SELECT study_uid, worker FROM studies").fetchall())


def uid(files: list[Path]) -> str:
    return str(dcmread(files[0], stop_before_pixels=True).StudyInstanceUID)


def held(pair: Pair) -> dict[str, set[str]]:
    """Worker name → the studies of the instances it has."""
    return {
        w.ae_title.lower(): {str(dcmread(p, stop_before_pixels=True).StudyInstanceUID)
                             for p in w.received().values()}
        for w in pair.workers
    }  # fmt: skip


def test_a_study_whose_halves_arrive_through_two_nodes_lands_on_one_worker(tmp_path, postgres_url):
    pair = pair_up(tmp_path, postgres_url)
    try:
        # A study through a first, on gpu_a: the split study then goes to gpu_b, and with
        # one study each, a node that chose afresh for the second half would pick gpu_a.
        send(pair.a.outside, write_study(tmp_path / "busy", series=1, per_series=1))
        files = write_study(tmp_path / "s", series=2, per_series=3)
        send(pair.a.outside, files[:3])  # the first series through node a...
        send(pair.b.outside, files[3:])  # ...the second through node b, on its own association
        wait_until(lambda: pair.delivered() == 7, timeout=30, what="7 instances at the workers")
        holders = [name for name, studies in held(pair).items() if uid(files) in studies]
        assert holders == [routes(postgres_url)[uid(files)]] == ["gpu_b"], holders
        assert len(pair.workers[1].received()) == 6
    finally:
        pair.stop()


def test_new_studies_racing_through_two_nodes_spread_over_the_pool(tmp_path, postgres_url):
    pair = pair_up(tmp_path, postgres_url)
    try:
        studies = [write_study(tmp_path / f"s{n}", series=1, per_series=2) for n in range(8)]
        ports = [(pair.a.outside, pair.b.outside)[n % 2] for n in range(len(studies))]
        sends = [start_send(port, files) for port, files in zip(ports, studies, strict=True)]
        assert [p.wait(120) for p in sends] == [0] * len(sends)
        routed = routes(postgres_url)
        assert set(routed) == {uid(files) for files in studies}
        # capacity 1 each: one at a time, the least-loaded choice leaves them four and four
        assert Counter(routed.values()) == {"gpu_a": 4, "gpu_b": 4}, routed
        # every instance reaches the worker the store gave its study, whichever node had it
        wait_until(lambda: pair.delivered() == 16, timeout=60, what="16 instances at workers")
        assert held(pair) == {
            name: {study for study, worker in routed.items() if worker == name}
            for name in ("gpu_a", "gpu_b")
        }
    finally:
        pair.stop()
