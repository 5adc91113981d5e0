"""One timed run of a scenario: its seconds, and what its nodes and the machine used meanwhile."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bench import harness
from bench.harness import wait_files


@dataclass
class Run:
    seconds: float
    peak_rss_mb: float | None = None
    cpu_s: float | None = None
    machine_cpu_s: float | None = None  # of every process and the kernel, while timed
    # what a probe counted meanwhile (its store's operations, statements sent to PostgreSQL,
    # the database server's CPU seconds), by name
    counts: dict[str, float] = field(default_factory=dict)
    statements: dict[str, int] = field(default_factory=dict)  # PostgreSQL's, by text


def timed(
    send: Callable[[], object], directories: Sequence[Path] = (), count: int = 0,
    pid: int | Sequence[int] | None = None, probe: Callable[[], dict[str, float]] | None = None,
) -> Run:  # fmt: skip
    """Time ``send``, then until ``directories`` hold ``count`` files.

    The run has the whole machine's CPU seconds meanwhile (every process and
    the kernel) and, given a ``pid`` (the node's, Orthanc's; or several, two
    nodes': summed), its CPU and peak RSS; given a ``probe`` (counters by
    name, read before and after, untimed), their growth.
    """
    pids = [] if pid is None else [pid] if isinstance(pid, int) else list(pid)
    before = probe() if probe else {}
    cpu = sum(harness.cpu_seconds(p) for p in pids)
    machine = harness.machine_cpu_seconds()
    started = time.perf_counter()
    send()
    if directories:
        wait_files(directories, count)
    run = Run(time.perf_counter() - started,
              machine_cpu_s=harness.machine_cpu_seconds() - machine)  # fmt: skip
    if pids:
        run.peak_rss_mb = sum(harness.peak_rss_mb(p) for p in pids)
        run.cpu_s = sum(harness.cpu_seconds(p) for p in pids) - cpu
    if probe:
        after = probe()
        run.counts = {name: after[name] - before.get(name, 0.0) for name in after}
    return run
