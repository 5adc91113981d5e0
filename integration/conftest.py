"""Fixtures for black-box tests: a node subprocess between DCMTK peers on loopback."""

from __future__ import annotations

import subprocess

import pytest

from integration.peers import NodeProcess, StoreSCP
from tests.conftest import need_program
from wolfpacs.testing.peers import free_port

CLIENT_AE = "STHLM_SECRET"


def _toml(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value).replace("'", '"')


class Cluster:
    """Two DCMTK workers, a DCMTK PACS, and a WolfPACS node between them."""

    def __init__(
        self, root, options: tuple[str, ...] = (), accept_all: bool = True, **node: object
    ) -> None:
        self.root = root
        self.outside, self.inside = free_port(), free_port()
        self.workers = [StoreSCP(root, ae, accept_all=accept_all) for ae in ("GPU_A", "GPU_B")]
        self.pacs = StoreSCP(root, "PACS")
        self.http = free_port()
        settings = {
            "retry_initial": 0.1, "retry_max": 0.5, "idle_release": 0.5, "http_port": self.http,
            **node,
        }  # fmt: skip
        extra = "\n".join(f"{key} = {_toml(value)}" for key, value in settings.items())
        self.node = NodeProcess(
            root,
            f"""
            [node]
            bind = "127.0.0.1"
            outside_port = {self.outside}
            inside_port = {self.inside}
            data_dir = "data"
            {extra}

            [[destinations]]
            name = "sthlm-pacs"
            host = "127.0.0.1"
            port = {self.pacs.port}
            ae_title = "PACS"

            [[clients]]
            name = "stockholm"
            ae_title = "{CLIENT_AE}"
            calling_ae_titles = ["HOSPITAL"]
            allow = ["127.0.0.0/8"]
            destination = "sthlm-pacs"
            pool = "stroke"

            [[workers]]
            name = "gpu-a"
            host = "127.0.0.1"
            port = {self.workers[0].port}
            ae_title = "GPU_A"
            pool = "stroke"

            [[workers]]
            name = "gpu-b"
            host = "127.0.0.1"
            port = {self.workers[1].port}
            ae_title = "GPU_B"
            pool = "stroke"
            """.replace("\n            ", "\n"),
            *options,
        )
        self.data = root / "data"

    def start(self, workers: bool = True, wait: bool = True) -> Cluster:
        if workers:
            for worker in self.workers:
                worker.start()
        self.pacs.start()
        self.node.start(self.outside, self.inside, wait)
        return self

    def received(self) -> dict[str, dict]:
        """Worker AE title → its received instances (SOPInstanceUID → path)."""
        return {w.ae_title: w.received() for w in self.workers}

    def delivered(self) -> int:
        return sum(len(r) for r in self.received().values())

    def stop(self) -> int | None:
        code = self.node.stop() if self.node.proc is not None else None
        for peer in (*self.workers, self.pacs):
            peer.stop()
        return code


@pytest.fixture
def cluster(tmp_path):
    clusters: list[Cluster] = []

    def make(**settings: object) -> Cluster:
        clusters.append(Cluster(tmp_path / f"c{len(clusters)}", **settings))
        return clusters[-1]

    yield make
    for c in clusters:
        running = c.node.proc is not None
        code = c.stop()
        if running:
            assert code == 0, f"SIGTERM should stop the node cleanly:\n{c.node.logs()[-3000:]}"


@pytest.fixture
def tmux(tmp_path):
    """Run tmux commands on a server of its own (its socket in tmp_path); killed after."""
    need_program("tmux", "apt-get install -y tmux")
    socket = str(tmp_path / "tmux.sock")

    def run(*args: str) -> str:
        return subprocess.run(["tmux", "-S", socket, *args], capture_output=True, text=True,
                              check=True, timeout=30).stdout  # fmt: skip

    yield run
    subprocess.run(["tmux", "-S", socket, "kill-server"], capture_output=True, timeout=30)
