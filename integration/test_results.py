"""Black-box: results that never come back, between real DCMTK peers on loopback.

DCMTK's storescp, as a worker, keeps what it is given and answers nothing:
every study it takes goes overdue once its pool's ``result_timeout`` has
passed. A derived instance sent by storescu from that worker's AE title to
the inside port is its result, and clears it.
"""

from __future__ import annotations

import json
import urllib.request

from prometheus_client.parser import text_string_to_metric_families
from pydicom import dcmread
from pydicom.uid import generate_uid

from integration.conftest import CLIENT_AE
from integration.peers import acknowledged, storescu
from integration.test_operations import ctl
from tests.conftest import wait_until
from wolfpacs.testing.synthetic import derived_instance, write, write_study

RESULT_TIMEOUT = 2  # seconds
KEYS = {"study", "client", "pool", "worker", "delivered_at", "waiting_s"}
AE_TITLE = {"gpu-a": "GPU_A", "gpu-b": "GPU_B"}  # the cluster's workers


def sample(cluster, name: str, **labels: str) -> float | None:
    """One sample of the node's /metrics, or None if it has none with these labels."""
    with urllib.request.urlopen(f"http://127.0.0.1:{cluster.http}/metrics", timeout=10) as r:
        text = r.read().decode()
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return s.value
    return None


def audit(cluster, event: str) -> list[dict]:
    path = cluster.data / "audit.log"
    lines = path.read_text().splitlines() if path.exists() else []
    return [line for line in map(json.loads, lines) if line.get("event") == event]


def test_a_silent_worker_makes_a_study_overdue_until_its_result_arrives(cluster, tmp_path):
    c = cluster(audit_log="audit.log")
    with open(c.node.config, "a") as config:
        config.write(f'\n[[pools]]\nname = "stroke"\nresult_timeout = {RESULT_TIMEOUT}\n')
    c.start()
    files = write_study(tmp_path / "s", series=1, per_series=2)
    sent = storescu(files, c.outside, CLIENT_AE, "HOSPITAL", "-xe")
    assert len(acknowledged(sent.stdout + sent.stderr)) == 2, sent.stderr
    source = dcmread(files[0], stop_before_pixels=True)
    study = str(source.StudyInstanceUID)
    wait_until(lambda: c.delivered() == 2, timeout=30, what="the study at a worker")

    (row,) = wait_until(lambda: ctl(c, "overdue"), timeout=30, what="the study overdue")
    assert set(row) == KEYS
    assert (row["study"], row["client"], row["pool"]) == (study, "stockholm", "stroke")
    assert row["waiting_s"] > RESULT_TIMEOUT
    holder = row["worker"]
    assert AE_TITLE[holder] in {ae for ae, got in c.received().items() if got}  # it has it
    overdue = ("wolfpacs_results_overdue", {"pool": "stroke", "worker": holder})
    wait_until(lambda: sample(c, overdue[0], **overdue[1]) == 1, what="the gauge at 1")
    (line,) = wait_until(lambda: audit(c, "overdue"), timeout=10, what="the audit line")
    assert (line["study"], line["client"], line["worker"], line["pool"]) == (
        study, "stockholm", holder, "stroke")  # fmt: skip

    derived = write(derived_instance(source, generate_uid(), 1), tmp_path / "d1.dcm")
    back = storescu([derived], c.inside, "WOLFPACS", AE_TITLE[holder], "-xe")
    assert len(acknowledged(back.stdout + back.stderr)) == 1, back.stderr
    assert ctl(c, "overdue") == []  # the store has it before the worker has its answer
    wait_until(lambda: sample(c, overdue[0], **overdue[1]) == 0, what="the gauge at 0")
    latency = sample(c, "wolfpacs_result_latency_seconds_count", pool="stroke", worker=holder)
    assert latency == 1
    assert sample(c, "wolfpacs_result_latency_seconds_sum", pool="stroke",
                  worker=holder) > RESULT_TIMEOUT  # fmt: skip
    wait_until(lambda: len(c.pacs.received()) == 1, timeout=30, what="the result at the PACS")
    assert len(audit(c, "overdue")) == 1  # once, however long it was overdue
