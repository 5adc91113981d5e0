"""Every operator verb against a running in-process node, and the control socket itself."""

from __future__ import annotations

import socket

import msgpack
import pytest
from pydicom import dcmread

from supervisors import join
from tests.conftest import wait_until
from wolfpacs.ops.admin import AdminError
from wolfpacs.ops.control import ControlClient, ControlError
from wolfpacs.testing.peers import SimulatedWorker


def study_uid(files) -> str:
    return str(dcmread(files[0], stop_before_pixels=True).StudyInstanceUID)


def held_by(w, uid: str) -> set[str]:
    return {wk.ae_title for wk in w.workers for item in wk.received if item.study_uid == uid}


def test_tree_inspect_and_names(world):
    w = world()
    tree = w.admin("tree")
    assert tree["id"] == "wolfpacs" and [c["id"] for c in tree["children"]][-2:] == [
        "control",
        "web",
    ]
    router = w.admin("inspect", actor="router")
    assert router["class"] == "Router" and "decisions" in router["state"]
    assert w.admin("inspect", actor="senders")["state"]["strategy"] == "one_for_one"
    names = w.admin("names")
    assert {"router", "store", "sender:gpu-1", "wolfpacs"} <= set(names["actors"])
    assert names["workers"] == ["gpu-1", "gpu-2"] and names["clients"] == ["demo-hospital"]
    with pytest.raises(AdminError, match="no actor 'nobody'"):
        w.admin("inspect", actor="nobody")
    with pytest.raises(AdminError, match="unknown verb"):
        w.admin("frobnicate")
    with pytest.raises(AdminError, match="bad arguments"):
        w.admin("inspect")


def test_workers_clients_destinations_studies_study_queues_stats(world):
    w = world()
    for wk in w.workers:
        wk.stop()  # nothing leaves: the queue shows it
    files = w.study("s", series=1, per_series=3)
    assert w.send(files) == [0, 0, 0]
    uid = study_uid(files)
    workers = {row["name"]: row for row in w.admin("workers")}
    busy = next(row for row in workers.values() if row["queued"])
    assert busy["queued"] == 3 and busy["open_studies"] == 1 and busy["state"] in ("active", "down")
    assert w.admin("clients")[0]["open_studies"] == 1
    assert w.admin("destinations")[0]["name"] == "demo-pacs"
    (study,) = w.admin("studies", client="demo-hospital")
    assert study["study_uid"] == uid and study["instances_in"] == 3
    assert [s["queued"] for s in w.admin("study", uid=uid)] == [{busy["name"]: 3}]
    with pytest.raises(AdminError, match="no study"):
        w.admin("study", uid="9.9.9")
    (queue,) = w.admin("queues")
    assert queue["target"] == busy["name"] and queue["instances"] == 3 and queue["bytes"] > 0
    counters = w.admin("stats")["counters"]
    assert counters["wolfpacs_instances_total{direction=in,peer=demo-hospital,side=outside}"] == 3
    assert counters["wolfpacs_associations_total{outcome=accepted,side=outside}"] == 1


def test_drain_keeps_open_studies_and_sends_new_ones_elsewhere(world):
    w = world()
    first = w.study("first", series=1, per_series=4)
    assert w.send(first[:2]) == [0, 0]
    wait_until(lambda: w.delivered() == 2)
    (home,) = held_by(w, study_uid(first))
    worker = {"GPU_A": "gpu-1", "GPU_B": "gpu-2"}[home]
    w.admin("drain", worker=worker)
    assert w.send(first[2:]) == [0, 0]  # the open study finishes where it is
    for n in range(3):
        assert w.send(w.study(f"new{n}", series=1, per_series=1)) == [0]
    wait_until(lambda: w.delivered() == 7)
    assert held_by(w, study_uid(first)) == {home}
    assert all(len(held_by(w, uid)) == 1 and home not in held_by(w, uid)
               for uid in w.at_workers() if uid != study_uid(first))  # fmt: skip
    state = next(r["state"] for r in w.admin("workers") if r["name"] == worker)
    assert state == "draining"  # its study was active within study_idle_timeout
    w.admin("resume", worker=worker)
    assert next(r["state"] for r in w.admin("workers") if r["name"] == worker) == "active"
    with pytest.raises(AdminError, match="no worker"):
        w.admin("drain", worker="gpu-9")


