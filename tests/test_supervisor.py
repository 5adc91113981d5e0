"""One test per OTP rule: strategies, restart types, intensity, escalation, dynamic children."""

from __future__ import annotations

import json
import logging
import math
import threading

import pykka
import pytest

from supervisors import (
    ChildAlreadyPresentError,
    ChildAlreadyStartedError,
    ChildNotFoundError,
    ChildRunningError,
    ChildSpec,
    ExitKind,
    InvalidSpecError,
    LinkedThreadError,
    StartError,
    SupervisedActor,
    Supervisor,
    join,
    kill,
)
from tests.probes import Journal, Probe, probe


@pytest.fixture
def journal() -> Journal:
    return Journal()


def refs(sup: pykka.ActorRef) -> dict[str, pykka.ActorRef | None]:
    return {cid: ref for cid, ref, _ in sup.proxy().which_children().get()}


def crash(sup: pykka.ActorRef, child_id: str) -> pykka.ActorRef:
    """Kill one child, wait for its thread to end; the supervisor has its exit in the inbox."""
    ref = refs(sup)[child_id]
    kill(ref)
    assert join(ref, timeout=10) is not None
    return ref


def test_children_start_left_to_right_and_stop_right_to_left(journal):
    sup = Supervisor.start([probe(n, journal) for n in "abc"])
    assert journal.events("start") == ["a", "b", "c"]
    children = refs(sup)
    sup.stop()
    assert journal.events("stop") == ["c", "b", "a"]
    # stop() returned only after every child's thread had ended
    assert all(join(ref, timeout=0) is not None for ref in children.values())


def test_one_for_one_restarts_only_the_crashed_child(journal):
    sup = Supervisor.start([probe(n, journal) for n in "abc"], strategy="one_for_one")
    before = refs(sup)
    journal.clear()
    crash(sup, "b")
    after = refs(sup)
    assert after["a"] is before["a"] and after["c"] is before["c"]
    assert after["b"] is not before["b"] and after["b"].is_alive()
    assert journal.events() == [("start", "b")]


def test_one_for_all_stops_the_others_in_reverse_then_starts_all_in_order(journal):
    sup = Supervisor.start([probe(n, journal) for n in "abcd"], strategy="one_for_all")
    before = refs(sup)
    journal.clear()
    crash(sup, "b")
    after = refs(sup)
    assert all(after[n] is not before[n] for n in "abcd")
    assert journal.events() == [
        ("stop", "d"), ("stop", "c"), ("stop", "a"),
        ("start", "a"), ("start", "b"), ("start", "c"), ("start", "d"),
    ]  # fmt: skip


def test_rest_for_one_restarts_the_crashed_child_and_those_after_it(journal):
    sup = Supervisor.start([probe(n, journal) for n in "abcd"], strategy="rest_for_one")
    before = refs(sup)
    journal.clear()
    crash(sup, "b")
    after = refs(sup)
    assert after["a"] is before["a"]
    assert all(after[n] is not before[n] for n in "bcd")
    assert journal.events() == [
        ("stop", "d"), ("stop", "c"), ("start", "b"), ("start", "c"), ("start", "d"),
    ]  # fmt: skip


def test_permanent_child_is_restarted_even_after_a_normal_exit(journal):
    sup = Supervisor.start([probe("a", journal, restart="permanent")])
    old = refs(sup)["a"]
    old.tell("finish")
    assert join(old, timeout=10).kind is ExitKind.NORMAL
    assert refs(sup)["a"] is not old and refs(sup)["a"].is_alive()


def test_transient_child_is_restarted_only_after_an_abnormal_exit(journal):
    sup = Supervisor.start([probe("a", journal, restart="transient")])
    crashed = crash(sup, "a")
    assert join(crashed).kind is ExitKind.ERROR
    restarted = refs(sup)["a"]
    assert restarted is not None and restarted is not crashed
    restarted.tell("finish")
    join(restarted, timeout=10)
    assert refs(sup) == {"a": None}  # spec kept, not restarted
    assert sup.proxy().count_children().get() == {
        "specs": 1, "active": 0, "supervisors": 0, "workers": 1,
    }  # fmt: skip


def test_temporary_child_is_never_restarted_and_its_spec_is_deleted(journal):
    sup = Supervisor.start([probe("a", journal), probe("t", journal, restart="temporary")])
    crash(sup, "t")
    assert list(refs(sup)) == ["a"]


