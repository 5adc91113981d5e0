"""The operator's controls as the operator meets them: the control socket, its TCP port with a
token, and a node that gives up (README, "Operating WolfPACS", "Reliability").
"""

from __future__ import annotations

import stat
import subprocess
import sys
import time

from hospital_network import HOSPITALS, NODE_ENV, Network, poll
from robot.api.deco import keyword

from wolfpacs.testing.peers import free_port

GIVE_UP_DEADLINE = 60.0  # seconds: the root's intensity is 10 restarts a minute


class Controls(Network):
    """Keywords about who may drive the node, and how it ends when it cannot go on."""

    @keyword("A free port")
    def a_free_port(self) -> int:
        return free_port()

    @keyword("The control socket is open to the node's user only")
    def socket_mode(self) -> None:
        path = self.data / "control.sock"
        mode = stat.S_IMODE(path.stat().st_mode)
        assert stat.S_ISSOCK(path.stat().st_mode), f"{path} is no socket"
        assert mode == 0o600, f"{path} has mode {mode:o}, not 600"

    @keyword("Ctl over TCP with the token ${token}")
    def ctl_tcp(self, token: str, *words: str) -> tuple[int, str, str]:
        """``wolfpacs ctl --port P [--token T] --json WORDS`` (no config: the TCP port alone;
        the token "none": no ``--token``): exit code, stdout, stderr."""
        port = str(self.options["control_port"])
        given = [] if token == "none" else ["--token", token]
        result = subprocess.run(
            [sys.executable, "-m", "wolfpacs", "ctl", "--port", port, *given, "--json", *words],
            cwd=self.root, capture_output=True, text=True, timeout=60, env=NODE_ENV,
        )  # fmt: skip
        return result.returncode, result.stdout, result.stderr

    @keyword("Restart WolfPACS with hospital ${hospital} allowed only from ${network}")
    def allow_only(self, hospital: str, network: str) -> None:
        self.allowed[hospital] = network
        self.restart_wolfpacs()

    @keyword("Hospital ${hospital} echoes from address ${address}")
    def echo_from(self, hospital: str, address: str) -> str:
        """A C-ECHO by pynetdicom bound to ``address`` (127.x stands in for another host) with
        the hospital's AE titles: "ok", or the A-ASSOCIATE-RJ's result, source and reason."""
        from pynetdicom import AE

        secret, calling = HOSPITALS[hospital]
        peer = AE(ae_title=calling)
        peer.add_requested_context("1.2.840.10008.1.1")
        assoc = peer.associate("127.0.0.1", self.ports["outside"], ae_title=secret,
                               bind_address=(address, 0))  # fmt: skip
        if assoc.is_established:
            status = assoc.send_c_echo()
            assoc.release()
            return "ok" if status and status.Status == 0 else f"echo answered {status}"
        if assoc.is_rejected:
            rj = assoc.acceptor.primitive
            said = f"result {rj.result}, source {rj.result_source}, reason {rj.diagnostic}"
            return f"rejected: {said}"
        return "no association"

    @keyword("Crash ${actor} until the node gives up")
    def crash_until_given_up(self, actor: str) -> int:
        """``ctl kill ACTOR`` (fault injection) again and again, each once its supervisor has
        started it again, until the node exits; its exit code."""
        assert self.node is not None
        deadline = time.monotonic() + GIVE_UP_DEADLINE
        node = self.node
        while node.poll() is None and time.monotonic() < deadline:
            code, _, _ = self.run_ctl("kill", actor)
            if code != 0 and node.poll() is None:  # between its crash and its restart
                poll(lambda: node.poll() is not None or self.run_ctl("inspect", actor)[0] == 0,
                     f"{actor} started again")  # fmt: skip
        code = node.wait(GIVE_UP_DEADLINE)
        self.node = None
        return code

    def run_ctl(self, *words: str) -> tuple[int, str, str]:
        raise NotImplementedError  # the operator's keyword, in WolfPACS.py
