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
import socket
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from answering import Answering
from conformance import Conformance
from controls import Controls
from hospital_network import (
    DCMTK,
    DEADLINE,
    ENV,
    HOSPITALS,
    NAMES,
    NODE_ENV,
    PROPOSE,
    WORKERS,
    Peer,
    poll,
)
from pki import TLS
from processes import Processes
from pydicom import dcmread
from pydicom.uid import generate_uid
from robot.api.deco import keyword, library
from statuses import Statuses

from wolfpacs.testing.peers import dataset_digest
from wolfpacs.testing.synthetic import SYNTAXES, write


@library(scope="SUITE", auto_keywords=False)
class WolfPACS(Conformance, Controls, Statuses, TLS, Processes, Answering):
    """What hospitals, AI workers and the operator do in the network, as Robot keywords."""

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

            def all_held() -> dict[str, tuple[str, Path]] | None:
                h = ref.held()
                return h if len(h) == len(files) else None

            held = poll(all_held, "every file at the reference")
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

    @keyword("Within ${s} s the study ${study} arrives whole at exactly one worker of pool ${pool}")
    def arrives_soon(self, s: str, study: str, pool: str) -> str:
        sops = [u for sops in self.studies[study].values() for u in sops]
        return self.arrive(study, sops, pool, float(s))

    def arrive(self, study: str, sops: list[str], pool: str, timeout: float = DEADLINE) -> str:
        assert sops, "nothing of it was acknowledged"

        def all_there() -> dict[str, int] | None:
            h = self.holders(study, sops)
            return h if sum(h.values()) >= len(sops) else None

        held = poll(all_there, f"{len(sops)} instances of {study} at the workers", timeout)
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

    @keyword("The spool holds every acknowledged instance of study ${study}")
    def spool_holds(self, study: str) -> None:
        """A whole file in ``data_dir/spool/<target>/`` for each acknowledged SOP instance."""
        files = [p.name for p in (self.data / "spool").glob("*/*.dcm")]
        sops = [u for sops in self.studies[study].values() for u in sops]
        missing = [u for u in sops if not any(f"+{u}." in name for name in files)]
        assert not missing, f"{len(missing)} acknowledged instances are not in the spool"

    @keyword(
        "The shared spool ${spool} holds every acknowledged instance of study ${study} "
        "under ${node}"
    )
    def shared_spool_holds(self, spool: str, study: str, node: str) -> None:
        """A whole file in ``SPOOL/<node>/<target>/`` (SPOOL relative to the config file) for
        each acknowledged SOP instance: where any node that mounts SPOOL finds it."""
        assert self.root is not None
        files = [p.name for p in (self.root / spool / node).glob("*/*.dcm")]
        sops = [u for sops in self.studies[study].values() for u in sops]
        missing = [u for u in sops if not any(f"+{u}." in name for name in files)]
        assert files and not missing, f"{len(missing)} acknowledged instances not under {node}/"

    @keyword("The state database is made to say schema version ${version}")
    def set_schema_version(self, version: str) -> str:
        """With the node stopped: ``PRAGMA user_version``; the SHA-256 of the file after."""
        import hashlib
        import sqlite3

        path = self.data / "state.sqlite3"
        with sqlite3.connect(path) as db:
            db.execute(f"PRAGMA user_version = {int(version)}")
        db.close()
        return hashlib.sha256(path.read_bytes()).hexdigest()

    @keyword("The study ${study} was last active ${days} days ago")
    def age_study(self, study: str, days: str) -> None:
        """With the node stopped: every route of ``study`` last active ``days`` ago, in the
        state database (``studies.last_activity_at``), as if it had been idle that long."""
        import sqlite3
        import time

        assert self.node is None, "the state database is the node's while it runs"
        with sqlite3.connect(self.data / "state.sqlite3") as db:
            at = time.time() - float(days) * 86400
            aged = db.execute(
                "UPDATE studies SET last_activity_at = ? WHERE study_uid = ?", (at, study)
            ).rowcount
        db.close()
        assert aged, f"no route of {study} in the state database"

    @keyword("SHA-256 of the state database")
    def state_digest(self) -> str:
        import hashlib

        return hashlib.sha256((self.data / "state.sqlite3").read_bytes()).hexdigest()

    @keyword("Run WolfPACS until it exits")
    def run_until_exit(self) -> tuple[int, str]:
        """``wolfpacs run`` in the foreground, for a node that must refuse to start."""
        result = subprocess.run(
            [sys.executable, "-m", "wolfpacs", "run", "--config", str(self.config)],
            capture_output=True,
            text=True,
            timeout=60,
            env=NODE_ENV,
        )
        return result.returncode, result.stderr

    @keyword("Worker ${worker} sends a result for study ${study}")
    def send_result(self, worker: str, study: str) -> str:
        """A derived instance of ``study`` to the inside port; the status answered."""
        return self.result(worker, study)

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
        return self.run_wolfpacs("ctl", "--config", str(self.config), "--json", *words,
                                 timeout=60)  # fmt: skip

    @keyword("Ctl")
    def ctl(self, *words: str) -> Any:
        """A verb that must succeed; its JSON answer."""
        code, out, err = self.run_ctl(*words)
        assert code == 0, f"ctl {' '.join(words)} exited {code}: {err}"
        return json.loads(out) if out.strip() else None

    @keyword("Run wolfpacs")
    def run_wolfpacs(
        self, *words: str, stdin: str = "", timeout: float = 120
    ) -> tuple[int, str, str]:
        """``python3 -m wolfpacs WORDS`` in the network's directory: exit code, stdout, stderr."""
        result = subprocess.run(
            [sys.executable, "-m", "wolfpacs", *words],
            input=stdin,
            cwd=self.root,
            capture_output=True,
            text=True,
            timeout=timeout,
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

    @keyword("Metric")
    def metric(self, name: str, **labels: str) -> float:
        """The value of one series of ``/metrics``; the series must be there."""
        value = self.series(name, **labels)
        assert value is not None, f"no series {name}{labels} in /metrics"
        return value

    def series(self, name: str, **labels: str) -> float | None:
        """The value of one series of ``/metrics``, or None if it is absent."""
        status, body = self.http_get("/metrics")
        assert status == 200, body
        for line in body.splitlines():
            if not line.startswith(name + "{") and not line.startswith(name + " "):
                continue
            series, _, value = line.rpartition(" ")
            if all(f'{k}="{v}"' in series for k, v in labels.items()):
                return float(value)
        return None

    @keyword("Wait until metric")
    def wait_metric(self, name: str, value: str, **labels: str) -> None:
        """Until the series is there with ``value`` (an absent series is not 0)."""
        poll(lambda: self.series(name, **labels) == float(value), f"{name}{labels} == {value}")

    @keyword("Wait until ctl")
    def wait_ctl(self, check: str, *words: str) -> Any:
        """Poll a verb until the Python expression ``check`` holds of its answer (``r``)."""
        return poll(
            lambda: (r := self.ctl(*words)) is not None and eval(check, {"r": r}) and [r],
            f"ctl {' '.join(words)}: {check}",
        )[0]