def test_restart_intensity_exceeded_stops_all_children_and_exits_abnormally(journal, caplog):
    caplog.set_level(logging.INFO, logger="supervisors")
    sup = Supervisor.start(
        [probe(n, journal) for n in "ab"], max_restarts=2, max_seconds=60, name="top"
    )
    crash(sup, "a")
    crash(sup, "a")
    survivor = refs(sup)["b"]
    crash(sup, "a")  # the third restart within the window is one too many
    reason = join(sup, timeout=10)
    assert reason.kind is ExitKind.ERROR and reason.summary == "reached_max_restart_intensity"
    assert join(survivor, timeout=0) is not None
    assert journal.events("stop")[-1] == "b"
    lines = [r.getMessage() for r in caplog.records if r.name == "supervisors"]
    restarts = [line for line in lines if "restarting worker child 'a'" in line]
    assert len(restarts) == 2 and "(1 of max 2" in restarts[0] and "(2 of max 2" in restarts[1]
    assert any("giving up: 3 restarts in 60.0 s exceeds max_restarts=2" in line for line in lines)


def test_escalation_through_two_levels(journal):
    def mid() -> pykka.ActorRef:
        return Supervisor.start([probe("w", journal)], max_restarts=1, max_seconds=60, name="mid")

    root = Supervisor.start(
        [ChildSpec("mid", mid, type="supervisor"), probe("other", journal)],
        max_restarts=1,
        max_seconds=60,
        name="root",
    )

    def crash_worker() -> None:
        worker = refs(refs(root)["mid"])["w"]
        kill(worker)
        join(worker, timeout=10)

    first_mid = refs(root)["mid"]
    crash_worker()
    crash_worker()  # mid's second restart: mid gives up
    assert join(first_mid, timeout=10).summary == "reached_max_restart_intensity"
    second_mid = refs(root)["mid"]  # root restarted mid (its first restart)
    assert second_mid is not first_mid and second_mid.is_alive()
    assert refs(second_mid)["w"].is_alive()
    crash_worker()
    crash_worker()  # mid gives up again: root's second restart is over its limit
    assert join(root, timeout=10).summary == "reached_max_restart_intensity"
    assert journal.events("stop")[-1] == "other"


def test_dynamic_children(journal):
    sup = Supervisor.start([probe("a", journal)]).proxy()
    ref_b = sup.start_child(probe("b", journal)).get()
    assert ref_b.proxy().ping().get() == "b"
    assert [cid for cid, _, _ in sup.which_children().get()] == ["a", "b"]

    with pytest.raises(ChildAlreadyStartedError) as started:
        sup.start_child(probe("b", journal)).get()
    assert started.value.ref is ref_b
    with pytest.raises(ChildRunningError):
        sup.delete_child("b").get()
    with pytest.raises(ChildRunningError):
        sup.restart_child("b").get()

    sup.terminate_child("b").get()
    assert join(ref_b, timeout=0) is not None  # terminated means stopped, not stopping
    assert sup.count_children().get() == {"specs": 2, "active": 1, "supervisors": 0, "workers": 2}
    with pytest.raises(ChildAlreadyPresentError):
        sup.start_child(probe("b", journal)).get()

    again = sup.restart_child("b").get()
    assert again is not ref_b and again.is_alive()
    sup.terminate_child("b").get()
    sup.delete_child("b").get()
    assert [cid for cid, _, _ in sup.which_children().get()] == ["a"]

    for call in (sup.terminate_child, sup.restart_child, sup.delete_child):
        with pytest.raises(ChildNotFoundError):
            call("nope").get()
    # none of those errors hurt the supervisor
    assert sup.count_children().get()["active"] == 1


def test_terminating_a_temporary_child_deletes_its_spec(journal):
    sup = Supervisor.start([probe("t", journal, restart="temporary")]).proxy()
    sup.terminate_child("t").get()
    assert sup.which_children().get() == []


def test_a_child_that_overruns_its_shutdown_time_is_abandoned_and_logged(journal, caplog):
    release = threading.Event()
    spec = ChildSpec("slow", lambda: Probe.start("slow", journal, hold_stop=release), shutdown=0.2)
    sup = Supervisor.start([spec], name="s")
    slow = refs(sup)["slow"]
    sup.proxy().terminate_child("slow").get(timeout=5)
    assert join(slow, timeout=0) is None  # still inside on_stop: abandoned, not waited for
    assert "child 'slow' did not stop within 0.2 s; abandoned" in caplog.text
    assert refs(sup) == {"slow": None}
    release.set()
    assert join(slow, timeout=10) is not None


