"""DICOM TLS on both ports and to workers, against DCMTK's storescu +tls / storescp +tls.

Certificates are made here with openssl: a test CA, and certificates it
signs for the node, two hospitals and the workers (the worker's names
127.0.0.1, the "nameless" one no host at all); plus a stranger's
self-signed one. A client is pinned to its own certificate, so another
hospital's, though signed by the same CA, opens nothing of it.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.uid import generate_uid

from integration.peers import ENV, NodeProcess, acknowledged, tool, wait_port
from tests.conftest import need_program, wait_until
from wolfpacs.testing.peers import free_port
from wolfpacs.testing.synthetic import derived_instance, write, write_study


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


@pytest.fixture
def pki(tmp_path) -> Path:
    need_program("openssl", "apt-get install -y openssl")
    d = tmp_path / "pki"
    d.mkdir()
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out",
            "ca.crt", "-days", "2", "-subj", "/CN=WolfPACS test CA", cwd=d)  # fmt: skip
    (d / "loopback.ext").write_text("subjectAltName = IP:127.0.0.1, DNS:localhost\n")
    for name, names_a_host in (("node", True), ("hospital", False), ("hospital2", False),
                               ("worker", True), ("nameless", False)):  # fmt: skip
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out",
                f"{name}.csr", "-subj", f"/CN={name}", cwd=d)  # fmt: skip
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
                "-CAcreateserial", "-out", f"{name}.crt", "-days", "2",
                *(["-extfile", "loopback.ext"] if names_a_host else []), cwd=d)  # fmt: skip
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "stranger.key", "-out",
            "stranger.crt", "-days", "2", "-subj", "/CN=stranger", cwd=d)  # fmt: skip
    return d


def storescu_tls(
    pki: Path, who: str, port: int, files: list[Path], *, called: str = "SECRET",
    calling: str = "HOSPITAL",
) -> subprocess.CompletedProcess[str]:  # fmt: skip
    return subprocess.run(
        [tool("storescu"), "-v", "-xe", "+tls", str(pki / f"{who}.key"), str(pki / f"{who}.crt"),
         "+cf", str(pki / "ca.crt"), "-aet", calling, "-aec", called,
         "127.0.0.1", str(port), *map(str, files)],
        env=ENV, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def storescp_tls(pki: Path, who: str, ae_title: str, port: int, into: Path) -> subprocess.Popen:
    into.mkdir()
    return subprocess.Popen(
        [tool("storescp"), "+tls", str(pki / f"{who}.key"), str(pki / f"{who}.crt"),
         "+cf", str(pki / "ca.crt"), "-aet", ae_title, "-od", str(into), "+xa", str(port)],
        env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip


def node_config(
    pki: Path, outside: int, inside: int, *, workers: str, clients: str, node: str = ""
) -> str:
    """The node's config; ``node``: more ``[node]`` keys, one per line."""
    return f"""
        [node]
        bind = "127.0.0.1"
        outside_port = {outside}
        inside_port = {inside}
        data_dir = "data"
        http_port = 0
        retry_initial = 0.2
        retry_max = 0.5
        tls_cert = "{pki / "node.crt"}"
        tls_key = "{pki / "node.key"}"
        tls_ca = "{pki / "ca.crt"}"
        tls_outside = true
        {node}

        [[destinations]]
        name = "pacs"
        host = "127.0.0.1"
        port = 9
        ae_title = "PACS"
        {clients}
        {workers}
        """


