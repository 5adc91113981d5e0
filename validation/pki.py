"""DICOM TLS in the hospital network: a test PKI made with openssl, and the keywords that use it.

With ``tls_outside=true``, :meth:`TLS.make_pki` makes a CA, the node's certificate, every
hospital's and worker lung-a's (naming 127.0.0.1), one that names no host, and a stranger's
self-signed one; the outside port then speaks TLS, stockholm is pinned to its own certificate's
subject, and the node reaches lung-a over TLS.
"""

from __future__ import annotations

import re
import subprocess

from hospital_network import HOSPITALS, Network, poll
from pydicom.uid import generate_uid
from robot.api.deco import keyword

from wolfpacs.testing.peers import wait_port

# openssl's flag for each TLS version; its -brief server names the version so
OPENSSL_VERSION_FLAG = {"1.0": "-tls1", "1.1": "-tls1_1", "1.2": "-tls1_2", "1.3": "-tls1_3"}
SPOKEN = {"1.0": "TLSv1", "1.1": "TLSv1.1", "1.2": "TLSv1.2", "1.3": "TLSv1.3"}


class TLS(Network):
    """The network's TLS: its PKI, and hospitals and workers that speak TLS."""

    def make_pki(self) -> None:
        """A CA, the node's certificate and every hospital's, and a stranger's self-signed one;
        TLS on the outside port; stockholm pinned to its own certificate's subject."""
        assert self.root is not None
        pki = self.root / "pki"
        pki.mkdir()

        def openssl(*args: str) -> None:
            subprocess.run(["openssl", *args], cwd=pki, check=True, capture_output=True, timeout=60)

        days = ["-days", "2"]
        key = ["-newkey", "rsa:2048", "-nodes", "-keyout"]
        openssl("req", "-x509", *key, "ca.key", "-out", "ca.crt", *days, "-subj", "/CN=CA")
        (pki / "host.ext").write_text("subjectAltName = IP:127.0.0.1, DNS:localhost\n")
        for name in ("node", *HOSPITALS, "lung-a", "nameless"):
            openssl("req", *key, f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}-ct")
            ca = ["-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial"]
            names_host = [] if name == "nameless" else ["-extfile", "host.ext"]
            openssl("x509", "-req", "-in", f"{name}.csr", *ca, "-out", f"{name}.crt", *days,
                    *names_host)  # fmt: skip
        openssl("req", "-x509", *key, "stranger.key", "-out", "stranger.crt", *days,
                "-subj", "/CN=stranger")  # fmt: skip
        self.options.update(
            tls_cert=str(pki / "node.crt"),
            tls_key=str(pki / "node.key"),
            tls_ca=str(pki / "ca.crt"),
            tls_outside="true",
        )
        self.pins["stockholm"] = "CN=stockholm-ct"
        self.pki = pki
        self.peers["lung-a"].tls = self.tls_args("lung-a")

    def tls_args(self, who: str) -> list[str]:
        """DCMTK's TLS options: ``who``'s key and certificate, the CA."""
        pki = self.pki
        return [
            "+tls",
            str(pki / f"{who}.key"),
            str(pki / f"{who}.crt"),
            "+cf",
            str(pki / "ca.crt"),
        ]

    @keyword("Worker lung-a presents a certificate that names no host")
    def nameless_worker(self) -> None:
        worker = self.peers["lung-a"]
        worker.stop()
        worker.tls = self.tls_args("nameless")
        worker.start()

    @keyword("Restart WolfPACS with lung-a's host name not checked")
    def unchecked_hostname(self) -> None:
        self.lung_check_hostname = "false"
        self.restart_wolfpacs()

    @keyword("The outside port's TLS handshake with a hospital that speaks only TLS ${version}")
    def handshake(self, version: str) -> str:
        """``openssl s_client`` limited to one TLS version (1.0 to 1.3), with gothenburg's
        certificate: "accepted TLSv1.x" if the handshake completed in that version, else what
        openssl said (a refusal by the node reads "alert protocol version": the node's alert).

        The client's own security level is lowered to 0: OpenSSL 3 would otherwise not even
        offer TLS 1.0 or 1.1, and the refusal would be the client's, not the node's.
        """
        flag = OPENSSL_VERSION_FLAG[version]
        pki = self.pki
        result = subprocess.run(
            ["openssl", "s_client", "-connect", f"127.0.0.1:{self.ports['outside']}", flag,
             "-cipher", "DEFAULT@SECLEVEL=0", "-cert", str(pki / "gothenburg.crt"),
             "-key", str(pki / "gothenburg.key"), "-CAfile", str(pki / "ca.crt")],
            stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        said = result.stdout + result.stderr
        spoken = re.search(r"^New, (TLSv[\d.]+), Cipher is ", said, re.MULTILINE)
        if result.returncode == 0 and spoken and "Verify return code: 0 (ok)" in said:
            return f"accepted {spoken.group(1)}"
        return said

    @keyword("The outside port's TLS 1.2 handshake with a hospital that offers only ${ciphers}")
    def weak_handshake(self, ciphers: str) -> str:
        """``openssl s_client`` in TLS 1.2 offering only ``ciphers`` (OpenSSL's words, e.g.
        ``eNULL:!aNULL``, the suites without encryption but with a certificate, which a node
        that asks for clients' certificates could agree to; its security level lowered to 0 so
        that it does offer them), with gothenburg's certificate: "session with SUITE" if the
        node agreed to one, else "no session"."""
        pki = self.pki
        result = subprocess.run(
            ["openssl", "s_client", "-connect", f"127.0.0.1:{self.ports['outside']}", "-tls1_2",
             "-cipher", f"{ciphers}:@SECLEVEL=0", "-cert", str(pki / "gothenburg.crt"),
             "-key", str(pki / "gothenburg.key"), "-CAfile", str(pki / "ca.crt")],
            stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        agreed = re.search(r"Cipher is (\S+)", result.stdout + result.stderr)
        suite = agreed.group(1) if agreed else "(NONE)"
        return "no session" if suite == "(NONE)" else f"session with {suite}"

    @keyword("Hospital ${hospital} sends a CT study over TLS without a certificate")
    def send_anonymous(self, hospital: str) -> list[str]:
        """Two instances of a new study by ``storescu +tla`` (TLS, the node's certificate
        checked on the CA, none of its own); the statuses answered."""
        study = str(generate_uid())
        files = self.write_series(study, 2, "CT", "HEAD")
        secret, calling = HOSPITALS[hospital]
        anonymous = ["+tla", "+cf", str(self.pki / "ca.crt")]
        statuses = self.storescu(files, self.ports["outside"], secret, calling, "-xe", *anonymous)
        self.remember(study, "HEAD", files, statuses)
        self.last_study = study
        return statuses

    @keyword("Restart WolfPACS with client certificates not required")
    def certificates_not_required(self) -> None:
        self.options["tls_require_client_cert"] = "false"
        self.restart_wolfpacs()

    @keyword("Hospital ${hospital} sends a CT study over TLS with the certificate of ${who}")
    def send_tls(self, hospital: str, who: str, description: str = "HEAD") -> list[str]:
        """Two instances of a new study by ``storescu +tls``; the statuses answered."""
        study = str(generate_uid())
        files = self.write_series(study, 2, "CT", description)
        secret, calling = HOSPITALS[hospital]
        tls = self.tls_args(who)
        statuses = self.storescu(files, self.ports["outside"], secret, calling, "-xe", *tls)
        self.remember(study, description, files, statuses)
        self.last_study = study
        return statuses

    @keyword('Hospital ${hospital} sends a CT series "${description}" over TLS')
    def send_series_tls(self, hospital: str, description: str) -> str:
        """A new study of one series, with the hospital's own certificate; all acknowledged."""
        statuses = self.send_tls(hospital, hospital, description)
        assert statuses == ["0x0000", "0x0000"], f"{statuses}\n{self.last_output[-2000:]}"
        return self.last_study

    @keyword("The node's TLS handshake with worker lung-a when it speaks only TLS ${version}")
    def worker_handshake(self, version: str) -> str:
        """Worker lung-a's storescp replaced, on its port, by ``openssl s_server`` limited to one
        TLS version (lung-a's certificate; security level 0, so that 1.0 and 1.1 are on offer),
        until the node, delivering lung-a's queue, tries it: "accepted TLSv1.x" if the handshake
        completed, "refused" if the server found none of its versions in the node's hello and
        then completed a handshake in that version with ``openssl s_client`` (so the refusal was
        the node's), else what the server said. Leaves lung-a down: "Worker lung-a comes back".

        Lung-a must have something queued, or the node never connects.
        """
        worker = self.peers["lung-a"]
        worker.stop()
        flag, pki = OPENSSL_VERSION_FLAG[version], self.pki
        assert self.root is not None
        log = self.root / f"s_server-{version}.log"
        with open(log, "wb") as out:
            server = subprocess.Popen(
                ["openssl", "s_server", "-brief", "-accept", f"127.0.0.1:{worker.port}", flag,
                 "-cipher", "DEFAULT@SECLEVEL=0", "-cert", str(pki / "lung-a.crt"),
                 "-key", str(pki / "lung-a.key")],
                stdin=subprocess.PIPE, stdout=out, stderr=subprocess.STDOUT,
            )  # fmt: skip
        try:
            wait_port(worker.port)

            def said() -> str:
                text = log.read_text(errors="replace")
                return text if "Protocol version:" in text or "unsupported protocol" in text else ""

            text = poll(said, f"the node's TLS handshake with lung-a speaking TLS {version}")
            spoken = re.search(r"^Protocol version: (\S+)$", text, re.MULTILINE)
            offered = re.search(r"^Client cipher list: (\S+)$", text, re.MULTILINE)
            self.offered_ciphers = offered.group(1).split(":") if offered else []
            if spoken:
                return f"accepted {spoken.group(1)}"
            subprocess.run(
                ["openssl", "s_client", "-connect", f"127.0.0.1:{worker.port}", flag,
                 "-cipher", "DEFAULT@SECLEVEL=0", "-CAfile", str(pki / "ca.crt")],
                stdin=subprocess.DEVNULL, capture_output=True, timeout=60,
            )  # fmt: skip
            text = log.read_text(errors="replace")
            if f"Protocol version: {SPOKEN[version]}\n" in text:
                return "refused"
            return text
        finally:
            server.terminate()
            server.wait(10)

    @keyword("Restart WolfPACS with TLS on the inside port and worker lung-a pinned")
    def tls_inside(self) -> None:
        """``tls_inside = true``; lung-a pinned to its own certificate's subject."""
        self.options["tls_inside"] = "true"
        self.pins["lung-a"] = "CN=lung-a-ct"
        self.restart_wolfpacs()

    @keyword(
        "Worker ${worker} sends a result for study ${study} over TLS with the certificate of ${who}"
    )
    def send_result_tls(self, worker: str, study: str, who: str) -> str:
        """A derived instance of ``study`` to the inside port over TLS, presenting ``who``'s
        certificate; the status answered, or "no answer" and what storescu said."""
        return self.result(worker, study, *self.tls_args(who))

    @keyword("The PACS of ${hospital} speaks only TLS")
    def pacs_tls(self, hospital: str) -> None:
        """The hospital's PACS (storescp) started again with TLS only (its certificate: the
        hospital's own, which names 127.0.0.1); the node restarted with ``tls = true`` for it."""
        pacs = self.peers[f"{hospital}-pacs"]
        pacs.stop()
        pacs.tls = self.tls_args(hospital)
        pacs.start()
        self.restart_wolfpacs()

    @keyword("The node offered no weak cipher suite")
    def no_weak_cipher(self) -> None:
        """The cipher suites of the node's last hello to a worker (as ``s_server`` listed them)
        include none without encryption or authentication, none with RC4, DES or 3DES, MD5 or
        an export key (the statement: OpenSSL's default suites)."""
        offered = getattr(self, "offered_ciphers", [])
        assert offered, "no hello of the node seen"
        weak = re.compile(r"NULL|ADH|AECDH|anon|RC4|DES|MD5|EXP", re.IGNORECASE)
        assert not [c for c in offered if weak.search(c)], f"weak suites offered: {offered}"