def test_drained_when_idle_and_empty(world):
    w = world(study_idle_timeout=0.0)
    w.admin("drain", worker="gpu-1")
    assert next(r["state"] for r in w.admin("workers") if r["name"] == "gpu-1") == "drained"


def test_move_hands_queued_instances_on_and_reports_the_split(world):
    w = world()
    files = w.study("s", series=1, per_series=6)
    assert w.send(files[:2]) == [0, 0]
    wait_until(lambda: w.delivered() == 2)
    uid = study_uid(files)
    (home,) = held_by(w, uid)
    source, target = ("gpu-1", "gpu-2") if home == "GPU_A" else ("gpu-2", "gpu-1")
    stopped = w.workers[0 if home == "GPU_A" else 1]
    stopped.stop()  # the rest queues for the old worker
    assert w.send(files[2:]) == [0] * 4
    wait_until(lambda: w.admin("study", uid=uid)[0]["queued"].get(source) == 4)
    moved = w.admin("move", worker=source, to=target)
    assert moved["studies"] == 1 and moved["queued_moved"] == 4
    assert moved["already_delivered"] == {uid: 2} and moved["split_studies"] == 1
    wait_until(lambda: w.delivered() == 6)
    assert len(held_by(w, uid)) == 2  # split, and said so above
    study = wait_until(lambda: (s := w.admin("study", uid=uid)[0])["queued"] == {} and s)
    assert study["worker"] == target and study["moved_from"] == source
    assert study["delivered_before_move"] == 2
    assert w.send(w.study("more", series=1, per_series=1, study_uid=uid)) == [0]
    wait_until(lambda: w.delivered() == 7)  # later instances follow the move
    with pytest.raises(AdminError, match="itself"):
        w.admin("move", worker=target, to=target)


def test_kill_restarts_the_actor_and_refuses_the_root(world):
    w = world()
    router = w.actor("router")
    assert w.admin("kill", actor="router") == {"killed": "router"}
    join(router, timeout=10)
    wait_until(lambda: w.actor("router") not in (None, router))
    assert w.admin("stats")["restarts"] == {"router": 1}
    with pytest.raises(AdminError, match="root has no supervisor"):
        w.admin("kill", actor="wolfpacs")


def test_fault_injection_is_refused_unless_the_node_allows_it(world):
    w = world(fault_injection=False)
    router = w.actor("router")
    with pytest.raises(AdminError, match="fault injection is disabled"):
        w.admin("kill", actor="router")
    assert w.actor("router") is router and w.admin("stats")["restarts"] == {}


def test_add_and_remove_a_worker_at_runtime(world):
    w = world()
    extra = SimulatedWorker("GPU_C", w.inside)
    extra.start()
    try:
        w.admin("add-worker", name="gpu-3", host="127.0.0.1", port=extra.port,
                ae_title="GPU_C", pool="demo", capacity=5)  # fmt: skip
        assert w.actor("sender:gpu-3") is not None
        for old in ("gpu-1", "gpu-2"):
            w.admin("drain", worker=old)
        assert w.send(w.study("s", series=1, per_series=2)) == [0, 0]
        assert extra.wait_for(2, timeout=10)  # the only active worker left
        with pytest.raises(AdminError, match="exists"):
            w.admin("add-worker", name="gpu-3", host="h", port=1, ae_title="X", pool="demo")
        with pytest.raises(AdminError, match="open studies"):
            w.admin("remove-worker", name="gpu-3")
        result = w.admin("remove-worker", name="gpu-3", force=True)
        assert result["removed"] == "worker" and w.actor("sender:gpu-3") is None
    finally:
        extra.stop()


def test_removing_a_busy_worker_with_force_routes_its_queue_anew(world):
    w = world()
    w.workers[0].stop()
    w.admin("drain", worker="gpu-2")  # every study goes to gpu-1, which is down
    files = w.study("s", series=1, per_series=2)
    assert w.send(files) == [0, 0]
    with pytest.raises(AdminError, match="2 queued instances"):
        w.admin("remove-worker", name="gpu-1")
    w.admin("resume", worker="gpu-2")
    result = w.admin("remove-worker", name="gpu-1", force=True)
    assert result["rerouted"] == 2 and result["dead_letters"] == 0
    wait_until(lambda: len(w.workers[1].received) == 2)
    assert w.admin("study", uid=study_uid(files))[0]["moved_from"] == "gpu-1"


