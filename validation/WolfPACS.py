"""Robot Framework keywords that drive a real WolfPACS node between real DCMTK peers.

Everything is real and on 127.0.0.1: ``python3 -m wolfpacs run`` as a process with a config this
library writes, DCMTK's ``/usr/bin/storescp`` as AI workers and hospital PACS, ``storescu`` and
``echoscu`` as hospitals and workers, the HTTP port through urllib, ``wolfpacs ctl --json`` as the
operator. Nothing is mocked. The network every suite starts ("the hospital network"):

- pools ``stroke`` (workers gpu-a, gpu-b), ``lung`` (lung-a) and ``mammo`` (mammo-a);
- hospitals ``stockholm`` (pool stroke; a chest CT series goes to lung, an SR is discarded),
  ``gothenburg`` (pool stroke), ``malmo`` (no default pool; only MR goes, to stroke) and
  ``uppsala`` (pool mammo), each with its own PACS.

Waits are polls with deadlines, never sleeps. ``Stop everything`` (a suite or test teardown)
stops every process this library started.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import signal
import socket
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
from pydicom.errors import InvalidDicomError
from pydicom.uid import generate_uid
from robot.api.deco import keyword, library

from wolfpacs.testing.peers import dataset_digest, free_port, wait_port
from wolfpacs.testing.synthetic import SYNTAXES, ct_instance, derived_instance, write

REPO = Path(__file__).resolve().parent.parent
DCMTK = Path(os.environ.get("DCMTK_BIN", "/usr/bin"))
# Without TCP_NODELAY DCMTK stalls ~40 ms per instance on loopback (Nagle).
ENV = {**os.environ, "TCP_NODELAY": "1"}
NODE_ENV = {**os.environ, "PYTHONPATH": str(REPO)}  # the node of this tree, not an installed one
DEADLINE = 30.0

# storescu's option that proposes each transfer syntax as it is in the file.
PROPOSE = {
    "1.2.840.10008.1.2": "-xi",
    "1.2.840.10008.1.2.1": "-xe",
    "1.2.840.10008.1.2.2": "-xb",
    "1.2.840.10008.1.2.1.99": "-xd",
    "1.2.840.10008.1.2.4.50": "-xy",
    "1.2.840.10008.1.2.4.70": "-xs",
    "1.2.840.10008.1.2.4.80": "-xt",
    "1.2.840.10008.1.2.4.90": "-xv",
    "1.2.840.10008.1.2.5": "-xr",
}

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
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                str(DCMTK / "storescp"),
                "-aet",
                self.ae_title,
                "-od",
                str(self.dir),
                "+B",
                *self.accept,
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


@library(scope="SUITE", auto_keywords=False)
class WolfPACS:
    """A hospital network around one WolfPACS node, in a temporary directory of its own."""

    def __init__(self) -> None:
        self.root: Path | None = None
        self.peers: dict[str, Peer] = {}
        self.node: subprocess.Popen[bytes] | None = None
        self.options: dict[str, str] = {}
        self.studies: dict[str, dict[str, list[str]]] = {}  # study → series description → SOPs
        self.sources: dict[str, Path] = {}  # study → one of its files
        self.held_open: list[Any] = []
        self.last_output = ""

    # -- the network ------------------------------------------------------------------------

    @keyword("Start the hospital network")
    def start_network(self, **node_options: str) -> None:
        """Peers, then the node, with ``node_options`` as extra ``[node]`` keys."""
        self.root = Path(tempfile.mkdtemp(prefix="wolfpacs-validation-"))
        for name in WORKERS:
            self.peers[name] = Peer(self.root, name, accept_all=name != "mammo-a")
        for hospital in HOSPITALS:
            self.peers[f"{hospital}-pacs"] = Peer(self.root, f"{hospital}-pacs")
        for peer in self.peers.values():
            peer.start()
        self.ports = {"outside": free_port(), "inside": free_port(), "http": free_port()}
        self.options = dict(node_options)
        # not a [node] key: the lung pool's result_timeout (0: results not tracked)
        self.lung_timeout = self.options.pop("lung_result_timeout", "0")
        self.pins: dict[str, str] = {}
        if self.options.pop("tls_outside", "false") == "true":
            self.make_pki()
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
        pools = {"stockholm": "stroke", "gothenburg": "stroke", "uppsala": "mammo"}
        for hospital, (secret, calling) in HOSPITALS.items():
            lines += [
                "",
                "[[clients]]",
                f'name = "{hospital}"',
                f'ae_title = "{secret}"',
                f'calling_ae_titles = ["{calling}"]',
                'allow = ["127.0.0.0/8"]',
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
        """A CA, the node's certificate and every hospital's, and a stranger's self-signed one;
        TLS on the outside port; stockholm pinned to its own certificate's subject."""
        assert self.root is not None
        pki = self.root / "pki"
        pki.mkdir()

        def openssl(*args: str) -> None:
            subprocess.run(["openssl", *args], cwd=pki, check=True, capture_output=True, timeout=60)

        openssl(
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
            "-days",
            "2",
            "-subj",
            "/CN=Validation CA",
        )
        (pki / "host.ext").write_text("subjectAltName = IP:127.0.0.1, DNS:localhost\n")
        for name in ("node", *HOSPITALS):
            openssl(
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                f"{name}.key",
                "-out",
                f"{name}.csr",
                "-subj",
                f"/CN={name}-ct",
            )
            openssl(
                "x509",
                "-req",
                "-in",
                f"{name}.csr",
                "-CA",
                "ca.crt",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                f"{name}.crt",
                "-days",
                "2",
                "-extfile",
                "host.ext",
            )
        openssl(
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "stranger.key",
            "-out",
            "stranger.crt",
            "-days",
            "2",
            "-subj",
            "/CN=stranger",
        )
        self.options.update(
            tls_cert=str(pki / "node.crt"),
            tls_key=str(pki / "node.key"),
            tls_ca=str(pki / "ca.crt"),
            tls_outside="true",
        )
        self.pins["stockholm"] = "CN=stockholm-ct"
        self.pki = pki

    @keyword("Hospital ${hospital} sends a CT study over TLS with the certificate of ${who}")
    def send_tls(self, hospital: str, who: str) -> list[str]:
        """Two instances of a new study by ``storescu +tls``; the statuses answered."""
        study = str(generate_uid())
        files = self.write_series(study, 2)
        secret, calling = HOSPITALS[hospital]
        tls = [
            "+tls",
            str(self.pki / f"{who}.key"),
            str(self.pki / f"{who}.crt"),
            "+cf",
            str(self.pki / "ca.crt"),
        ]
        statuses = self.storescu(files, self.ports["outside"], secret, calling, "-xe", *tls)
        self.remember(study, "HEAD", files, statuses)
        self.last_study = study
        return statuses

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
        if self.node is not None:
            self.kill_wolfpacs() if self.node.poll() is None else None
            self.node = None
        for peer in self.peers.values():
            peer.stop()
        self.peers.clear()
        if self.root is not None:
            shutil.rmtree(self.root, ignore_errors=True)
            self.root = None

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

    def remember(self, study: str, description: str, files: list[Path], statuses: list[str]):
        done = [
            dcmread(f, stop_before_pixels=True).SOPInstanceUID
            for f, s in zip(files, statuses, strict=False)
            if s == "0x0000"
        ]
        self.studies.setdefault(study, {}).setdefault(description, []).extend(map(str, done))
        self.sources.setdefault(study, files[0])

    @keyword("Hospital ${hospital} sends a CT study of ${count} instances")
    def send_study(self, hospital: str, count: str) -> str:
        """A new study (series of 10 instances at most) on one association; all acknowledged."""
        study = generate_uid()
        n = int(count)
        per = min(n, 10)
        files = [
            f
            for s in range(math.ceil(n / per))
            for f in self.write_series(study, min(per, n - s * per))
        ]
        self.expect_acknowledged(hospital, study, "HEAD", files)
        return study

    @keyword("Hospital ${hospital} sends ${count} more instances of study ${study}")
    def send_more(self, hospital: str, count: str, study: str) -> None:
        files = self.write_series(study, int(count))
        self.expect_acknowledged(hospital, study, "HEAD", files)

    def expect_acknowledged(
        self,
        hospital: str,
        study: str,
        description: str,
        files: list[Path],
        syntax: str = "1.2.840.10008.1.2.1",
    ) -> None:
        statuses = self.hospital_sends(hospital, files, syntax)
        self.remember(study, description, files, statuses)
        assert statuses == ["0x0000"] * len(files), f"{statuses}\n{self.last_output[-2000:]}"

    @keyword(
        'Hospital ${hospital} sends a ${modality} series "${description}" of ${count} '
        "instances in study ${study}"
    )
    def send_series(
        self, hospital: str, modality: str, description: str, count: str, study: str
    ) -> list[str]:
        """One series on its own association; the statuses answered."""
        files = self.write_series(study, int(count), modality, description)
        statuses = self.hospital_sends(hospital, files, "1.2.840.10008.1.2.1")
        self.remember(study, description, files, statuses)
        return statuses

    @keyword("Hospital ${hospital} sends a study of ${count} instances in ${syntax}")
    def send_in_syntax(self, hospital: str, count: str, syntax: str) -> str:
        """A new study in ``syntax`` (a UID, or a name in :data:`NAMES`); all acknowledged."""
        syntax = NAMES.get(syntax, syntax)
        study = str(generate_uid())
        files = self.write_series(study, int(count), syntax=syntax)
        self.expect_acknowledged(hospital, study, "HEAD", files, syntax)
        return study

    @keyword("A new study UID")
    def new_study(self) -> str:
        return str(generate_uid())

    @keyword(
        "Hospital ${hospital} sends an instance without a StudyInstanceUID and then a good one"
    )
    def send_without_study(self, hospital: str) -> list[str]:
        assert self.root is not None
        good = self.write_series(generate_uid(), 2)
        ds = dcmread(good[0])
        del ds.StudyInstanceUID
        bad = write(ds, self.root / "sent" / "no-study.dcm")
        return self.hospital_sends(hospital, [bad, good[1]], "1.2.840.10008.1.2.1")

    @keyword("Hospital ${hospital} sends one instance of ${size} bytes of pixel data")
    def send_large(self, hospital: str, size: str) -> str:
        """One instance of about ``size`` bytes; the storescu output (statuses and aborts)."""
        rows = int(math.sqrt(int(size) / 2))
        files = self.write_series(generate_uid(), 1, rows=rows)
        self.hospital_sends(hospital, files, "1.2.840.10008.1.2.1")
        return self.last_output

    @keyword("Hospital ${hospital} sends one instance in each transfer syntax")
    def send_every_syntax(self, hospital: str) -> dict[str, str]:
        """One study; each instance its own association; SOPInstanceUID → digest of its dataset."""
        study = generate_uid()
        digests = {}
        for syntax in map(str, SYNTAXES):
            files = self.write_series(study, 1, syntax=syntax)
            self.expect_acknowledged(hospital, study, "HEAD", files, syntax)
            digests[str(dcmread(files[0]).SOPInstanceUID)] = dataset_digest(files[0])
        self.last_study = study
        return digests

    @keyword("The same instances sent straight to a PACS give the same datasets")
    def direct_digests(self) -> dict[str, str]:
        """Each file of the last study sent by storescu directly to a fresh storescp."""
        assert self.root is not None
        ref = Peer(self.root, "reference")
        ref.start()
        try:
            files = [
                f
                for f in (self.root / "sent").rglob("*.dcm")
                if str(dcmread(f, stop_before_pixels=True).StudyInstanceUID) == self.last_study
            ]
            for f in files:
                syntax = str(dcmread(f, stop_before_pixels=True).file_meta.TransferSyntaxUID)
                statuses = self.storescu([f], ref.port, ref.ae_title, "REFERENCE", PROPOSE[syntax])
                assert statuses == ["0x0000"], self.last_output
            held = poll(lambda: len(ref.held()) == len(files) and ref.held(), "the reference")
            return {uid: dataset_digest(path) for uid, (_, path) in held.items()}
        finally:
            ref.stop()

    @keyword("Datasets received by the workers")
    def worker_digests(self) -> dict[str, str]:
        return {
            uid: dataset_digest(path)
            for name in WORKERS
            for uid, (_, path) in self.peers[name].held().items()
        }

    @keyword("Echo from ${who} to the ${side} port with called ${called} and calling ${calling}")
    def echo(self, who: str, side: str, called: str, calling: str) -> str:
        """echoscu; 'ok' or the reason it failed (its stderr)."""
        result = subprocess.run(
            [
                str(DCMTK / "echoscu"),
                "-aet",
                calling,
                "-aec",
                called,
                "127.0.0.1",
                str(self.ports[side]),
            ],
            env=ENV,
            capture_output=True,
            text=True,
            timeout=60,
        )
        return "ok" if result.returncode == 0 else result.stdout + result.stderr

    @keyword("Hospital ${hospital} can echo")
    def hospital_echo(self, hospital: str) -> None:
        secret, calling = HOSPITALS[hospital]
        answer = self.echo(hospital, "outside", secret, calling)
        assert answer == "ok", answer

    @keyword("A stranger sends ${count} bytes of garbage to the ${side} port")
    def garbage(self, count: str, side: str) -> None:
        with socket.create_connection(("127.0.0.1", self.ports[side]), timeout=10) as sock:
            try:
                sock.sendall(os.urandom(int(count)))
                sock.settimeout(10)
                while sock.recv(4096):
                    pass  # until the node closes it
            except OSError:
                pass  # reset by the node: what it should do

    @keyword("Hospital ${hospital} holds ${count} associations open")
    def hold_open(self, hospital: str, count: str) -> None:
        """Real associations from pynetdicom, held until ``Stop everything``."""
        from pynetdicom import AE  # a real DICOM peer, not a mock

        secret, calling = HOSPITALS[hospital]
        peer = AE(ae_title=calling)
        peer.add_requested_context("1.2.840.10008.1.1")
        for _ in range(int(count)):
            assoc = peer.associate("127.0.0.1", self.ports["outside"], ae_title=secret)
            assert assoc.is_established, "an association below the limit should be accepted"
            self.held_open.append(assoc)

    @keyword("Release the held associations")
    def release_held(self) -> None:
        for assoc in self.held_open:
            assoc.release()
        self.held_open.clear()

    # -- workers and PACS -------------------------------------------------------------------

    def holders(self, study: str, sops: list[str]) -> dict[str, int]:
        """Worker → how many of ``sops`` (of ``study``) it holds."""
        wanted = set(sops)
        found = {}
        for name in WORKERS:
            got = {u for u, (s, _) in self.peers[name].held().items() if s == study} & wanted
            if got:
                found[name] = len(got)
        return found

    @keyword("The study ${study} arrives whole at exactly one worker of pool ${pool}")
    def arrives_whole(self, study: str, pool: str) -> str:
        sops = [u for sops in self.studies[study].values() for u in sops]
        return self.arrive(study, sops, pool)

    @keyword(
        'The series "${description}" of study ${study} arrives whole at one worker of pool ${pool}'
    )
    def series_arrives(self, description: str, study: str, pool: str) -> str:
        return self.arrive(study, self.studies[study][description], pool)

    def arrive(self, study: str, sops: list[str], pool: str) -> str:
        assert sops, "nothing of it was acknowledged"
        held = poll(
            lambda: (h := self.holders(study, sops)) and sum(h.values()) >= len(sops) and h,
            f"{len(sops)} instances of {study} at the workers",
        )
        assert len(held) == 1, f"the instances are at several workers: {held}"
        worker = next(iter(held))
        assert WORKERS[worker] == pool, f"{worker} is in pool {WORKERS[worker]}, not {pool}"
        return worker

    @keyword('No worker holds the series "${description}" of study ${study}')
    def no_worker_holds(self, description: str, study: str) -> None:
        held = self.holders(study, self.studies[study][description])
        assert not held, f"the series reached {held}"

    @keyword("Worker ${worker} holds ${count} instances of study ${study}")
    def worker_holds(self, worker: str, count: str, study: str) -> None:
        poll(
            lambda: (
                sum(1 for s, _ in self.peers[worker].held().values() if s == study) == int(count)
            ),
            f"{count} instances of {study} at {worker}",
        )

    @keyword("Worker ${worker} sends a result for study ${study}")
    def send_result(self, worker: str, study: str) -> str:
        """A derived instance of ``study`` to the inside port; the status answered."""
        assert self.root is not None
        if study in self.sources:
            source = dcmread(self.sources[study], stop_before_pixels=True)
        else:  # a study no hospital sent
            source = ct_instance(study, generate_uid(), 1)
        ds = derived_instance(source, generate_uid(), 1)
        path = write(ds, self.root / "results" / f"{ds.SOPInstanceUID}.dcm")
        self.last_result = str(ds.SOPInstanceUID)
        statuses = self.storescu([path], self.ports["inside"], "WOLFPACS", ae(worker), "-xe")
        return statuses[0] if statuses else "no answer:\n" + self.last_output[-2000:]

    @keyword("The result arrives at the PACS of ${hospital} and at no other")
    def result_home(self, hospital: str) -> None:
        sop = self.last_result
        poll(lambda: sop in self.peers[f"{hospital}-pacs"].held(), f"the result at {hospital}")
        for other in HOSPITALS:
            if other != hospital:
                assert sop not in self.peers[f"{other}-pacs"].held(), f"the result is at {other}"

    @keyword("A dead letter for study ${study} says ${reason}")
    def dead_letter(self, study: str, reason: str) -> None:
        def find() -> bool:
            for note in (self.data / "dead").glob("*.json"):
                text = note.read_text()
                if study in text and reason in text:
                    return True
            return False

        poll(find, f"a dead letter of {study} with reason {reason}")

    # -- the operator -----------------------------------------------------------------------

    @keyword("Run ctl")
    def run_ctl(self, *words: str) -> tuple[int, str, str]:
        """``wolfpacs ctl --config FILE --json WORDS``: exit code, stdout, stderr."""
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "wolfpacs",
                "ctl",
                "--config",
                str(self.config),
                "--json",
                *words,
            ],
            capture_output=True,
            text=True,
            timeout=60,
            env=NODE_ENV,
        )
        return result.returncode, result.stdout, result.stderr

    @keyword("Ctl")
    def ctl(self, *words: str) -> Any:
        """A verb that must succeed; its JSON answer."""
        code, out, err = self.run_ctl(*words)
        assert code == 0, f"ctl {' '.join(words)} exited {code}: {err}"
        return json.loads(out) if out.strip() else None

    @keyword("Run wolfpacs")
    def run_wolfpacs(self, *words: str, stdin: str = "") -> tuple[int, str, str]:
        """``python3 -m wolfpacs WORDS`` in the network's directory: exit code, stdout, stderr."""
        result = subprocess.run(
            [sys.executable, "-m", "wolfpacs", *words],
            input=stdin,
            cwd=self.root,
            capture_output=True,
            text=True,
            timeout=120,
            env=NODE_ENV,
        )
        return result.returncode, result.stdout, result.stderr

    @keyword("Run healthcheck")
    def run_healthcheck(self, config: str) -> tuple[int, str, str]:
        """``python3 -m wolfpacs.healthcheck``, the image's HEALTHCHECK, on ``config``."""
        result = subprocess.run(
            [sys.executable, "-m", "wolfpacs.healthcheck"],
            capture_output=True,
            text=True,
            timeout=30,
            env={**NODE_ENV, "WOLFPACS_CONFIG": config},
        )
        return result.returncode, result.stdout, result.stderr

    @keyword("Write file")
    def write_file(self, name: str, text: str) -> str:
        root = self.root or Path(tempfile.mkdtemp(prefix="wolfpacs-validation-"))
        self.root = root
        path = root / name
        path.write_text(text)
        return str(path)

    @keyword("Config file")
    def config_file(self) -> str:
        return str(self.config)

    @keyword("Worker state of ${worker}")
    def worker_state(self, worker: str) -> str:
        rows = self.ctl("workers")
        return str(next(r for r in rows if r["name"] == worker)["state"])

    # -- the HTTP port ----------------------------------------------------------------------

    @keyword("HTTP GET")
    def http_get(self, path: str) -> tuple[int, str]:
        """Status and body of ``GET path`` on the node's HTTP port."""
        url = f"http://127.0.0.1:{self.ports['http']}{path}"
        try:
            with urllib.request.urlopen(url, timeout=10) as answer:
                return answer.status, answer.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode()
        except OSError as error:
            return 0, str(error)

    @keyword("Metric")
    def metric(self, name: str, **labels: str) -> float:
        """The value of one series of ``/metrics`` (0 if absent)."""
        status, body = self.http_get("/metrics")
        assert status == 200, body
        for line in body.splitlines():
            if not line.startswith(name + "{") and not line.startswith(name + " "):
                continue
            series, _, value = line.rpartition(" ")
            if all(f'{k}="{v}"' in series for k, v in labels.items()):
                return float(value)
        return 0.0

    @keyword("Wait until metric")
    def wait_metric(self, name: str, value: str, **labels: str) -> None:
        poll(lambda: self.metric(name, **labels) == float(value), f"{name}{labels} == {value}")

    @keyword("Wait until ctl")
    def wait_ctl(self, check: str, *words: str) -> Any:
        """Poll a verb until the Python expression ``check`` holds of its answer (``r``)."""
        return poll(
            lambda: (r := self.ctl(*words)) is not None and eval(check, {"r": r}) and [r],
            f"ctl {' '.join(words)}: {check}",
        )[0]
