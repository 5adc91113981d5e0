"""Routing rules, black-box: `wolfpacs run` between DCMTK peers, two pools of two workers.

One hospital's study carries MR, CT chest and SR series: the MR goes to one
stroke worker, the CT to one lung worker, the SR is answered success and
forwarded nowhere, and each worker's result goes home to the hospital's PACS.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.uid import generate_uid

from integration.peers import NodeProcess, StoreSCP, acknowledged, storescu
from tests.conftest import wait_until
from wolfpacs.testing.peers import free_port
from wolfpacs.testing.synthetic import ct_instance, derived_instance, write

CLIENT_AE = "STHLM_SECRET"
WORKERS = {"stroke-a": "ST_A", "stroke-b": "ST_B", "lung-a": "LU_A", "lung-b": "LU_B"}


class RulesNode:
    """Four DCMTK workers in pools stroke and lung, a DCMTK PACS, and a node between them."""

    def __init__(self, root: Path) -> None:
        self.outside, self.inside = free_port(), free_port()
        self.workers = {name: StoreSCP(root, ae) for name, ae in WORKERS.items()}
        self.pacs = StoreSCP(root, "PACS")
        workers = "".join(
            f'\n[[workers]]\nname = "{name}"\nhost = "127.0.0.1"\nport = {scp.port}\n'
            f'ae_title = "{scp.ae_title}"\npool = "{name.split("-")[0]}"\n'
            for name, scp in self.workers.items()
        )
        self.node = NodeProcess(
            root,
            f"""
[node]
bind = "127.0.0.1"
outside_port = {self.outside}
inside_port = {self.inside}
data_dir = "data"
http_port = 0
retry_initial = 0.1
retry_max = 0.5

[[destinations]]
name = "sthlm-pacs"
host = "127.0.0.1"
port = {self.pacs.port}
ae_title = "PACS"

[[clients]]
name = "sthlm"
ae_title = "{CLIENT_AE}"
destination = "sthlm-pacs"
pool = "stroke"

[[clients.rules]]
match = {{ Modality = "CT", SeriesDescription = "(?i).*(chest|lung).*" }}
pool = "lung"

[[clients.rules]]
match = {{ Modality = "SR|PR|KO" }}
action = "discard"
{workers}""",
        )

    def start(self) -> RulesNode:
        try:
            for peer in (*self.workers.values(), self.pacs):
                peer.start()
            self.node.start(self.outside, self.inside)
        except BaseException:  # a node that did not start leaves no storescp behind
            for peer in (*self.workers.values(), self.pacs):
                peer.stop()
            raise
        return self

    def holding(self, study: str) -> dict[str, set[str]]:
        """Worker name -> the series of ``study`` it holds."""
        held: dict[str, set[str]] = {}
        for name, scp in self.workers.items():
            for path in scp.received().values():
                ds = dcmread(path, stop_before_pixels=True)
                if ds.StudyInstanceUID == study:
                    held.setdefault(name, set()).add(str(ds.SeriesInstanceUID))
        return held

    def ctl(self, *words: str):
        done = subprocess.run(
            [sys.executable, "-m", "wolfpacs", "ctl", "--config", str(self.node.config),
             "--json", *words], capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    def stop(self) -> int:
        try:
            return self.node.stop()
        finally:
            for peer in (*self.workers.values(), self.pacs):
                peer.stop()


@pytest.fixture
def node(tmp_path):
    running = RulesNode(tmp_path).start()
    yield running
    assert running.stop() == 0, running.node.logs()[-3000:]


def series(directory: Path, study: str, modality: str, description: str, count: int) -> list:
    """``count`` instances of a new series of ``study``; an SR has no pixels."""
    uid, files = generate_uid(), []
    for n in range(1, count + 1):
        ds = ct_instance(study, uid, n)
        ds.Modality, ds.SeriesDescription = modality, description
        if modality == "SR":
            ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.88.11"
            for keyword in ("PixelData", "Rows", "Columns", "BitsAllocated", "BitsStored",
                            "HighBit", "PixelRepresentation", "SamplesPerPixel",
                            "PhotometricInterpretation"):  # fmt: skip
                delattr(ds, keyword)
        files.append(write(ds, directory / f"{modality}-{uid[-8:]}-{n}.dcm"))
    return files


def send(node: RulesNode, files: list[Path]) -> None:
    result = storescu(files, node.outside, CLIENT_AE, "HOSPITAL", "-xe")
    assert len(acknowledged(result.stdout + result.stderr)) == len(files), result.stderr


def test_each_series_goes_to_its_pool_and_each_pool_of_a_study_to_one_worker(node, tmp_path):
    study = generate_uid()
    mr = series(tmp_path, study, "MR", "DWI", 3)
    chest = series(tmp_path, study, "CT", "CT Chest 1mm", 2)
    sr = series(tmp_path, study, "SR", "Report", 1)
    send(node, mr + chest + sr)  # one association: every instance acknowledged, the SR too
    more = series(tmp_path, study, "CT", "LUNG window", 2)
    send(node, more)  # another association, more CT of the same study: the same lung worker
    wait_until(lambda: sum(len(s) for s in node.holding(study).values()) == 3, timeout=30,
               what="three series at the workers")  # fmt: skip
    wait_until(lambda: sum(len(w.received()) for w in node.workers.values()) == 7, timeout=30,
               what="seven instances at the workers")  # fmt: skip
    held = node.holding(study)
    assert len(held) == 2, f"one stroke and one lung worker: {held}"
    stroke = next(name for name in held if name.startswith("stroke"))
    lung = next(name for name in held if name.startswith("lung"))
    uid = lambda files: str(dcmread(files[0], stop_before_pixels=True).SeriesInstanceUID)  # noqa: E731
    assert held[stroke] == {uid(mr)} and held[lung] == {uid(chest), uid(more)}
    # what the operator sees: the study's route in each pool, and each series' decision
    routes = {r["pool"]: r for r in node.ctl("study", study)}
    assert (routes["stroke"]["worker"], routes["lung"]["worker"]) == (stroke, lung)
    decided = {s["series_uid"]: s for r in routes.values() for s in r["series"]}
    assert decided[uid(chest)]["rule"] == 0 and decided[uid(mr)]["rule"] is None
    counters = node.ctl("stats")["counters"]
    assert counters["wolfpacs_discarded_instances_total{client=sthlm}"] == 1
    # each worker's result goes home to the hospital's PACS
    source = dcmread(mr[0])
    for name in (stroke, lung):
        result = write(derived_instance(source, generate_uid(), 1), tmp_path / f"{name}.dcm")
        done = storescu([result], node.inside, "WOLFPACS", WORKERS[name], "-xe")
        assert len(acknowledged(done.stdout + done.stderr)) == 1, done.stderr
    wait_until(lambda: len(node.pacs.received()) == 2, timeout=30, what="both results home")
    assert "discarded (rules[1])" in node.node.logs()
