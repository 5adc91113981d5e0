"""The pieces the benchmarks share: DCMTK peers, a node subprocess, Orthanc; all on loopback.

Every DCMTK tool runs with ``TCP_NODELAY=1`` (without it DCMTK stalls ~40 ms
per instance on loopback, Nagle's algorithm); the node sets TCP_NODELAY on
its own sockets. A node's cost is read from ``/proc``: peak resident memory
(``VmHWM``) and CPU seconds (user + system) over the timed part of a run.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from wolfpacs.config import load
from wolfpacs.ops.control import ControlClient
from wolfpacs.state.sqlite import SQLiteStore
from wolfpacs.testing.peers import free_port, wait_port

DCMTK = Path(os.environ.get("DCMTK_BIN", "/usr/bin"))
ORTHANC = shutil.which("Orthanc") or "/usr/sbin/Orthanc"
ENV = {**os.environ, "TCP_NODELAY": "1"}
_TICKS = os.sysconf("SC_CLK_TCK")


def storescp(
    directory: Path, ae_title: str, port: int, fork: bool = False
) -> subprocess.Popen[bytes]:
    """DCMTK ``storescp`` writing what it receives into ``directory``; returns once it listens.

    ``fork``: a process per association, so that it serves several at once (a worker that
    several senders deliver to: a node's processes); else one association at a time.
    """
    directory.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen(
        [str(DCMTK / "storescp"), "-aet", ae_title, "-od", str(directory), "+xa",
         *(["--fork"] if fork else []), str(port)],
        env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        wait_port(port)
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    return proc


@contextlib.contextmanager
def storescps(peers: Sequence[tuple[Path, str]], fork: bool = False) -> Iterator[list[int]]:
    """A storescp for each (directory, AE title), on free ports (yielded in that order);
    ``fork``: see :func:`storescp`.

    Stopped, and their directories removed, after.
    """
    procs: list[subprocess.Popen[bytes]] = []
    try:
        ports = [free_port() for _ in peers]
        for (directory, ae_title), port in zip(peers, ports, strict=True):
            procs.append(storescp(directory, ae_title, port, fork))
        yield ports
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait()
        for directory, _ in peers:
            shutil.rmtree(directory, ignore_errors=True)


def storescu_command(files: Sequence[Path], port: int, called: str, calling: str) -> list[str]:
    """DCMTK ``storescu`` sending ``files`` on one association, proposing explicit VR LE."""
    return [str(DCMTK / "storescu"), "-xe", "-aet", calling, "-aec", called,
            "127.0.0.1", str(port), *map(str, files)]  # fmt: skip


def storescu(files: Sequence[Path], port: int, called: str, calling: str = "HOSPITAL") -> float:
    """Send ``files`` on one association; the seconds it took."""
    started = time.perf_counter()
    subprocess.run(storescu_command(files, port, called, calling), env=ENV, check=True,
                   stdout=subprocess.DEVNULL)  # fmt: skip
    return time.perf_counter() - started


def storescu_all(streams: Sequence[tuple[Sequence[Path], int, str, str]]) -> None:
    """Run one ``storescu`` per (files, port, called, calling) at once; wait for them all."""
    procs = [
        subprocess.Popen(storescu_command(*stream), env=ENV, stdout=subprocess.DEVNULL)
        for stream in streams
    ]
    failed = [p.args for p in procs if p.wait(600) != 0]
    if failed:
        raise RuntimeError(f"{len(failed)} storescu runs failed")


def count_files(directory: Path) -> int:
    try:
        return len(os.listdir(directory))
    except FileNotFoundError:
        return 0


def wait_files(directories: Sequence[Path], count: int, timeout: float = 600) -> None:
    """Return once ``directories`` hold ``count`` files between them.

    Raises:
        TimeoutError: they did not within ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    while sum(count_files(d) for d in directories) < count:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{[str(d) for d in directories]} did not get {count} files")
        time.sleep(0.001)


def family(pid: int) -> list[int]:
    """``pid`` and its descendants (a node of several processes: its supervisor's children)."""
    parents: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue  # ended meanwhile
        parents.setdefault(ppid, []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        found.append(todo.pop())
        todo += parents.get(found[-1], [])
    return found


def wait_files_exist(paths: Sequence[Path], timeout: float = 60) -> None:
    """Until every one of ``paths`` exists."""
    deadline = time.monotonic() + timeout
    while not all(p.exists() for p in paths):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{[str(p) for p in paths]} did not all appear")
        time.sleep(0.01)


def peak_rss_mb(pid: int) -> float:
    """The peak resident set sizes so far (VmHWM) of the process and its descendants, in MB."""
    total = 0.0
    for one in family(pid):
        for line in Path(f"/proc/{one}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                total += int(line.split()[1]) / 1024
    return total


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds the process and its descendants (all their threads) have
    used so far (a child that ended and was waited for counts in its parent's)."""
    total = 0.0
    for one in family(pid):
        fields = Path(f"/proc/{one}/stat").read_text().rsplit(")", 1)[1].split()
        total += sum(int(v) for v in fields[11:15]) / _TICKS  # utime stime cutime cstime
    return total


def machine_cpu_seconds() -> float:
    """CPU seconds the whole machine (every core, every process, the kernel) has been busy."""
    ticks = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    return (sum(ticks) - ticks[3] - ticks[4]) / _TICKS  # all but idle and iowait


@dataclass
class Node:
    """A running ``wolfpacs run`` with DCMTK workers (and a DCMTK destination) behind it."""

    outside: int
    inside: int
    config: Path
    data_dir: Path
    worker_dirs: list[Path]
    destination_dir: Path
    process: subprocess.Popen[bytes]
    client_aes: list[str] = field(default_factory=list)
    http_port: int = 0  # 0: off

    @property
    def pid(self) -> int:
        return self.process.pid

    def store_counts(self) -> dict[str, float]:
        """What its store actor has done so far (``inspect store``): the operations it
        answered (each one transaction of its backend), and the seconds they took (its one
        thread's busy time)."""
        client = ControlClient(load(self.config).node.control_path)
        try:
            state = client.call("inspect", actor="store")["state"]
        finally:
            client.close()
        return {"store_operations": float(state["operations"]), "store_busy_s": state["busy_s"]}


def write_routes(data_dir: Path, studies: Sequence[str], worker: str, client: str) -> None:
    """Put routes into a node's state database before it starts (a routing table of a size)."""
    SQLiteStore(data_dir / "state.sqlite3").open()  # creates the schema
    now = time.time()
    with contextlib.closing(sqlite3.connect(data_dir / "state.sqlite3")) as db, db:
        db.executemany(
            "INSERT INTO studies (study_uid, client, worker, routed_at, last_activity_at) "
            "VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
            [(uid, client, worker, now, now) for uid in studies],
        )


@contextlib.contextmanager
def node(
    root: Path,
    durability: str = "fsync",
    *,
    workers: int = 1,
    clients: int = 1,
    destination: bool = False,
    routes: Sequence[str] = (),
    http: bool = False,
    rules: int = 0,
    processes: int = 1,
    fork: bool = False,
    store: str = "sqlite",
) -> Iterator[Node]:
    """``wolfpacs run`` with ``workers`` storescp workers in one pool and ``clients`` clients.

    Client ``i`` is called ``BENCH<i>``; worker ``i`` calls itself ``WORKER<i>``.
    ``destination``: a storescp takes the return path (else nothing listens
    there). ``routes``: studies already routed to worker 0 (for client 0).
    ``http``: the HTTP port on (metrics, status page), on a free port.
    ``rules``: each client has this many rules, only the last of which
    matches the bench's CT series (see :func:`_rules`). ``store``: ``[node]
    store``, ``sqlite`` (in its data_dir) or a PostgreSQL URL (``routes``
    are SQLite's only). ``processes``: ``[node] processes`` (the node is up
    once every process has its control socket); ``fork``: workers that serve
    several associations at once (:func:`storescp`).
    Stopped with SIGTERM and cleaned up after.
    """
    root.mkdir(parents=True, exist_ok=True)
    dirs = [root / f"worker{i}" for i in range(workers)]
    peers = [(d, f"WORKER{i}") for i, d in enumerate(dirs)]
    with storescps([*peers, *([(root / "pacs", "PACS")] if destination else [])], fork) as ports:
        pacs_port = ports[workers] if destination else free_port()
        outside, inside, http_port = free_port(), free_port(), free_port() if http else 0
        config = _write_config(root, durability, clients, (outside, inside, pacs_port),
                               ports[:workers], http_port=http_port, rules=rules,
                               store=store, processes=processes)  # fmt: skip
        data = root / "node"
        if routes:
            write_routes(data, routes, "w0", "bench0")
        command = [sys.executable, "-m", "wolfpacs", "run", "--config", str(config)]
        with open(root / "node.log", "ab") as log:
            process = subprocess.Popen([*command, "--log-level", "warning"], stdout=log,
                                       stderr=log)  # fmt: skip
        try:
            for port in (outside, inside, *([http_port] if http_port else [])):
                wait_port(port)
            each = range(1, processes + 1) if processes > 1 else ()
            wait_files_exist([data / "processes" / str(n) / "control.sock" for n in each])
            yield Node(outside, inside, config, data, dirs, root / "pacs", process,
                       [f"BENCH{i}" for i in range(clients)], http_port)  # fmt: skip
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(60)
            shutil.rmtree(data, ignore_errors=True)


def _write_config(
    root: Path, durability: str, clients: int, node_ports: tuple[int, int, int],
    worker_ports: list[int], *, http_port: int = 0, rules: int = 0, store: str = "sqlite",
    processes: int = 1,
) -> Path:  # fmt: skip
    """The node's TOML: clients BENCH<i> and workers WORKER<i> in pool ``p``, destination PACS.

    ``node_ports``: the outside and inside ports, and the destination's.
    """
    outside, inside, pacs_port = node_ports
    lines = [
        "[node]", 'bind = "127.0.0.1"', f"outside_port = {outside}", f"inside_port = {inside}",
        f'data_dir = "{root / "node"}"', f'durability = "{durability}"', "echo_interval = 0",
        f"http_port = {http_port}", f'store = "{store}"', f"processes = {processes}", "",
        "[[destinations]]", 'name = "pacs"', 'host = "127.0.0.1"', f"port = {pacs_port}",
        'ae_title = "PACS"', "",
    ]  # fmt: skip
    for i in range(clients):
        lines += ["[[clients]]", f'name = "bench{i}"', f'ae_title = "BENCH{i}"',
                  'destination = "pacs"', 'pool = "p"', "", *_rules(rules)]  # fmt: skip
    for i, port in enumerate(worker_ports):
        lines += ["[[workers]]", f'name = "w{i}"', 'host = "127.0.0.1"', f"port = {port}",
                  f'ae_title = "WORKER{i}"', 'pool = "p"', ""]  # fmt: skip
    config = root / "bench.toml"
    config.write_text("\n".join(lines))
    return config


def _rules(count: int) -> list[str]:
    """``count`` rules of a client, the worst case for the bench's CT series: every one is
    tried, each over attributes the peek must then read, and only the last matches."""
    keys = ("Modality", "SeriesDescription", "BodyPartExamined", "ProtocolName",
            "Manufacturer", "StudyDescription", "ImageType")  # fmt: skip
    lines = []
    for k in range(count - 1):
        first, second = keys[k % len(keys)], keys[(k + 1) % len(keys)]
        lines += ["[[clients.rules]]",
                  f'match = {{ {first} = "(?i).*nomatch{k}.*", {second} = "X|Y" }}',
                  'pool = "p"', ""]  # fmt: skip
    if count:
        lines += ["[[clients.rules]]", 'match = { Modality = "CT", ImageType = "ORIGINAL" }',
                  'pool = "p"', ""]  # fmt: skip
    return lines


_FORWARD_LUA = """
function OnStoredInstance(instanceId, tags, metadata, origin)
   SendToModality(instanceId, 'worker')
   Delete(instanceId)
end
"""


@contextlib.contextmanager
def orthanc(root: Path, worker_port: int) -> Iterator[tuple[int, subprocess.Popen[bytes]]]:
    """Debian's Orthanc as a router: a Lua script forwards each stored instance and deletes it.

    Yields its DICOM port and process. Its HTTP server is off; TCP_NODELAY on.
    """
    root.mkdir(parents=True, exist_ok=True)
    port = free_port()
    (root / "forward.lua").write_text(_FORWARD_LUA)
    (root / "orthanc.json").write_text(json.dumps({
        "Name": "bench", "StorageDirectory": str(root / "storage"),
        "IndexDirectory": str(root / "index"), "DicomAet": "ORTHANC", "DicomPort": port,
        "DicomServerEnabled": True, "HttpServerEnabled": False, "RemoteAccessAllowed": False,
        "DicomAlwaysAllowStore": True, "DicomCheckCalledAet": False, "TcpNoDelay": True,
        "StorageCompression": False, "LuaScripts": [str(root / "forward.lua")],
        "DicomModalities": {"worker": ["WORKER0", "127.0.0.1", worker_port]},
        "Plugins": [], "DicomAssociationCloseDelay": 5,
    }))  # fmt: skip
    with open(root / "orthanc.log", "ab") as log:
        proc = subprocess.Popen([ORTHANC, str(root / "orthanc.json")], env=ENV, stdout=log,
                                stderr=log)  # fmt: skip
    try:
        wait_port(port, timeout=60)
        yield port, proc
    finally:
        proc.terminate()
        proc.wait(60)
        shutil.rmtree(root, ignore_errors=True)


def send_through(files: list[Path], running: Node) -> float:
    """Seconds from the start of storescu to the worker holding the last instance."""
    started = time.perf_counter()
    storescu(files, running.outside, running.client_aes[0])
    wait_files(running.worker_dirs, len(files))
    return time.perf_counter() - started


def fsync_ms(files: list[Path], root: Path) -> float:
    """Mean milliseconds to write one instance to a new file, fsync it and rename it."""
    directory = root / "fsync"
    directory.mkdir()
    times = []
    for i, path in enumerate(files):
        data = path.read_bytes()
        tmp, final = directory / f"{i}.tmp", directory / f"{i}.dcm"
        started = time.perf_counter()
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.write(fd, data)
        os.fsync(fd)
        os.close(fd)
        os.rename(tmp, final)
        times.append(time.perf_counter() - started)
    shutil.rmtree(directory)
    return statistics.mean(times) * 1000
