"""The pieces the benchmarks share: DCMTK peers and a node subprocess, on loopback."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from wolfpacs.simulate import free_port, wait_port

DCMTK = Path(os.environ.get("DCMTK_BIN", "/usr/bin"))
# Without TCP_NODELAY DCMTK stalls ~40 ms per instance on loopback (Nagle).
ENV = {**os.environ, "TCP_NODELAY": "1"}


def storescp(directory: Path, ae_title: str, port: int) -> subprocess.Popen[bytes]:
    directory.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen(
        [str(DCMTK / "storescp"), "-aet", ae_title, "-od", str(directory), "+xa", str(port)],
        env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    wait_port(port)
    return proc


def storescu(files: list[Path], port: int, called: str) -> float:
    """Send ``files`` on one association; the seconds it took."""
    started = time.perf_counter()
    subprocess.run(
        [str(DCMTK / "storescu"), "-xe", "-aet", "HOSPITAL", "-aec", called,
         "127.0.0.1", str(port), *map(str, files)],
        env=ENV, check=True, stdout=subprocess.DEVNULL,
    )  # fmt: skip
    return time.perf_counter() - started


def wait_files(directory: Path, count: int, timeout: float = 300) -> None:
    """Return once ``directory`` holds ``count`` files."""
    deadline = time.monotonic() + timeout
    while sum(1 for _ in directory.iterdir()) < count:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{directory} did not get {count} files")
        time.sleep(0.002)


@dataclass
class Node:
    """A running node subprocess with one storescp worker behind it."""

    outside: int
    config: Path
    worker_dir: Path
    process: subprocess.Popen[bytes]


def send_through(files: list[Path], running: Node) -> float:
    """Seconds from the start of storescu to the worker holding the last instance."""
    started = time.perf_counter()
    storescu(files, running.outside, "BENCH")
    wait_files(running.worker_dir, len(files))
    return time.perf_counter() - started


@contextlib.contextmanager
def node(root: Path, durability: str = "fsync") -> Iterator[Node]:
    """``wolfpacs run`` with one DCMTK worker; stopped with SIGTERM and cleaned up after."""
    worker_port, outside, inside = free_port(), free_port(), free_port()
    out, data, config = root / "worker", root / "node", root / "bench.toml"
    config.write_text(
        f'[node]\nbind = "127.0.0.1"\noutside_port = {outside}\ninside_port = {inside}\n'
        f'data_dir = "{data}"\ndurability = "{durability}"\necho_interval = 0\n'
        "http_port = 0\n\n"
        '[[destinations]]\nname = "pacs"\nhost = "127.0.0.1"\nport = 9\nae_title = "PACS"\n\n'
        '[[clients]]\nname = "bench"\nae_title = "BENCH"\ndestination = "pacs"\npool = "p"\n\n'
        f'[[workers]]\nname = "w"\nhost = "127.0.0.1"\nport = {worker_port}\n'
        'ae_title = "WORKER"\npool = "p"\n'
    )
    worker = storescp(out, "WORKER", worker_port)
    command = [sys.executable, "-m", "wolfpacs", "run", "--config", str(config)]
    with open(root / "node.log", "ab") as log:
        process = subprocess.Popen([*command, "--log-level", "warning"], stdout=log, stderr=log)
    try:
        wait_port(outside)
        yield Node(outside, config, out, process)
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(60)
        worker.terminate()
        worker.wait()
        shutil.rmtree(out, ignore_errors=True)
        shutil.rmtree(data, ignore_errors=True)
