"""Black-box: `wolfpacs run` between real DCMTK peers, over real sockets on loopback.

What touches the state (stickiness, the queue, a kill -9) runs on both backends (``stores``)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from pydicom import dcmread
from pydicom.uid import (
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEGLSLossless,
    RLELossless,
    generate_uid,
)

from integration.conftest import CLIENT_AE
from integration.peers import ENV, StoreSCP, acknowledged, echoscu, storescu, tool
from tests.conftest import wait_until as wait_for
from wolfpacs.testing.peers import dataset_digest, free_port
from wolfpacs.testing.synthetic import STORESCU_PROPOSES as PROPOSE
from wolfpacs.testing.synthetic import SYNTAXES as MIXTURE
from wolfpacs.testing.synthetic import ct_instance, derived_instance, write, write_study


def send(
    cluster, files: list[Path], syntax: str = ExplicitVRLittleEndian, calling: str = "HOSPITAL"
):
    result = storescu(files, cluster.outside, CLIENT_AE, calling, PROPOSE[str(syntax)])
    assert result.returncode == 0, result.stdout + result.stderr
    assert len(acknowledged(result.stdout + result.stderr)) == len(files)
    return result


def test_studies_over_several_associations_land_whole_on_single_workers(cluster, tmp_path, stores):
    c = cluster(store=stores.setting).start()
    syntaxes = [MIXTURE[n] for n in (0, 2, 4, 7)]  # one study in each of four syntaxes
    studies = [
        write_study(tmp_path / f"s{n}", series=2, per_series=3, transfer_syntax=syntax)
        for n, syntax in enumerate(syntaxes)
    ]
    for files, syntax in zip(studies, syntaxes, strict=True):
        send(c, files[:4], syntax)  # the first part of every study...
    for files, syntax in zip(studies, syntaxes, strict=True):
        send(c, files[4:], syntax)  # ...and the rest, on other associations
    wait_for(lambda: c.delivered() == 24, timeout=30, what="24 instances at the workers")
    held = {ae: {str(dcmread(p, stop_before_pixels=True).StudyInstanceUID) for p in r.values()}
            for ae, r in c.received().items()}  # fmt: skip
    assert held["GPU_A"] and held["GPU_B"], f"both workers should have studies: {held}"
    assert not held["GPU_A"] & held["GPU_B"], "a study is split between workers"


def test_a_mixture_of_transfer_syntaxes_passes_through_byte_for_byte(cluster, tmp_path):
    """Each worker gets exactly the dataset bytes a direct storescu → storescp send gives."""
    c = cluster().start()
    reference = StoreSCP(tmp_path, "REFERENCE").start()
    try:
        study = generate_uid()
        for n, syntax in enumerate(MIXTURE):
            ds = ct_instance(study, generate_uid(), 1, transfer_syntax=syntax)
            path = write(ds, tmp_path / "mix" / f"{n}.dcm")
            direct = storescu([path], reference.port, "REFERENCE", "HOSPITAL", PROPOSE[str(syntax)])
            assert direct.returncode == 0, direct.stderr
            send(c, [path], syntax)
        wait_for(
            lambda: c.delivered() == len(MIXTURE), timeout=30, what="the mixture at the workers"
        )
        expected = {uid: dataset_digest(p) for uid, p in reference.received().items()}
        got = {uid: dataset_digest(p) for r in c.received().values() for uid, p in r.items()}
        assert got == expected
        syntaxes = {str(dcmread(p).file_meta.TransferSyntaxUID)
                    for r in c.received().values() for p in r.values()}  # fmt: skip
        assert syntaxes == {str(s) for s in MIXTURE}
    finally:
        reference.stop()


def test_a_derived_series_reaches_the_clients_destination(cluster, tmp_path):
    c = cluster().start()
    files = write_study(tmp_path / "s", series=1, per_series=2)
    send(c, files)
    source = dcmread(files[0])
    derived = [
        write(derived_instance(source, generate_uid(), n), tmp_path / f"d{n}.dcm") for n in (1, 2)
    ]
    result = storescu(derived, c.inside, "WOLFPACS", "GPU_A", "-xe")
    assert result.returncode == 0 and len(acknowledged(result.stdout + result.stderr)) == 2
    wait_for(lambda: len(c.pacs.received()) == 2, timeout=30, what="derived series at the PACS")
    assert c.pacs.studies() == {str(source.StudyInstanceUID)}


def test_strangers_are_rejected_with_the_matching_reason(cluster):
    c = cluster().start()
    called = echoscu(c.outside, "NOT_A_CLIENT")
    assert called.returncode != 0 and "Called AE Title Not Recognized" in called.stderr
    calling = echoscu(c.outside, CLIENT_AE, calling="NOT_HOSPITAL")
    assert calling.returncode != 0 and "Calling AE Title Not Recognized" in calling.stderr
    worker = echoscu(c.inside, "WOLFPACS", calling="STRANGER")
    assert worker.returncode != 0 and "Calling AE Title Not Recognized" in worker.stderr
    assert echoscu(c.outside, CLIENT_AE, calling="HOSPITAL").returncode == 0
    assert echoscu(c.inside, "WOLFPACS", calling="GPU_B").returncode == 0
    logs = c.node.logs()
    assert "called AE 'NO\u2026NT' is no client's" in logs  # a near miss may be a secret
    assert "NOT_A_CLIENT" not in logs
    assert "calling AE 'STRANGER' is no worker's" in logs


def test_an_unknown_study_on_the_inside_port_is_refused_and_kept_in_dead(cluster, tmp_path):
    c = cluster().start()
    stray = ct_instance(generate_uid(), generate_uid(), 1)
    path = write(derived_instance(stray, generate_uid(), 1), tmp_path / "stray.dcm")
    result = storescu([path], c.inside, "WOLFPACS", "GPU_A", "-xe", "-d")
    output = result.stdout + result.stderr
    assert "DIMSE Status                  : 0xc003" in output
    assert "[unknown StudyInstanceUID]" in output  # the ErrorComment
    dead = wait_for(
        lambda: list((c.data / "dead").glob("*.json")), timeout=30, what="a dead letter"
    )
    assert str(stray.StudyInstanceUID) in dead[0].read_text()
    assert list((c.data / "dead").glob("*.dcm"))


def test_a_worker_down_during_the_send_gets_everything_when_it_starts(cluster, tmp_path, stores):
    c = cluster(store=stores.setting).start(workers=False)
    study = generate_uid()
    files = []
    for n, syntax in enumerate((ImplicitVRLittleEndian, JPEGLSLossless, RLELossless)):
        part = write_study(tmp_path / f"s{n}", series=1, per_series=3, transfer_syntax=syntax,
                           study_uid=study)  # fmt: skip
        send(c, part, syntax)  # acknowledged while no worker is up: spooled
        files += part
    for worker in c.workers:
        worker.start()
    wait_for(
        lambda: c.delivered() == 9, timeout=30, what="all 9 instances after the workers came up"
    )
    assert sum(1 for r in c.received().values() if r) == 1


def test_kill_9_mid_send_loses_nothing_acknowledged(cluster, tmp_path, stores):
    c = cluster(store=stores.setting).start()
    files = write_study(tmp_path / "s", series=4, per_series=50, rows=32, columns=32)
    sender = subprocess.Popen(
        [tool("storescu"), "-v", "-xe", "-aet", "HOSPITAL", "-aec", CLIENT_AE,
         "127.0.0.1", str(c.outside), *map(str, files)],
        env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    output = []
    for line in sender.stdout:  # kill the node once 40 instances were acknowledged
        output.append(line)
        if len(acknowledged("".join(output))) >= 40:
            c.node.kill9()
            break
    output.append(sender.stdout.read())
    sender.wait(60)
    acked = acknowledged("".join(output))
    assert 40 <= len(acked) < len(files), "the kill should land mid-send"
    sop = {str(p): str(dcmread(p, stop_before_pixels=True).SOPInstanceUID) for p in files}
    c.node.start(c.outside, c.inside)
    want = {sop[f] for f in acked}
    wait_for(lambda: want <= set().union(*(r.keys() for r in c.received().values())),
             what="every acknowledged instance at the workers")  # fmt: skip
    where = [ae for ae, r in c.received().items() if r]
    assert len(where) == 1, "one study, one worker, across the restart"


def test_a_syntax_the_worker_refuses_goes_to_dead_with_that_reason(cluster, tmp_path):
    c = cluster(accept_all=False).start()  # workers take uncompressed syntaxes only
    files = write_study(tmp_path / "s", series=1, per_series=2, transfer_syntax=JPEGLSLossless)
    send(c, files, JPEGLSLossless)  # the node accepts it: nothing on its side refuses it
    dead = wait_for(lambda: len(dead_letters(c)) == 2, timeout=30, what="two dead letters")
    assert dead
    reason = json.loads(dead_letters(c)[0].read_text())
    assert "does not accept SOP class" in reason["reason"]
    assert reason["transfer_syntax"] == JPEGLSLossless and reason["target_kind"] == "worker"
    assert c.delivered() == 0


def dead_letters(cluster) -> list[Path]:
    return sorted((cluster.data / "dead").glob("*.json"))


def json_lines(cluster, event: str) -> list[dict]:
    lines = (json.loads(x) for x in cluster.node.logs().splitlines() if x.startswith("{"))
    return [line for line in lines if line.get("event") == event]


def test_json_logs_have_one_line_per_association_and_per_route(cluster, tmp_path):
    c = cluster(options=("--log-format", "json")).start()
    send(c, write_study(tmp_path / "s", series=1, per_series=2))
    assert echoscu(c.outside, "NOT_A_CLIENT").returncode != 0
    routes = json_lines(c, "route")
    assert len(routes) == 1 and routes[0]["client"] == "stockholm"
    wait_for(lambda: len(json_lines(c, "association")) == 2, timeout=10, what="two lines")
    outcomes = {(a["outcome"], a.get("instances")) for a in json_lines(c, "association")}
    assert outcomes == {("released", 2), ("rejected", None)}


def test_the_audit_log_has_a_line_per_association_and_per_route(cluster, tmp_path):
    c = cluster(audit_log="audit.log", options=("--log-level", "warning")).start()
    send(c, write_study(tmp_path / "s", series=1, per_series=2))
    assert echoscu(c.outside, "NOT_A_CLIENT").returncode != 0
    audit = c.data / "audit.log"

    def events() -> list[dict]:
        return (
            [json.loads(line) for line in audit.read_text().splitlines()] if audit.exists() else []
        )

    wait_for(lambda: len(events()) >= 3, timeout=10, what="three audit lines")
    kinds = sorted((e["event"], e.get("outcome", "")) for e in events())
    assert kinds == [("association", "rejected"), ("association", "released"), ("route", "")]
    route = next(e for e in events() if e["event"] == "route")
    assert route["client"] == "stockholm" and route["worker"] in ("gpu-a", "gpu-b")


def test_a_bad_config_stops_the_start_with_exit_code_2(tmp_path):
    config = tmp_path / "bad.toml"
    config.write_text('[node]\nae_title = "WOLFPACS"\n\n[[workers]]\nname = "gpu"\nport = 1\n')
    import sys

    result = subprocess.run(
        [sys.executable, "-m", "wolfpacs", "run", "--config", str(config)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 2
    assert f"{config}:4: workers[0]: missing required key 'ae_title'" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_state_database_of_a_newer_wolfpacs_stops_the_start_with_exit_code_2(tmp_path):
    import sqlite3
    import sys

    data = tmp_path / "data"
    data.mkdir()
    with sqlite3.connect(data / "state.sqlite3") as db:
        db.execute("PRAGMA user_version = 999")  # as a later release would leave it
    config = tmp_path / "node.toml"
    config.write_text(f'[node]\ndata_dir = "data"\noutside_port = {free_port()}\n'
                      f"inside_port = {free_port()}\nhttp_port = 0\n")  # fmt: skip
    result = subprocess.run(
        [sys.executable, "-m", "wolfpacs", "run", "--config", str(config)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert "schema version 999, newer than this WolfPACS knows" in result.stderr
    assert "Traceback" not in result.stderr
    with sqlite3.connect(data / "state.sqlite3") as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == 999  # left as it was


def test_a_postgresql_store_without_psycopg_stops_the_start_with_exit_code_2(tmp_path):
    import sys

    config = tmp_path / "node.toml"
    config.write_text(f'[node]\ndata_dir = "data"\nstore = "postgresql://wolfpacs:s3cret@db/w"\n'
                      f"outside_port = {free_port()}\ninside_port = {free_port()}\n"
                      "http_port = 0\n")  # fmt: skip
    # As if the postgresql extra was not installed: importing psycopg fails.
    without = "import runpy, sys; sys.modules['psycopg'] = None; runpy.run_module('wolfpacs', run_name='__main__')"  # noqa: E501
    result = subprocess.run(
        [sys.executable, "-c", without, "run", "--config", str(config)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert "pip install 'wolfpacs[postgresql]'" in result.stderr
    assert "Traceback" not in result.stderr and "s3cret" not in result.stderr
