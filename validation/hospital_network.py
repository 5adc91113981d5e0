"""The hospital network the validation suites run in: real peers around a real node.

``Network`` owns the processes: DCMTK's ``storescp`` as every AI worker and hospital PACS
(:class:`Peer`) and ``python3 -m wolfpacs run`` on a config it writes (:mod:`pki` adds TLS).
Its keywords start, stop, kill and restart them;
:mod:`WolfPACS` adds what hospitals, workers and the operator do. Waits are :func:`poll`s with
deadlines, never sleeps.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.uid import generate_uid
from robot.api.deco import keyword

from wolfpacs.testing.peers import free_port, wait_port
from wolfpacs.testing.synthetic import STORESCU_PROPOSES as PROPOSE
from wolfpacs.testing.synthetic import ct_instance, derived_instance, write

REPO = Path(__file__).resolve().parent.parent
DCMTK = Path(os.environ.get("DCMTK_BIN", "/usr/bin"))
# Without TCP_NODELAY DCMTK stalls ~40 ms per instance on loopback (Nagle).
ENV = {**os.environ, "TCP_NODELAY": "1"}
NODE_ENV = {**os.environ, "PYTHONPATH": str(REPO)}  # the node of this tree, not an installed one
DEADLINE = 30.0


NAMES = {
    "JPEG-LS": "1.2.840.10008.1.2.4.80",
    "JPEG 2000": "1.2.840.10008.1.2.4.90",
    "RLE": "1.2.840.10008.1.2.5",
    "Explicit VR Little Endian": "1.2.840.10008.1.2.1",
}

WORKERS = {"gpu-a": "stroke", "gpu-b": "stroke", "lung-a": "lung", "mammo-a": "mammo"}
HOSPITALS = {
    "stockholm": ("STHLM_SECRET", "STHLM_CT"),
    "gothenburg": ("GBG_SECRET", "GBG_CT"),
    "malmo": ("MALMO_SECRET", "MALMO_MR"),
    "uppsala": ("UPPSALA_SECRET", "UPPSALA_MG"),
}

# storescu -d prints every C-STORE response's status so.
STATUS = re.compile(r"DIMSE Status\s*:\s*0x([0-9a-fA-F]{4})")

T = TypeVar("T")


def poll(check: Callable[[], T | None], what: str, timeout: float = DEADLINE) -> T:
    """Call ``check`` until it returns something truthy; fail with ``what`` at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout:.0f} s: {what}")
        time.sleep(0.05)


def ae(name: str) -> str:
    return name.upper().replace("-", "_")


def toml_value(text: str) -> str:
    """A Robot argument (always text) as a TOML value: numbers and booleans bare, else quoted."""
    if text in ("true", "false"):
        return text
    try:
        float(text)
    except ValueError:
        return json.dumps(text)
    return text


