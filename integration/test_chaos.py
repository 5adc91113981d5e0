"""A short chaos run, as CI can afford it: nothing acknowledged may be lost or misrouted."""

from __future__ import annotations

import json
import subprocess
import sys


def test_a_short_chaos_run_loses_nothing(tmp_path):
    report = tmp_path / "ledger.json"
    result = subprocess.run(
        [sys.executable, "-m", "wolfpacs", "chaos", "--instances", "300", "--studies", "10",
         "--faults", "10", "--kills", "1", "--duration", "30", "--seed", "7",
         "--report", str(report)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]
    ledger = json.loads(report.read_text())
    assert ledger["clean"] and ledger["lost"] == 0 and ledger["misrouted"] == 0
    assert ledger["acknowledged"] == 300 and ledger["delivered"] == 300
    assert ledger["node_kills"] == 1 and ledger["faults"] == 10
    assert "CLEAN" in result.stdout
