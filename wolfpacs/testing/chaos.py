"""``wolfpacs chaos``: a node under fire, and a ledger of what became of every instance.

On loopback only: a node (``wolfpacs run`` in a subprocess, so that it can be
``kill -9``-ed), simulated workers that return derived series, one simulated
PACS per hospital, and hospitals sending studies over concurrent
associations, resending what was refused, as hospitals do. Meanwhile a
seeded schedule crashes actors, takes workers and PACS down or makes them
misbehave, kills the node and restarts it, and fills the spool to its limit.
Then the faults end, the queues drain, and the ledger (:mod:`wolfpacs.testing.ledger`)
is drawn up from what the simulated peers really hold.

With ``nodes`` > 1 the nodes share one PostgreSQL store (``store``) and one
spool (``shared_spool``); each association of a hospital, and each derived
series of a worker, goes to any node that answers; a ``kill -9`` takes one
node down for up to two leases (so that another may adopt its queue) before
it starts again; and with ``store_restart`` (a command) the database server
itself is restarted now and then.
"""

from __future__ import annotations

import json
import logging
import os
import random
import select
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from pydicom import dcmread

from wolfpacs.ops.control import ControlError
from wolfpacs.testing.chaosoptions import Options
from wolfpacs.testing.ledger import Ledger, Sent
from wolfpacs.testing.noderun import NAMES, NodeRun
from wolfpacs.testing.peers import (
    SimulatedPACS,
    SimulatedWorker,
    dataset_digest,
    send_files,
)
from wolfpacs.testing.synthetic import write_study

__all__ = ["Chaos", "Options"]

logger = logging.getLogger(__name__)

# What a crash fault picks from; a trailing * is any actor of that kind.
CRASHABLE = [
    "router", "store", "senders", "receivers", "listener:outside", "listener:inside", "control",
    "sender:*", "sender:*", "receiver:*", "receiver:*", "receiver:*",
]  # fmt: skip
PEER_FAULTS = ["down", "status", "abort", "stall"]
BATCH = 8  # instances a hospital sends per association
DRAIN_TIMEOUT = 180.0  # seconds the queues get to empty once the faults end


def _matching(names: list[str], choice: str) -> list[str]:
    """The actors ``choice`` names: itself, or with a trailing * every one of that kind."""
    if choice.endswith("*"):
        return [n for n in names if n.startswith(choice[:-1])]
    return [n for n in names if n == choice]


