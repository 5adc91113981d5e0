"""Names that follow an actor through its restarts."""

from __future__ import annotations

import threading

import pytest

from supervisors import (
    ChildSpec,
    NameTakenError,
    Registry,
    SupervisedActor,
    Supervisor,
    UnavailableError,
    join,
    kill,
)


class Named(SupervisedActor):
    def __init__(self, registry: Registry, gate: threading.Event | None = None) -> None:
        super().__init__()
        self.registry = registry
        self.gate = gate
        self.calls = 0

    def on_start(self) -> None:
        if self.gate is not None:
            self.gate.wait()
        self.registry.register("named", self.actor_ref)

    def bump(self, by: int = 1) -> int:
        self.calls += by
        return self.calls


def test_a_name_is_freed_when_its_actor_ends():
    registry = Registry()
    ref = Named.start(registry)
    assert registry.whereis("named") is ref
    ref.stop()
    join(ref, timeout=10)
    assert registry.whereis("named") is None


def test_a_live_actor_keeps_its_name():
    registry = Registry()
    Named.start(registry)
    with pytest.raises(Exception) as failed:
        Named.start(registry)
    assert "NameTakenError" in str(failed.value)
    assert isinstance(NameTakenError("x"), RuntimeError)


def test_call_follows_the_name_through_a_restart():
    registry = Registry()
    sup = Supervisor.start([ChildSpec("n", lambda: Named.start(registry))])
    first = registry.whereis("named")
    assert registry.call("named", "bump", 2) == 2
    kill(first)
    join(first, timeout=10)
    # the restarted actor starts from scratch under the same name
    assert registry.call("named", "bump") == 1
    assert registry.whereis("named") is not first
    sup.stop()


def test_call_waits_for_a_slow_restart_and_gives_up_at_its_timeout():
    registry = Registry()
    gate = threading.Event()
    with pytest.raises(UnavailableError):
        registry.call("named", "bump", timeout=0.05)
    starter = threading.Thread(target=lambda: Named.start(registry, gate))
    starter.start()
    result: list[int] = []
    caller = threading.Thread(target=lambda: result.append(registry.call("named", "bump")))
    caller.start()
    gate.set()  # the actor registers only now; the waiting call must reach it
    caller.join(10)
    starter.join(10)
    assert result == [1]


def test_errors_of_the_method_reach_the_caller_unchanged():
    registry = Registry()
    Named.start(registry)
    with pytest.raises(TypeError):
        registry.call("named", "bump", "not a number")
    assert registry.call("named", "bump") == 1


def test_call_runs_meanwhile_once_while_the_actor_works():
    registry = Registry()
    gate = threading.Event()

    class Slow(Named):
        def bump(self, by: int = 1) -> int:
            assert gate.wait(10)  # the call's answer waits for the caller's meanwhile
            return super().bump(by)

    ref = Slow.start(registry)
    ran = []
    assert registry.call("named", "bump", 3, meanwhile=lambda: (ran.append(1), gate.set())) == 3
    assert ran == [1]

    def fails() -> None:
        raise OSError("disk")

    with pytest.raises(OSError, match="disk"):
        registry.call("named", "bump", meanwhile=fails)
    ref.stop()
