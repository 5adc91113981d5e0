"""The HTTP port: metrics, health, readiness and the status page, from a running node."""

from __future__ import annotations

import json
import re
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
    assert re.search(r"<td class=routed_at>[\d.]+ s ago</td>", page)  # times as ctl says them
    assert "listener:outside" in page and "<table id=workers>" in page
    # One worker took the study; the other has not been asked anything (no C-ECHO here).
    assert "<td class=pool>demo</td><td class=reachable>1/2 (1 not heard from yet)</td>" in page
    assert get(w, "/nowhere")[0] == 404


def ask(w, path: str, headers: dict[str, str] | None = None, form: str | None = None):
    """(status, headers, body) of one request; redirects are not followed."""

    class Stay(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: object) -> None:
            return None

    url = f"http://127.0.0.1:{w.config.node.http_port}{path}"
    request = urllib.request.Request(url, headers=headers or {},
                                     data=form.encode() if form is not None else None)  # fmt: skip
    try:
        with urllib.request.build_opener(Stay).open(request, timeout=10) as answer:
            return answer.status, answer.headers, answer.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers, error.read()


PAGE_TOKEN, METRICS_TOKEN = "page-token-0123456789", "metrics-token-0123456789"


def test_with_tokens_the_page_and_views_need_one_and_the_probes_do_not(world):
    w = world(http_token=PAGE_TOKEN, metrics_token=METRICS_TOKEN)
    assert w.send(w.study("s", series=1, per_series=1)) == [0]
    uid = w.admin("studies")[0]["study_uid"]
    for path in ("/healthz", "/readyz"):
        assert ask(w, path)[0] == 200
    code, headers, body = ask(w, "/")
    assert code == 401 and b"<form method=post action=/login>" in body and uid.encode() not in body
    code, headers, body = ask(w, "/api/studies")
    assert code == 401 and headers["WWW-Authenticate"] == 'Bearer realm="WolfPACS"'
    assert uid.encode() not in body
    bearer = {"Authorization": f"Bearer {PAGE_TOKEN}"}
    code, _, body = ask(w, "/api/studies?limit=5", bearer)
    assert code == 200 and json.loads(body)[0]["study_uid"] == uid
    assert json.loads(ask(w, f"/api/study?uid={uid}", bearer)[2])[0]["client"] == "demo-hospital"
    assert ask(w, "/api/kill", bearer)[0] == 404  # only reading verbs are views
    assert ask(w, "/metrics")[0] == 401 and ask(w, "/metrics", bearer)[0] == 401
    assert ask(w, "/metrics", {"Authorization": f"Bearer {METRICS_TOKEN}"})[0] == 200


def test_the_login_form_gives_a_browser_a_session(world, caplog):
    w = world(http_token=PAGE_TOKEN)
    code, _, body = ask(w, "/login", form="token=not-it")
    assert code == 401 and b"That is not the token." in body
    assert "not-it" not in caplog.text and PAGE_TOKEN not in caplog.text
    code, headers, _ = ask(w, "/login", form=f"token={PAGE_TOKEN}")
    assert code == 303 and headers["Location"] == "/"
    session = headers["Set-Cookie"].split(";", 1)[0]
    assert PAGE_TOKEN not in session and "HttpOnly" in headers["Set-Cookie"]
    code, _, body = ask(w, "/", {"Cookie": session})
    assert (code == 200 and b'<table id="workers">' in body) or b"<table id=workers>" in body
    assert ask(w, "/metrics")[0] == 200  # no metrics_token: /metrics stays open


def test_a_pool_with_no_reachable_worker_is_marked_takes_new_studies_and_stays_ready(world):
    w = world(echo_interval=0.1)
    for worker in w.workers:
        worker.stop()

    def metrics() -> str:
        return get(w, "/metrics")[1].decode()

    down = [f'wolfpacs_target_up{{kind="worker",target="gpu-{n}"}} 0.0' for n in (1, 2)]
    wait_until(lambda: all(d in metrics() for d in down), what="both workers seen down")
    text = metrics()
    assert 'wolfpacs_pool_workers{pool="demo"} 2.0' in text
    assert 'wolfpacs_pool_reachable_workers{pool="demo"} 0.0' in text
    page = get(w, "/")[1].decode()
    assert ("<tr class=error><td class=pool>demo</td><td class=reachable>0/2 &mdash; no worker "
            "reachable") in page  # fmt: skip
    # New studies are still taken (spooled, owed to a worker), and the node stays ready.
    assert w.send(w.study("s", series=1, per_series=3)) == [0, 0, 0]
    assert get(w, "/readyz")[0] == 200
    queued = w.admin("queues")
    assert sum(q["instances"] for q in queued if q["kind"] == "worker") == 3
    for worker in w.workers:
        worker.start()
    wait_until(lambda: w.delivered() == 3, timeout=20, what="delivered once back")
    wait_until(lambda: 'wolfpacs_pool_reachable_workers{pool="demo"} 2.0' in metrics())
    assert "<td class=pool>demo</td><td class=reachable>2/2</td>" in get(w, "/")[1].decode()
