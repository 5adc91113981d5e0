"""Power cuts on demand: chaos runs with the node's data_dir on LazyFS.

LazyFS keeps every write in its own cache until it is fsync'd and drops the
unsynced ones on ``lazyfs::clear-cache``: each ``kill -9`` of the node is
followed by one, as if the machine had lost power with it. In ``fsync``
durability the ledger must be clean (every acknowledged instance at a
worker, byte for byte; no study on two workers; no dead letter); in ``os``
durability the same run must show what that mode gives up.

LazyFS is in no package registry: build it with
``../shared/tools/build-lazyfs.sh``; where ``lazyfs`` or ``/dev/fuse`` is
missing these tests are skipped (CI cannot build it). Run them with
``python3 -m pytest -m powerloss integration/test_powerloss.py``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from wolfpacs.testing.chaos import Chaos, Options
from wolfpacs.testing.peers import send_files
from wolfpacs.testing.synthetic import write_study

pytestmark = pytest.mark.powerloss

LAZYFS_CONFIG = """\
[faults]
fifo_path = "{fifo}"
fifo_path_completed = "{fifo}.done"
[cache]
apply_eviction = false
[cache.simple]
custom_size = "1gb"
blocks_per_page = 1
[filesystem]
log_all_operations = false
logfile = "{log}"
"""


def why_not() -> str | None:
    if shutil.which("lazyfs") is None:
        return "lazyfs is not on PATH (build it: ../shared/tools/build-lazyfs.sh)"
    if not os.path.exists("/dev/fuse"):
        return "/dev/fuse is absent: no FUSE file systems here"
    return None


@pytest.fixture
def lazyfs() -> Iterator[tuple[Path, Path, Path]]:
    """A LazyFS mount: (mount point, faults FIFO, a directory off FUSE for the rest)."""
    why = why_not()
    if why is not None:
        pytest.skip(why)
    # Not pytest's tmp_path: "pytest-of-root" holds "-o", which LazyFS takes for an option.
    root = Path(tempfile.mkdtemp(prefix="wolfpacs_lazyfs_"))
    real, mount, fifo = root / "real", root / "mnt", root / "faults.fifo"
    real.mkdir()
    mount.mkdir()
    config = root / "lazyfs.toml"
    config.write_text(LAZYFS_CONFIG.format(fifo=fifo, log=root / "lazyfs.log"))
    with open(root / "lazyfs.out", "wb") as out:
        fs = subprocess.Popen(
            ["lazyfs", str(mount), "--config-path", str(config), "-o", "allow_other",
             "-o", "modules=subdir", "-o", f"subdir={real}", "-f"],
            stdout=out, stderr=out,
        )  # fmt: skip
    deadline = time.monotonic() + 30
    while not (os.path.ismount(mount) and fifo.exists()):
        if fs.poll() is not None or time.monotonic() > deadline:
            pytest.fail("LazyFS did not mount: " + (root / "lazyfs.out").read_text()[-2000:])
        time.sleep(0.05)
    try:
        yield mount, fifo, root
    finally:
        subprocess.run(["fusermount3", "-u", "-z", str(mount)], check=False)
        fs.terminate()
        try:
            fs.wait(30)
        except subprocess.TimeoutExpired:
            fs.kill()
        shutil.rmtree(root, ignore_errors=True)


def run(mount: Path, fifo: Path, root: Path, durability: str, seed: int) -> Chaos:
    options = Options(
        instances=240, studies=12, workers=3, kills=4, faults=6, duration=30.0, seed=seed,
        data_dir=mount / "data", power_cut=fifo, durability=durability,
    )  # fmt: skip
    chaos = Chaos(options, root=root / f"run-{durability}")
    chaos.run()
    return chaos


def test_power_cuts_lose_nothing_acknowledged_in_fsync_durability(lazyfs):
    chaos = run(*lazyfs, durability="fsync", seed=11)
    ledger = chaos.ledger
    print(ledger.render())
    assert ledger.power_cuts == 4
    assert ledger.acknowledged == 240 and ledger.clean(), ledger.render()


@pytest.mark.parametrize("durability", ["fsync", "os"])
def test_a_power_cut_with_a_full_queue(lazyfs, durability):
    """Workers away, a study acknowledged and queued, then kill -9 and a power cut.

    ``fsync``: every instance reaches a worker after the restart, byte for byte.
    ``os``: what only the page cache held is gone, and the ledger says so.
    """
    mount, fifo, root = lazyfs
    chaos = Chaos(
        Options(workers=2, clients=1, data_dir=mount / "data", power_cut=fifo,
                durability=durability),
        root=root / f"queue-{durability}",
    )  # fmt: skip
    files = write_study(chaos.root / "study", series=2, per_series=10)
    chaos.write_config(spool_max=0)
    for pacs in chaos.pacs:
        pacs.start()
    (node,) = chaos.nodes  # a run of one node
    try:
        node.start()
        acked = send_files(files, node.outside, "HOSP0_SECRET", calling_ae="HOSPITAL0")
        assert acked == [0] * len(files)  # acknowledged while no worker is there: queued
        chaos.kill_node()  # kill -9, the power cut, and a new start
        for worker in chaos.workers:
            worker.start()
        chaos.settle()
    finally:
        node.stop()
        for peer in (*chaos.workers, *chaos.pacs):
            peer.stop()
    ledger = chaos.count({0: files}, {0: files}, chaos.ledger)
    print(durability, ledger.render())
    assert ledger.power_cuts == 1 and ledger.acknowledged == len(files)
    if durability == "fsync":
        assert ledger.delivered == len(files) and ledger.clean(), ledger.render()
    else:  # acknowledged from the page cache: the power cut takes instances or their rows
        assert ledger.delivered < len(files) and not ledger.clean(), ledger.render()
