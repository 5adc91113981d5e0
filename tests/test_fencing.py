"""One owner per file: a sender its supervisor gave up on changes nothing under its successor."""

from __future__ import annotations

import dataclasses
import logging
import threading

import pytest

from tests.conftest import wait_until
from wolfpacs.dicom.association import Association
from wolfpacs.node import Node
from wolfpacs.node.fence import Fences, StaleGenerationError
from wolfpacs.node.sender import Sender
from wolfpacs.testing.peers import dataset_digest


def test_a_fence_is_stale_once_a_newer_generation_is_issued():
    fences = Fences()
    first = fences.issue("sender:gpu-a")
    first.check()
    fences.issue("sender:gpu-b").check()  # other names do not matter
    first.check()
    second = fences.issue("sender:gpu-a")
    second.check()
    with pytest.raises(StaleGenerationError, match="generation 1 is stale"):
        first.check()


def test_an_abandoned_sender_changes_nothing_and_its_successor_delivers_intact(
    world, monkeypatch, caplog
):
    # A send stuck where an abort cannot reach it (a hung disk read): the supervisor
    # gives up on the sender after its shutdown time and starts another.
    monkeypatch.setattr(Sender, "interrupt", lambda self: None)
    spec = Node.sender_spec
    monkeypatch.setattr(
        Node, "sender_spec", lambda node, t: dataclasses.replace(spec(node, t), shutdown=0.2)
    )
    stuck, release, stale = threading.Event(), threading.Event(), []
    send_dataset = Association._send_dataset

    def first_send_sticks(assoc: Association, *args: object) -> None:
        if not stale:  # the file is open and its first megabyte read: the rest comes later
            stale.append((threading.current_thread(), assoc.called_ae))
            stuck.set()
            release.wait(30)
        send_dataset(assoc, *args)

    monkeypatch.setattr(Association, "_send_dataset", first_send_sticks)
    w = world()
    first = w.study("first", series=1, per_series=3, rows=1024, columns=1024)  # 2 MiB each
    assert w.send(first) == [0] * 3
    assert stuck.wait(10)
    thread, worker_ae = stale[0]
    worker = next(t for t in w.config.workers if t.ae_title == worker_ae)
    name = f"sender:{worker.name}"
    senders = w.node.registry.whereis("senders")
    caplog.set_level(logging.INFO)
    senders.proxy().terminate_child(name).get(timeout=10)
    assert "abandoned" in caplog.text and thread.is_alive()
    senders.proxy().restart_child(name).get(timeout=10)

    wait_until(lambda: w.delivered() == 3, what="the successor delivers the first study")
    # The successor's delivered files are written over by the next study's receives;
    # the one the stale sender still reads must not be among them.
    second = w.study("second", series=1, per_series=3, rows=1024, columns=1024)
    assert w.send(second) == [0] * 3
    wait_until(lambda: w.delivered() == 6, what="the second study delivered")
    release.set()
    thread.join(10)
    assert not thread.is_alive()
    wait_until(lambda: w.delivered() == 7, what="the stale sender's send arrives")

    sent = {dataset_digest(p) for p in first + second}
    received = [item.digest for wk in w.workers for item in wk.received]
    assert set(received) == sent, "a dataset arrived that nobody sent"
    assert "StaleGenerationError" in caplog.text  # it crashed: no silent success
    assert list(w.node.spool.dead.iterdir()) == []
    assert w.node.store.queue_stats().get(worker.name, {}).get("queued", 0) == 0
    assert w.node.registry.whereis(name).is_alive()  # the successor goes on: the stale
    assert senders.is_alive()  # crash restarted nothing
