"""What a benchmark run says: its targets met or missed, a chart, the README's table, the summary.

Plain functions of the results (the dict ``python -m bench`` writes as JSON).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def targets(results: dict[str, Any]) -> dict[str, Any]:
    """The benchmark issue's targets, each with the measured value and whether it is met."""
    s, found = results["scenarios"], {}

    def target(name: str, value: float | None, limit: float, at_least: bool) -> None:
        if value is not None:
            met = value >= limit if at_least else value <= limit
            found[name] = {"value": round(value, 3), "target": limit, "met": met}

    ratio = lambda name: s[name]["ratio"] if name in s else None  # noqa: E731
    target("os ratio >= 0.5", ratio("wolfpacs-os"), 0.5, True)
    target("fsync ratio >= 0.3", ratio("wolfpacs-fsync"), 0.3, True)
    if "fsync_limit" in results:
        over = results["fsync_limit"]["time_over_limit"]
        target("fsync time / its limit <= 1.25", over, 1.25, False)
    target("8 clients ratio >= 0.5", ratio("wolfpacs-8"), 0.5, True)
    # A node on PostgreSQL against one on SQLite, both fsync, on the same data, interleaved:
    # the throughput of the one over the other's (the SQLite node's time over its own).
    for sqlite, pg, label in (("wolfpacs-fsync", "wolfpacs-pg", "single stream"),
                              ("wolfpacs-8", "wolfpacs-pg-8", "8 clients")):  # fmt: skip
        if sqlite in s and pg in s:
            value = s[sqlite]["median_s"] / s[pg]["median_s"]
            target(f"PostgreSQL node >= 0.8 x SQLite node ({label})", value, 0.8, True)
    if "wolfpacs-rules" in s and len(s["wolfpacs-fsync"]["runs_s"]) > 1:
        # The rules' cost is inside the noise: the medians' difference, in units of the
        # spread (max - min) of the runs without rules, interleaved with those with them.
        runs = s["wolfpacs-fsync"]["runs_s"]
        extra = s["wolfpacs-rules"]["median_s"] - s["wolfpacs-fsync"]["median_s"]
        target("ten rules: added time / spread <= 1", extra / (max(runs) - min(runs)), 1, False)
    if "latency" in results:
        target("added latency p50 <= 20 ms", results["latency"]["added_p50_ms"], 20, False)
    if "scaling" in results:
        target("scaling spread <= 1.2", results["scaling"]["spread"], 1.2, False)
    if "big" in results:
        target("2 GB study peak RSS <= 200 MB", results["big"]["peak_rss_mb"], 200, False)
    return found


def chart(results: dict[str, Any], path: Path) -> bool:
    """A PNG: instances/s per scenario, and the ratio to its baseline. False without matplotlib."""
    try:
        import matplotlib  # noqa: PLC0415 (optional: the bench extra)

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt  # noqa: PLC0415
    except ImportError:
        return False
    names = list(results["scenarios"])
    rates = [results["scenarios"][n]["instances_per_s"] for n in names]
    colours = ["#888888" if n.startswith("direct") else "#c0504d" if n == "orthanc"
               else "#4f81bd" for n in names]  # fmt: skip
    fig, ax = plt.subplots(figsize=(8, 3.6), dpi=100)
    bars = ax.barh(names[::-1], rates[::-1], color=colours[::-1])
    for bar, name in zip(bars, names[::-1], strict=True):
        ratio = results["scenarios"][name]["ratio"]
        ax.text(bar.get_width(), bar.get_y() + bar.get_height() / 2, f" {ratio:.2f}x",
                va="center", fontsize=9)  # fmt: skip
    data = results["data"]
    ax.set_xlabel("instances per second (higher is better); "
                  "label: ratio to direct (8 clients: to direct-8)")  # fmt: skip
    ax.set_title(f"WolfPACS bench {results['date']}: {data['instances']} x "
                 f"{data['megabytes'] / data['instances']:.2f} MB CT, loopback, "
                 f"{results['machine']['cpus']} cores", fontsize=10)  # fmt: skip
    ax.set_xlim(0, max(rates) * 1.18)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return True


