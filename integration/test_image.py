"""The container image, built from the Dockerfile and run (podman; marker ``image``).

``python3 -m pytest -m image integration/test_image.py`` (``.ci/run`` runs it;
a plain ``python3 -m pytest`` leaves it out: a few minutes, and podman).
It builds the Dockerfile as it is, on a ``debian:bookworm-slim`` made locally
(``integration/podman.py``: no registry here), with ``--format docker`` (OCI
drops the HEALTHCHECK), ``--pull=never`` and ``--network host`` for its
``RUN`` steps (they reach the package registries; no bridge, no iptables rule
is set up). Then it runs it and checks what its users count on: the three
ports, ``/healthz`` and ``/readyz``, the HEALTHCHECK (``podman healthcheck
run``: no systemd runs timers here), uid 10001, the node's state on the volume
``/data``, ``podman exec ... wolfpacs ctl workers``, exit 0 on ``podman stop``
(SIGTERM), and the ``console`` mode.

Its traffic stays on loopback: the ports are published on 127.0.0.1 only,
through slirp4netns (a user-mode network stack inside the container's own
namespace), so nothing listens on another address and no route or firewall
rule of the machine changes.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import ssl
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from integration.peers import echoscu
from integration.podman import Podman, base_image
from tests.conftest import wait_until
from wolfpacs.testing.peers import free_port

pytestmark = pytest.mark.image

ROOT = Path(__file__).resolve().parent.parent
CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "wolfpacs-image"
IMAGE = "localhost/wolfpacs:image-test"
VOLUME = "wolfpacs-image-test-data"


@pytest.fixture(scope="module")
def podman():
    root = Path(tempfile.mkdtemp(prefix="wolfpacs-podman-"))  # short: conmon's socket paths
    engine = Podman(root)
    try:
        engine.ensure_runs()
    except BaseException:  # a skip too: nothing was made but the settings
        shutil.rmtree(root)
        raise
    yield engine
    engine.remove_everything()


@pytest.fixture(scope="module")
def image(podman) -> str:
    """The Dockerfile built as it is, on the locally made base."""
    base_image(podman, CACHE)
    podman("build", "--format", "docker", "--pull=never", "--network", "host",
           *_trust_what_this_machine_trusts(podman.root), "--tag", IMAGE, str(ROOT),
           timeout=900)  # fmt: skip
    return IMAGE


def _trust_what_this_machine_trusts(root: Path) -> list[str]:
    """The Dockerfile's build secrets that let pip trust the CAs this machine trusts.

    The build reaches PyPI the way this machine does; where that is through a
    TLS-inspecting proxy, pip's own CA list does not know the proxy's CA. The
    image is the same either way: the secrets are mounted for one step only.
    """
    named = os.environ.get("PIP_CERT") or os.environ.get("SSL_CERT_FILE")
    bundle = named or ssl.get_default_verify_paths().cafile
    if not bundle or not os.path.isfile(bundle):
        return []
    pip_conf = root / "pip.conf"
    pip_conf.write_text("[global]\ncert = /run/secrets/ca.crt\n")
    return ["--secret", f"id=pip.conf,src={pip_conf}", "--secret", f"id=ca.crt,src={bundle}"]


class Node:
    """The image running as a service: its ports published on 127.0.0.1, its data on a volume."""

    def __init__(self, podman: Podman, image: str) -> None:
        self.podman, self.name = podman, "wolfpacs-image-test"
        self.outside, self.inside, self.http = free_port(), free_port(), free_port()
        published = {self.outside: 11112, self.inside: 11113, self.http: 9111}
        podman("volume", "create", VOLUME)
        podman("run", "--detach", "--name", self.name, "--network", "slirp4netns",
               *[f"--publish=127.0.0.1:{mine}:{its}" for mine, its in published.items()],
               "--volume", f"{VOLUME}:/data", image)  # fmt: skip

    def get(self, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.http}{path}", timeout=5) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()

    def ready(self) -> bool:
        # The published ports accept at once (slirp4netns's side listens); ask the node.
        try:
            return self.get("/readyz")[0] == 200
        except (OSError, http.client.HTTPException):
            return False

    def inspect(self) -> dict:
        return json.loads(self.podman("container", "inspect", self.name).stdout)[0]

    def logs(self) -> str:
        done = self.podman("logs", self.name, check=False)
        return (done.stdout + done.stderr)[-3000:]


@pytest.fixture(scope="module")
def node(podman, image):
    started = Node(podman, image)
    try:
        wait_until(started.ready, timeout=60, interval=0.2, what="the node in the image ready")
        yield started
    finally:
        podman("rm", "--force", "--volumes", "--time", "0", started.name, check=False)
        podman("volume", "rm", "--force", VOLUME, check=False)


def test_the_three_ports_are_the_nodes_and_published_on_loopback_only(node):
    published = node.inspect()["NetworkSettings"]["Ports"]
    assert {port: [(b["HostIp"], int(b["HostPort"])) for b in bound]
            for port, bound in published.items()} == {
        "11112/tcp": [("127.0.0.1", node.outside)], "11113/tcp": [("127.0.0.1", node.inside)],
        "9111/tcp": [("127.0.0.1", node.http)],
    }  # fmt: skip
    # A DICOM answer, not just a connection: the node's own refusals, port by port.
    outside = echoscu(node.outside, "ANYONE")
    assert "Called AE Title Not Recognized" in outside.stderr, outside.stderr
    inside = echoscu(node.inside, "WOLFPACS", calling="NO_WORKER")  # no worker has that title
    assert "Calling AE Title Not Recognized" in inside.stderr, inside.stderr
    assert node.get("/healthz")[0] == 200
    status, body = node.get("/readyz")
    assert (status, json.loads(body)["problems"]) == (200, [])


def test_the_health_check_is_the_images_and_says_healthy(node):
    check = node.inspect()["Config"]["Healthcheck"]["Test"]
    assert check == ["CMD", "/opt/wolfpacs/bin/python", "-m", "wolfpacs.healthcheck"]
    ran = node.podman("healthcheck", "run", node.name, check=False)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert node.inspect()["State"]["Health"]["Status"] == "healthy"


def test_the_node_runs_as_uid_10001(node):
    status = node.podman("exec", node.name, "cat", "/proc/1/status").stdout
    uids = next(line.split()[1:] for line in status.splitlines() if line.startswith("Uid:"))
    assert uids == ["10001"] * 4  # real, effective, saved, filesystem
    command = node.podman("exec", node.name, "cat", "/proc/1/cmdline").stdout.split("\0")
    assert command[1:4] == ["/opt/wolfpacs/bin/wolfpacs", "run", "--config"]  # the node is pid 1


def test_the_node_keeps_its_state_on_the_volume_data(node):
    image = node.podman("image", "inspect", IMAGE).stdout
    assert "/data" in json.loads(image)[0]["Config"]["Volumes"]
    (mount,) = [m for m in node.inspect()["Mounts"] if m["Destination"] == "/data"]
    assert (mount["Type"], mount["Name"]) == ("volume", VOLUME)
    data = Path(mount["Source"])  # the volume, seen from the machine
    for name in ("state.sqlite3", "node.lock", "audit.log", "spool"):
        assert (data / name).exists(), sorted(p.name for p in data.iterdir())
        assert (data / name).stat().st_uid == 10001


def test_ctl_workers_through_podman_exec(node):
    ctl = node.podman("exec", node.name, "wolfpacs", "ctl", "workers", check=False)
    assert (ctl.returncode, ctl.stdout) == (0, "(none)\n"), ctl.stderr


def test_podman_stop_sends_sigterm_and_the_node_exits_0(podman, image):
    name = "wolfpacs-image-test-stop"
    podman("run", "--detach", "--name", name, "--network", "none", image)
    try:
        healthy = lambda: podman("healthcheck", "run", name, check=False).returncode == 0  # noqa: E731
        wait_until(healthy, timeout=60, interval=0.5, what="healthy")
        # SIGTERM (the image sets no other STOPSIGNAL), then SIGKILL after 60 s: exit 137
        podman("stop", "--time", "60", name, timeout=90)
        state = json.loads(podman("inspect", name).stdout)[0]["State"]
        logs = podman("logs", name)
        assert (state["Status"], state["ExitCode"]) == ("exited", 0), logs.stderr[-3000:]
        assert "wolfpacs: stopped" in logs.stdout + logs.stderr
    finally:
        podman("rm", "--force", "--volumes", "--time", "0", name, check=False)


def test_the_console_opens_the_shell_and_leaving_it_stops_the_container(podman, image, tmux):
    name = "wolfpacs-image-test-console"
    tmux("new-session", "-d", "-s", "console", "-x", "150", "-y", "40",
         podman.command("run", "--interactive", "--tty", "--name", name, "--network", "none",
                        image, "console"))  # fmt: skip
    try:
        screen = lambda: tmux("capture-pane", "-p", "-t", "console")  # noqa: E731
        wait_until(lambda: "wolfpacs(WOLFPACS)>" in screen(), timeout=60, what="the prompt")
        tmux("send-keys", "-t", "console", "tree", "Enter")
        wait_until(lambda: "listener:outside" in screen(), timeout=10, what="the tree")
        tmux("send-keys", "-t", "console", "C-d")
        state = lambda: json.loads(podman("inspect", name).stdout)[0]["State"]  # noqa: E731
        wait_until(lambda: state()["Status"] == "exited", timeout=60, what="the container exited")
        assert state()["ExitCode"] == 0, screen()
    finally:
        podman("rm", "--force", "--volumes", "--time", "0", name, check=False)
