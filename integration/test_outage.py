"""A database outage, black box: a node on PostgreSQL, the server stopped and started again.

While PostgreSQL is down, DCMTK's storescu gets 0xA702 (Refused: Out of
Resources, transient) for every new instance, nothing is acknowledged, and
``/readyz`` is 503; when it is back the same node process (never restarted)
takes and delivers again, and what it acknowledged before the outage is
delivered. A node started while PostgreSQL is down waits for it, saying so.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

from integration.peers import acknowledged, storescu
from tests.conftest import wait_until
from wolfpacs.testing.synthetic import write_study

from .conftest import CLIENT_AE


def readyz(port: int) -> tuple[int, dict]:
    """``/readyz``'s status and body (0 and nothing if the port does not answer)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=10) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())
    except OSError:
        return 0, {}


def api(port: int, view: str) -> Any:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/{view}", timeout=10) as answer:
        return json.loads(answer.read())


def children(tree: Any) -> list[dict]:
    """Every child of the supervision tree ``tree`` (the tree verb's JSON), at any depth."""
    found = []
    for child in tree.get("children") or []:
        found.append(child)
        found.extend(children(child))
    return found


def refused_a702(output: str) -> int:
    """How many C-STORE responses storescu -d dumps with status 0xA702."""
    return sum(1 for line in output.splitlines() if "DIMSE Status" in line and "0xa702" in line)


def test_new_instances_are_refused_with_a702_while_postgresql_is_down_then_taken_again(
    cluster, own_postgres, tmp_path
):
    node = cluster(store=own_postgres.create()).start(workers=False)
    pid = node.node.proc.pid
    before = write_study(tmp_path / "before", series=1, per_series=3)
    sent = storescu(before, node.outside, CLIENT_AE)
    assert len(acknowledged(sent.stdout + sent.stderr)) == 3  # queued: the workers are down
    assert readyz(node.http)[0] == 200

    # A crash (pg_ctl stop -m immediate), a moment after the acknowledgements: their queue
    # rows, committed without waiting for the WAL flush, may be lost with it. The node makes
    # them again from the spool's files when the store is back (StoreBack), not at a restart.
    own_postgres.stop()
    during = write_study(tmp_path / "during", series=1, per_series=4)
    # storescu ends its run at a refusal: one run per instance, as a hospital's retries would be
    for path in during:
        sent = storescu([path], node.outside, CLIENT_AE, "HOSPITAL", "-d")
        output = sent.stdout + sent.stderr
        assert acknowledged(output) == []  # nothing acknowledged without its row committed
        assert refused_a702(output) == 1, output[-3000:]
    _, body = wait_until(lambda: (s := readyz(node.http))[0] == 503 and s, timeout=20,
                              what="/readyz 503 while the store is unavailable")  # fmt: skip
    assert any("store" in problem for problem in body["problems"]), body
    logs = node.node.logs()
    assert "new instances are refused (0xA702)" in logs, logs[-3000:]

    own_postgres.start()
    wait_until(lambda: readyz(node.http)[0] == 200, timeout=30, what="/readyz 200 again")
    for worker in node.workers:
        worker.start()
    sent = storescu(during, node.outside, CLIENT_AE)  # the hospital sends again
    assert len(acknowledged(sent.stdout + sent.stderr)) == 4, sent.stdout[-3000:]
    wait_until(lambda: node.delivered() == 7, timeout=60, what="all 7 instances delivered")
    received = {uid for r in node.received().values() for uid in r}
    assert len(received) == 7  # the 3 acknowledged before the outage among them
    assert node.node.proc is not None and node.node.proc.pid == pid
    assert node.node.proc.poll() is None  # the same process throughout: no restart
    actors = children(api(node.http, "tree"))
    assert {"store", "router", "senders", "sender:gpu-a"} <= {c["id"] for c in actors}
    restarted = {c["id"]: c["restarts"] for c in actors if c["restarts"]}
    assert restarted == {}  # and no actor of it either: the outage was waited out, not crashed on


def test_a_node_started_while_postgresql_is_down_waits_for_it_with_readyz_503(
    cluster, own_postgres, tmp_path
):
    url = own_postgres.create()
    own_postgres.stop()
    node = cluster(store=url).start(wait=False)
    _, body = wait_until(lambda: (s := readyz(node.http))[0] == 503 and s, timeout=30,
                              what="/readyz 503 while the node waits")  # fmt: skip
    assert body["status"] == "starting", body
    wait_until(
        lambda: "cannot be reached" in str(readyz(node.http)[1]),
        timeout=30,
        what="/readyz saying why",
    )  # after the first try (PostgreSQLStore.TIMEOUT)
    wait_until(lambda: "cannot be reached" in node.node.logs(), timeout=20, what="a log line")
    assert node.node.proc.poll() is None  # waiting, not exited
    own_postgres.start()
    wait_until(lambda: readyz(node.http)[0] == 200, timeout=60, what="/readyz 200 once started")
    files = write_study(tmp_path / "s", series=1, per_series=2)
    sent = storescu(files, node.outside, CLIENT_AE)
    assert len(acknowledged(sent.stdout + sent.stderr)) == 2
    wait_until(lambda: node.delivered() == 2, timeout=60, what="delivered")
