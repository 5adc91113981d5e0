"""Black-box operations: `wolfpacs ctl --json` on a running node while DCMTK sends, and the shell.

The shell runs in a real terminal: tmux (Debian's) starts `wolfpacs shell`,
send-keys types, capture-pane reads the screen.
"""

from __future__ import annotations

import json
import subprocess
import sys

from pydicom import dcmread

from integration.conftest import CLIENT_AE
from integration.peers import ENV, acknowledged, echoscu, storescu, tool
from tests.conftest import wait_until
from wolfpacs.testing.synthetic import write_study


def ctl(cluster, *words: str, ok: bool = True) -> dict | list | str:
    result = subprocess.run(
        [sys.executable, "-m", "wolfpacs", "ctl", "--config", str(cluster.node.config),
         "--json", *words],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    if ok:
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)
    assert result.returncode != 0
    return result.stderr


def send(cluster, files, called: str = CLIENT_AE) -> None:
    result = storescu(files, cluster.outside, called, "HOSPITAL", "-xe")
    assert len(acknowledged(result.stdout + result.stderr)) == len(files), result.stderr


def study_of(files) -> str:
    return str(dcmread(files[0], stop_before_pixels=True).StudyInstanceUID)


def holders(cluster, uid: str) -> set[str]:
    """The workers (AE titles) holding instances of study ``uid``."""
    return {
        ae
        for ae, got in cluster.received().items()
        for path in got.values()
        if str(dcmread(path, stop_before_pixels=True).StudyInstanceUID) == uid
    }


def test_drain_mid_study_finishes_it_there_and_sends_new_studies_elsewhere(cluster, tmp_path):
    c = cluster().start()
    files = write_study(tmp_path / "open", series=2, per_series=4)
    send(c, files[:4])
    wait_until(lambda: c.delivered() == 4, timeout=30)
    (home,) = holders(c, study_of(files))
    worker = {"GPU_A": "gpu-a", "GPU_B": "gpu-b"}[home]
    assert ctl(c, "drain", worker) == {"worker": worker, "state": "draining"}
    send(c, files[4:])  # the rest of the open study
    new = [write_study(tmp_path / f"new{n}", series=1, per_series=2) for n in range(2)]
    for study in new:
        send(c, study)
    wait_until(lambda: c.delivered() == 12, timeout=30)
    assert holders(c, study_of(files)) == {home}
    assert all(holders(c, study_of(s)) - {home} == holders(c, study_of(s)) for s in new)
    workers = {w["name"]: w for w in ctl(c, "workers")}
    assert workers[worker]["state"] == "draining" and workers[worker]["open_studies"] == 1


def test_move_a_study_with_queued_instances_to_another_worker(cluster, tmp_path):
    c = cluster().start()
    files = write_study(tmp_path / "s", series=1, per_series=6)
    send(c, files[:2])
    wait_until(lambda: c.delivered() == 2, timeout=30)
    uid = study_of(files)
    (home,) = holders(c, uid)
    source, target = ("gpu-a", "gpu-b") if home == "GPU_A" else ("gpu-b", "gpu-a")
    next(w for w in c.workers if w.ae_title == home).stop()
    send(c, files[2:])  # queued for the stopped worker
    wait_until(lambda: ctl(c, "study", uid)[0]["queued"] == {source: 4}, timeout=30)
    moved = ctl(c, "move", source, "--to", target, "--studies", uid)
    assert moved["moved_studies"] == [uid] and moved["queued_moved"] == 4
    assert moved["already_delivered"] == {uid: 2}  # the split, said out loud
    other = next(w for w in c.workers if w.ae_title != home)
    wait_until(lambda: len(other.received()) == 4, timeout=30)
    assert ctl(c, "study", uid)[0]["moved_from"] == source


def test_killing_the_router_and_a_sender_mid_send_loses_nothing(cluster, tmp_path):
    c = cluster(fault_injection=True).start()
    studies = [write_study(tmp_path / f"s{n}", series=1, per_series=40, rows=16, columns=16)
               for n in range(2)]  # fmt: skip

    def sending(files) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [tool("storescu"), "-v", "-xe", "-aet", "HOSPITAL", "-aec", CLIENT_AE,
             "127.0.0.1", str(c.outside), *map(str, files)],
            env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip

    senders = [sending(files) for files in studies]
    wait_until(lambda: c.delivered() >= 10, timeout=30)
    assert ctl(c, "kill", "router") == {"killed": "router"}
    assert ctl(c, "kill", "sender:gpu-a") == {"killed": "sender:gpu-a"}
    outputs = [p.communicate(timeout=120)[0] for p in senders]
    acked = sum(len(acknowledged(out)) for out in outputs)
    assert acked == 80, "every C-STORE was acknowledged through the restarts"
    wait_until(lambda: c.delivered() == 80, timeout=60)
    assert all(len(holders(c, study_of(files))) == 1 for files in studies)
    restarts = ctl(c, "stats")["restarts"]
    assert restarts == {"router": 1, "sender:gpu-a": 1}


