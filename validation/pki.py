"""DICOM TLS in the hospital network: a test PKI made with openssl, and the keywords that use it.

With ``tls_outside=true``, :meth:`TLS.make_pki` makes a CA, the node's certificate, every
hospital's and worker lung-a's (naming 127.0.0.1), one that names no host, and a stranger's
self-signed one; the outside port then speaks TLS, stockholm is pinned to its own certificate's
subject, and the node reaches lung-a over TLS.
"""

from __future__ import annotations

import re
import subprocess

from hospital_network import HOSPITALS, Network
from pydicom.uid import generate_uid
from robot.api.deco import keyword


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
        flag = {"1.0": "-tls1", "1.1": "-tls1_1", "1.2": "-tls1_2", "1.3": "-tls1_3"}[version]
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
