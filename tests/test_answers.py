"""The answers the README promises: 0x0110 for an unexpected error, and a stop that answers."""

from __future__ import annotations

import threading

from tests.conftest import wait_until
from wolfpacs.dicom.status import Status
from wolfpacs.node.receiver import Receiver


def test_an_unexpected_error_is_answered_0x0110_and_the_association_goes_on(
    world, monkeypatch, caplog
):
    route = Receiver._route
    calls = []

    def route_with_a_bug(self: Receiver, tags):
        calls.append(tags)
        if len(calls) == 1:
            raise KeyError("a bug")
        return route(self, tags)

    monkeypatch.setattr(Receiver, "_route", route_with_a_bug)
    w = world()
    files = w.study("s", series=1, per_series=3)
    assert w.send(files) == [Status.PROCESSING_FAILURE, 0, 0]
    assert "refused (0x0110): unexpected error" in caplog.text
    assert "KeyError: 'a bug'" in caplog.text  # with its traceback, for the operator
    wait_until(lambda: w.delivered() == 2)
    assert list(w.node.spool.incoming.glob("*.dcm")) == []  # nothing of it kept


def test_a_stopping_node_answers_the_c_store_in_progress(world, monkeypatch):
    take = Receiver._take
    inside, release, receivers = threading.Event(), threading.Event(), []

    def slow_take(self: Receiver, *args: object) -> object:
        if not receivers:
            receivers.append(self)
            inside.set()
            release.wait(20)
        return take(self, *args)

    monkeypatch.setattr(Receiver, "_take", slow_take)
    w = world()
    files = w.study("s", series=1, per_series=2)
    statuses: list[int] = []
    sender = threading.Thread(target=lambda: statuses.extend(w.send(files)))
    sender.start()
    assert inside.wait(10)
    stopping = threading.Thread(target=w.node.stop)
    stopping.start()
    wait_until(lambda: receivers[0]._stopping, what="the receiver is asked to stop")
    release.set()
    stopping.join(30)
    sender.join(30)
    # The first C-STORE was answered; the association was aborted before the second.
    assert statuses[:1] == [0] and not stopping.is_alive()
    # Acknowledged, so kept: delivered while the node stopped, or after its next start.
    assert w.delivered() + len(w.node.spool.queued_files()) == 1
    w.restart()
    wait_until(lambda: w.delivered() == 1)
