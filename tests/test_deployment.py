"""docs/deployment: the haproxy configs haproxy accepts, node configs WolfPACS accepts, and a
compose file whose parts agree (files it mounts exist, ports match). Nothing is started here:
integration/test_haproxy.py runs haproxy.cfg in front of two nodes."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from tests.conftest import need_program
from wolfpacs.config.checker import load

DEPLOYMENT = Path(__file__).resolve().parent.parent / "docs" / "deployment"
CONFIGS = ("haproxy.cfg", "haproxy-backup.cfg")
NODES = ("node-a", "node-b")


def haproxy() -> str:
    return need_program("haproxy", "apt-get install -y haproxy", "/usr/sbin/haproxy")


def servers(config: str) -> dict[tuple[str, str], str]:
    """(backend, server) → the rest of its ``server`` line."""
    found, backend = {}, ""
    for line in (DEPLOYMENT / config).read_text().splitlines():
        words = line.split()
        if words[:1] == ["backend"]:
            backend = words[1]
        elif words[:1] == ["server"]:
            found[(backend, words[1])] = " ".join(words[2:])
    return found


@pytest.mark.parametrize("config", CONFIGS)
def test_haproxy_accepts_the_shipped_config(config):
    # The nodes' names resolve only on compose's network: here a warning, not an error.
    done = subprocess.run([haproxy(), "-c", "-f", str(DEPLOYMENT / config)],
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "Configuration file is valid" in done.stdout + done.stderr
    assert "[ALERT]" not in done.stderr


@pytest.mark.parametrize("config", CONFIGS)
def test_haproxy_checks_readyz_on_the_http_port_of_both_nodes_in_tcp_mode(config):
    text = (DEPLOYMENT / config).read_text()
    assert re.search(r"^\s+mode tcp$", text, re.M)
    assert text.count("option httpchk GET /readyz") == 2  # outside and inside
    assert re.search(r"^\s+option clitcpka$", text, re.M)
    assert re.search(r"^\s+option srvtcpka$", text, re.M)
    found = servers(config)
    assert set(found) == {(b, n) for b in ("wolfpacs_outside", "wolfpacs_inside") for n in NODES}
    for (backend, name), rest in found.items():
        port = 11112 if backend == "wolfpacs_outside" else 11113
        assert rest.startswith(f"{name}:{port} check port 9111"), rest
        # both active, or node-b the backup that takes over
        assert rest.endswith(" backup") == (config == "haproxy-backup.cfg" and name == "node-b")


@pytest.mark.parametrize("node", NODES)
def test_the_nodes_configs_are_valid_share_the_store_and_answer_haproxys_checks(node):
    config = load(DEPLOYMENT / f"{node}.toml", env={})
    settings = config.node
    assert settings.store == "postgresql://wolfpacs@db/wolfpacs"  # no password: PGPASSWORD
    assert (settings.outside_port, settings.inside_port, settings.http_port) == (11112, 11113, 9111)
    assert settings.bind == "0.0.0.0" and settings.http_bind == "0.0.0.0"  # haproxy reaches it
    assert all(not client.allow for client in config.clients)  # haproxy's address, not theirs
    other = load(DEPLOYMENT / "node-a.toml", env={})
    assert (config.clients, config.workers, config.destinations) == (
        other.clients,
        other.workers,
        other.destinations,
    )  # one service: the same clients, workers and destinations on every node


def test_the_compose_file_mounts_what_is_shipped_and_its_ports_agree():
    text = (DEPLOYMENT / "docker-compose.yml").read_text()
    for mounted in re.findall(r"^\s+- \./([^:\s]+):", text, re.M):
        assert (DEPLOYMENT / mounted).is_file(), mounted
    assert set(re.findall(r"^\s+- \./([^:\s]+):", text, re.M)) == {
        "node-a.toml", "node-b.toml", "haproxy.cfg"
    }  # fmt: skip
    assert (DEPLOYMENT / "../../Dockerfile").resolve().is_file()  # build: ../..
    try:
        import yaml
    except ImportError:  # no YAML parser installed: the text checks above are what there is
        return
    services = yaml.safe_load(text)["services"]
    assert set(services) == {"db", "haproxy", *NODES}
    assert services["haproxy"]["ports"] == ["11112:11112", "11113:11113"]
    for node in NODES:
        service = services[node]
        assert service["hostname"] == node  # the name haproxy.cfg's server lines use
        assert service["image"] == "wolfpacs/wolfpacs"
        assert service["expose"] == ["11112", "11113", "9111"]
        assert f"./{node}.toml:/etc/wolfpacs/node.toml:ro" in service["volumes"]
        assert service["environment"]["WOLFPACS_CONFIG"] == "/etc/wolfpacs/node.toml"
        assert "PGPASSWORD" in service["environment"] and "db" in service["depends_on"]
    assert services["node-a"]["build"] == "../.."