def test_a_client_added_at_runtime_can_send_and_changes_survive_a_restart(cluster, tmp_path):
    c = cluster().start()
    assert echoscu(c.outside, "GBG_SECRET", calling="HOSPITAL").returncode != 0
    ctl(c, "add-client", "gbg", "--ae-title", "GBG_SECRET", "--destination", "sthlm-pacs",
        "--pool", "stroke")  # fmt: skip
    ctl(c, "drain", "gpu-b")
    files = write_study(tmp_path / "s", series=1, per_series=2)
    send(c, files, called="GBG_SECRET")
    wait_until(lambda: c.delivered() == 2, timeout=30)
    assert holders(c, study_of(files)) == {"GPU_A"}  # gpu-b is draining
    assert c.node.stop() == 0
    c.node.start(c.outside, c.inside)
    assert echoscu(c.outside, "GBG_SECRET", calling="HOSPITAL").returncode == 0
    assert "gbg" in ctl(c, "names")["clients"]
    assert {w["name"]: w["state"] for w in ctl(c, "workers")}["gpu-b"] in ("draining", "drained")
    assert "GBG_SECRET" not in ctl(c, "config", "--export")
    exported = ctl(c, "config", "--export", "--show-secrets")
    assert 'ae_title = "GBG_SECRET"' in exported


def test_rules_changed_by_ctl_survive_a_restart_and_a_client_may_start_without_a_pool(cluster):
    c = cluster().start(workers=False)
    ctl(c, "add-rule", "stockholm", "--match", "Modality=CT", "SeriesDescription=(?i).*a=b.*",
        "--pool", "stroke")  # fmt: skip
    ctl(c, "add-rule", "stockholm", "--match", "Modality=SR|PR|KO", "--discard", "--at", "0")
    ctl(c, "add-client", "gbg", "--ae-title", "GBG_SECRET", "--destination", "sthlm-pacs")
    assert "unknown pool 'strok'" in ctl(c, "add-rule", "gbg", "--match", "Modality=MR",
                                         "--pool", "strok", ok=False)  # fmt: skip
    before = ctl(c, "rules", "stockholm")
    assert [r["action"] or r["pool"] for r in before["rules"]] == ["discard", "stroke"]
    assert c.node.stop() == 0
    c.node.start(c.outside, c.inside)
    assert ctl(c, "rules", "stockholm") == before
    assert ctl(c, "rules", "gbg") == {"client": "gbg", "pool": None, "rules": []}
    exported = ctl(c, "config", "--export")
    assert 'match = { Modality = "CT", SeriesDescription = "(?i).*a=b.*" }' in exported


def test_ctl_says_why_it_refuses(cluster):
    c = cluster().start()
    assert "no worker 'gpu-z'" in ctl(c, "drain", "gpu-z", ok=False)
    # fault injection is off unless the node's config or environment turns it on
    assert "fault injection is disabled" in ctl(c, "kill", "router", ok=False)
    assert ctl(c, "stats")["restarts"] == {}
    assert "the following arguments are required: --to" in ctl(c, "move", "gpu-a", ok=False)


def test_the_shell_in_a_real_terminal(cluster, tmux, tmp_path):
    c = cluster().start()
    history = tmp_path / "history"
    command = (f"WOLFPACS_HISTORY={history} {sys.executable} -m wolfpacs shell "
               f"--config {c.node.config}")  # fmt: skip

    def screen() -> str:
        return tmux("capture-pane", "-p", "-t", "wolfpacs")

    def typed(*keys: str) -> None:
        tmux("send-keys", "-t", "wolfpacs", *keys)

    tmux("new-session", "-d", "-s", "wolfpacs", "-x", "150", "-y", "50", command)
    wait_until(lambda: "wolfpacs(WOLFPACS)>" in screen(), timeout=30, what="the prompt")
    typed("tr", "Tab", "Enter")  # completes to 'tree'
    wait_until(lambda: "listener:outside" in screen(), timeout=10, what="the tree")
    assert "sender:gpu-a" in screen() and "control" in screen()
    typed("drain gpu-", "Tab", "Tab")  # two candidates: Tab Tab lists them
    wait_until(lambda: "gpu-a  gpu-b" in screen(), timeout=10, what="completion of worker names")
    typed("b", "Enter")
    wait_until(lambda: "state: draining" in screen(), timeout=10, what="the drain")
    typed("C-d")
    # Polled until whole: the file exists a moment before readline has written it.
    kept = lambda: history.exists() and history.read_text().splitlines()[-2:]  # noqa: E731
    wait_until(lambda: kept() == ["tree", "drain gpu-b"], timeout=10, what="the history")