def markdown(results: dict[str, Any]) -> str:
    """The results as the README shows them: a table, then the other figures."""
    data = results["data"]
    lines = [
        f"{results['date']}, {results['machine']['cpus']} cores, {data['instances']} CT instances "
        f"({data['studies']} studies, {data['megabytes']:.0f} MB), median of "
        f"{len(next(iter(results['scenarios'].values()))['runs_s'])} interleaved runs:",
        "",
        "| scenario | median | instances/s | MB/s | ratio | node peak RSS | node CPU s/GB |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for s in results["scenarios"].values():
        rss = f"{s['peak_rss_mb']:.0f} MB" if s["peak_rss_mb"] else "-"
        cpu = f"{s['cpu_s_per_gb']:.1f}" if s["cpu_s_per_gb"] is not None else "-"
        ratio = f"{s['ratio']:.2f} x {s['baseline']}"
        lines.append(f"| {s['what']} | {s['median_s']:.2f} s | {s['instances_per_s']:.0f} | "
                     f"{s['mb_per_s']:.0f} | {ratio} | {rss} | {cpu} |")  # fmt: skip
    lines.append("")
    lines.append("- CPU per instance while timed, of the whole machine (every process and the "
                 "kernel; how busy its cores were) and of the node: " + "; ".join(
                     f"{name} {s['machine_cpu_ms_per_instance']:.2f} ms "
                     f"({s['machine_busy']:.0%} busy)"
                     + (f", node {s['node_cpu_ms_per_instance']:.2f} ms"
                        if s["node_cpu_ms_per_instance"] is not None else "")
                     for name, s in results["scenarios"].items()
                     if s["machine_cpu_ms_per_instance"] is not None))  # fmt: skip
    lines += [f"- {line}" for line in round_trips(results)]
    lines += [f"- {line}" for line in [pair(results)] if line]
    if "fsync_limit" in results:
        limit = results["fsync_limit"]
        lines.append(f"- fsync limit: direct + {limit['fsync_ms_per_instance']:.2f} ms (one "
                     f"write+fsync+rename, measured) per instance = {limit['limit_s']:.2f} s; "
                     f"`fsync` mode took {limit['time_over_limit']:.2f} x that")  # fmt: skip
    if "latency" in results:
        lat = results["latency"]
        lines.append(f"- one small instance ({lat['bytes_each'] / 1000:.0f} kB) at low load, "
                     f"{lat['instances']} sends: direct p50 {lat['direct']['p50_ms']:.1f} ms / "
                     f"p99 {lat['direct']['p99_ms']:.1f} ms, through WolfPACS p50 "
                     f"{lat['wolfpacs']['p50_ms']:.1f} ms / "
                     f"p99 {lat['wolfpacs']['p99_ms']:.1f} ms")  # fmt: skip
    if "scaling" in results:
        per = ", ".join(f"{int(k):,} studies {v:.2f} ms"
                        for k, v in results["scaling"]["ms_per_instance"].items())  # fmt: skip
        lines.append(f"- per instance (`os` mode) with studies already in the routing table: {per}")
    if "big" in results:
        big = results["big"]
        lines.append(f"- one {big['gigabytes']:.1f} GB study ({big['instances']} instances): "
                     f"{big['seconds']:.1f} s, "
                     f"node peak RSS {big['peak_rss_mb']:.0f} MB")  # fmt: skip
    lines.append("")
    for name, t in results["targets"].items():
        lines.append(f"- {'met' if t['met'] else '**missed**'}: {name} (measured {t['value']})")
    return "\n".join(lines) + "\n"


def round_trips(results: dict[str, Any]) -> list[str]:
    """Per scenario that counted them: its store's operations per instance (each one
    transaction) and, on PostgreSQL, the statements (round trips) and the server's CPU."""
    lines = []
    for name, s in results["scenarios"].items():
        if s.get("store_operations_per_instance") is None:
            continue
        line = (f"{name}: {s['store_operations_per_instance']:.2f} store operations per "
                f"instance, {s['store_busy_ms_per_instance']:.2f} ms of the store's thread "
                f"({s['store_busy']:.0%} busy)")  # fmt: skip
        if s.get("statements_per_instance") is not None:
            line += (
                f", {s['statements_per_instance']:.2f} statements (round trips) to "
                f"PostgreSQL, its server {s['server_cpu_ms_per_instance']:.2f} ms CPU"
            )
        lines.append(line)
    return lines


def pair(results: dict[str, Any]) -> str | None:
    """Two nodes behind haproxy (wolfpacs-pg-pair-8) against one PostgreSQL node: their
    throughputs, both nodes' CPU per instance summed, and each node's share of the work."""
    s = results["scenarios"]
    two = s.get("wolfpacs-pg-pair-8")
    if two is None:
        return None
    line = f"two nodes behind haproxy: {two['ratio']:.2f} x {two['baseline']}"
    one = s.get("wolfpacs-pg-8")
    if one is not None:
        line += f", {one['median_s'] / two['median_s']:.2f} x one PostgreSQL node (wolfpacs-pg-8)"
    if two["node_cpu_ms_per_instance"] is not None:
        line += f"; the two nodes' CPU {two['node_cpu_ms_per_instance']:.2f} ms per instance"
        if one is not None and one["node_cpu_ms_per_instance"] is not None:
            line += f" (one node: {one['node_cpu_ms_per_instance']:.2f} ms)"
    a, b = (two.get(f"{n}_store_operations_per_instance", 0.0) for n in ("node-a", "node-b"))
    if a + b > 0:
        line += f"; store operations node-a {a / (a + b):.0%}, node-b {b / (a + b):.0%}"
    return line


def report(results: dict[str, Any]) -> None:
    print(f"\n{'scenario':18s} {'median':>8s} {'inst/s':>8s} {'MB/s':>7s} {'ratio':>6s} "
          f"{'RSS MB':>7s} {'CPU s/GB':>8s} {'machine ms/inst':>15s}")  # fmt: skip
    for name, s in results["scenarios"].items():
        rss = f"{s['peak_rss_mb']:7.0f}" if s["peak_rss_mb"] else "      -"
        cpu = f"{s['cpu_s_per_gb']:8.1f}" if s["cpu_s_per_gb"] is not None else "       -"
        machine = (f"{s['machine_cpu_ms_per_instance']:6.2f} ({s['machine_busy']:4.0%})"
                   if s["machine_cpu_ms_per_instance"] is not None else "")  # fmt: skip
        print(f"{name:18s} {s['median_s']:7.2f}s {s['instances_per_s']:8.0f} "
              f"{s['mb_per_s']:7.0f} {s['ratio']:5.2f}x {rss} {cpu} {machine:>15s}")  # fmt: skip
    for line in round_trips(results):
        print(line)
    if pair(results):
        print(pair(results))
    limit = results.get("fsync_limit")
    if limit:
        print(
            f"\nfsync limit: direct + {limit['fsync_ms_per_instance']:.2f} ms x instance = "
            f"{limit['limit_s']:.2f} s; fsync mode took {limit['time_over_limit']:.2f} x that"
        )
    if "latency" in results:
        lat = results["latency"]
        print(
            f"one small instance at low load: direct p50 {lat['direct']['p50_ms']:.1f} ms, "
            f"p99 {lat['direct']['p99_ms']:.1f} ms; through WolfPACS p50 "
            f"{lat['wolfpacs']['p50_ms']:.1f} ms, p99 {lat['wolfpacs']['p99_ms']:.1f} ms "
            f"(added p50 {lat['added_p50_ms']:.1f} ms, p99 {lat['added_p99_ms']:.1f} ms)"
        )
    if "scaling" in results:
        per = ", ".join(f"{k} studies {v:.2f} ms" for k, v in
                        results["scaling"]["ms_per_instance"].items())  # fmt: skip
        print(
            f"per instance with studies in the table: {per} "
            f"(max/min {results['scaling']['spread']:.2f})"
        )
    if "big" in results:
        big = results["big"]
        print(
            f"{big['gigabytes']:.1f} GB study ({big['instances']} instances) in "
            f"{big['seconds']:.1f} s; node peak RSS {big['peak_rss_mb']:.0f} MB"
        )
    print()
    for name, t in results["targets"].items():
        print(f"  {'met ' if t['met'] else 'MISS'}  {name}: {t['value']}")
