"""The private parts of pykka that supervisors/ relies on are still what it was written against.

``supervisors/_actor.py`` wraps four private methods of ``pykka.Actor``
(the only places that see every way an actor can end) and
``supervisors/_supervisor.py`` reads an inbox's size. setup.cfg pins pykka
to the minor versions these were checked on; this test says plainly when a
pykka release has moved them, instead of letting supervision fail quietly.
"""

from __future__ import annotations

import inspect
from importlib.metadata import version

import pykka
import pytest

from supervisors import SupervisedActor

# name -> its parameters, as pykka 4.1 to 4.5 define them
HOOKS = {
    "_actor_loop": ["self"],
    "_actor_loop_setup": ["self"],
    "_handle_failure": ["self", "exception_type", "exception_value", "traceback"],
    "_handle_receive": ["self", "message"],
}


@pytest.mark.parametrize("name", sorted(HOOKS))
def test_the_private_pykka_methods_supervisors_wraps_are_unchanged(name):
    where = f"pykka {version('pykka')}: Actor.{name}"
    hook = getattr(pykka.Actor, name, None)
    assert callable(hook), (
        f"{where} is gone; supervisors/_actor.py overrides it. Read pykka's _actor.py, move "
        "the override to what replaced it, then update this test and the pin in setup.cfg."
    )
    parameters = list(inspect.signature(hook).parameters)
    assert parameters == HOOKS[name], (
        f"{where} now takes {parameters}, not {HOOKS[name]}; supervisors/_actor.py overrides "
        "it. Check the override against pykka's source, then update this test and the pin."
    )
    assert name in vars(SupervisedActor), f"SupervisedActor no longer overrides {name}"


def test_an_actors_inbox_still_tells_its_size():
    class Idle(pykka.ThreadingActor):
        pass

    ref = Idle.start()
    try:
        assert callable(getattr(ref.actor_inbox, "qsize", None)), (
            f"pykka {version('pykka')}: ActorRef.actor_inbox has no qsize(); "
            "supervisors/_supervisor.py reads it for each actor's mailbox in describe()"
        )
    finally:
        ref.stop()