def test_a_child_that_fails_to_start_fails_the_supervisor_start(journal):
    specs = [probe("a", journal), probe("b", journal), probe("c", journal, fail_start=True)]
    with pytest.raises(StartError, match="child 'c'"):
        Supervisor.start(specs)
    assert journal.events() == [("start", "a"), ("start", "b"), ("stop", "b"), ("stop", "a")]


def test_a_failed_restart_is_retried_through_the_inbox_and_counted(journal):
    attempts = {"n": 0}

    def flaky() -> pykka.ActorRef:
        attempts["n"] += 1
        return Probe.start("f", journal, fail_start=attempts["n"] in (2, 3))

    sup = Supervisor.start([ChildSpec("f", flaky)], max_restarts=5, max_seconds=60)
    first = refs(sup)["f"]
    crash(sup, "f")
    # restart 1 and its retry 2 fail, the third attempt starts it
    from tests.conftest import wait_until

    new = wait_until(lambda: refs(sup)["f"])
    assert new is not first and attempts["n"] == 4
    info = sup.proxy().describe().get()
    assert info["restarts_in_window"] == 3 and info["children"][0]["restarts"] == 3


def test_a_start_callable_not_returning_a_supervised_actor_is_a_start_error(journal):
    class Plain(pykka.ThreadingActor):
        pass

    with pytest.raises(StartError, match="not the ref of a SupervisedActor"):
        Supervisor.start([ChildSpec("p", Plain.start)])


def test_a_dying_linked_thread_crashes_its_actor(journal):
    class Owner(SupervisedActor):
        def on_start(self) -> None:
            self.go = threading.Event()
            self.start_thread(self.work, name="worker-thread")

        def work(self) -> None:
            self.go.wait()
            raise OSError("socket gone")

        def trigger(self) -> None:
            self.go.set()

    sup = Supervisor.start([ChildSpec("o", Owner.start)])
    owner = refs(sup)["o"]
    owner.proxy().trigger().get()
    reason = join(owner, timeout=10)
    assert reason.kind is ExitKind.ERROR and LinkedThreadError.__name__ in reason.summary
    assert "OSError: socket gone" in reason.detail
    assert refs(sup)["o"] is not owner


def test_an_exception_in_an_ask_goes_to_the_caller_and_the_child_lives_on(journal):
    class Asked(SupervisedActor):
        def fail(self) -> None:
            raise KeyError("bad request")

    sup = Supervisor.start([ChildSpec("q", Asked.start)])
    child = refs(sup)["q"]
    with pytest.raises(KeyError):
        child.proxy().fail().get()
    assert child.is_alive() and refs(sup)["q"] is child


def test_on_start_failure_is_a_start_error_with_the_traceback():
    with pytest.raises(StartError) as failed:
        Probe.start("x", Journal(), fail_start=True)
    assert "RuntimeError: x refuses to start" in failed.value.reason.detail


def test_describe_is_plain_data_of_the_whole_tree(journal):
    def mid() -> pykka.ActorRef:
        return Supervisor.start([probe("w", journal)], name="mid")

    root = Supervisor.start(
        [ChildSpec("mid", mid, type="supervisor"), probe("a", journal)], name="root"
    )
    crash(root, "a")
    tree = root.proxy().describe().get()
    json.dumps(tree)  # plain data only
    assert tree["id"] == "root" and tree["strategy"] == "one_for_one"
    mid_info, a_info = tree["children"]
    assert mid_info["type"] == "supervisor" and mid_info["name"] == "mid"
    assert mid_info["children"][0]["id"] == "w" and mid_info["children"][0]["alive"]
    assert a_info["restarts"] == 1 and a_info["last_exit"].startswith("error: Killed")
    assert a_info["mailbox"] == 0 and a_info["uptime"] >= 0 and a_info["class"] == "Probe"


def test_stopping_the_root_stops_the_whole_tree_before_returning(journal):
    def branch(name: str) -> ChildSpec:
        kids = [probe(f"{name}{i}", journal) for i in range(3)]
        return ChildSpec(name, lambda: Supervisor.start(kids, name=name), type="supervisor")

    root = Supervisor.start([branch("x"), branch("y")])
    leaves = [ref for sub in refs(root).values() for ref in refs(sub).values()]
    assert root.stop() is True
    assert all(join(ref, timeout=0) is not None for ref in leaves)
    assert journal.events("stop") == ["y2", "y1", "y0", "x2", "x1", "x0"]


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"id": ""}, "child_id"),
        ({"start": "not callable"}, "start"),
        ({"restart": "sometimes"}, "restart"),
        ({"shutdown": -1}, "shutdown"),
        ({"shutdown": "brutal_kill"}, "shutdown"),
        ({"type": "manager"}, "child_type"),
    ],
)
def test_child_spec_validation_names_the_bad_field(kwargs, field):
    spec = {"id": "ok", "start": lambda: None, **kwargs}
    with pytest.raises(InvalidSpecError) as bad:
        ChildSpec(**spec)
    assert bad.value.field == field


