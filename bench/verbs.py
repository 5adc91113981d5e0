"""python -m bench.verbs: what the operator's verbs cost a node that is routing.

For each reading verb: its latency over the control socket on an idle node
and while a study streams through. And the study's throughput alone, and
with a shell asking ``tree``, ``studies`` and ``workers`` as fast as it can
(the worst an operator's ``watch`` can do). Writes bench/results/verbs.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from bench.harness import node, send_through
from bench.history import timed
from wolfpacs.config import load
from wolfpacs.ops.control import ControlClient
from wolfpacs.testing.synthetic import write_study

RESULTS = Path(__file__).parent / "results"
VERBS = [("tree", {}), ("studies", {}), ("workers", {}), ("queues", {}), ("stats", {})]


def latencies(client: ControlClient, calls: int) -> dict[str, float]:
    """Median milliseconds of each verb over ``calls`` calls."""
    return {
        verb: timed(lambda v=verb, a=args: client.call(v, **a), calls)["median_ms"]
        for verb, args in VERBS
    }


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.verbs", description=__doc__)
    parser.add_argument("--instances", type=int, default=250)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--calls", type=int, default=20)
    parser.add_argument("--output", type=Path, default=RESULTS / "verbs.json")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="wolfpacs-verbs-"))
    report: dict[str, Any] = {"date": time.strftime("%Y-%m-%d"), "instances": args.instances}
    with node(root) as running:
        path = load(running.config).node.control_path
        client = ControlClient(path)
        study = {"rows": args.size, "columns": args.size, "series": 1}
        alone = write_study(root / "a", per_series=args.instances, **study)
        report["alone_s"] = send_through(alone, running)
        report["idle_ms"] = latencies(client, args.calls)
        client.close()
        done = threading.Event()
        during: dict[str, list[float]] = {verb: [] for verb, _ in VERBS}

        def shell() -> None:  # an operator's watch loop, flat out, timing each answer
            watcher = ControlClient(path)
            while not done.is_set():
                for verb, verb_args in VERBS:
                    started = time.perf_counter()
                    watcher.call(verb, **verb_args)
                    during[verb].append((time.perf_counter() - started) * 1000)
            watcher.close()

        loop = threading.Thread(target=shell)
        files = write_study(root / "b", per_series=args.instances, **study)
        loop.start()
        try:
            report["with_shell_s"] = send_through(files, running)
        finally:
            done.set()
            loop.join()
    report["while_routing_ms"] = {
        verb: {"median": statistics.median(t), "max": max(t), "calls": len(t)}
        for verb, t in during.items()
    }
    report["slowdown"] = report["with_shell_s"] / report["alone_s"]
    print(f"{args.instances} instances: alone {report['alone_s']:.2f} s, with a shell asking "
          f"flat out {report['with_shell_s']:.2f} s ({report['slowdown']:.2f}x)")  # fmt: skip
    for verb, idle in report["idle_ms"].items():
        busy = report["while_routing_ms"][verb]
        print(f"  {verb:8s} idle {idle:6.1f} ms   while routing: median {busy['median']:6.1f} ms,"
              f" max {busy['max']:6.1f} ms ({busy['calls']} calls)")  # fmt: skip
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
