"""docs/monitoring: the alert rules pass promtool and their unit tests, every alert is tested
firing and quiet, the dashboard's queries parse, and every metric they name is one a node
exports (so renaming a metric cannot leave the docs behind)."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import need_program, wait_until
from tests.test_web import get

DOCS = Path(__file__).resolve().parent.parent / "docs" / "monitoring"
ALERTS, ALERTS_TEST, DASHBOARD = "alerts.yml", "alerts_test.yml", "grafana-dashboard.json"
PROMTOOL = ("promtool", "apt-get install -y prometheus")
METRIC = re.compile(r"\bwolfpacs_[a-z0-9_]+")
# What the issue asks to be alerted on, by the rules' names.
ALERTED = {
    "WolfPACSDown", "WolfPACSPoolUnreachable", "WolfPACSQueueStale", "WolfPACSDeadLetters",
    "WolfPACSRestartLoop", "WolfPACSSpoolNearLimit", "WolfPACSDiskNearMinFree",
    "WolfPACSResultsOverdue", "WolfPACSNodeDead",
}  # fmt: skip


def promtool(*args: str, cwd: Path = DOCS) -> str:
    """promtool's output; the test fails with it if promtool says no."""
    run = subprocess.run([need_program(*PROMTOOL), *args], cwd=cwd, capture_output=True,
                         text=True, timeout=60)  # fmt: skip
    output = run.stdout + run.stderr
    assert run.returncode == 0, f"promtool {' '.join(args)}:\n{output}"
    return output


def alerts() -> list[str]:
    return re.findall(r"^\s*- alert: (\w+)$", (DOCS / ALERTS).read_text(), re.MULTILINE)


def test_the_alert_rules_are_valid_and_pass_their_unit_tests():
    assert f"SUCCESS: {len(alerts())} rules found" in promtool("check", "rules", ALERTS)
    assert "SUCCESS" in promtool("test", "rules", ALERTS_TEST)


def test_every_alert_asked_for_exists_and_is_tested_both_firing_and_quiet():
    names = alerts()
    missing = ALERTED - set(names)
    assert not missing, f"no rule for {sorted(missing)}"
    cases = re.findall(r"alertname: (\w+)\n\s+exp_alerts:(.*)", (DOCS / ALERTS_TEST).read_text())
    for name in names:
        outcomes = {"quiet" if rest.strip() == "[]" else "fires" for n, rest in cases if n == name}
        assert outcomes == {"quiet", "fires"}, f"{name} is tested {outcomes or 'never'}"


def queries() -> list[str]:
    """The dashboard's PromQL, its panels' and its variables'."""
    board = json.loads((DOCS / DASHBOARD).read_text())
    found = [t["expr"] for p in board["panels"] for t in p.get("targets", [])]
    for variable in board["templating"]["list"]:
        query = variable.get("definition", "")
        found += re.findall(r"label_values\((.+), \w+\)", query)
    return found


def test_the_dashboards_queries_are_valid_promql(tmp_path):
    board = json.loads((DOCS / DASHBOARD).read_text())
    datasources = {
        json.dumps(t["datasource"]) for p in board["panels"] for t in p.get("targets", [])
    }
    assert datasources == {'{"type": "prometheus", "uid": "${datasource}"}'}  # one, chosen
    exprs = queries()
    assert len(exprs) > 20
    # Grafana's variables as Prometheus would see them once Grafana has put them in.
    rules = [
        {"record": f"dashboard:query_{n}",
         "expr": e.replace("$__rate_interval", "2m").replace("$instance", ".*")}
        for n, e in enumerate(exprs)
    ]  # fmt: skip
    (tmp_path / "dashboard.yml").write_text(
        json.dumps({"groups": [{"name": "dashboard", "rules": rules}]})  # JSON is YAML
    )
    assert f"SUCCESS: {len(rules)} rules found" in promtool(
        "check", "rules", "dashboard.yml", cwd=tmp_path
    )


def exported(text: str) -> tuple[set[str], set[str]]:
    """The series names a /metrics text can have (its metrics without samples yet included),
    and its metrics' names (a histogram's has no series of its own)."""
    series, families = set(), set()
    for family in text_string_to_metric_families(text):
        families.add(family.name)
        if family.type == "counter":
            series.add(f"{family.name}_total")
        elif family.type == "histogram":
            series.update(f"{family.name}{suffix}" for suffix in ("_bucket", "_sum", "_count"))
        else:
            series.add(family.name)
        series.update(sample.name for sample in family.samples)
    return series, families


def test_every_metric_the_alerts_tests_and_dashboard_use_is_one_a_node_exports(world):
    w = world()
    assert w.send(w.study("s", series=1, per_series=2)) == [0, 0]
    wait_until(lambda: w.delivered() == 2)
    code, body = get(w, "/metrics")
    assert code == 200
    series, families = exported(body.decode())
    assert "wolfpacs_dead_letters_total" in series  # declared, though none was counted
    assert "wolfpacs_pool_reachable_workers" in series and "wolfpacs_disk_free_bytes" in series
    # PromQL names series; the README may name a histogram itself.
    for doc, known in ((ALERTS, series), (ALERTS_TEST, series), (DASHBOARD, series),
                       ("README.md", series | families)):  # fmt: skip
        used = set(METRIC.findall((DOCS / doc).read_text()))
        assert used, f"{doc} names no metric"
        assert used <= known, f"{doc} names metrics no node exports: {sorted(used - known)}"
