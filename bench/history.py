"""python -m bench.history: the operator's reads on a node with a long history of studies.

A node starts on a state database that already holds ``--studies``
studies (routed over the last ``--days`` days, most of them long idle, a
few open) of two clients on two workers; then each reading verb is asked
over the control socket, and ``/metrics`` and the status page over HTTP,
``--calls`` times each. Prints the median and the slowest milliseconds and
writes bench/results/history.json. What it shows: whether a view scans the
whole history (it grows with the table) or only what it needs.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import random
import sqlite3
import statistics
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.harness import node
from wolfpacs.config import load
from wolfpacs.ops.control import ControlClient
from wolfpacs.state.sqlite import SQLiteStore

RESULTS = Path(__file__).parent / "results"
OPEN = 100  # studies active within the idle timeout: the ones that count as load


def history(data_dir: Path, studies: int, days: float, seed: int = 1) -> str:
    """Fill a node's state database with ``studies`` routed studies; the UID of one of them."""
    rng = random.Random(seed)
    SQLiteStore(data_dir / "state.sqlite3").open()  # the schema, as the node makes it
    now = time.time()
    rows = []
    for n in range(studies):
        at = now - (60 if n < OPEN else rng.uniform(3600, days * 86400))
        rows.append((f"1.2.826.0.1.3680043.10.{n}", f"bench{n % 2}", f"w{n % 2}", at, at,
                     rng.randint(1, 400), rng.randint(1, 400)))  # fmt: skip
    with contextlib.closing(sqlite3.connect(data_dir / "state.sqlite3")) as db, db:
        db.executemany(
            "INSERT INTO studies (study_uid, client, worker, routed_at, last_activity_at, "
            "instances_in, instances_delivered) VALUES (?, ?, ?, ?, ?, ?, ?)",
            rows,
        )
    return rows[studies // 2][0]


def timed(call: Callable[[], object], calls: int) -> dict[str, float]:
    """The median and the slowest milliseconds of ``calls`` calls of ``call``."""
    times = []
    for _ in range(calls):
        started = time.perf_counter()
        call()
        times.append((time.perf_counter() - started) * 1000)
    return {"median_ms": statistics.median(times), "max_ms": max(times)}


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.history", description=__doc__)
    parser.add_argument("--studies", type=int, default=100_000)
    parser.add_argument("--days", type=float, default=25.0)
    parser.add_argument("--calls", type=int, default=20)
    parser.add_argument("--output", type=Path, default=RESULTS / "history.json")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="wolfpacs-history-"))
    (root / "node").mkdir(parents=True)
    uid = history(root / "node", args.studies, args.days)
    report: dict[str, Any] = {"date": time.strftime("%Y-%m-%d"), "studies": args.studies}
    with node(root, workers=2, clients=2, http=True) as running:
        client = ControlClient(load(running.config).node.control_path, timeout=60)
        views: dict[str, Any] = {
            verb: (lambda v=verb, a=verb_args: client.call(v, **a))
            for verb, verb_args in (("workers", {}), ("clients", {}), ("studies", {}),
                                    ("queues", {}), ("tree", {}), ("stats", {}))
        }  # fmt: skip
        views["studies --worker w1"] = lambda: client.call("studies", worker="w1")
        views[f"study {uid[-8:]}"] = lambda: client.call("study", uid=uid)
        base = f"http://127.0.0.1:{running.http_port}"
        for path in ("/metrics", "/"):
            views[f"GET {path}"] = lambda p=path: urllib.request.urlopen(
                base + p, timeout=60
            ).read()
        report["views"] = {name: timed(call, args.calls) for name, call in views.items()}
        client.close()
    print(f"{args.studies} studies in the table, {args.calls} calls each:")
    for name, t in report["views"].items():
        print(f"  {name:22s} median {t['median_ms']:7.1f} ms   slowest {t['max_ms']:7.1f} ms")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