class Peer:
    """DCMTK storescp: an AI worker or a hospital's PACS that keeps what it gets, bit for bit."""

    def __init__(self, root: Path, name: str, accept_all: bool = True) -> None:
        self.name, self.ae_title = name, ae(name)
        self.port = free_port()
        self.dir = root / "peers" / name
        self.dir.mkdir(parents=True, exist_ok=True)
        self.accept = ["+xa"] if accept_all else []
        self.tls: list[str] = []  # storescp's +tls KEY CERT +cf CA, when it speaks TLS
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start storescp; nothing if it runs already (a second one would be orphaned)."""
        if self.proc is not None and self.proc.poll() is None:
            return
        self.proc = subprocess.Popen(
            [
                str(DCMTK / "storescp"),
                "-aet",
                self.ae_title,
                "-od",
                str(self.dir),
                "+B",
                *self.accept,
                *self.tls,
                str(self.port),
            ],
            env=ENV,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_port(self.port)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)
            self.proc = None

    def held(self) -> dict[str, tuple[str, Path]]:
        """SOPInstanceUID → (StudyInstanceUID, file), for every complete file it has written."""
        found = {}
        for path in self.dir.iterdir():
            try:
                ds = dcmread(path, stop_before_pixels=True)
            except (InvalidDicomError, OSError, ValueError, EOFError, AttributeError):
                continue  # still being written
            found[str(ds.SOPInstanceUID)] = (str(ds.StudyInstanceUID), path)
        return found


class Network:
    """A hospital network around one WolfPACS node, in a temporary directory of its own."""

    def __init__(self) -> None:
        self.root: Path | None = None
        self.peers: dict[str, Peer] = {}
        self.node: subprocess.Popen[bytes] | None = None
        self.options: dict[str, str] = {}
        self.studies: dict[str, dict[str, list[str]]] = {}  # study → series description → SOPs
        self.sources: dict[str, Path] = {}  # study → one of its files
        self.refused: set[str] = set()  # SOPInstanceUIDs answered a failure status
        self.held_open: list[Any] = []
        self.last_output = ""
        self.last_study = ""  # the study the last keyword that makes one made
        self.last_result = ""  # the SOPInstanceUID of the last result a worker sent

    # -- the network ------------------------------------------------------------------------

    @keyword("Start the hospital network")
    def start_network(self, **node_options: str) -> None:
        """Peers, then the node, with ``node_options`` as extra ``[node]`` keys."""
        self.root = Path(tempfile.mkdtemp(prefix="wolfpacs-validation-"))
        for name in WORKERS:
            self.peers[name] = Peer(self.root, name, accept_all=name != "mammo-a")
        for hospital in HOSPITALS:
            self.peers[f"{hospital}-pacs"] = Peer(self.root, f"{hospital}-pacs")
        self.ports = {"outside": free_port(), "inside": free_port(), "http": free_port()}
        self.options = dict(node_options)
        # not a [node] key: the lung pool's result_timeout (0: results not tracked)
        self.lung_timeout = self.options.pop("lung_result_timeout", "0")
        self.pins: dict[str, str] = {}
        self.allowed: dict[str, str] = {}  # hospital → the one network it may come from
        self.lung_check_hostname = "true"
        if self.options.pop("tls_outside", "false") == "true":
            self.make_pki()
        for peer in self.peers.values():
            peer.start()
        self.start_wolfpacs()

    def config_text(self) -> str:
        settings = {
            "retry_initial": "0.2",
            "retry_max": "1.0",
            "probe_interval": "0.5",
            "idle_release": "0.5",
            "audit_log": "audit.log",
            **self.options,
        }
        lines = [
            "[node]",
            'bind = "127.0.0.1"',
            f"outside_port = {self.ports['outside']}",
            f"inside_port = {self.ports['inside']}",
            f"http_port = {self.ports['http']}",
            'data_dir = "data"',
            *(f"{key} = {toml_value(value)}" for key, value in settings.items()),
        ]
        for hospital in HOSPITALS:
            pacs = self.peers[f"{hospital}-pacs"]
            lines += [
                "",
                "[[destinations]]",
                f'name = "{pacs.name}"',
                'host = "127.0.0.1"',
                f"port = {pacs.port}",
                f'ae_title = "{pacs.ae_title}"',
            ]
            if pacs.tls:  # its certificate names 127.0.0.1
                lines.append("tls = true")
        for name, pool in WORKERS.items():
            w = self.peers[name]
            lines += [
                "",
                "[[workers]]",
                f'name = "{name}"',
                'host = "127.0.0.1"',
                f"port = {w.port}",
                f'ae_title = "{w.ae_title}"',
                f'pool = "{pool}"',
            ]
            if w.tls:
                lines += ["tls = true", f"tls_check_hostname = {self.lung_check_hostname}"]
            if name in self.pins:  # on the inside port, with tls_inside
                lines.append(f'tls_subject = "{self.pins[name]}"')
        pools = {"stockholm": "stroke", "gothenburg": "stroke", "uppsala": "mammo"}
        for hospital, (secret, calling) in HOSPITALS.items():
            lines += [
                "",
                "[[clients]]",
                f'name = "{hospital}"',
                f'ae_title = "{secret}"',
                f'calling_ae_titles = ["{calling}"]',
                f'allow = ["{self.allowed.get(hospital, "127.0.0.0/8")}"]',
                f'destination = "{hospital}-pacs"',
            ]
            if hospital in pools:
                lines.append(f'pool = "{pools[hospital]}"')
            if hospital in self.pins:
                lines.append(f'tls_subject = "{self.pins[hospital]}"')
            if hospital == "stockholm":
                lines += [
                    "[[clients.rules]]",
                    'match = { Modality = "CT", SeriesDescription = "(?i).*(chest|lung).*" }',
                    'pool = "lung"',
                    "[[clients.rules]]",
                    'match = { Modality = "SR|PR|KO" }',
                    'action = "discard"',
                ]
            if hospital == "malmo":
                lines += ["[[clients.rules]]", 'match = { Modality = "MR" }', 'pool = "stroke"']
        lines += ["", "[[pools]]", 'name = "lung"', f"result_timeout = {self.lung_timeout}"]
        return "\n".join(lines)

    def make_pki(self) -> None:
        """Hook: make the test PKI and use it (:class:`pki.TLS`); here, no TLS at all."""
        raise AssertionError("tls_outside needs the TLS keywords (pki.TLS)")

    @keyword("The last study sent")
    def the_last_study(self) -> str:
        return self.last_study

    @property
    def config(self) -> Path:
        assert self.root is not None
        return self.root / "wolfpacs.toml"

    @property
    def data(self) -> Path:
        assert self.root is not None
        return self.root / "data"

    @keyword("Start WolfPACS")
    def start_wolfpacs(self, **env: str) -> None:
        """``python3 -m wolfpacs run`` on the config; returns once its ports accept connections."""
        assert self.root is not None and self.node is None
        self.config.write_text(self.config_text() + "\n")
        with open(self.root / "node.log", "ab") as log:
            self.node = subprocess.Popen(
                [sys.executable, "-m", "wolfpacs", "run", "--config", str(self.config)],
                stdout=log,
                stderr=log,
                cwd=self.root,
                env={**NODE_ENV, **env},
            )
        for port in self.ports.values():
            wait_port(port)
        poll(lambda: self.http_get("/readyz")[0] == 200, "the node ready (/readyz 200)")

    @keyword("Stop WolfPACS")
    def stop_wolfpacs(self) -> int:
        """SIGTERM, as a service manager sends it; the exit code."""
        assert self.node is not None
        self.node.send_signal(signal.SIGTERM)
        code = self.node.wait(60)
        self.node = None
        return code

    @keyword("Restart WolfPACS")
    def restart_wolfpacs(self, **env: str) -> None:
        code = self.stop_wolfpacs()
        assert code == 0, f"SIGTERM should end the node with 0, not {code}"
        self.start_wolfpacs(**env)

    @keyword("Restart WolfPACS with")
    def restart_with(self, **node_options: str) -> None:
        """Restart with these ``[node]`` keys changed (an empty value: the key left out)."""
        for key, value in node_options.items():
            if value:
                self.options[key] = value
            else:
                self.options.pop(key, None)
        self.restart_wolfpacs()

    @keyword("Kill WolfPACS with signal 9")
    def kill_wolfpacs(self) -> None:
        assert self.node is not None
        self.node.kill()
        self.node.wait(10)
        self.node = None

    @keyword("Stop everything")
    def stop_everything(self) -> None:
        """Every process this library started is ended; its directory removed."""
        for assoc in self.held_open:
            assoc.release()
        self.held_open.clear()
        self.stop_scripted_peers()
        if self.node is not None and self.node.poll() is None:
            if self.options.get("processes", "1") == "1":
                self.kill_wolfpacs()
            else:  # kill -9 would leave its processes to stop by themselves, after we return
                self.stop_wolfpacs()
        self.node = None
        for peer in self.peers.values():
            peer.stop()
        self.peers.clear()
        if self.root is not None:
            shutil.rmtree(self.root, ignore_errors=True)
            self.root = None

    def stop_scripted_peers(self) -> None:
        """Hook: stop the in-process peers a test put in the place of real ones (answering)."""

    @keyword("Node log")
    def node_log(self) -> str:
        assert self.root is not None
        return (self.root / "node.log").read_text(errors="replace")

    @keyword("Audit log")
    def audit_log(self) -> list[dict[str, Any]]:
        text = (self.data / "audit.log").read_text()
        return [json.loads(line) for line in text.splitlines() if line.strip()]

    @keyword("Worker ${name} goes down")
    def worker_down(self, name: str) -> None:
        self.peers[name].stop()

    @keyword("Worker ${name} comes back")
    def worker_up(self, name: str) -> None:
        self.peers[name].start()

    @keyword("Worker ${name} comes back accepting every transfer syntax")
    def worker_up_accepting_all(self, name: str) -> None:
        self.peers[name].stop()
        self.peers[name].accept = ["+xa"]
        self.peers[name].start()

    # -- hospitals --------------------------------------------------------------------------

    def storescu(
        self, files: list[Path], port: int, called: str, calling: str, *options: str
    ) -> list[str]:
        """Send ``files`` on one association; the status of each C-STORE answered, in order."""
        result = subprocess.run(
            [
                str(DCMTK / "storescu"),
                "-d",
                "-nh",
                *options,
                "-aet",
                calling,
                "-aec",
                called,
                "127.0.0.1",
                str(port),
                *map(str, files),
            ],
            env=ENV,
            capture_output=True,
            text=True,
            timeout=120,
        )
        self.last_output = result.stdout + result.stderr
        return ["0x" + code.upper() for code in STATUS.findall(self.last_output)]

    def hospital_sends(self, hospital: str, files: list[Path], syntax: str) -> list[str]:
        secret, calling = HOSPITALS[hospital]
        return self.storescu(files, self.ports["outside"], secret, calling, PROPOSE[syntax])

    def write_series(
        self,
        study: str,
        count: int,
        modality: str = "CT",
        description: str = "HEAD",
        *,
        syntax: str = "1.2.840.10008.1.2.1",
        rows: int = 64,
    ) -> list[Path]:
        assert self.root is not None
        series = generate_uid()
        files = []
        for n in range(1, count + 1):
            ds = ct_instance(study, series, n, transfer_syntax=syntax, rows=rows, columns=rows)
            ds.Modality, ds.SeriesDescription = modality, description
            files.append(write(ds, self.root / "sent" / series / f"{n:04d}.dcm"))
        return files

    def remember(
        self, study: str, description: str, files: list[Path], statuses: list[str]
    ) -> None:
        done = [
            dcmread(f, stop_before_pixels=True).SOPInstanceUID
            for f, s in zip(files, statuses, strict=False)
            if s == "0x0000"
        ]
        self.studies.setdefault(study, {}).setdefault(description, []).extend(map(str, done))
        self.refused.update(
            str(dcmread(f, stop_before_pixels=True).SOPInstanceUID)
            for f, s in zip(files, statuses, strict=False)
            if s != "0x0000"
        )
        self.sources.setdefault(study, files[0])

    def result(self, worker: str, study: str, *options: str) -> str:
        """A derived instance of ``study`` sent by ``worker`` to the inside port with storescu
        ``options`` (TLS); the status answered, or "no answer" and what storescu said."""
        assert self.root is not None
        source: Dataset
        if study in self.sources:
            source = dcmread(self.sources[study], stop_before_pixels=True)
        else:  # a study no hospital sent
            source = ct_instance(study, generate_uid(), 1)
        ds = derived_instance(source, generate_uid(), 1)
        path = write(ds, self.root / "results" / f"{ds.SOPInstanceUID}.dcm")
        self.last_result = str(ds.SOPInstanceUID)
        called, calling = "WOLFPACS", ae(worker)
        statuses = self.storescu([path], self.ports["inside"], called, calling, "-xe", *options)
        return statuses[0] if statuses else "no answer:\n" + self.last_output[-2000:]

    @keyword("HTTP GET")
    def http_get(self, path: str, token: str = "") -> tuple[int, str]:
        """Status and body of ``GET path`` on the node's HTTP port (``Authorization: Bearer
        token`` with a token)."""
        url = f"http://127.0.0.1:{self.ports['http']}{path}"
        auth = {"Authorization": f"Bearer {token}"} if token else {}
        try:
            with urllib.request.urlopen(
                urllib.request.Request(url, headers=auth), timeout=10
            ) as answer:
                return answer.status, answer.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode()
        except OSError as error:
            return 0, str(error)
