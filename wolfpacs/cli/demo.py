"""``wolfpacs demo``: the whole round trip on loopback, with nothing to configure.

A node, two simulated AI workers, a simulated hospital PACS, and a hospital
that sends one generated study of two series. It prints where each series
went and that the workers' derived series reached the PACS.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from pathlib import Path

from wolfpacs.config.model import Client, Config, Destination, NodeConfig, Worker
from wolfpacs.node.tree import Node
from wolfpacs.ops.operations import Operations
from wolfpacs.testing.peers import SimulatedPACS, SimulatedWorker, free_port, send_files
from wolfpacs.testing.synthetic import write_study

__all__ = ["demo", "demo_config"]

CLIENT_AE = "DEMO_SECRET"
DEADLINE = 45.0  # seconds for the whole round trip


def demo_config(data_dir: Path, pacs: SimulatedPACS, workers: list[SimulatedWorker],
                outside: int, inside: int) -> Config:  # fmt: skip
    node = NodeConfig(
        bind="127.0.0.1", outside_port=outside, inside_port=inside, data_dir=data_dir,
        idle_release=0.5, echo_interval=0, http_port=0,
    )  # fmt: skip
    return Config(
        node=node,
        destinations=(Destination("demo-pacs", "127.0.0.1", pacs.port, pacs.ae_title),),
        clients=(Client("demo-hospital", CLIENT_AE, "demo-pacs", "demo"),),
        workers=tuple(
            Worker(f"gpu-{i}", "127.0.0.1", w.port, w.ae_title, "demo")
            for i, w in enumerate(workers, 1)
        ),
        source="<demo>",
    )


def _say(text: str) -> None:
    print(text, flush=True)


def demo(keep: bool = False) -> int:
    """Run the round trip; 0 if every derived instance reached the PACS in time."""
    started = time.monotonic()
    root = Path(tempfile.mkdtemp(prefix="wolfpacs-demo-"))
    outside, inside = free_port(), free_port()
    pacs = SimulatedPACS("DEMO_PACS")
    workers = [SimulatedWorker(f"DEMO_GPU_{i}", inside) for i in (1, 2)]
    config = demo_config(root / "data", pacs, workers, outside, inside)
    node = Node(config, operations=Operations)
    try:
        for peer in (pacs, *workers):
            peer.start()
        node.start()
        _say(f"WolfPACS node up: outside port {outside}, inside port {inside}, data in {root}")
        _say(f"workers: {', '.join(f'{w.name} ({w.ae_title})' for w in config.workers)}; "
             f"hospital PACS: {pacs.ae_title}")  # fmt: skip
        files = write_study(root / "study", series=2, per_series=5)
        _say(f"hospital sends 1 study, 2 series, {len(files)} instances "
             f"to {CLIENT_AE}@127.0.0.1:{outside}")  # fmt: skip
        statuses = send_files(files, outside, CLIENT_AE, calling_ae="DEMO_HOSPITAL")
        if any(statuses):
            _say(f"FAILED: the node refused instances: {[hex(s) for s in statuses]}")
            return 1
        return _follow(len(files), workers, pacs, config, started)
    finally:
        node.stop()
        for peer in (*workers, pacs):
            peer.stop()
        if keep:
            _say(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


def _follow(sent: int, workers: list[SimulatedWorker], pacs: SimulatedPACS,
            config: Config, started: float) -> int:  # fmt: skip
    deadline = time.monotonic() + DEADLINE
    # On a terminal the progress line is redrawn in place; in a file or a pipe (a log),
    # where a carriage return would make one endless line, only the last state is written.
    live = sys.stdout.isatty()
    shown = ""
    while True:
        at_workers = sum(len(w.received) for w in workers)
        at_pacs = len(pacs.received)
        line = f"  at the workers {at_workers}/{sent}, derived back at the PACS {at_pacs}/{sent}"
        if live and line != shown:
            sys.stdout.write("\r" + line)
            sys.stdout.flush()
            shown = line
        if at_pacs >= sent or time.monotonic() > deadline:
            break
        pacs.wait_for(at_pacs + 1, timeout=0.2)
    sys.stdout.write("\n" if live else line + "\n")
    for worker, settings in zip(workers, config.workers, strict=True):
        for (study, series), count in sorted(worker.series().items()):
            _say(f"series {series} ({count} instances) of study {study} -> worker {settings.name}")
    for (study, series), count in sorted(pacs.series().items()):
        _say(
            f"derived series {series} ({count} instances) of study {study} -> PACS {pacs.ae_title}"
        )
    elapsed = time.monotonic() - started
    if len(pacs.received) < sent:
        _say(f"FAILED: {len(pacs.received)} of {sent} derived instances reached the PACS "
             f"within {DEADLINE:.0f} s")  # fmt: skip
        return 1
    _say(f"round trip complete in {elapsed:.1f} s: every derived instance reached the PACS")
    return 0
