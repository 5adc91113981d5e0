"""Chaos runs: nothing acknowledged may be lost or misrouted.

The short one runs with every ``pytest``; the long one (marker ``chaos_long``,
``python3 -m pytest -m chaos_long``, a few minutes) only when named, as
``.ci/run`` does.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ARTIFACTS = Path(__file__).parent / "artifacts"  # kept by CI


def _chaos(tmp_path, *args: str, timeout: float, keep: str | None = None) -> tuple[dict, str]:
    """``wolfpacs chaos ARGS``, which must end with exit 0; its ledger and what it printed
    (kept as a CI artefact, integration/artifacts/KEEP.txt and .json, if ``keep`` names one)."""
    report = tmp_path / "ledger.json"
    result = subprocess.run(
        [sys.executable, "-m", "wolfpacs", "chaos", "--report", str(report), *args],
        capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip
    if keep is not None:
        ARTIFACTS.mkdir(exist_ok=True)
        (ARTIFACTS / f"{keep}.txt").write_text(result.stdout)
        if report.exists():
            (ARTIFACTS / f"{keep}.json").write_text(report.read_text())
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]
    return json.loads(report.read_text()), result.stdout


def test_a_short_chaos_run_loses_nothing(tmp_path):
    ledger, out = _chaos(
        tmp_path, "--instances", "300", "--studies", "10", "--faults", "10", "--kills", "1",
        "--duration", "30", "--seed", "7", timeout=600,
    )  # fmt: skip
    assert ledger["clean"] and ledger["lost"] == 0 and ledger["misrouted"] == 0
    assert ledger["acknowledged"] == 300 and ledger["delivered"] == 300
    assert ledger["node_kills"] == 1 and ledger["faults"] == 10
    assert "CLEAN" in out


@pytest.mark.chaos_long
def test_a_long_chaos_run_with_several_kills_loses_nothing(tmp_path):
    ledger, _ = _chaos(
        tmp_path, "--instances", "2000", "--studies", "40", "--clients", "3", "--workers", "4",
        "--faults", "60", "--kills", "3", "--duration", "90", "--seed", "2026", timeout=1200,
    )  # fmt: skip
    assert ledger["clean"] and ledger["lost"] == 0 and ledger["misrouted"] == 0
    assert ledger["acknowledged"] == 2000 and ledger["delivered"] == 2000
    assert ledger["node_kills"] == 3 and ledger["unexplained_dead"] == 0


def _two_nodes(
    tmp_path, postgres, url, *args: str, timeout: float, keep: str | None = None
) -> tuple[dict, str]:
    """A chaos run of two nodes on ``url`` (see :func:`_chaos`)."""
    return _chaos(
        tmp_path, "--nodes", "2", "--store", url, "--store-restart", postgres.restart_command(),
        "--lease-seconds", "2", *args, timeout=timeout, keep=keep,
    )  # fmt: skip


def test_two_nodes_on_postgresql_lose_nothing_through_kills_and_a_database_restart(
    tmp_path, postgres, postgres_url
):
    ledger, out = _two_nodes(
        tmp_path, postgres, postgres_url, "--instances", "300", "--studies", "10",
        "--faults", "10", "--kills", "2", "--duration", "30", "--seed", "19", timeout=600,
    )  # fmt: skip
    assert ledger["clean"] and ledger["lost"] == 0 and ledger["misrouted"] == 0
    assert ledger["acknowledged"] == 300 and ledger["delivered"] == 300
    assert ledger["node_kills"] == 2 and ledger["store_restarts"] >= 1
    assert "through 2 nodes on a shared store" in out and "CLEAN" in out


@pytest.mark.chaos_long
def test_a_long_chaos_run_of_two_nodes_loses_nothing(tmp_path, postgres, postgres_url):
    ledger, _ = _two_nodes(
        tmp_path, postgres, postgres_url, "--instances", "2000", "--studies", "40",
        "--clients", "3", "--workers", "4", "--faults", "60", "--kills", "4",
        "--duration", "90", "--seed", "2027", timeout=1200, keep="chaos-two-nodes",
    )  # fmt: skip
    assert ledger["clean"] and ledger["lost"] == 0 and ledger["misrouted"] == 0
    assert ledger["acknowledged"] == 2000 and ledger["delivered"] == 2000
    assert ledger["node_kills"] == 4 and ledger["store_restarts"] >= 1
    assert ledger["unexplained_dead"] == 0


def test_several_nodes_without_a_shared_store_is_refused_with_a_reason():
    result = subprocess.run(
        [sys.executable, "-m", "wolfpacs", "chaos", "--nodes", "2"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 2
    assert "several nodes share a PostgreSQL store" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_node_of_two_processes_loses_nothing_through_process_and_node_kills(tmp_path):
    ledger, out = _chaos(
        tmp_path, "--processes", "2", "--instances", "300", "--studies", "10", "--faults", "10",
        "--kills", "1", "--duration", "30", "--lease-seconds", "2", "--seed", "20", timeout=600,
    )  # fmt: skip
    assert ledger["clean"] and ledger["lost"] == 0 and ledger["misrouted"] == 0
    assert ledger["acknowledged"] == 300 and ledger["delivered"] == 300
    assert ledger["process_kills"] >= 1 and ledger["node_kills"] == 1
    assert "through one node of 2 processes" in out and "CLEAN" in out