def echoes(port: int, calling: str, called: str, *tls: str) -> bool:
    """Whether DCMTK's ``echoscu`` (with ``tls``, its TLS options, if any) gets an answer."""
    answer = subprocess.run(
        [tool("echoscu"), *tls, "-aet", calling, "-aec", called, "127.0.0.1", str(port)],
        env=ENV, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    return answer.returncode == 0


def stop_all(node: NodeProcess, *workers: subprocess.Popen) -> None:
    """The workers stopped whatever the node's stop says (a node that failed to start must not
    leave them running); then the node's SIGTERM exit code checked."""
    try:
        code = node.stop() if node.proc is not None else 0
    finally:
        for worker in workers:
            worker.terminate()
            worker.wait(10)
    assert code == 0


def received(directory: Path) -> int:
    return len(list(directory.iterdir()))


def test_tls_from_a_pinned_hospital_and_to_the_worker(pki, tmp_path):
    outside, inside, worker_port = free_port(), free_port(), free_port()
    worker = storescp_tls(pki, "worker", "GPU_A", worker_port, tmp_path / "worker")
    node = NodeProcess(tmp_path, node_config(pki, outside, inside, clients="""
        [[clients]]
        name = "hospital"
        ae_title = "SECRET"
        destination = "pacs"
        pool = "p"
        tls_subject = "CN=hospital"
        """, workers=f"""
        [[workers]]
        name = "gpu-a"
        host = "127.0.0.1"
        port = {worker_port}
        ae_title = "GPU_A"
        pool = "p"
        tls = true
        """))  # fmt: skip
    try:
        wait_port(worker_port)
        node.start(outside, inside)
        files = write_study(tmp_path / "s", series=1, per_series=3)
        sent = storescu_tls(pki, "hospital", outside, files)
        assert len(acknowledged(sent.stdout + sent.stderr)) == 3, sent.stdout + sent.stderr
        # delivered over TLS to a TLS-only worker whose certificate names 127.0.0.1
        wait_until(lambda: received(tmp_path / "worker") == 3, timeout=30)
        # signed by the same CA, but another hospital's: not this client's certificate
        other = storescu_tls(pki, "hospital2", outside, files[:1])
        assert other.returncode != 0 and not acknowledged(other.stdout + other.stderr)
        assert "its TLS certificate is not client hospital's (the one pinned)" in node.logs()
        stranger = storescu_tls(pki, "stranger", outside, files[:1])
        assert stranger.returncode != 0 and not acknowledged(stranger.stdout + stranger.stderr)
        assert not echoes(outside, "HOSPITAL", "SECRET")  # no TLS, no association
    finally:
        stop_all(node, worker)


def test_a_worker_sends_results_over_tls_on_the_inside_port_with_its_own_certificate_only(
    pki, tmp_path
):
    outside, inside, worker_port = free_port(), free_port(), free_port()
    worker = storescp_tls(pki, "worker", "GPU_A", worker_port, tmp_path / "worker")
    tls_inside = "tls_inside = true"
    node = NodeProcess(tmp_path, node_config(pki, outside, inside, node=tls_inside, clients="""
        [[clients]]
        name = "hospital"
        ae_title = "SECRET"
        destination = "pacs"
        pool = "p"
        """, workers=f"""
        [[workers]]
        name = "gpu-a"
        host = "127.0.0.1"
        port = {worker_port}
        ae_title = "GPU_A"
        pool = "p"
        tls = true
        tls_subject = "CN=worker"
        """))  # fmt: skip
    try:
        wait_port(worker_port)
        node.start(outside, inside)
        files = write_study(tmp_path / "s", series=1, per_series=2)
        sent = storescu_tls(pki, "hospital", outside, files)
        assert len(acknowledged(sent.stdout + sent.stderr)) == 2, sent.stdout + sent.stderr
        wait_until(lambda: received(tmp_path / "worker") == 2, timeout=30)
        source = dcmread(files[0], stop_before_pixels=True)
        result = write(derived_instance(source, generate_uid(), 1), tmp_path / "result.dcm")
        # the worker's result over TLS, with its own (pinned) certificate: taken for its study
        back = storescu_tls(pki, "worker", inside, [result], called="WOLFPACS", calling="GPU_A")
        assert len(acknowledged(back.stdout + back.stderr)) == 1, back.stdout + back.stderr
        # the same CA's certificate of another: not the worker pinned, so no association
        other = storescu_tls(pki, "hospital", inside, [result], called="WOLFPACS", calling="GPU_A")
        assert other.returncode != 0 and not acknowledged(other.stdout + other.stderr)
        assert "its TLS certificate is not worker gpu-a's (the one pinned)" in node.logs()
        assert not echoes(inside, "GPU_A", "WOLFPACS")  # no TLS, no association
    finally:
        stop_all(node, worker)


def test_with_client_certificates_optional_a_pinned_hospital_still_gets_in_with_its_own(
    pki, tmp_path
):
    """Before the fix the node did not even ask for a certificate when they were optional, so a
    pinned hospital, certificate or not, was always refused."""
    outside, inside = free_port(), free_port()
    node = NodeProcess(tmp_path, node_config(
        pki, outside, inside, node="tls_require_client_cert = false", workers="", clients="""
        [[clients]]
        name = "pinned"
        ae_title = "SECRET"
        destination = "pacs"
        tls_subject = "CN=hospital"

        [[clients]]
        name = "open"
        ae_title = "SECRET2"
        destination = "pacs"
        """))  # fmt: skip

    def echo(called: str, *tls: str) -> bool:
        return echoes(outside, "HOSPITAL", called, *tls, "+cf", str(pki / "ca.crt"))

    def own(who: str) -> tuple[str, ...]:
        return ("+tls", str(pki / f"{who}.key"), str(pki / f"{who}.crt"))

    try:
        node.start(outside, inside)
        assert echo("SECRET", *own("hospital"))  # asked for, shown, pinned: in
        assert not echo("SECRET", "+tla")  # pinned, nothing shown
        assert not echo("SECRET", *own("hospital2"))  # the same CA's, not the one pinned
        assert echo("SECRET2", "+tla")  # not pinned: none needed
        assert echo("SECRET2", *own("hospital2"))
        assert not echo("SECRET2", *own("stranger"))  # shown, but our CA did not sign it
    finally:
        stop_all(node)


def test_a_workers_certificate_must_name_its_host_unless_told_otherwise(pki, tmp_path):
    outside, inside, strict_port, lax_port = free_port(), free_port(), free_port(), free_port()
    # both workers present a CA-signed certificate that names no host
    strict = storescp_tls(pki, "nameless", "STRICT", strict_port, tmp_path / "strict")
    lax = storescp_tls(pki, "nameless", "LAX", lax_port, tmp_path / "lax")
    node = NodeProcess(tmp_path, node_config(pki, outside, inside, clients="""
        [[clients]]
        name = "hospital"
        ae_title = "SECRET"
        destination = "pacs"
        pool = "strict"

        [[clients]]
        name = "hospital2"
        ae_title = "SECRET2"
        destination = "pacs"
        pool = "lax"
        """, workers=f"""
        [[workers]]
        name = "strict"
        host = "127.0.0.1"
        port = {strict_port}
        ae_title = "STRICT"
        pool = "strict"
        tls = true

        [[workers]]
        name = "lax"
        host = "127.0.0.1"
        port = {lax_port}
        ae_title = "LAX"
        pool = "lax"
        tls = true
        tls_check_hostname = false
        """))  # fmt: skip
    try:
        wait_port(strict_port)
        wait_port(lax_port)
        node.start(outside, inside)
        files = write_study(tmp_path / "s", series=1, per_series=1)
        for who, called in (("hospital", "SECRET"), ("hospital2", "SECRET2")):
            sent = storescu_tls(pki, who, outside, files, called=called)
            assert len(acknowledged(sent.stdout + sent.stderr)) == 1, sent.stdout + sent.stderr
        wait_until(lambda: received(tmp_path / "lax") == 1, timeout=30)

        def strict_worker() -> dict:
            result = subprocess.run(
                [sys.executable, "-m", "wolfpacs", "ctl", "--config", str(node.config), "--json",
                 "workers"], capture_output=True, text=True, timeout=60,
            )  # fmt: skip
            return next(w for w in json.loads(result.stdout) if w["name"] == "strict")

        down = wait_until(lambda: (w := strict_worker())["last_error"] and w, timeout=30)
        assert "IP address mismatch" in down["last_error"], down
        assert down["queued"] == 1 and received(tmp_path / "strict") == 0  # kept, not sent
    finally:
        stop_all(node, strict, lax)


def test_tls_settings_that_cannot_work_are_config_errors(tmp_path):
    from wolfpacs.config import ConfigError, parse

    with pytest.raises(ConfigError, match="a TLS port needs tls_cert and tls_key"):
        parse("[node]\ntls_outside = true\n", env={})
    with pytest.raises(ConfigError, match="no such file"):
        parse('[node]\ntls_cert = "/nonexistent.crt"\n', env={})
    client = '[[clients]]\nname = "h"\nae_title = "SECRET"\ndestination = "d"\npool = "p"\n'
    with pytest.raises(ConfigError, match=r"clients\[0\].tls_subject: must be KEY=value pairs"):
        parse(client + 'tls_subject = "hospital"\n', env={})
    with pytest.raises(ConfigError, match='tls_fingerprint: must be "sha256:"'):
        parse(client + 'tls_fingerprint = "md5:00"\n', env={})
