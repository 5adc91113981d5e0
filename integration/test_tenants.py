"""Tenants, black-box: one hospital's patients never reach another, and their secrets stay secret.

Three hospitals share one node: sthlm and gbg in pool stroke (two workers),
berlin in pool lung (one worker); sthlm and gbg home to PACS A, berlin to
PACS B. sthlm and berlin send studies that share a StudyInstanceUID (a
transfer, a phantom, a modality that re-uses UIDs). Everything on real
sockets: DCMTK's storescu as the hospitals and as the workers sending
results back, storescp as the workers and the two PACS.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import urllib.request
from pathlib import Path

from pydicom import dcmread

from integration.peers import NodeProcess, StoreSCP, acknowledged, echoscu, storescu
from tests.conftest import wait_until
from wolfpacs.testing.peers import dataset_digest, free_port
from wolfpacs.testing.synthetic import STORESCU_PROPOSES as PROPOSE
from wolfpacs.testing.synthetic import derived_instance, write, write_study

SECRETS = {"sthlm": "STHLM_SECRET", "berlin": "BERLIN_SECRET", "gbg": "GBG_SECRET"}
EXPLICIT = PROPOSE["1.2.840.10008.1.2.1"]


class Hospitals:
    """The node, its three workers and two PACS, and the hospitals' secrets."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.outside, self.inside, self.http = free_port(), free_port(), free_port()
        names = (("stroke-1", "STROKE_1"), ("stroke-2", "STROKE_2"), ("lung-1", "LUNG_1"))
        self.workers = {n: StoreSCP(root, ae).start() for n, ae in names}
        self.pacs = {n: StoreSCP(root, ae).start() for n, ae in (("a", "PACS_A"), ("b", "PACS_B"))}
        workers = "".join(
            f'\n[[workers]]\nname = "{name}"\nhost = "127.0.0.1"\nport = {w.port}\n'
            f'ae_title = "{w.ae_title}"\npool = "{name.split("-")[0]}"\n'
            for name, w in self.workers.items()
        )
        clients = "".join(
            f'\n[[clients]]\nname = "{name}"\nae_title = "{secret}"\n'
            f'destination = "pacs-{"b" if name == "berlin" else "a"}"\n'
            f'pool = "{"lung" if name == "berlin" else "stroke"}"\n'
            for name, secret in SECRETS.items()
        )
        destinations = "".join(
            f'\n[[destinations]]\nname = "pacs-{n}"\nhost = "127.0.0.1"\nport = {p.port}\n'
            f'ae_title = "{p.ae_title}"\n'
            for n, p in self.pacs.items()
        )
        config = f"""
[node]
bind = "127.0.0.1"
outside_port = {self.outside}
inside_port = {self.inside}
http_port = {self.http}
data_dir = "data"
audit_log = "audit.log"
retry_initial = 0.1
retry_max = 0.5
{destinations}{clients}{workers}"""
        self.node = NodeProcess(root, config, "--log-format", "json")
        self.node.start(self.outside, self.inside)

    def send(self, client: str, files: list[Path]) -> None:
        result = storescu(files, self.outside, SECRETS[client], "HOSPITAL", EXPLICIT)
        assert len(acknowledged(result.stdout + result.stderr)) == len(files), result.stdout

    def result(self, worker: str, source: Path) -> tuple[Path, int]:
        """``worker`` sends a derived instance of ``source``'s study back; the file, the status."""
        derived = derived_instance(dcmread(source), "1.2.826.0.1.3680043.10.999." + worker[-1], 1)
        path = write(derived, self.root / "results" / f"{worker}-{derived.SOPInstanceUID}.dcm")
        ae = self.workers[worker].ae_title
        sent = storescu([path], self.inside, "WOLFPACS", ae, EXPLICIT, "-d")
        output = sent.stdout + sent.stderr
        return path, 0 if acknowledged(output) else _status(output)

    def holders(self, study_uid: str) -> set[str]:
        return {name for name, w in self.workers.items() if study_uid in w.studies()}

    def ctl(self, *words: str) -> object:
        result = subprocess.run(
            [sys.executable, "-m", "wolfpacs", "ctl", "--config", str(self.node.config), "--json",
             *words], capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)

    def get(self, path: str) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.http}{path}", timeout=10) as page:
            return page.read().decode()

    def stop(self) -> None:
        if self.node.proc is not None:
            assert self.node.stop() == 0
        for peer in (*self.workers.values(), *self.pacs.values()):
            peer.stop()


def _status(output: str) -> int:
    """The status of a refused C-STORE, from storescu's -d dump of the response's command."""
    statuses = re.findall(r"DIMSE Status\s*: 0x([0-9a-f]{4})", output)
    return int(statuses[-1], 16) if statuses else -1


