"""python -m bench: WolfPACS side by side with the wire's limit and with Orthanc, on loopback.

One invocation generates the data (pydicom: ``--studies`` x ``--per-study``
CT images of ``--size`` x ``--size`` 16-bit), then runs each scenario
``--repeat`` times, interleaved (direct, os, fsync, ..., direct, os, ...),
so that the machine's load falls on all alike, and prints medians and
ratios:

- direct: DCMTK storescu -> storescp, one association (the limit here);
- wolfpacs-os, wolfpacs-fsync: storescu -> node -> storescp as its worker,
  timed from storescu's start to the worker holding the last instance;
- wolfpacs-rules: wolfpacs-fsync with ten routing rules per client, only
  the last matching (its ratio is to wolfpacs-fsync: the rules' cost);
- return: storescu as a worker -> inside port -> storescp as destination;
- direct-8, wolfpacs-8: eight storescu at once (each study in two halves)
  to eight storescp, and to a node with a pool of four storescp workers;
- wolfpacs-pg, wolfpacs-pg-8: wolfpacs-fsync and wolfpacs-8 with the node's
  store on PostgreSQL (a server the bench starts: bench/postgres.py), if
  its binaries and psycopg are installed; each with its store's operations
  per instance (``inspect store``) and the statements it sent the server
  per instance (pg_stat_statements: each one round trip), beside the SQLite
  node's operations;
- wolfpacs-pg-pair-8: wolfpacs-pg-8 through haproxy (the shipped config,
  on loopback) to two nodes on one database and one shared spool, their
  four workers storescp --fork (bench/pair.py), if haproxy is installed;
  the nodes' CPU and store operations summed;
- wolfpacs-8-p1, -p2: wolfpacs-8, ``processes = 1`` and 2, workers storescp
  --fork (several senders each); a node's CPU: its processes' summed;
- orthanc: storescu -> Orthanc (Lua OnStoredInstance: SendToModality,
  Delete) -> storescp, if Debian's orthanc is installed.

Then: the fsync limit (direct + one measured write+fsync+rename of each
instance), the added latency of one small instance at low load (p50/p99
over ``--latency-sends``), the per-instance cost with 10, 1,000 and 10,000
studies in the routing table, and the node's peak RSS while one
``--big-gb`` study streams through. Writes JSON and, with matplotlib (the
``bench`` extra), a PNG chart under ``--output-dir``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shlex
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydicom import dcmread

from bench import harness
from bench.harness import storescps, storescu, storescu_all, wait_files
from bench.pair import Pair, pair
from bench.pair import available as haproxy_available
from bench.postgres import Databases
from bench.postgres import available as postgresql_available
from bench.report import chart, markdown, report, targets
from bench.timing import Run, timed
from wolfpacs.dicom import acse
from wolfpacs.testing.synthetic import write_study

RESULTS = Path(__file__).parent / "results"
CONCURRENT_CLIENTS, CONCURRENT_WORKERS = 8, 4


@dataclass
class Scenario:
    name: str
    what: str
    run: Callable[[], Run]
    baseline: str = "direct"
    runs: list[Run] = field(default_factory=list)


@dataclass
class Data:
    files: list[Path]
    studies: list[list[Path]]
    study_uids: list[str]

    @property
    def bytes(self) -> int:
        return sum(f.stat().st_size for f in self.files)


def generate(root: Path, studies: int, per_study: int, size: int) -> Data:
    groups = [write_study(root / f"study{k}", series=1, per_series=per_study, rows=size,
                          columns=size) for k in range(studies)]  # fmt: skip
    uids = [str(dcmread(group[0], stop_before_pixels=True).StudyInstanceUID) for group in groups]
    return Data([f for g in groups for f in g], groups, uids)


def on_postgresql(
    databases: Databases, node: harness.Node | Pair, url: str, run: Callable[..., Run]
) -> Run:
    """``run(probe=...)`` on a node whose store is the database of ``url``, counting its store's
    operations, the statements the server ran for it and the server's CPU; and, by text,
    the statements of the timed part."""
    statements = lambda: databases.statements(url)  # noqa: E731
    first = statements()

    def probe() -> dict[str, float]:
        return {**node.store_counts(), "statements": sum(statements().values()),
                "server_cpu_s": databases.cpu_seconds()}  # fmt: skip

    done = run(probe=probe)
    last = statements()
    done.statements = {q: n - first.get(q, 0) for q, n in last.items() if n > first.get(q, 0)}
    return done


def halves(data: Data) -> list[list[Path]]:
    """Each study in two halves: eight streams for four studies."""
    parts: list[list[Path]] = []
    for group in data.studies:
        middle = len(group) // 2
        parts += [group[:middle], group[middle:]]
    return parts


def wolfpacs_pg_pair_8(data: Data, root: Path, databases: Databases) -> Run:
    """wolfpacs-pg-8 through haproxy to two nodes on one database (bench/pair.py)."""
    url = databases.new()
    try:
        with pair(root / "pair", url, workers=CONCURRENT_WORKERS,
                  clients=CONCURRENT_CLIENTS) as both:  # fmt: skip
            streams = [(part, both.outside, both.client_aes[i % CONCURRENT_CLIENTS], "HOSPITAL")
                       for i, part in enumerate(halves(data))]  # fmt: skip
            send = lambda: storescu_all(streams)  # noqa: E731
            return on_postgresql(databases, both, url, lambda **probe: timed(
                send, both.worker_dirs, len(data.files), pid=both.pids, **probe))  # fmt: skip
    finally:
        databases.drop(url)


def scenarios(data: Data, root: Path, databases: Databases | None = None) -> list[Scenario]:
    """The scenarios on ``data``; those on PostgreSQL if ``databases`` (bench/postgres.py)."""
    n = len(data.files)

    def direct() -> Run:
        with storescps([(root / "direct", "DIRECT")]) as (port,):
            return timed(lambda: storescu(data.files, port, "DIRECT"))

    def through(durability: str, rules: int = 0) -> Callable[[], Run]:
        def run() -> Run:
            with harness.node(root / "node", durability, rules=rules) as node:
                send = lambda: storescu(data.files, node.outside, "BENCH0")  # noqa: E731
                return timed(send, node.worker_dirs, n, pid=node.pid, probe=node.store_counts)

        return run

    def through_postgresql() -> Run:
        assert databases is not None
        url = databases.new()
        try:
            with harness.node(root / "node", "fsync", store=url) as node:
                send = lambda: storescu(data.files, node.outside, "BENCH0")  # noqa: E731
                return on_postgresql(databases, node, url, lambda **probe: timed(
                    send, node.worker_dirs, n, pid=node.pid, **probe))  # fmt: skip
        finally:
            databases.drop(url)

    def return_path() -> Run:
        with harness.node(root / "node", destination=True, routes=data.study_uids) as node:
            send = lambda: storescu(data.files, node.inside, "WOLFPACS", calling="WORKER0")  # noqa: E731
            return timed(send, [node.destination_dir], n, pid=node.pid)

    def direct_8() -> Run:
        parts = halves(data)
        with storescps([(root / f"direct{i}", "DIRECT") for i in range(len(parts))]) as ports:
            streams = [(part, port, "DIRECT", "HOSPITAL")
                       for part, port in zip(parts, ports, strict=True)]  # fmt: skip
            return timed(lambda: storescu_all(streams))

    def wolfpacs_8(store: str = "sqlite", processes: int = 1, fork: bool = False) -> Run:
        parts = halves(data)
        with harness.node(root / "node", workers=CONCURRENT_WORKERS, clients=CONCURRENT_CLIENTS,
                          store=store, processes=processes, fork=fork) as node:  # fmt: skip
            streams = [(part, node.outside, node.client_aes[i % CONCURRENT_CLIENTS], "HOSPITAL")
                       for i, part in enumerate(parts)]  # fmt: skip
            send = lambda: storescu_all(streams)  # noqa: E731
            if databases is None or store == "sqlite":  # (inspect store: one process's counts)
                probe = node.store_counts if processes == 1 else None
                return timed(send, node.worker_dirs, n, pid=node.pid, probe=probe)
            return on_postgresql(databases, node, store, lambda **probe: timed(
                send, node.worker_dirs, n, pid=node.pid, **probe))  # fmt: skip

    def wolfpacs_pg_8() -> Run:
        assert databases is not None
        url = databases.new()
        try:
            return wolfpacs_8(url)
        finally:
            databases.drop(url)

    def orthanc() -> Run:
        worker = root / "orthanc-worker"
        with (
            storescps([(worker, "WORKER0")]) as (port,),
            harness.orthanc(root / "orthanc", port) as (orthanc_port, proc),
        ):
            send = lambda: storescu(data.files, orthanc_port, "ORTHANC")  # noqa: E731
            return timed(send, [worker], n, pid=proc.pid)

    found = [
        Scenario("direct", "storescu -> storescp", direct),
        Scenario("wolfpacs-os", "storescu -> WolfPACS (os) -> storescp", through("os")),
        Scenario("wolfpacs-fsync", "storescu -> WolfPACS (fsync) -> storescp", through("fsync")),
        Scenario(
            "wolfpacs-rules",
            "storescu -> WolfPACS (fsync, ten rules) -> storescp",
            through("fsync", rules=10),
            baseline="wolfpacs-fsync",
        ),
        Scenario("return", "worker storescu -> inside port (fsync) -> storescp", return_path),
        Scenario("direct-8", "8 x storescu -> 8 x storescp", direct_8, baseline="direct-8"),
        Scenario("wolfpacs-8", "8 x storescu -> WolfPACS (fsync) -> 4 x storescp", wolfpacs_8,
                 baseline="direct-8"),
        *(Scenario(f"wolfpacs-8-p{p}", f"8 x storescu -> WolfPACS (fsync, processes = {p}) -> "
                   "4 x storescp --fork", lambda p=p: wolfpacs_8(processes=p, fork=True),
                   baseline="direct-8") for p in (1, 2)),
    ]  # fmt: skip
    if databases is not None:
        found += [
            Scenario("wolfpacs-pg", "storescu -> WolfPACS (fsync, PostgreSQL) -> storescp",
                     through_postgresql),
            Scenario("wolfpacs-pg-8", "8 x storescu -> WolfPACS (fsync, PostgreSQL) -> "
                     "4 x storescp", wolfpacs_pg_8, baseline="direct-8"),
        ]  # fmt: skip
        if haproxy_available():
            found.append(Scenario("wolfpacs-pg-pair-8", "8 x storescu -> haproxy -> 2 WolfPACS "
                                  "(fsync, one PostgreSQL) -> 4 x storescp --fork",
                                  lambda: wolfpacs_pg_pair_8(data, root, databases),
                                  baseline="direct-8"))  # fmt: skip
    if Path(harness.ORTHANC).exists():
        found.append(Scenario("orthanc", "storescu -> Orthanc (Lua forward) -> storescp", orthanc))
    return found


def fsync_limit(data: Data, root: Path, scenarios: dict[str, Any]) -> dict[str, float]:
    """Direct + one measured write+fsync+rename per instance: the best one synchronous stream."""
    per_fsync = harness.fsync_ms(data.files[:200], root)
    limit = scenarios["direct"]["median_s"] + per_fsync / 1000 * len(data.files)
    return {"fsync_ms_per_instance": per_fsync, "limit_s": limit,
            "time_over_limit": scenarios["wolfpacs-fsync"]["median_s"] / limit}  # fmt: skip


def percentiles(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    at = lambda q: ordered[min(len(ordered) - 1, int(q * len(ordered)))]  # noqa: E731
    return {"p50_ms": at(0.50) * 1000, "p99_ms": at(0.99) * 1000}


def one_by_one(files: list[Path], port: int, called: str, arrive: Path) -> list[float]:
    """Send each file on one open association, waiting until it arrives; the latencies."""
    tags = [dcmread(f, stop_before_pixels=True) for f in files]
    contexts = sorted({(str(t.SOPClassUID), str(t.file_meta.TransferSyntaxUID)) for t in tags})
    assoc = acse.request(
        ("127.0.0.1", port), [(sop, [ts]) for sop, ts in contexts], calling_ae="HOSPITAL",
        called_ae=called, max_pdu=131072, connect_timeout=10, acse_timeout=10, timeout=30,
    )  # fmt: skip
    latencies = []
    try:
        for path, ds in zip(files, tags, strict=True):
            context = assoc.context_for(str(ds.SOPClassUID), str(ds.file_meta.TransferSyntaxUID))
            assert context is not None
            before = harness.count_files(arrive)
            started = time.perf_counter()
            answer = assoc.send_c_store(context, str(path), str(ds.SOPClassUID),
                                        str(ds.SOPInstanceUID), dimse_timeout=30)  # fmt: skip
            if answer.status != 0:
                raise RuntimeError(f"C-STORE answered 0x{answer.status:04X}")
            wait_files([arrive], before + 1, timeout=30)
            latencies.append(time.perf_counter() - started)
    finally:
        assoc.release(timeout=10)
    return latencies


def latency(root: Path, sends: int) -> dict[str, Any]:
    """Added latency of one small (64 x 64) instance at low load, through a node in fsync mode."""
    files = write_study(root / "small", series=1, per_series=sends)
    with storescps([(root / "small-direct", "DIRECT")]) as (port,):
        direct = one_by_one(files, port, "DIRECT", root / "small-direct")
    with harness.node(root / "node") as node:
        through = one_by_one(files, node.outside, "BENCH0", node.worker_dirs[0])
    d, w = percentiles(direct), percentiles(through)
    return {"instances": sends, "bytes_each": files[0].stat().st_size, "direct": d,
            "wolfpacs": w, "added_p50_ms": w["p50_ms"] - d["p50_ms"],
            "added_p99_ms": w["p99_ms"] - d["p99_ms"]}  # fmt: skip


def scaling(data: Data, root: Path, sizes: list[int], repeat: int) -> dict[str, Any]:
    """Milliseconds per instance of one study, with ``sizes`` studies already routed (os mode)."""
    files = data.studies[0]
    times: dict[int, list[float]] = {size: [] for size in sizes}
    for _ in range(repeat):
        for size in sizes:
            routes = [f"2.25.{uuid.uuid4().int}" for _ in range(size)]
            os.sync()
            # durability "os": this measures the routing table's cost, not the disk's
            with harness.node(root / "node", "os", routes=routes) as node:
                send = lambda: storescu(files, node.outside, "BENCH0")  # noqa: E731
                run = timed(send, node.worker_dirs, len(files), pid=node.pid)
            times[size].append(run.seconds / len(files) * 1000)
    per = {str(size): statistics.median(values) for size, values in times.items()}
    return {"instances": len(files), "ms_per_instance": per,
            "spread": max(per.values()) / min(per.values())}  # fmt: skip


def big_study(root: Path, gigabytes: float) -> dict[str, Any]:
    """One study of about ``gigabytes`` GB (32 MB instances) through a node: its peak RSS."""
    count = max(1, round(gigabytes * 1e9 / (4096 * 4096 * 2)))
    files = write_study(root / "big", series=1, per_series=count, rows=4096, columns=4096)
    size = sum(f.stat().st_size for f in files)
    try:
        with harness.node(root / "node") as node:
            send = lambda: storescu(files, node.outside, "BENCH0")  # noqa: E731
            run = timed(send, node.worker_dirs, len(files), pid=node.pid)
    finally:
        shutil.rmtree(root / "big")
    return {"instances": count, "gigabytes": size / 1e9, "seconds": run.seconds,
            "peak_rss_mb": run.peak_rss_mb}  # fmt: skip


def summarise(found: list[Scenario], data: Data) -> dict[str, Any]:
    medians = {s.name: statistics.median(r.seconds for r in s.runs) for s in found}
    gigabytes, n, cores = data.bytes / 1e9, len(data.files), os.cpu_count() or 1
    out = {}
    for s in found:
        median = medians[s.name]
        rss = [r.peak_rss_mb for r in s.runs if r.peak_rss_mb is not None]
        cpu = [r.cpu_s for r in s.runs if r.cpu_s is not None]
        machine = [r for r in s.runs if r.machine_cpu_s is not None]
        out[s.name] = {
            "what": s.what, "runs_s": [r.seconds for r in s.runs], "median_s": median,
            "instances_per_s": n / median, "mb_per_s": data.bytes / 1e6 / median,
            "ratio": medians[s.baseline] / median, "baseline": s.baseline,
            "peak_rss_mb": max(rss) if rss else None,
            "cpu_s_per_gb": statistics.median(cpu) / gigabytes if cpu else None,
            "node_cpu_ms_per_instance": statistics.median(cpu) / n * 1000 if cpu else None,
            # the budget: what every process and the kernel used, and how busy the cores were
            "machine_cpu_ms_per_instance": statistics.median(
                r.machine_cpu_s for r in machine) / n * 1000 if machine else None,
            "machine_busy": statistics.median(
                r.machine_cpu_s / (cores * r.seconds) for r in machine) if machine else None,
        }  # fmt: skip
        counted = {name for r in s.runs for name in r.counts}
        for name in sorted(counted):  # store_operations, store_busy_s, statements, server_cpu_s
            per = statistics.median(r.counts[name] for r in s.runs if name in r.counts) / n
            if name.endswith("_s"):  # seconds: in ms per instance
                out[s.name][f"{name[:-2]}_ms_per_instance"] = per * 1000
            else:
                out[s.name][f"{name}_per_instance"] = per
        if "store_busy_s" in counted:  # how much of the run the store's one thread was busy
            out[s.name]["store_busy"] = statistics.median(
                r.counts["store_busy_s"] / r.seconds for r in s.runs if "store_busy_s" in r.counts
            )
        runs = [r for r in s.runs if r.statements]
        if runs:  # the last run's statements, per instance, the most frequent first
            top = sorted(runs[-1].statements.items(), key=lambda kv: -kv[1])[:12]
            out[s.name]["statements_by_text"] = {q: round(k / n, 3) for q, k in top}
    return out


def beyond(
    args: argparse.Namespace, data: Data, root: Path, found: dict[str, Any]
) -> dict[str, Any]:
    """What the bench measures besides its scenarios, as ``args`` ask: the fsync limit, the
    latency of one instance, the routing table's scaling, the big study's memory."""
    results: dict[str, Any] = {}
    if "wolfpacs-fsync" in found:
        results["fsync_limit"] = fsync_limit(data, root, found)
    if args.latency_sends:
        os.sync()
        results["latency"] = latency(root / "latency", args.latency_sends)
    sizes = [int(s) for s in args.scaling.split(",") if s.strip()]
    if sizes:
        results["scaling"] = scaling(data, root / "scaling", sizes, args.repeat)
    if args.big_gb > 0:
        os.sync()
        results["big"] = big_study(root / "bigrun", args.big_gb)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--studies", type=int, default=4)
    parser.add_argument("--per-study", type=int, default=250, help="instances per study")
    parser.add_argument("--size", type=int, default=512, help="rows = columns, 16-bit")
    parser.add_argument("--repeat", type=int, default=3, help="interleaved runs per scenario")
    parser.add_argument("--latency-sends", type=int, default=200)
    parser.add_argument(
        "--scaling",
        default="10,1000,10000",
        help="studies in the routing table, comma-separated; '' skips",
    )
    parser.add_argument("--big-gb", type=float, default=2.0, help="0 skips the big study")
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="tiny and quick (CI): 4 x 6 small instances, once, no big study",
    )
    parser.add_argument("--only", default="",
                        help="these scenarios (and their baselines), comma-separated")  # fmt: skip
    parser.add_argument("--output-dir", type=Path, default=RESULTS)
    parser.add_argument("--name", default="",
                        help="the results' file name, without suffix (default: bench, "
                        "or smoke with --smoke)")  # fmt: skip
    args = parser.parse_args(argv)
    if args.smoke:
        args.studies, args.per_study, args.size, args.repeat = 4, 6, 64, 1
        args.latency_sends, args.scaling, args.big_gb = 10, "10,100", 0.0
    root = Path(tempfile.mkdtemp(prefix="wolfpacs-bench-"))
    stack = contextlib.ExitStack()  # the PostgreSQL server, if a scenario starts it
    try:
        data = generate(root / "data", args.studies, args.per_study, args.size)
        print(
            f"{len(data.files)} instances in {args.studies} studies, {data.bytes / 1e6:.1f} MB; "
            f"{args.repeat} interleaved runs of each scenario",
            flush=True,
        )
        databases = Databases(stack) if postgresql_available() else None
        found = scenarios(data, root / "work", databases)
        if args.only:
            wanted = set(args.only.split(","))
            found = [s for s in found if s.name in wanted or s.name == s.baseline]
        for run in range(args.repeat):
            for scenario in found:
                os.sync()  # untimed: no run pays for the writeback of the one before
                scenario.runs.append(scenario.run())
                print(f"  run {run + 1} {scenario.name:18s} {scenario.runs[-1].seconds:6.2f} s",
                      flush=True)  # fmt: skip
        results: dict[str, Any] = {
            "date": time.strftime("%Y-%m-%d"),
            "machine": {
                "cpus": os.cpu_count(),
                "system": platform.platform(),
                "python": platform.python_version(),
            },
            "data": {
                "studies": args.studies,
                "per_study": args.per_study,
                "size": args.size,
                "instances": len(data.files),
                "megabytes": data.bytes / 1e6,
            },
            "scenarios": summarise(found, data),
            "command": "python3 -m bench " + shlex.join(sys.argv[1:] if argv is None else argv),
        }
        if databases is not None and any(s.name.startswith("wolfpacs-pg") for s in found):
            results["postgresql"] = databases.describe()
        results.update(beyond(args, data, root, results["scenarios"]))
        results["targets"] = targets(results)
    finally:
        stack.close()
        shutil.rmtree(root, ignore_errors=True)
    report(results)
    args.output_dir.mkdir(parents=True, exist_ok=True)
    stem = args.name or ("smoke" if args.smoke else "bench")
    (args.output_dir / f"{stem}.json").write_text(json.dumps(results, indent=2) + "\n")
    (args.output_dir / f"{stem}.md").write_text(markdown(results))
    drawn = chart(results, args.output_dir / f"{stem}.png")
    print(
        f"wrote {args.output_dir / f'{stem}.json'}"
        + (f" and {stem}.png" if drawn else " (no chart: pip install '.[bench]')")
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
