"""The process supervisor (wolfpacs.node.processes) with stand-in children, and what makes a
process of a node: its config, its spool, its siblings' adoption, ``[node] processes``."""

from __future__ import annotations

import dataclasses
import os
import signal
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import wait_until
from tests.test_config import GOOD, error, write
from tests.test_leases import LONG, SHORT, dead, node
from tests.test_store import item
from wolfpacs.config import load
from wolfpacs.config.model import Config, NodeConfig
from wolfpacs.node.processes import (
    EXIT_ESCALATED,
    ProcessSpec,
    ProcessSupervisor,
    child_argv,
    child_config,
)
from wolfpacs.ops.front import ChildControls, FrontControl
from wolfpacs.ops.frontweb import FrontWeb, add_up
from wolfpacs.state.lockfile import DataDirInUseError, take
from wolfpacs.state.spool import Spool
from wolfpacs.state.sqlite import SQLiteStore

SLEEPER = [sys.executable, "-c", "import time; time.sleep(120)"]


def python(code: str) -> list[str]:
    return [sys.executable, "-c", code]


class Running:
    """A supervisor's run() in a thread: its exit code when it returns."""

    def __init__(self, supervisor: ProcessSupervisor) -> None:
        self.supervisor = supervisor
        self.stop = threading.Event()
        self.code: int | None = None
        supervisor.start()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        self.code = self.supervisor.run(self.stop)

    def end(self, timeout: float = 30.0) -> int | None:
        self.stop.set()
        self.thread.join(timeout)
        return self.code


@pytest.fixture
def running():
    started: list[Running] = []

    def start(specs: list[ProcessSpec], **intensity: Any) -> Running:
        started.append(Running(ProcessSupervisor(specs, **intensity)))
        return started[-1]

    yield start
    for run in started:
        run.end()


def pid_of(supervisor: ProcessSupervisor, id: str) -> int | None:
    [child] = [c for c in supervisor.which_children() if c["id"] == id]
    return child["pid"] if child["state"] == "running" else None


def test_a_dead_child_is_started_again_and_the_others_go_on(running):
    run = running([ProcessSpec("1", SLEEPER), ProcessSpec("2", SLEEPER)])
    first, other = pid_of(run.supervisor, "1"), pid_of(run.supervisor, "2")
    assert first and other
    assert run.supervisor.kill("1") == first  # kill -9
    wait_until(lambda: (pid_of(run.supervisor, "1") or first) != first, what="a new process 1")
    children = {c["id"]: c for c in run.supervisor.which_children()}
    assert children["1"]["restarts"] == 1 and children["1"]["last_exit"] == -signal.SIGKILL
    assert children["2"]["pid"] == other and children["2"]["restarts"] == 0
    assert run.supervisor.restarts() == 1
    assert run.end() == 0


def test_too_many_deaths_and_the_supervisor_gives_up_with_a_non_zero_exit(running):
    run = running(
        [ProcessSpec("1", python("import sys; sys.exit(3)")), ProcessSpec("2", SLEEPER)],
        max_restarts=2, max_seconds=60.0,
    )  # fmt: skip
    run.thread.join(30)
    assert run.code == EXIT_ESCALATED
    assert "process 1 exited (exit code 3)" in str(run.supervisor.escalated)
    assert "more than 2 restarts in 60 s" in str(run.supervisor.escalated)
    assert run.supervisor.count_children() == {"running": 0, "restarting": 0, "stopped": 2}


def test_sigterm_reaches_every_child_which_ends_in_its_own_time_and_run_returns_0(
    running, tmp_path
):
    code = (
        "import signal, sys, time\n"
        "def bye(*_):\n"
        "    time.sleep(0.3)  # finishing what is in flight\n"
        "    open(sys.argv[1], 'w').write('stopped')\n"
        "    sys.exit(0)\n"
        "signal.signal(signal.SIGTERM, bye)\n"
        "open(sys.argv[1] + '.up', 'w').write('up')\n"
        "time.sleep(120)\n"
    )
    marks = [tmp_path / f"{n}.mark" for n in (1, 2)]
    run = running([ProcessSpec(str(n), [*python(code), str(m)]) for n, m in enumerate(marks, 1)])
    wait_until(lambda: all(Path(f"{m}.up").exists() for m in marks), what="both children up")
    processes = [c.process for c in run.supervisor.children.values()]
    assert run.end() == 0
    assert all(m.read_text() == "stopped" for m in marks)
    assert [p.returncode for p in processes if p is not None] == [0, 0]


