"""Random drains, resumes, moves, worker outages, additions and removals, with sends between.

Whatever the sequence: a study that was never moved lands whole on one
worker, and every acknowledged instance reaches a worker or, if an
operator forced its worker out, dead/ with the reason. Nothing is lost.
"""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydicom import dcmread
from pydicom.uid import generate_uid

from tests.conftest import wait_until
from tests.world import World
from wolfpacs.ops.admin import AdminError
from wolfpacs.testing.peers import SimulatedWorker
from wolfpacs.testing.synthetic import ct_instance, write

WORKERS = ["gpu-1", "gpu-2", "gpu-3"]
OPS = st.one_of(
    st.tuples(st.just("send"), st.integers(0, 3), st.integers(1, 2)),
    st.tuples(st.just("drain"), st.sampled_from(WORKERS)),
    st.tuples(st.just("resume"), st.sampled_from(WORKERS)),
    st.tuples(st.just("move"), st.sampled_from(WORKERS), st.sampled_from(WORKERS)),
    st.tuples(st.just("outage"), st.integers(0, 1)),
    st.tuples(
        st.just("add"),
    ),
    st.tuples(st.just("remove"), st.booleans()),
)


@settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))
@given(ops=st.lists(OPS, min_size=3, max_size=9))
def test_admin_sequences_keep_stickiness_and_lose_nothing(tmp_path_factory, ops):
    w = World(tmp_path_factory.mktemp("model"))
    extra = SimulatedWorker("GPU_C", w.inside)
    extra.start()
    peers = [*w.workers, extra]
    studies = [generate_uid() for _ in range(4)]
    acked: dict[str, str] = {}  # SOPInstanceUID → study
    moved: set[str] = set()
    sent = 0
    try:
        for op in ops:
            try:
                if op[0] == "send":
                    _, index, count = op
                    files = []
                    for _ in range(count):
                        sent += 1
                        ds = ct_instance(studies[index], generate_uid(), 1, rows=8, columns=8)
                        files.append(write(ds, w.root / f"i{sent}.dcm"))
                    for path, status in zip(files, w.send(files), strict=True):
                        if status == 0:
                            acked[str(dcmread(path).SOPInstanceUID)] = studies[index]
                elif op[0] in ("drain", "resume"):
                    w.admin(op[0], worker=op[1])
                elif op[0] == "move":
                    moved.update(w.admin("move", worker=op[1], to=op[2])["moved_studies"])
                elif op[0] == "outage":
                    peer = w.workers[op[1]]
                    peer.stop() if peer.running else peer.start()
                elif op[0] == "add":
                    w.admin("add-worker", name="gpu-3", host="127.0.0.1", port=extra.port,
                            ae_title="GPU_C", pool="demo")  # fmt: skip
                elif op[0] == "remove":
                    before = {s["study_uid"] for s in w.admin("studies", worker="gpu-3")}
                    w.admin("remove-worker", name="gpu-3", force=op[1])
                    moved.update(before)  # its studies will be routed anew
            except AdminError:
                pass  # a refusal (unknown worker, busy worker, same worker): changes nothing
        for peer in w.workers:
            if not peer.running:
                peer.start()
        dead = lambda: {d.get("sop_instance_uid") for d in w.admin("dead")}  # noqa: E731
        held = lambda: {i.sop_instance_uid for p in peers for i in p.received}  # noqa: E731
        wait_until(lambda: set(acked) <= held() | dead(), timeout=60, what="every acked instance")
        for study in set(acked.values()) - moved:
            owners = {p.ae_title for p in peers for i in p.received if i.study_uid == study}
            assert len(owners) <= 1, f"study {study} never moved but is on {owners}"
    finally:
        w.stop()
        extra.stop()