def test_two_hospitals_one_uid_two_studies_each_home_to_its_own_pacs(tmp_path):
    h = Hospitals(tmp_path)
    try:
        uid = "1.2.826.0.1.3680043.10.4242"
        sthlm = write_study(tmp_path / "sthlm", series=1, per_series=2, study_uid=uid)
        berlin = write_study(tmp_path / "berlin", series=1, per_series=2, study_uid=uid)
        h.send("sthlm", sthlm)
        h.send("berlin", berlin)
        wait_until(lambda: sum(len(w.received()) for w in h.workers.values()) == 4, timeout=30)
        # each study in its own client's pool, on one worker
        stroke = h.holders(uid) - {"lung-1"}
        assert len(stroke) == 1 and "lung-1" in h.holders(uid), h.holders(uid)
        (stroke_worker,) = stroke
        assert len(h.workers["lung-1"].received()) == 2
        studies = h.ctl("study", uid)
        assert {(s["client"], s["worker"]) for s in studies} == {
            ("sthlm", stroke_worker), ("berlin", "lung-1")}  # fmt: skip

        # results go home, byte for byte, and only there
        lung_result, status = h.result("lung-1", berlin[0])
        assert status == 0
        stroke_result, status = h.result(stroke_worker, sthlm[0])
        assert status == 0
        wait_until(lambda: len(h.pacs["a"].received()) == 1 and len(h.pacs["b"].received()) == 1,
                   timeout=30)  # fmt: skip
        (at_b,) = h.pacs["b"].received().values()
        (at_a,) = h.pacs["a"].received().values()
        assert dataset_digest(at_b) == dataset_digest(lung_result)
        assert dataset_digest(at_a) == dataset_digest(stroke_result)

        # a worker that never got the study (same pool, or another pool) is refused
        other_stroke = "stroke-2" if stroke_worker == "stroke-1" else "stroke-1"
        only_sthlm = write_study(tmp_path / "only", series=1, per_series=1)
        h.send("sthlm", only_sthlm)
        assert h.result(other_stroke, sthlm[0])[1] == 0xC003  # same pool, never given it
        assert h.result("lung-1", only_sthlm[0])[1] == 0xC003  # another pool, another hospital
        refused = {d["reason"].split(":", 1)[0] for d in h.ctl("dead")}
        assert refused == {"not your study"}, refused
        assert len(h.pacs["a"].received()) == 1 and len(h.pacs["b"].received()) == 1
    finally:
        h.stop()


def test_one_worker_holding_a_uid_for_two_hospitals_never_guesses(tmp_path):
    h = Hospitals(tmp_path)
    try:
        assert h.ctl("drain", "stroke-2")["state"] == "draining"  # stroke-1 must take both
        uid = "1.2.826.0.1.3680043.10.4343"
        sthlm = write_study(tmp_path / "sthlm", series=1, per_series=1, study_uid=uid)
        gbg = write_study(tmp_path / "gbg", series=1, per_series=1, study_uid=uid)
        h.send("sthlm", sthlm)
        h.send("gbg", gbg)
        wait_until(lambda: len(h.workers["stroke-1"].received()) == 2, timeout=30)
        _, status = h.result("stroke-1", sthlm[0])
        assert status == 0xC004
        (letter,) = h.ctl("dead")
        assert letter["reason"].startswith("ambiguous study: worker stroke-1 holds study")
        assert h.pacs["a"].received() == {}  # never guessed
        metrics = h.get("/metrics")
        assert 'wolfpacs_dead_letters_total{reason="ambiguous_study"} 1.0' in metrics
    finally:
        h.stop()


def test_no_secret_reaches_a_log_the_audit_log_a_metric_or_a_page(tmp_path):
    h = Hospitals(tmp_path)
    try:
        h.send("sthlm", write_study(tmp_path / "s", series=1, per_series=1))
        assert echoscu(h.outside, "STHLM_SECRET_X").returncode != 0  # a near miss: rejected
        assert echoscu(h.outside, SECRETS["berlin"], "BERLIN").returncode == 0
        wait_until(lambda: sum(len(w.received()) for w in h.workers.values()) == 1, timeout=30)
        clients = h.ctl("clients")
        assert {c["name"]: c["ae_title"] for c in clients}["sthlm"] == "ST\u2026ET"
        shown = [
            h.node.logs(), (h.node.root / "data" / "audit.log").read_text(),
            h.get("/metrics"), h.get("/"), h.get("/api/clients"), h.get("/api/studies"),
            json.dumps(clients), json.dumps(h.ctl("config", "--export")),
            json.dumps(h.ctl("inspect", "listener:outside")),
        ]  # fmt: skip
        for secret in SECRETS.values():
            assert all(secret not in text for text in shown), secret
        lines = [json.loads(line) for line in h.node.logs().splitlines() if line.startswith("{")]
        assert any("'ST\u2026_X' is no client's" in line["msg"] for line in lines)  # masked
    finally:
        h.stop()