def test_a_child_that_ignores_sigterm_is_killed_after_its_shutdown_time(tmp_path):
    up = tmp_path / "up"
    code = ("import signal, sys, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
            f"open({str(up)!r}, 'w').write('up')\ntime.sleep(120)\n")  # fmt: skip
    supervisor = ProcessSupervisor([ProcessSpec("1", python(code), shutdown=0.5)])
    supervisor.start()
    wait_until(up.exists, what="the child up")
    assert supervisor.stop() is False
    assert supervisor.children["1"].process.returncode == -signal.SIGKILL


def test_specs_are_checked_up_front():
    with pytest.raises(ValueError, match="empty command"):
        ProcessSpec("1", [])
    with pytest.raises(ValueError, match="shutdown"):
        ProcessSpec("1", SLEEPER, shutdown=0)
    with pytest.raises(ValueError, match="duplicate"):
        ProcessSupervisor([ProcessSpec("1", SLEEPER), ProcessSpec("1", SLEEPER)])


def test_kill_of_an_unknown_process_is_refused_by_name(running):
    run = running([ProcessSpec("1", SLEEPER)])
    with pytest.raises(KeyError, match="no running process '7'"):
        run.supervisor.kill("7")
    controls = ChildControls(run.supervisor, {})
    with pytest.raises(Exception, match="fault injection is disabled"):
        controls.handle("kill", {"actor": "process:1"}, fault_injection=False)
    assert controls.handle("kill", {"actor": "process:1"}, fault_injection=True)["killed"]


def test_a_childs_config_is_the_nodes_with_its_own_id_socket_and_port(tmp_path):
    config = Config(node=NodeConfig(node_id="node-a", data_dir=tmp_path, processes=2,
                                    http_port=9111, control_port=7777))  # fmt: skip
    child = child_config(config, 2, 40001).node
    assert child.node_id == "node-a.2" and child.processes == 2
    assert child.control_path == tmp_path / "processes" / "2" / "control.sock"
    assert (child.http_bind, child.http_port, child.control_port) == ("127.0.0.1", 40001, 0)
    assert child.spool_path == config.node.spool_path and child.shared_spool is False
    argv = child_argv("/etc/w.toml", 2, 40001, "node-a")
    assert argv[-8:-2] == ["--process", "2", "--process-http", "40001", "--process-node", "node-a"]
    assert argv[-2:] == ["--process-supervisor", str(os.getpid())]


def test_a_process_receives_into_its_own_incoming_and_leaves_data_dir_to_its_supervisor(
    tmp_path,
):
    held = take(tmp_path, "held")  # the supervisor's
    try:
        spool = Spool(tmp_path, spool_dir=tmp_path / "spool", node="n.1", process="1")
        spool.lock()  # only its queues: data_dir's lock is not asked for
        assert spool.incoming == tmp_path.resolve() / "processes" / "1" / "incoming"
        assert spool.queues == tmp_path.resolve() / "spool" / "n.1"
        with pytest.raises(DataDirInUseError):  # a second process 1 is refused
            Spool(tmp_path, spool_dir=tmp_path / "spool", node="n.1", process="1").lock()
        spool.unlock()
    finally:
        os.close(held)


def test_a_family_adopts_its_own_without_a_shared_spool_and_no_other_node(stores):
    # a.1 and a.2: processes of node a, whose spool is its own; a: the same node when it ran
    # as one process; ab and b: other nodes (ab's id begins as a's does, it is no process).
    one, two, solo, ab, b = (node(stores, n) for n in ("a.1", "a.2", "a", "ab", "b"))
    for n, store in enumerate((one, solo, ab, b)):
        store.register_node(SHORT, False)
        store.enqueue(item(f"spool/{store.node_id}/w1/{n}.dcm", target="w1"))
    epoch = two.register_node(LONG, False)
    wait_until(lambda: all(dead(two, n) for n in ("a.1", "a", "ab", "b")), timeout=5,
               what="leases to lapse")  # fmt: skip
    assert two.adopt_expired(epoch) == []  # no family: shared spools only, and none is
    taken = two.adopt_expired(epoch, "a")
    assert sorted(t["node_id"] for t in taken) == ["a", "a.1"]
    assert sorted(i.path for i in two.next_items("w1")) == ["spool/a.1/w1/0.dcm",
                                                            "spool/a/w1/1.dcm"]  # fmt: skip
    assert ab.items_of("w1") != [] and b.items_of("w1") != []  # their own disks: not taken