class Chaos:
    """One run. :meth:`run` returns its ledger; everything it started is stopped."""

    def __init__(self, options: Options, root: Path | None = None) -> None:
        self.options = options
        self.root = root or Path(tempfile.mkdtemp(prefix="wolfpacs-chaos-"))
        options.check()
        self.rng = random.Random(options.seed)
        solo = options.nodes == 1
        self.nodes = [
            NodeRun(f"node-{NAMES[i]}", self.root,
                    options.data_dir or self.root / ("data" if solo else f"data-{NAMES[i]}"), solo)
            for i in range(options.nodes)
        ]  # fmt: skip
        self.spool_dir = None if solo else self.root / "spool"  # shared by every node
        self.workers = [SimulatedWorker(f"CHAOS_W{i}", [n.inside for n in self.nodes], quiet=0.5)
                        for i in range(options.workers)]  # fmt: skip
        self.pacs = [SimulatedPACS(f"CHAOS_P{i}") for i in range(options.clients)]
        self.ledger = Ledger()
        self.refusals: dict[int, int] = {}
        self._lock = threading.Lock()  # one fault, or one restart of a node, at a time
        self._counting = threading.Lock()

    # -- the node ----------------------------------------------------------------------

    def write_config(self, spool_max: int) -> None:
        for node in self.nodes:
            node.config.write_text(self.config_of(node, spool_max))

    def config_of(self, node: NodeRun, spool_max: int) -> str:
        lines = [
            "[node]", 'bind = "127.0.0.1"', f"outside_port = {node.outside}",
            f"inside_port = {node.inside}", f'data_dir = "{node.data_dir}"',
            f'control_socket = "{node.socket}"', f'durability = "{self.options.durability}"',
            "min_free_bytes = 0", "retry_initial = 0.2",
            "retry_max = 2.0", "dimse_timeout = 3.0", "acse_timeout = 5.0",
            "network_timeout = 10.0", "idle_release = 1.0", "echo_interval = 2.0",
            "max_attempts = 100000", f"spool_max_bytes = {spool_max}", "http_port = 0",
            "fault_injection = true",
        ]  # fmt: skip
        if self.options.store != "sqlite":
            lines.append(f'store = "{self.options.store}"')
        if self.spool_dir is not None:
            lines += [f'spool_dir = "{self.spool_dir}"', "shared_spool = true"]
        if self.spool_dir is not None or self.options.processes > 1:  # siblings adopt too
            lines += [f'node_id = "{node.name}"', f"processes = {self.options.processes}",
                      f"lease_seconds = {self.options.lease_seconds}"]  # fmt: skip
        lines.append("")
        for i, pacs in enumerate(self.pacs):
            lines += ["[[destinations]]", f'name = "pacs-{i}"', 'host = "127.0.0.1"',
                      f"port = {pacs.port}", f'ae_title = "{pacs.ae_title}"', "",
                      "[[clients]]", f'name = "hospital-{i}"', f'ae_title = "HOSP{i}_SECRET"',
                      f'destination = "pacs-{i}"', 'pool = "chaos"', ""]  # fmt: skip
        for i, worker in enumerate(self.workers):
            lines += ["[[workers]]", f'name = "gpu-{i}"', 'host = "127.0.0.1"',
                      f"port = {worker.port}", f'ae_title = "{worker.ae_title}"',
                      'pool = "chaos"', ""]  # fmt: skip
        return "\n".join(lines)

    def poll_restarts(self, node: NodeRun) -> None:
        """Note ``node``'s restarts so far (the latest count of its present life)."""
        client = node.control(timeout=10, reconnect=1)
        try:
            node.restarts_now = client.call("stats")["restarts"]
        except ControlError:
            pass  # between lives, or busy: the last count stands
        finally:
            client.close()

    def collect_restarts(self, node: NodeRun) -> None:
        """Bank the restarts of ``node``'s present life (before it is killed, or after it died)."""
        for actor, n in node.restarts_now.items():
            self.ledger.restarts[actor] = self.ledger.restarts.get(actor, 0) + n
        node.restarts_now = {}

    def kill_node(self) -> None:
        """``kill -9`` a node and start it again: at once if it is the only one, else after up
        to two leases (a live node may adopt its queue meanwhile)."""
        node = self.rng.choice(self.nodes)
        self.poll_restarts(node)
        self.collect_restarts(node)
        node.kill()
        if self.options.power_cut is not None:
            self.cut_power(self.options.power_cut)
        self.ledger.node_kills += 1
        logger.info("chaos: killed %s", node.name)
        if len(self.nodes) > 1:
            time.sleep(self.rng.uniform(0.0, 2 * self.options.lease_seconds))
        node.start()

    def kill_process(self) -> None:
        """``kill -9`` one process of a node (``ctl kill process:<n>``): its supervisor starts
        it again, or a sibling adopts its queue first."""
        node = self.rng.choice(self.nodes)
        client = node.control(timeout=10, reconnect=5)
        try:
            running = [p["id"] for p in client.call("tree")["children"] if p.get("alive")]
            if running:
                client.call("kill", actor=self.rng.choice(running))
                self.ledger.process_kills += 1
                logger.info("chaos: killed a process of %s", node.name)
        except ControlError as exc:  # the node itself is between lives: no process to kill
            logger.info("chaos: no process killed: %s", exc)
        finally:
            client.close()

    def restart_store(self) -> None:
        """Restart the database server (``store_restart``): every node loses its connections."""
        assert self.options.store_restart is not None
        done = subprocess.run(self.options.store_restart, shell=True, check=False,
                              capture_output=True, text=True, timeout=120)  # fmt: skip
        if done.returncode != 0:
            raise RuntimeError(f"store restart failed: {done.stderr.strip()[-500:]}")
        self.ledger.store_restarts += 1
        logger.info("chaos: restarted the store's server")

    def cut_power(self, fifo: Path, timeout: float = 30.0) -> None:
        """Drop every write LazyFS holds unsynced, as a power cut would; wait until it has.

        LazyFS says "done" on ``<fifo>.done`` (its ``fifo_path_completed``) without
        waiting for a reader, so the reader is there first.
        """
        done = os.open(fifo.with_name(fifo.name + ".done"), os.O_RDONLY | os.O_NONBLOCK)
        try:
            with open(fifo, "w") as faults:
                faults.write("lazyfs::clear-cache\n")
            deadline = time.monotonic() + timeout
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise RuntimeError(f"LazyFS did not clear its cache within {timeout} s")
                if select.select([done], [], [], left)[0] and os.read(done, 4096):
                    break  # "finished::clear-cache"
        finally:
            os.close(done)
        self.ledger.power_cuts += 1

    def watch_nodes(self, stop: threading.Event) -> None:
        """A node that exits by itself (its tree gave up) is started again, as systemd would.

        Meanwhile, the nodes' restart counts are read every second.
        """
        while not stop.wait(1.0):
            with self._lock:
                for node in self.nodes:
                    if node.exited:
                        assert node.process is not None
                        logger.warning("chaos: %s exited (%s); starting it again",
                                       node.name, node.process.returncode)  # fmt: skip
                        self.ledger.node_exits += 1
                        self.collect_restarts(node)
                        node.start()
                    else:
                        self.poll_restarts(node)

    # -- faults ------------------------------------------------------------------------

    def schedule(self) -> list[tuple[float, str]]:
        """(seconds from the start, fault): seeded, within the first 80% of the duration."""
        span = self.options.duration
        events = [(self.rng.uniform(0.1, 0.8) * span, "kill") for _ in range(self.options.kills)]
        events.append((self.rng.uniform(0.2, 0.5) * span, "spool"))  # at least one fill-up
        kinds = ["crash"] * 6 + ["worker"] * 3 + ["pacs"]
        if self.options.store_restart:  # at least one restart of the database
            events.append((self.rng.uniform(0.2, 0.7) * span, "store"))
            kinds.append("store")
        if self.options.processes > 1:  # at least one kill -9 of a node's process
            events.append((self.rng.uniform(0.1, 0.7) * span, "process"))
            kinds += ["process"] * 2
        events += [(self.rng.uniform(0.05, 0.8) * span, self.rng.choice(kinds))
                   for _ in range(max(self.options.faults - len(events), 0))]  # fmt: skip
        return sorted(events)

    def inject(self, fault: str) -> None:
        if fault == "kill":
            with self._lock:  # not while the watcher starts a node again
                self.kill_node()
        elif fault == "store":
            self.restart_store()
        elif fault == "process":
            self.kill_process()
        elif fault == "crash":
            self.crash()  # without the lock: it waits for a node between lives to be back
        elif fault == "spool":  # every worker away: the queue grows to the spool's limit
            self.misbehave(self.workers, "down", self.rng.uniform(3, 6))
        else:
            peers = self.workers if fault == "worker" else self.pacs
            self.misbehave([self.rng.choice(peers)], self.rng.choice(PEER_FAULTS),
                           self.rng.uniform(1, 4))  # fmt: skip
        self.ledger.faults += 1

    def crash(self) -> None:
        """Crash one actor of a node; if it is between lives or the actor between restarts,
        retry."""
        client = self.rng.choice(self.nodes).control(timeout=10, reconnect=2)
        try:
            for _ in range(20):
                try:
                    names = client.call("names")["actors"]
                    pool = _matching(names, self.rng.choice(CRASHABLE))
                    if pool:  # (a receiver may not be there at this instant)
                        actor = self.rng.choice(pool)
                        client.call("kill", actor=actor)
                        self.ledger.crashes += 1
                        logger.info("chaos: crashed %s", actor)
                        return
                except ControlError as exc:
                    logger.info("chaos: crash not injected yet: %s", exc)
                    time.sleep(0.5)
            logger.warning("chaos: no crash injected after 20 tries")
        finally:
            client.close()

    def misbehave(self, peers: list[Any], how: str, seconds: float) -> None:
        for peer in peers:
            if how == "down":
                peer.stop()
            else:
                peer.stall = 5.0  # longer than the node's dimse_timeout
                peer.fault = how
        logger.info("chaos: %s %s for %.1f s", ", ".join(p.ae_title for p in peers), how, seconds)

        def recover() -> None:
            for peer in peers:
                peer.fault = None
                if not peer.running:
                    peer.start()

        timer = threading.Timer(seconds, recover)
        timer.daemon = True
        timer.start()

    def run_faults(self, started: float, stop: threading.Event) -> None:
        for at, fault in self.schedule():
            if stop.wait(max(0.0, started + at - time.monotonic())):
                return
            try:
                self.inject(fault)
            except Exception:  # a fault that could not be played is logged, the run goes on
                logger.exception("chaos: fault %s failed", fault)

    # -- hospitals ---------------------------------------------------------------------

    def hospital(self, client: int, files: list[Path], deadline: float) -> list[Path]:
        """Send until every file is acknowledged or the deadline passes; the acknowledged."""
        pending, acked = list(files), []
        while pending and time.monotonic() < deadline:
            batch, pending = pending[:BATCH], pending[BATCH:]
            node = self.rng.choice(self.nodes)  # as a load balancer in front of them would
            try:
                statuses = send_files(batch, node.outside, f"HOSP{client}_SECRET",
                                      calling_ae=f"HOSPITAL{client}")  # fmt: skip
            except Exception:  # the node is down or restarting: later
                statuses = [-1] * len(batch)
            for path, status in zip(batch, statuses, strict=True):
                if status == 0:
                    acked.append(path)
                else:
                    pending.append(path)
                    with self._counting:
                        self.refusals[status] = self.refusals.get(status, 0) + 1
            if any(s != 0 for s in statuses):
                time.sleep(self.rng.uniform(0.1, 0.5))
        return acked

    # -- the run -----------------------------------------------------------------------

    def run(self) -> Ledger:
        started_wall = time.monotonic()
        o = self.options
        studies: dict[int, list[Path]] = {c: [] for c in range(o.clients)}
        per_study = max(o.instances // o.studies, 1)
        for s in range(o.studies):
            files = write_study(self.root / f"study{s}", series=1, per_series=per_study,
                                rows=o.size, columns=o.size)  # fmt: skip
            studies[s % o.clients].extend(files)
        for files in studies.values():  # interleave a hospital's studies: several open at once
            self.rng.shuffle(files)
        size = max(f.stat().st_size for files in studies.values() for f in files)
        # A spool that a worker outage fills: the node must refuse, then recover.
        self.write_config(spool_max=size * max(30, o.instances // 50))
        for peer in (*self.workers, *self.pacs):
            peer.start()
        for node in self.nodes:
            node.start()
        stop = threading.Event()
        threading.Thread(target=self.watch_nodes, args=(stop,), daemon=True).start()
        faults = threading.Thread(target=self.run_faults, args=(time.monotonic(), stop))
        faults.start()
        deadline = time.monotonic() + o.duration * 3 + 60
        acked: dict[int, list[Path]] = {}
        senders = [threading.Thread(target=lambda c=c: acked.__setitem__(
            c, self.hospital(c, studies[c], deadline))) for c in studies]  # fmt: skip
        try:
            for thread in senders:
                thread.start()
            for thread in senders:
                thread.join()
            faults.join()
            self.settle()
        finally:
            stop.set()
            with self._lock:
                for node in self.nodes:
                    self.poll_restarts(node)
                    self.collect_restarts(node)
                    node.stop()
            for peer in (*self.workers, *self.pacs):
                peer.fault = None
                peer.stop()
        self.ledger = self.count(studies, acked, self.ledger)
        self.ledger.wall_s = time.monotonic() - started_wall
        return self.ledger

    def settle(self) -> None:
        """Faults over: wait (bounded) until every node's queues are empty and the derived
        series home."""
        for peer in (*self.workers, *self.pacs):
            peer.fault = None
            if not peer.running:
                peer.start()
        deadline = time.monotonic() + DRAIN_TIMEOUT
        clients = [node.control() for node in self.nodes]
        try:
            while time.monotonic() < deadline:
                queued: list[Any] = []
                for client in clients:
                    try:
                        queued += client.call("queues")
                    except ControlError:
                        queued.append("unknown")
                if not queued and all(w.idle for w in self.workers):
                    return
                time.sleep(0.5)
            logger.warning("chaos: queues not empty after %.0f s", DRAIN_TIMEOUT)
        finally:
            for client in clients:
                client.close()

    def count(self, studies: dict[int, list[Path]], acked: dict[int, list[Path]],
              ledger: Ledger) -> Ledger:  # fmt: skip
        done = {p for paths in acked.values() for p in paths}
        sent = []
        for client, files in studies.items():
            for path in files:
                ds = dcmread(path, stop_before_pixels=True)
                digest = dataset_digest(path)
                sent.append(Sent(str(ds.SOPInstanceUID), str(ds.StudyInstanceUID),
                                 f"hospital-{client}", digest, path in done))  # fmt: skip
        owner = {s.study_uid: s.owner for s in sent}
        derived = [Sent(uid, study, owner.get(study, "?"), "", ok)
                   for w in self.workers for uid, (study, ok) in w.derived.items()]  # fmt: skip
        dead: dict[str, str] = {}  # nothing in this schedule makes a peer refuse for good
        notes = [n for node in self.nodes for n in (node.data_dir / "dead").glob("*.json")]
        if self.spool_dir is not None:  # (where a shared spool keeps them, if it does)
            notes += self.spool_dir.glob("*/dead/*.json")
        for note in notes:
            try:
                record = json.loads(note.read_text())
            except ValueError:  # emptied by a power cut in "os" durability
                record = {"sop_instance_uid": note.stem, "kind": "unreadable_note"}
            dead[str(record.get("sop_instance_uid"))] = str(record.get("kind", "unknown"))
        result = Ledger.count(
            sent,
            {w.ae_title: [(r.sop_instance_uid, r.study_uid, r.digest) for r in w.received]
             for w in self.workers},
            derived,
            {f"hospital-{i}": [(r.sop_instance_uid, r.study_uid, r.digest) for r in p.received]
             for i, p in enumerate(self.pacs)},
            dead,
        )  # fmt: skip
        for key in ("restarts", "node_kills", "process_kills", "power_cuts", "node_exits",
                    "faults", "crashes", "store_restarts"):  # fmt: skip
            setattr(result, key, getattr(ledger, key))
        result.adoptions = sum(  # as the adopters' logs say (node.lease)
            node.log.read_text(errors="replace").count("adopted the queue of node")
            for node in self.nodes if node.log.exists()
        )  # fmt: skip
        return result

    def cleanup(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


def main(options: Options, keep: bool = False, report: Path | None = None) -> int:
    """Run, print the ledger; 0 only if nothing acknowledged was lost or misrouted."""
    # Refused connections are the point of the exercise: pynetdicom need not shout them.
    logging.getLogger("pynetdicom").setLevel(logging.CRITICAL)
    try:
        options.check()
    except ValueError as exc:
        print(f"wolfpacs chaos: {exc}", file=sys.stderr)
        return 2
    chaos = Chaos(options)
    nodes = f"{options.nodes} nodes on a shared store" if options.nodes > 1 else "one node"
    if options.processes > 1:
        nodes += f" of {options.processes} processes"
    print(f"chaos: {options.instances} instances in {options.studies} studies from "
          f"{options.clients} hospitals to {options.workers} workers through {nodes}; "
          f"{options.faults} faults, {options.kills} kill -9"
          f"{', store restarts' if options.store_restart else ''}, seed {options.seed}; "
          f"in {chaos.root}", flush=True)  # fmt: skip
    try:
        ledger = chaos.run()
    finally:
        if not keep:
            chaos.cleanup()
    print(ledger.render())
    if chaos.refusals:
        print("refusals seen by hospitals: " + ", ".join(
            f"0x{s:04X} x{n}" if s >= 0 else f"no answer x{n}"
            for s, n in sorted(chaos.refusals.items())))  # fmt: skip
    if report is not None:
        report.write_text(json.dumps({**ledger.as_dict(), "refusals": {
            str(k): v for k, v in chaos.refusals.items()}}, indent=2) + "\n")  # fmt: skip
    return 0 if ledger.clean() else 1
