"""The HTTP port: metrics, health, readiness and the status page, from a running node."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

from supervisors import join, kill
from tests.conftest import wait_until


def get(w, path: str) -> tuple[int, bytes]:
    url = f"http://127.0.0.1:{w.config.node.http_port}{path}"
    try:
        with urllib.request.urlopen(url, timeout=10) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def test_metrics_count_what_crossed_the_node(world):
    w = world()
    assert w.send(w.study("s", series=1, per_series=3)) == [0, 0, 0]
    wait_until(lambda: w.delivered() == 3)
    code, body = get(w, "/metrics")
    text = body.decode()
    assert code == 200
    assert (
        'wolfpacs_instances_total{direction="in",peer="demo-hospital",side="outside"} 3.0' in text
    )
    assert 'wolfpacs_associations_total{outcome="accepted",reason="",side="outside"} 1.0' in text
    assert 'wolfpacs_cstore_statuses_total{direction="in",status="0x0000"}' in text
    assert "wolfpacs_receive_to_spooled_seconds_bucket" in text
    assert 'wolfpacs_worker_open_studies{worker="gpu-1"}' in text
    wait_until(lambda: 'direction="out",peer="gpu-' in get(w, "/metrics")[1].decode())


def test_health_and_readiness_say_what_is_wrong(world):
    w = world()
    assert get(w, "/healthz") == (200, b'{"status": "ok", "problems": []}')
    assert json.loads(get(w, "/readyz")[1]) == {"status": "ok", "problems": []}
    w.node.spool.min_free = 1 << 62  # more free disk than there is
    code, body = get(w, "/readyz")
    assert code == 503 and "disk nearly full" in json.loads(body)["problems"][0]
    w.node.spool.min_free = 0
    w.admin("kill", actor="receivers")
    # while a supervisor restarts, health may say so; it recovers by itself
    wait_until(lambda: get(w, "/healthz")[0] == 200, what="healthy again")


def test_health_names_an_actor_that_is_down(world):
    w = world()
    router = w.actor("router")
    w.node.registry.unregister("router", router)  # as if it were between two lives
    code, body = get(w, "/healthz")
    assert code == 503 and json.loads(body)["problems"] == ["router is not running (restarting?)"]
    kill(router)
    join(router, timeout=10)


def test_the_status_page_shows_workers_queues_tree_and_studies(world):
    w = world()
    assert w.send(w.study("s", series=1, per_series=2)) == [0, 0]
    wait_until(lambda: w.delivered() == 2)
    code, body = get(w, "/")
    page = body.decode()
    assert code == 200 and "<meta http-equiv=refresh" in page
    held = "gpu-1" if w.workers[0].received else "gpu-2"
    assert f"<td class=worker>{held}</td>" in page  # the study's row in recent studies
    assert "listener:outside" in page and "<table id=workers>" in page
    assert get(w, "/nowhere")[0] == 404