def test_processes_is_a_count_or_auto(tmp_path):
    assert load(write(tmp_path, GOOD), env={}).node.processes == 1
    auto = GOOD.replace('data_dir = "data"', 'data_dir = "data"\nprocesses = "auto"')
    assert load(write(tmp_path, auto), env={}).node.processes == min(os.cpu_count() or 1, 64)
    for bad, problem in (('"many"', "must be an integer"), ("0", ">= 1"), ("65", "<= 64")):
        text = GOOD.replace('data_dir = "data"', f'data_dir = "data"\nprocesses = {bad}')
        failed = error(tmp_path, text)
        assert failed.key == "node.processes" and problem in str(failed)


def test_metrics_of_the_processes_add_up_by_name_and_labels():
    one = ('# HELP wolfpacs_received_total Instances\n# TYPE wolfpacs_received_total counter\n'
           'wolfpacs_received_total{side="outside"} 3.0\nwolfpacs_queued 2\n')  # fmt: skip
    two = ('# HELP wolfpacs_received_total Instances\n# TYPE wolfpacs_received_total counter\n'
           'wolfpacs_received_total{side="outside"} 4.0\n'
           'wolfpacs_received_total{side="inside"} 1.0\nwolfpacs_queued 5\n')  # fmt: skip
    summed = add_up([one, two]).splitlines()
    assert summed.count("# TYPE wolfpacs_received_total counter") == 1
    assert 'wolfpacs_received_total{side="outside"} 7' in summed
    assert 'wolfpacs_received_total{side="inside"} 1' in summed
    assert "wolfpacs_queued 7" in summed


def test_a_gauge_of_the_whole_node_is_not_counted_once_per_process():
    # Before: every gauge was added up, so with two processes a worker's state read 2, the free
    # disk twice the disk, and a large byte count came out rounded to six digits (1.23457e+11).
    def exposition(free: int, queued: int, oldest: float) -> str:
        return (
            "# TYPE wolfpacs_worker_state gauge\n"
            'wolfpacs_worker_state{worker="gpu-a",state="active"} 1.0\n'
            "# TYPE wolfpacs_disk_free_bytes gauge\n"
            f"wolfpacs_disk_free_bytes {free}.0\n"
            "# TYPE wolfpacs_queue_instances gauge\n"
            f'wolfpacs_queue_instances{{target="gpu-a",kind="worker"}} {queued}.0\n'
            "# TYPE wolfpacs_queue_oldest_seconds gauge\n"
            f'wolfpacs_queue_oldest_seconds{{target="gpu-a",kind="worker"}} {oldest}\n'
            "# TYPE wolfpacs_bytes counter\n"
            'wolfpacs_bytes_total{side="outside"} 123456789011.0\n'
        )

    summed = add_up([exposition(123456789012, 3, 2.5), exposition(123456789010, 4, 7.25)])
    lines = summed.splitlines()
    assert 'wolfpacs_worker_state{worker="gpu-a",state="active"} 1' in lines
    assert "wolfpacs_disk_free_bytes 123456789012" in lines  # the largest, in full
    assert 'wolfpacs_queue_instances{target="gpu-a",kind="worker"} 7' in lines  # each its own
    assert 'wolfpacs_queue_oldest_seconds{target="gpu-a",kind="worker"} 7.25' in lines
    assert 'wolfpacs_bytes_total{side="outside"} 246913578022' in lines


def test_each_process_may_queue_its_share_of_spool_max_bytes(tmp_path):
    # Before: every process enforced the whole limit, so the node could queue N times it.
    text = tmp_path / "wolfpacs.toml"
    text.write_text(f'[node]\ndata_dir = "{tmp_path}"\nnode_id = "n"\nprocesses = 3\n'
                    "spool_max_bytes = 1000\n")  # fmt: skip
    config = load(text, env={})
    shares = [child_config(config, i, 0).node.spool_max_bytes for i in (1, 2, 3)]
    assert shares == [333, 333, 333] and sum(shares) <= 1000
    unlimited = dataclasses.replace(
        config, node=dataclasses.replace(config.node, spool_max_bytes=0)
    )
    assert child_config(unlimited, 1, 0).node.spool_max_bytes == 0  # 0: no limit, still


