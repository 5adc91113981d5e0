"""Real peers for the black-box tests: DCMTK tools, and `wolfpacs run` as a subprocess."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

from pydicom import dcmread
from pydicom.errors import InvalidDicomError

from tests.conftest import need_program
from wolfpacs.testing.peers import free_port, wait_port

DCMTK = Path(os.environ.get("DCMTK_BIN", "/usr/bin"))
# Without TCP_NODELAY DCMTK stalls ~40 ms per instance on loopback (Nagle).
ENV = {**os.environ, "TCP_NODELAY": "1"}


def tool(name: str) -> str:
    # pynetdicom installs scripts of the same names: never take those from PATH
    return need_program(f"DCMTK's {name}", "apt-get install -y dcmtk", str(DCMTK / name))


def storescu(
    files: list[Path], port: int, called: str, calling: str = "HOSPITAL", *options: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [tool("storescu"), "-v", *options, "-aet", calling, "-aec", called,
         "127.0.0.1", str(port), *map(str, files)],
        env=ENV, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def echoscu(port: int, called: str, calling: str = "ECHOSCU") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [tool("echoscu"), "-aet", calling, "-aec", called, "127.0.0.1", str(port)],
        env=ENV, capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def acknowledged(output: str) -> list[str]:
    """The files storescu -v reports a success response for, in order."""
    done, current = [], None
    for line in output.splitlines():
        if "Sending file: " in line:
            current = line.split("Sending file: ", 1)[1].strip()
        elif "Received Store Response (Success)" in line and current:
            done.append(current)
            current = None
    return done


class StoreSCP:
    """DCMTK storescp: a worker or a PACS that keeps what it gets, bit for bit."""

    def __init__(
        self, root: Path, ae_title: str, port: int | None = None, accept_all: bool = True
    ) -> None:
        self.ae_title = ae_title
        self.port = port or free_port()
        # storescp's default accepts uncompressed syntaxes only; +xa every one it knows.
        self.accept = ["+xa"] if accept_all else []
        self.dir = root / ae_title
        self.dir.mkdir(parents=True, exist_ok=True)
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> StoreSCP:
        self.proc = subprocess.Popen(
            [tool("storescp"), "-aet", self.ae_title, "-od", str(self.dir), "+B", *self.accept,
             str(self.port)],
            env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        wait_port(self.port)
        return self

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)
            self.proc = None

    def received(self) -> dict[str, Path]:
        """SOPInstanceUID → file, for every complete file storescp has written."""
        found = {}
        for path in self.dir.iterdir():
            try:
                ds = dcmread(path, stop_before_pixels=True)
            except (InvalidDicomError, OSError, ValueError, EOFError):
                continue  # still being written
            found[str(ds.SOPInstanceUID)] = path
        return found

    def studies(self) -> set[str]:
        return {str(dcmread(p, stop_before_pixels=True).StudyInstanceUID)
                for p in self.received().values()}  # fmt: skip


class NodeProcess:
    """`python -m wolfpacs run --config FILE`, as an operator runs it."""

    def __init__(self, root: Path, config_text: str, *options: str) -> None:
        self.root = root
        self.options = options
        self.config = root / "wolfpacs.toml"
        self.config.write_text(textwrap.dedent(config_text))
        self.log = root / "node.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, outside_port: int, inside_port: int, wait: bool = True) -> NodeProcess:
        """Run it; with ``wait``, return once both ports accept connections."""
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "wolfpacs",
                    "run",
                    "--config",
                    str(self.config),
                    *self.options,
                ],
                stdout=log,
                stderr=log,
                cwd=self.root,
            )
        if wait:
            wait_port(outside_port)
            wait_port(inside_port)
        return self

    def stop(self) -> int:
        """SIGTERM, as a service manager would; the exit code."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(60)
        self.proc = None
        return code

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(10)
        self.proc = None

    def logs(self) -> str:
        return self.log.read_text(errors="replace")
