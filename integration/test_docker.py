"""The Docker image's parts, outside a container: quick, and in the README's ``python3 -m pytest``.

The entry point script (run and console), the sample config, the health
check, and the install step the Dockerfile uses (``pip install`` of the
source tree into a venv, not editable). The image itself is built and run
by ``integration/test_image.py`` (marker ``image``: podman, minutes).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import site
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from integration.peers import echoscu
from tests.conftest import wait_until
from wolfpacs.config import load
from wolfpacs.testing.peers import free_port, wait_port

ROOT = Path(__file__).resolve().parent.parent
ENTRYPOINT = ROOT / "docker" / "entrypoint.sh"


@pytest.fixture
def image_env(tmp_path) -> dict[str, str]:
    """The sample config as the image has it, but its data_dir in tmp_path and free ports.

    PATH starts with the scripts of the Python running pytest, as the image's
    starts with its venv's: the entry point runs the ``wolfpacs`` installed
    beside this Python (a venv need not be activated), not another on PATH.
    """
    config = tmp_path / "wolfpacs.toml"
    sample = (ROOT / "docker" / "wolfpacs.toml").read_text()
    config.write_text(sample.replace('data_dir = "/data"', f'data_dir = "{tmp_path / "data"}"'))
    return {
        **os.environ, "PATH": f"{sysconfig.get_path('scripts')}{os.pathsep}{os.environ['PATH']}",
        "WOLFPACS_CONFIG": str(config),
        "WOLFPACS_OUTSIDE_PORT": str(free_port()), "WOLFPACS_INSIDE_PORT": str(free_port()),
        "WOLFPACS_HTTP_PORT": str(free_port()), "WOLFPACS_HISTORY": str(tmp_path / "history"),
    }  # fmt: skip


def test_the_sample_config_is_valid_and_serves_everyone_nobody():
    config = load(ROOT / "docker" / "wolfpacs.toml", env={})
    assert config.node.bind == "0.0.0.0" and str(config.node.data_dir) == "/data"
    assert config.clients == () and config.node.http_bind == "0.0.0.0"


def test_the_dockerfile_uses_the_entry_point_the_health_check_and_a_plain_user():
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^USER wolfpacs$", dockerfile, re.M)
    assert 'ENTRYPOINT ["wolfpacs-entrypoint"]' in dockerfile
    # Debian's python3, the package in a venv whose python the health check and PATH name
    assert re.search(r"^FROM debian:bookworm-slim$", dockerfile, re.M)
    assert "python3 -m venv /opt/wolfpacs" in dockerfile
    # with the postgresql extra and libpq5: the same image runs several nodes (docs/deployment)
    assert re.search(r"/opt/wolfpacs/bin/pip install .* '/src\[postgresql\]' \\$", dockerfile, re.M)
    assert re.search(r"^\s+libpq5 \\$", dockerfile, re.M)
    assert '"/opt/wolfpacs/bin/python", "-m", "wolfpacs.healthcheck"' in dockerfile
    assert "ENV PATH=/opt/wolfpacs/bin:$PATH" in dockerfile
    assert "EXPOSE 11112 11113 9111" in dockerfile and "VOLUME /data" in dockerfile
    for source in re.findall(r"/src/(\S+)", dockerfile):
        assert (ROOT / source).exists(), source


def test_the_entry_point_runs_the_node_healthy_and_stops_on_sigterm(image_env):
    node = subprocess.Popen([str(ENTRYPOINT)], env=image_env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)  # fmt: skip
    try:
        wait_port(int(image_env["WOLFPACS_OUTSIDE_PORT"]))
        wait_port(int(image_env["WOLFPACS_HTTP_PORT"]))
        check = [sys.executable, "-m", "wolfpacs.healthcheck"]
        wait_until(lambda: subprocess.run(check, env=image_env, timeout=30).returncode == 0,
                   timeout=20, interval=0.2, what="healthy")  # fmt: skip
        # the sample config knows no client yet: everyone is turned away, politely
        refused = echoscu(int(image_env["WOLFPACS_OUTSIDE_PORT"]), "ANYONE")
        assert "Called AE Title Not Recognized" in refused.stderr
        # `docker exec ... wolfpacs ctl workers`: no --config, the image's $WOLFPACS_CONFIG
        ctl = subprocess.run(["wolfpacs", "ctl", "workers"], env=image_env, cwd="/",
                             capture_output=True, text=True, timeout=30)  # fmt: skip
        assert (ctl.returncode, ctl.stdout) == (0, "(none)\n"), ctl.stderr  # no worker yet
    finally:
        node.send_signal(signal.SIGTERM)
        output = node.communicate(timeout=60)[0]
    assert node.returncode == 0, output
    assert subprocess.run(check, env=image_env, timeout=30).returncode == 1  # and now it is not


def test_the_console_opens_the_shell_and_leaving_it_stops_the_node(image_env, tmux):
    env_args = [f"{k}={image_env[k]}" for k in
                ("WOLFPACS_CONFIG", "WOLFPACS_OUTSIDE_PORT", "WOLFPACS_INSIDE_PORT",
                 "WOLFPACS_HTTP_PORT", "WOLFPACS_HISTORY")]  # fmt: skip
    command = f"env {' '.join(env_args)} PATH={image_env['PATH']} {ENTRYPOINT} console"
    tmux("new-session", "-d", "-s", "console", "-x", "150", "-y", "40", command)
    screen = lambda: tmux("capture-pane", "-p", "-t", "console")  # noqa: E731
    wait_until(lambda: "wolfpacs(WOLFPACS)>" in screen(), timeout=30, what="the prompt")
    tmux("send-keys", "-t", "console", "tree", "Enter")
    wait_until(lambda: "listener:outside" in screen(), timeout=10, what="the tree")
    tmux("send-keys", "-t", "console", "C-d")
    port = int(image_env["WOLFPACS_OUTSIDE_PORT"])
    wait_until(lambda: not _listening(port), timeout=30, what="the node stopped")


def _listening(port: int) -> bool:
    import socket

    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def test_the_install_step_of_the_dockerfile(tmp_path):
    """``pip install /src`` into a venv, as the image does it: a wheel built from the tree.

    Offline, in whatever Python runs pytest (a venv or not): the new venv has
    no pip of its own and no ``--system-site-packages`` (that would be the base
    interpreter's, which a venv's dependencies are not in); a ``.pth`` file
    lends it the running interpreter's site-packages instead, so its pip, the
    build backend (``--no-build-isolation``: the test extra has them) and the
    dependencies (``--no-deps``) are those already installed, and ``--no-index``
    keeps pip off the network. The tree is copied first, as the build's
    throwaway mount is: setuptools writes its build files into it.
    """
    tree = tmp_path / "src"
    shutil.copytree(ROOT, tree, ignore=shutil.ignore_patterns(
        ".git", "__pycache__", "*.egg-info", "build", ".*_cache", ".hypothesis"))  # fmt: skip
    venv = tmp_path / "venv"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # the installed copy only

    def run(*command: object) -> str:
        done = subprocess.run(list(map(str, command)), capture_output=True, text=True, env=env,
                              cwd=tmp_path, timeout=300)  # fmt: skip
        assert done.returncode == 0, f"{command}:\n{done.stdout}{done.stderr}"
        return done.stdout

    run(sys.executable, "-m", "venv", "--without-pip", venv)
    python = venv / "bin" / "python"
    purelib = Path(run(python, "-c", "import sysconfig as s; print(s.get_path('purelib'))").strip())
    user = [site.getusersitepackages()] if site.ENABLE_USER_SITE else []
    (purelib / "lent.pth").write_text("".join(f"{d}\n" for d in [*site.getsitepackages(), *user]))
    offline = ("--no-deps", "--no-build-isolation", "--no-index")
    run(python, "-m", "pip", "install", "--quiet", *offline, tree)
    assert run(venv / "bin" / "wolfpacs", "--version").startswith("wolfpacs ")
    code = "import wolfpacs as w, supervisors as s; print(w.__file__, s.__file__)"
    where = run(python, "-c", code)
    assert where.split() == [  # the installed copies, not the source tree
        str(purelib / "wolfpacs" / "__init__.py"), str(purelib / "supervisors" / "__init__.py")
    ]  # fmt: skip