def test_a_sqlite_file_another_process_holds_is_busy_not_broken(tmp_path, monkeypatch):
    # The processes of a node share state.sqlite3: a write lock held past the busy timeout is
    # an error for that one call, not a reason to reopen the file (it failed: "broken").
    monkeypatch.setattr(SQLiteStore, "BUSY_TIMEOUT", 0.1)
    store = SQLiteStore(tmp_path / "state.sqlite3", node_id="n.1")
    store.open()
    other = sqlite3.connect(tmp_path / "state.sqlite3", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # a sibling's transaction
    try:
        with pytest.raises(sqlite3.OperationalError) as failed:
            store.register_node(LONG)
        assert "locked" in str(failed.value) and not store.is_broken(failed.value)
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert store.register_node(LONG) == 1  # the lock gone, the same connection goes on
    assert store.is_broken(sqlite3.OperationalError("disk I/O error"))
    store.close()


def test_a_child_gets_sigterm_when_its_supervisor_is_killed(tmp_path):
    mark, up = tmp_path / "mark", tmp_path / "up"
    child = (
        "import signal, sys, time\n"
        "from wolfpacs.node.processes import stop_with_parent\n"
        f"signal.signal(signal.SIGTERM, lambda *_: (open({str(mark)!r}, 'w').write('term'), "
        "sys.exit(0)))\n"
        f"assert stop_with_parent()\nopen({str(up)!r}, 'w').write('up')\ntime.sleep(60)\n"
    )
    parent = subprocess.Popen(python(
        f"import subprocess, sys, time\nsubprocess.Popen([sys.executable, '-c', {child!r}])\n"
        "time.sleep(60)\n"
    ))  # fmt: skip
    try:
        wait_until(up.exists, timeout=30, what="the child up")
        parent.kill()  # kill -9: no forwarding, no goodbye
        parent.wait(10)
        # the file exists from its open(), its text only once written: wait for the text
        wait_until(lambda: mark.exists() and mark.read_text() == "term", timeout=10,
                   what="the orphan's SIGTERM")  # fmt: skip
    finally:
        parent.kill()


class Stub:
    """A process supervisor as the front sees it: its children's states."""

    def __init__(self, *states: str, escalated: str | None = None) -> None:
        self.states, self.escalated = states, escalated

    def which_children(self) -> list[dict[str, Any]]:
        return [{"id": str(n), "pid": 100 + n, "state": s, "restarts": 0, "last_exit": None}
                for n, s in enumerate(self.states, 1)]  # fmt: skip

    def count_children(self) -> dict[str, int]:
        return {s: self.states.count(s) for s in ("running", "restarting", "stopped")}

    def restarts(self) -> int:
        return 0


def test_the_front_refuses_what_it_cannot_answer_whole_and_says_why():
    node = NodeConfig(control_token="t" * 16, control_port=1)
    front = FrontControl(node, ChildControls(Stub("running", "restarting"), {}))  # type: ignore[arg-type]
    assert front.handle({"id": 1, "verb": "tree", "token": "wrong"}, tcp=True) == {
        "id": 1, "ok": False, "error": "unauthenticated"}  # fmt: skip
    queues = front.handle({"id": 2, "verb": "queues"})
    assert not queues["ok"] and "process 2 is restarting" in queues["error"]
    web = FrontWeb(node, Stub("restarting", escalated="too many"), {})  # type: ignore[arg-type]
    assert web.ready() == (False, {"status": "fail", "problems": ["no process is running"]})
    healthy, body = web.healthy()
    assert not healthy and body["problems"] == ["too many"]
    assert 'wolfpacs_processes{state="restarting"} 1' in web.metrics()


def test_a_child_whose_supervisor_died_before_it_looked_does_not_start(tmp_path):
    # Its supervisor killed between the fork and the child's first look: its parent is
    # already another (init); the pid it was given says so, its own parent id cannot.
    done = subprocess.run(
        [*child_argv(str(tmp_path / "none.toml"), 1, 1, "n")[:-1], "4194304"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 1 and "the process supervisor is gone" in done.stderr


def test_a_signal_during_the_handling_of_another_does_not_hang_the_stop():
    # The kernel's SIGTERM (its supervisor died) and a forwarded one, close together: the
    # second interrupting the main thread inside the first's Event.set() waited for ever on
    # the lock that set() held (an orphan found still serving after its run had ended).
    code = (
        "import signal, sys\n"
        "from wolfpacs.cli.signals import stop_on_signals\n"
        "stop = stop_on_signals()\n"
        "with stop._cond:  # as if interrupted inside set(), holding its lock\n"
        "    signal.raise_signal(signal.SIGTERM)\n"
        "sys.exit(0 if stop.wait(10) else 3)\n"
    )
    done = subprocess.run(python(code), capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
