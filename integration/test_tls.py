"""DICOM TLS on the outside port and to a worker, against DCMTK's storescu +tls / storescp +tls.

Certificates are made here with openssl: a test CA, and certificates it
signs for the node, the hospital and the worker; plus a stranger's
self-signed one.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import pytest

from integration.peers import ENV, NodeProcess, acknowledged, tool, wait_port
from wolfpacs.testing.peers import free_port
from wolfpacs.testing.synthetic import write_study


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


@pytest.fixture
def pki(tmp_path) -> Path:
    if shutil.which("openssl") is None:
        pytest.fail("openssl is not installed")
    d = tmp_path / "pki"
    d.mkdir()
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out",
            "ca.crt", "-days", "2", "-subj", "/CN=WolfPACS test CA", cwd=d)  # fmt: skip
    for name in ("node", "hospital", "worker"):
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out",
                f"{name}.csr", "-subj", f"/CN={name}", cwd=d)  # fmt: skip
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
                "-CAcreateserial", "-out", f"{name}.crt", "-days", "2", cwd=d)  # fmt: skip
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "stranger.key", "-out",
            "stranger.crt", "-days", "2", "-subj", "/CN=stranger", cwd=d)  # fmt: skip
    return d


def storescu_tls(pki: Path, who: str, port: int, files: list[Path]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [tool("storescu"), "-v", "-xe", "+tls", str(pki / f"{who}.key"), str(pki / f"{who}.crt"),
         "+cf", str(pki / "ca.crt"), "-aet", "HOSPITAL", "-aec", "SECRET",
         "127.0.0.1", str(port), *map(str, files)],
        env=ENV, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_tls_from_the_hospital_and_to_the_worker(pki, tmp_path):
    outside, inside, worker_port = free_port(), free_port(), free_port()
    received = tmp_path / "worker"
    received.mkdir()
    worker = subprocess.Popen(
        [tool("storescp"), "+tls", str(pki / "worker.key"), str(pki / "worker.crt"),
         "+cf", str(pki / "ca.crt"), "-aet", "GPU_A", "-od", str(received), "+xa",
         str(worker_port)],
        env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    node = NodeProcess(tmp_path, f"""
        [node]
        bind = "127.0.0.1"
        outside_port = {outside}
        inside_port = {inside}
        data_dir = "data"
        http_port = 0
        tls_cert = "{pki / 'node.crt'}"
        tls_key = "{pki / 'node.key'}"
        tls_ca = "{pki / 'ca.crt'}"
        tls_outside = true

        [[destinations]]
        name = "pacs"
        host = "127.0.0.1"
        port = 9
        ae_title = "PACS"

        [[clients]]
        name = "hospital"
        ae_title = "SECRET"
        destination = "pacs"
        pool = "p"

        [[workers]]
        name = "gpu-a"
        host = "127.0.0.1"
        port = {worker_port}
        ae_title = "GPU_A"
        pool = "p"
        tls = true
        """)  # fmt: skip
    try:
        wait_port(worker_port)
        node.start(outside, inside)
        files = write_study(tmp_path / "s", series=1, per_series=3)
        sent = storescu_tls(pki, "hospital", outside, files)
        assert len(acknowledged(sent.stdout + sent.stderr)) == 3, sent.stdout + sent.stderr
        deadline = time.monotonic() + 30
        while len(list(received.iterdir())) < 3 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert len(list(received.iterdir())) == 3  # delivered over TLS to a TLS-only worker
        stranger = storescu_tls(pki, "stranger", outside, files[:1])
        assert stranger.returncode != 0 and not acknowledged(stranger.stdout + stranger.stderr)
        plain = subprocess.run(
            [tool("echoscu"), "-aet", "HOSPITAL", "-aec", "SECRET", "127.0.0.1", str(outside)],
            env=ENV, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert plain.returncode != 0  # no TLS, no association
    finally:
        if node.proc is not None:
            assert node.stop() == 0
        worker.terminate()
        worker.wait(10)


def test_a_tls_port_without_a_certificate_is_a_config_error(tmp_path):
    from wolfpacs.config import ConfigError, parse

    with pytest.raises(ConfigError, match="a TLS port needs tls_cert and tls_key"):
        parse("[node]\ntls_outside = true\n", env={})
    with pytest.raises(ConfigError, match="no such file"):
        parse('[node]\ntls_cert = "/nonexistent.crt"\n', env={})
