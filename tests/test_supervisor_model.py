"""A hypothesis state machine: random crashes, stops and child operations against a model of OTP.

After every step the live tree must equal the model: which children exist
in which order, which run, which refs were replaced, how often each was
restarted, and whether the supervisor has given up.
"""

from __future__ import annotations

from dataclasses import dataclass

import pykka
import pytest
from hypothesis import event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from supervisors import (
    ChildNotFoundError,
    ChildRunningError,
    ChildSpec,
    ExitKind,
    Supervisor,
    join,
    kill,
)
from tests.probes import Journal, Probe

RESTART_TYPES = st.sampled_from(["permanent", "transient", "temporary"])


@dataclass
class ModelChild:
    restart: str
    running: bool = True
    generation: int = 1
    restarts: int = 0


class SupervisorModel:
    """OTP's supervisor semantics, as plain Python: what the real one must do."""

    def __init__(self, strategy: str, max_restarts: int) -> None:
        self.strategy = strategy
        self.max_restarts = max_restarts
        self.restarts_in_window = 0  # the window (an hour) never slides within one run
        self.children: dict[str, ModelChild] = {}  # insertion order is start order
        self.alive = True

    def add(self, cid: str, restart: str) -> None:
        self.children[cid] = ModelChild(restart)

    def exit(self, cid: str, abnormal: bool) -> None:
        child = self.children[cid]
        child.running = False
        if child.restart == "permanent" or (child.restart == "transient" and abnormal):
            self.restart(cid)
        elif child.restart == "temporary":
            del self.children[cid]

    def restart(self, cid: str) -> None:
        self.restarts_in_window += 1
        if self.restarts_in_window > self.max_restarts:
            self.terminate(list(self.children))
            self.alive = False
            return
        ids = list(self.children)
        if self.strategy == "one_for_one":
            ids = [cid]
        elif self.strategy == "rest_for_one":
            ids = ids[ids.index(cid) :]
        self.terminate(ids)
        for sid in ids:
            if sid in self.children:
                child = self.children[sid]
                child.running = True
                child.generation += 1
                child.restarts += 1

    def terminate(self, ids: list[str]) -> None:
        for sid in reversed(ids):
            self.children[sid].running = False
            if self.children[sid].restart == "temporary":
                del self.children[sid]


class SupervisorMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.journal = Journal()
        self.counter = 0
        self.seen: dict[str, tuple[int, pykka.ActorRef | None]] = {}

    def spec(self, cid: str, restart: str) -> ChildSpec:
        return ChildSpec(cid, lambda: Probe.start(cid, self.journal), restart=restart)

    def new_id(self) -> str:
        self.counter += 1
        return f"c{self.counter}"

    @initialize(
        strategy=st.sampled_from(["one_for_one", "one_for_all", "rest_for_one"]),
        max_restarts=st.integers(0, 5),
        initial=st.lists(RESTART_TYPES, max_size=4),
    )
    def start(self, strategy: str, max_restarts: int, initial: list[str]) -> None:
        self.model = SupervisorModel(strategy, max_restarts)
        specs = []
        for restart in initial:
            cid = self.new_id()
            self.model.add(cid, restart)
            specs.append(self.spec(cid, restart))
        self.sup = Supervisor.start(specs, strategy, max_restarts, 3600.0)
        self.proxy = self.sup.proxy()

    def running_ids(self) -> list[str]:
        return [cid for cid, c in self.model.children.items() if c.running]

    def ref_of(self, cid: str) -> pykka.ActorRef:
        return dict((i, r) for i, r, _ in self.proxy.which_children().get())[cid]

    def alive(self) -> bool:
        return self.model.alive

    # -- rules -----------------------------------------------------------------

    @precondition(alive)
    @rule(restart=RESTART_TYPES)
    def start_child(self, restart: str) -> None:
        cid = self.new_id()
        self.proxy.start_child(self.spec(cid, restart)).get()
        self.model.add(cid, restart)

    @precondition(lambda self: self.model.alive and self.running_ids())
    @rule(data=st.data(), abnormal=st.booleans())
    def child_exits(self, data: st.DataObject, abnormal: bool) -> None:
        cid = data.draw(st.sampled_from(self.running_ids()), label="child")
        ref = self.ref_of(cid)
        if abnormal:
            kill(ref)
        else:
            ref.tell("finish")
        reason = join(ref, timeout=10)
        assert reason is not None and reason.abnormal == abnormal
        self.model.exit(cid, abnormal)

    @precondition(alive)
    @rule(data=st.data())
    def terminate_child(self, data: st.DataObject) -> None:
        cid = data.draw(st.sampled_from([*self.model.children, "ghost"]), label="child")
        if cid == "ghost":
            with pytest.raises(ChildNotFoundError):
                self.proxy.terminate_child(cid).get()
            return
        self.proxy.terminate_child(cid).get()
        self.model.terminate([cid])

    @precondition(alive)
    @rule(data=st.data())
    def restart_child(self, data: st.DataObject) -> None:
        cid = data.draw(st.sampled_from([*self.model.children, "ghost"]), label="child")
        child = self.model.children.get(cid)
        if child is None:
            with pytest.raises(ChildNotFoundError):
                self.proxy.restart_child(cid).get()
        elif child.running:
            with pytest.raises(ChildRunningError):
                self.proxy.restart_child(cid).get()
        else:
            self.proxy.restart_child(cid).get()
            child.running, child.generation = True, child.generation + 1

    @precondition(alive)
    @rule(data=st.data())
    def delete_child(self, data: st.DataObject) -> None:
        cid = data.draw(st.sampled_from([*self.model.children, "ghost"]), label="child")
        child = self.model.children.get(cid)
        if child is None:
            with pytest.raises(ChildNotFoundError):
                self.proxy.delete_child(cid).get()
        elif child.running:
            with pytest.raises(ChildRunningError):
                self.proxy.delete_child(cid).get()
        else:
            self.proxy.delete_child(cid).get()
            del self.model.children[cid]

    @rule()
    def look(self) -> None:
        """Always possible, so that a run goes on (and is checked) after a give-up."""

    # -- the tree equals the model ---------------------------------------------

    @invariant()
    def tree_matches_model(self) -> None:
        event(f"strategy {self.model.strategy}, alive {self.model.alive}")
        if not self.model.alive:
            reason = join(self.sup, timeout=10)
            assert reason is not None and reason.kind is ExitKind.ERROR
            assert reason.summary == "reached_max_restart_intensity"
            for _generation, ref in self.seen.values():
                assert ref is None or join(ref, timeout=10) is not None
            return
        tree = self.proxy.describe().get()
        assert [c["id"] for c in tree["children"]] == list(self.model.children)
        assert tree["restarts_in_window"] == self.model.restarts_in_window
        live = dict((i, r) for i, r, _ in self.proxy.which_children().get())
        for info in tree["children"]:
            cid, model = info["id"], self.model.children[info["id"]]
            ref = live[cid]
            assert (ref is not None) == model.running == info["alive"], cid
            assert info["restarts"] == model.restarts, cid
            old_generation, old_ref = self.seen.get(cid, (0, None))
            if model.generation == old_generation and ref is not None and old_ref is not None:
                assert ref is old_ref, f"{cid} replaced without a restart"
            if model.generation != old_generation and ref is not None:
                assert ref is not old_ref, f"{cid} not replaced"
            self.seen[cid] = (model.generation, ref)

    def teardown(self) -> None:
        if self.model.alive:
            self.sup.stop()


SupervisorMachine.TestCase.settings = settings(
    max_examples=100, stateful_step_count=30, deadline=None
)
TestSupervisorModel = SupervisorMachine.TestCase