def test_a_removed_workers_queue_with_nowhere_to_go_is_kept_in_dead(world):
    w = world()
    w.workers[0].stop()
    w.admin("drain", worker="gpu-2")
    assert w.send(w.study("s", series=1, per_series=2)) == [0, 0]
    result = w.admin("remove-worker", name="gpu-1", force=True)
    assert result["dead_letters"] == 2
    dead = w.admin("dead")
    assert all("gpu-1 was removed and no active worker" in d["reason"] for d in dead)


def test_clients_and_destinations_at_runtime(world):
    w = world()
    w.admin("add-destination", name="gbg-pacs", host="127.0.0.1", port=w.pacs.port,
            ae_title=w.pacs.ae_title)  # fmt: skip
    w.admin("add-client", name="gbg", ae_title="GBG_SECRET", destination="gbg-pacs",
            pool="demo", calling_ae_titles=["HOSPITAL"])  # fmt: skip
    files = w.study("s", series=1, per_series=1)
    assert w.send(files, called="GBG_SECRET") == [0]
    assert w.pacs.wait_for(1, timeout=20)  # the derived instance, by gbg-pacs
    with pytest.raises(AdminError, match="named by clients gbg"):
        w.admin("remove-destination", name="gbg-pacs")
    with pytest.raises(AdminError, match="unknown destination"):
        w.admin("add-client", name="x", ae_title="X", destination="nowhere", pool="demo")
    with pytest.raises(AdminError, match="duplicate ae_title"):
        w.admin("add-client", name="y", ae_title="GBG_SECRET", destination="gbg-pacs", pool="demo")
    w.admin("remove-client", name="gbg", force=True)
    wait_until(lambda: not w.admin("queues"), what="the derived instance's row gone")
    w.admin("remove-destination", name="gbg-pacs")
    with pytest.raises(ConnectionError):  # the secret no longer opens the door
        w.send(files, called="GBG_SECRET")


def test_runtime_changes_survive_a_restart(world):
    w = world()
    w.admin("add-destination", name="gbg-pacs", host="127.0.0.1", port=w.pacs.port,
            ae_title="PACS")  # fmt: skip
    w.admin("add-client", name="gbg", ae_title="GBG_SECRET", destination="gbg-pacs", pool="demo")
    w.admin("drain", worker="gpu-2")
    w.restart()
    names = w.admin("names")
    assert "gbg" in names["clients"] and "gbg-pacs" in names["destinations"]
    assert next(r["state"] for r in w.admin("workers") if r["name"] == "gpu-2") != "active"
    exported = w.admin("config", export=True)
    assert 'name = "gbg"' in exported and "GBG_SECRET" not in exported  # the secret: masked
    assert "# ae_title = GB\u2026ET (a secret: --show-secrets)" in exported
    assert 'ae_title = "GBG_SECRET"' in w.admin("config", export=True, show_secrets=True)
    assert {c["name"]: c["ae_title"] for c in w.admin("clients")}["gbg"] == "GB\u2026ET"
    assert w.send(w.study("s", series=1, per_series=1), called="GBG_SECRET") == [0]


def test_dead_letters_can_be_retried(world):
    w = world()
    for wk in w.workers:
        wk.answer = lambda _item: 0xC000  # refused for good, for now
    assert w.send(w.study("s", series=1, per_series=2)) == [0, 0]
    dead = wait_until(lambda: len(w.admin("dead")) == 2 and w.admin("dead"))
    for wk in w.workers:
        wk.answer = lambda _item: 0x0000
    result = w.admin("retry-dead", all=True)
    assert sorted(result["retried"]) == sorted(d["id"] for d in dead)
    wait_until(lambda: w.delivered() == 2)
    assert w.admin("dead") == []
    with pytest.raises(AdminError, match="no such dead letter"):
        w.admin("retry-dead", id="nope")


# -- the control socket ----------------------------------------------------------------


def raw(path, payload: bytes) -> dict:
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(10)
        sock.connect(str(path))
        sock.sendall(payload)
        unpacker = msgpack.Unpacker(raw=False)
        while True:
            unpacker.feed(sock.recv(65536))
            for reply in unpacker:
                return reply


