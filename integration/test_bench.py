"""The benchmark's smoke run: every scenario once, on tiny data, as CI runs it (not timed)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bench.pair import available as haproxy_available
from bench.postgres import available as postgresql_available

ROOT = Path(__file__).resolve().parent.parent


def test_the_benchmark_runs_every_scenario_and_writes_its_results(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--smoke", "--output-dir", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    results = json.loads((tmp_path / "smoke.json").read_text())
    expected = {"direct", "wolfpacs-os", "wolfpacs-fsync", "wolfpacs-rules", "return",
                "direct-8", "wolfpacs-8", "wolfpacs-8-p1", "wolfpacs-8-p2"}  # fmt: skip
    if shutil.which("Orthanc") or Path("/usr/sbin/Orthanc").exists():
        expected.add("orthanc")
    elif os.environ.get("CI", "").lower() == "true":  # elsewhere the bench runs without it
        pytest.fail("Orthanc is missing (apt-get install -y orthanc), and CI=true")
    if postgresql_available():
        expected |= {"wolfpacs-pg", "wolfpacs-pg-8"}
        if haproxy_available():  # two nodes behind haproxy, on one PostgreSQL
            expected.add("wolfpacs-pg-pair-8")
        elif os.environ.get("CI", "").lower() == "true":
            pytest.fail("haproxy is missing (.ci/run installs it), and CI=true")
    elif os.environ.get("CI", "").lower() == "true":
        pytest.fail("PostgreSQL or psycopg is missing (.ci/run installs both), and CI=true")
    assert set(results["scenarios"]) == expected
    for name, scenario in results["scenarios"].items():
        assert scenario["instances_per_s"] > 0 and len(scenario["runs_s"]) == 1, name
        if name.startswith("wolfpacs") or name == "return":
            assert scenario["peak_rss_mb"] > 0 and scenario["cpu_s_per_gb"] >= 0, name
    assert results["latency"]["instances"] == 10
    assert set(results["scaling"]["ms_per_instance"]) == {"10", "100"}
    assert {"os ratio >= 0.5", "8 clients ratio >= 0.5"} <= set(results["targets"])
    for name in ("wolfpacs-fsync", "wolfpacs-8"):  # the store's operations, counted
        assert results["scenarios"][name]["store_operations_per_instance"] > 0, name
    if postgresql_available():
        for name in ("wolfpacs-pg", "wolfpacs-pg-8"):  # and the statements the server ran
            assert results["scenarios"][name]["statements_per_instance"] >= 1, name
            assert results["scenarios"][name]["server_cpu_ms_per_instance"] > 0, name
        assert "PostgreSQL node >= 0.8 x SQLite node (8 clients)" in results["targets"]
        assert "statements (round trips) to PostgreSQL" in done.stdout
    if "wolfpacs-pg-pair-8" in expected:  # both nodes took associations through haproxy
        two = results["scenarios"]["wolfpacs-pg-pair-8"]
        for node_id in ("node-a", "node-b"):
            assert two[f"{node_id}_store_operations_per_instance"] > 0, node_id
        assert "two nodes behind haproxy" in done.stdout
    assert "met" in done.stdout or "MISS" in done.stdout
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return
    assert (tmp_path / "smoke.png").read_bytes().startswith(b"\x89PNG")