def test_supervisor_default_shutdown_is_infinity_and_worker_five_seconds():
    assert ChildSpec("s", lambda: None, type="supervisor").shutdown == math.inf
    assert ChildSpec("w", lambda: None).shutdown == 5.0


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"strategy": "one_for_some"}, "strategy"),
        ({"max_restarts": -1}, "intensity"),
        ({"max_seconds": 0}, "period"),
    ],
)
def test_supervisor_flag_validation_names_the_bad_flag(kwargs, field):
    with pytest.raises(InvalidSpecError) as bad:
        Supervisor.start([], **kwargs)
    assert bad.value.field == field


def test_duplicate_child_ids_are_rejected(journal):
    with pytest.raises(InvalidSpecError) as bad:
        Supervisor.start([probe("a", journal), probe("a", journal)])
    assert bad.value.field == "duplicate_child_name"
    assert journal.events() == []


def test_the_package_stands_alone_with_only_pykka():
    import subprocess
    import sys

    code = (
        "import sys, supervisors\n"
        "extra = [m for m in sys.modules if m.split('.')[0] in "
        "('wolfpacs', 'pynetdicom', 'pydicom', 'msgpack')]\n"
        "assert not extra, extra\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


class Blocker(SupervisedActor):
    """Blocks in a told message until released; its interrupt may release it."""

    def __init__(self, registry, release: threading.Event, interruptible: bool) -> None:
        super().__init__()
        self.registry, self.release, self.interruptible = registry, release, interruptible

    def on_start(self) -> None:
        self.registry.register("blocker", self.actor_ref)

    def on_receive(self, message):
        if message == "block":
            self.release.wait(30)

    def interrupt(self) -> None:
        if self.interruptible:
            self.release.set()


def test_an_overdue_stop_interrupts_the_child_before_abandoning_it():
    from supervisors import Registry

    registry, release = Registry(), threading.Event()
    spec = ChildSpec("b", lambda: Blocker.start(registry, release, True), shutdown=0.1)
    sup = Supervisor.start([spec]).proxy()
    blocker = registry.whereis("blocker")
    blocker.tell("block")
    sup.terminate_child("b").get(timeout=10)
    assert join(blocker, timeout=0) is not None  # interrupted, then it stopped: not abandoned
    assert sup.describe().get()["children"][0]["last_exit"] == "shutdown"


def test_an_abandoned_child_leaves_its_name_to_its_successor(caplog):
    from supervisors import Registry

    registry, release = Registry(), threading.Event()
    spec = ChildSpec("b", lambda: Blocker.start(registry, release, False), shutdown=0.1)
    sup = Supervisor.start([spec]).proxy()
    stuck = registry.whereis("blocker")
    stuck.tell("block")
    sup.terminate_child("b").get(timeout=10)
    assert "abandoned" in caplog.text and stuck.is_alive()
    successor = sup.restart_child("b").get(timeout=10)
    assert registry.whereis("blocker") is successor
    release.set()
    join(stuck, timeout=10)
    assert registry.whereis("blocker") is successor  # the old one's exit frees nothing of it


def test_a_fatal_error_in_an_ask_reaches_the_caller_then_crashes_the_actor():
    class Disk(SupervisedActor):
        fatal_errors = (OSError,)

        def write(self) -> None:
            raise OSError("disk I/O error")

    sup = Supervisor.start([ChildSpec("d", Disk.start)])
    disk = refs(sup)["d"]
    with pytest.raises(OSError, match="disk I/O error"):
        disk.proxy().write().get()
    reason = join(disk, timeout=10)
    assert reason.kind is ExitKind.ERROR and "fatal OSError" in reason.summary
    assert refs(sup)["d"] is not disk


def test_on_failure_runs_when_on_start_fails():
    cleaned = threading.Event()

    class HalfStarted(SupervisedActor):
        def on_start(self) -> None:
            raise OSError("port in use")

        def on_failure(self, *_exc_info) -> None:
            cleaned.set()

    with pytest.raises(StartError, match="port in use"):
        HalfStarted.start()
    assert cleaned.is_set()