def test_the_control_socket_answers_bad_requests_with_errors(world):
    w = world()
    path = w.config.node.control_path
    assert (path.stat().st_mode & 0o777) == 0o600
    assert raw(path, msgpack.packb([1, 2])) == {"id": None, "ok": False,
                                               "error": "a request must be a map"}  # fmt: skip
    assert "unknown verb" in raw(path, msgpack.packb({"id": 1, "verb": "nope"}))["error"]
    assert raw(path, msgpack.packb({"id": 2, "verb": 7}))["ok"] is False
    assert "unreadable request" in raw(path, b"\xc1 not msgpack at all")["error"]
    client = ControlClient(path)
    assert client.call("names")["workers"] == ["gpu-1", "gpu-2"]  # the node is unharmed
    with pytest.raises(ControlError, match="no worker"):
        client.call("drain", worker="gpu-9")
    client.close()


def test_tcp_control_needs_the_token(tmp_path):
    from tests.world import World
    from wolfpacs.testing.peers import free_port

    port, token = free_port(), "a-long-enough-secret-token"
    w = World(tmp_path / "w", control_port=port, control_token=token)
    try:
        stranger = ControlClient(port=port, token="wrong")
        with pytest.raises(ControlError, match="unauthenticated"):
            stranger.call("drain", worker="gpu-1")
        stranger.close()
        assert next(r["state"] for r in w.admin("workers") if r["name"] == "gpu-1") == "active"
        operator = ControlClient(port=port, token=token)
        assert operator.call("drain", worker="gpu-1")["state"] == "draining"
        operator.close()
    finally:
        w.stop()


def test_a_shell_reconnects_when_the_control_actor_restarts(world):
    w = world()
    client = ControlClient(w.config.node.control_path)
    control = w.actor("control")
    assert client.call("kill", actor="control") == {"killed": "control"}
    join(control, timeout=10)
    assert client.call("names")["workers"] == ["gpu-1", "gpu-2"]
    client.close()


def test_malformed_arguments_are_refused_before_any_actor_sees_them(world):
    w = world()
    store = w.actor("store")
    with pytest.raises(AdminError, match="uid must be str"):
        w.admin("study", uid={"a": 1})
    with pytest.raises(AdminError, match="force must be bool"):
        w.admin("remove-worker", name="gpu-1", force="no")
    with pytest.raises(AdminError, match="studies must be list"):
        w.admin("move", worker="gpu-1", to="gpu-2", studies=[["1"]])
    with pytest.raises(AdminError, match="unknown argument"):
        w.admin("workers", colour="red")
    assert w.actor("store") is store and w.admin("stats")["restarts"] == {}
    assert len(w.admin("studies", limit=10**9)) == 0  # clamped, not refused


def test_the_control_socket_takes_a_bounded_number_of_connections(world):
    from wolfpacs.ops.control import MAX_CONNECTIONS

    w = world()
    path = str(w.config.node.control_path)
    held = []
    for _ in range(MAX_CONNECTIONS):
        sock = socket.socket(socket.AF_UNIX)
        sock.connect(path)
        held.append(sock)
    extra = socket.socket(socket.AF_UNIX)
    extra.connect(path)
    extra.settimeout(5)
    assert extra.recv(10) == b""  # closed at once
    for sock in [*held, extra]:
        sock.close()
    assert ControlClient(path).call("names")["workers"]


def test_a_runtime_change_the_file_no_longer_fits_is_skipped(world, caplog):
    from dataclasses import replace

    from wolfpacs.node import Node
    from wolfpacs.ops import Operations

    w = world()
    w.admin("add-worker", name="gpu-9", host="127.0.0.1", port=9, ae_title="GPU_9", pool="demo")
    w.node.stop()
    # the file now gives another worker the AE title the runtime one took
    edited = replace(w.config, workers=(*w.config.workers, replace(
        w.config.workers[0], name="gpu-x", ae_title="GPU_9")))  # fmt: skip
    w.node = Node(edited, operations=Operations)
    w.node.start()
    assert "no longer fits; skipped" in caplog.text
    assert "gpu-9" not in w.admin("names")["workers"]
