"""The rule verbs (rules, add-rule, remove-rule) and add-client without a pool, in-process.

Each change is checked as the file's rules are, persisted, made live at
once, written by ``config --export`` (which loads back) and kept across a
restart; each refusal names the problem and changes nothing.
"""

from __future__ import annotations

import pytest

from tests.world import CLIENT_AE
from wolfpacs.config import parse
from wolfpacs.ops.admin import AdminError
from wolfpacs.ops.render import render

CLIENT = "demo-hospital"
CHEST = "SeriesDescription=(?i).*chest.*"


def lung(w) -> None:
    """A second pool, ``lung``, of one worker (nothing is sent to it here)."""
    w.admin("add-worker", name="cpu-l", host="127.0.0.1", port=9, ae_title="CPU_L", pool="lung")


def live_rules(w) -> list[tuple[dict[str, str], str, str]]:
    """The client's rules as the router reads them: the live config."""
    client = w.node.live.get().client(CLIENT)
    return [({c.key: c.pattern for c in r.match}, r.pool, r.action) for r in client.rules]


def test_rules_shows_the_rules_and_the_default_pool_never_the_secret(world):
    w = world()
    shown = w.admin("rules", client=CLIENT)
    assert shown == {"client": CLIENT, "pool": "demo", "rules": []}
    assert render("rules", shown) == f"client {CLIENT}: no rules\ndefault pool: demo"
    lung(w)
    w.admin("add-rule", client=CLIENT, match=["Modality=CT", CHEST], pool="lung")
    shown = w.admin("rules", client=CLIENT)
    assert shown["rules"] == [{"index": 0, "match": {"Modality": "CT", "SeriesDescription":
                               "(?i).*chest.*"}, "pool": "lung", "action": None}]  # fmt: skip
    assert CLIENT_AE not in repr(shown) and CLIENT_AE not in render("rules", shown)
    with pytest.raises(AdminError, match="no client 'nobody'"):
        w.admin("rules", client="nobody")


def test_add_rule_appends_or_inserts_and_the_router_reads_it_at_once(world):
    w = world()
    lung(w)
    first = w.admin("add-rule", client=CLIENT, match=["Modality=CT", CHEST], pool="lung")
    assert first["added"] == 0 and first["pool"] == "demo"
    second = w.admin("add-rule", client=CLIENT, match=["Modality=SR|PR|KO"], discard=True, at=0)
    assert second["added"] == 0 and [r["index"] for r in second["rules"]] == [0, 1]
    # split at the first '=': the expression keeps the others
    w.admin("add-rule", client=CLIENT, match=["calling_ae=A=B"], pool="demo")
    assert live_rules(w) == [
        ({"Modality": "SR|PR|KO"}, "", "discard"),
        ({"Modality": "CT", "SeriesDescription": "(?i).*chest.*"}, "lung", ""),
        ({"calling_ae": "A=B"}, "demo", ""),
    ]
    text = render("add-rule", w.admin("add-rule", client=CLIENT, match=["Modality=MR"],
                                      pool="demo", at=3))  # fmt: skip
    assert text.splitlines() == [
        f"added rule 3 to {CLIENT}",
        f"client {CLIENT}: rules tried in order, the first that matches decides",
        "#  MATCH                                          THEN",
        "0  'Modality=SR|PR|KO'                            discard",
        "1  Modality=CT 'SeriesDescription=(?i).*chest.*'  pool lung",
        "2  calling_ae=A=B                                 pool demo",
        "3  Modality=MR                                    pool demo",
        "default pool: demo",
    ]


@pytest.mark.parametrize(
    ("args", "problem"),
    [
        ({"match": ["Modalty=CT"], "pool": "demo"},
         f"client {CLIENT}, rules[1].match.Modalty: unknown DICOM keyword (did you mean "
         "'Modality'?)"),
        ({"match": ["Modality=(CT"], "pool": "demo"},
         f"client {CLIENT}, rules[1].match.Modality: bad regular expression"),
        ({"match": ["PixelData=.*"], "pool": "demo"}, "not before PixelData"),
        ({"match": ["Modality="], "pool": "demo"}, "an empty regular expression matches no"),
        ({"match": ["Modality=CT"], "pool": "lng"},
         f"client {CLIENT}, rules[1].pool: unknown pool 'lng' (no worker has it; did you "
         "mean 'lung'?)"),
        ({"match": ["Modality=CT"], "pool": "demo", "at": 0}, None),  # the one that works
        ({"match": ["Modality=CT"], "pool": "demo", "discard": True}, "not both"),
        ({"match": ["Modality=CT"]}, "--pool P, or --discard"),
        ({"match": ["Modality"], "pool": "demo"}, "write KEY=REGEX"),
        ({"match": ["=CT"], "pool": "demo"}, "write KEY=REGEX"),
        ({"match": [], "pool": "demo"}, "at least one"),
        ({"match": ["Modality=CT", "Modality=MR"], "pool": "demo"}, "names Modality twice"),
        ({"match": ["Modality=CT"], "pool": "demo", "at": 3}, "--at 3: client demo-hospital "
         "has 1 rule; 0 to 1 (1 adds it last)"),
        ({"match": ["Modality=CT"], "pool": "demo", "at": -1}, "--at -1"),
        ({"match": "Modality=CT", "pool": "demo"}, "match must be list"),
        ({"match": ["Modality=CT"], "pool": "demo", "action": "discard"}, "unknown argument"),
    ],
)  # fmt: skip
def test_add_rule_is_refused_with_the_problem_named_and_nothing_changes(world, args, problem):
    w = world()
    lung(w)
    w.admin("add-rule", client=CLIENT, match=["Modality=SR"], discard=True)
    before = (live_rules(w), w.node.store.runtime_changes())
    if problem is None:
        assert w.admin("add-rule", client=CLIENT, **args)["added"] == 0
        return
    with pytest.raises(AdminError) as refused:
        w.admin("add-rule", client=CLIENT, **args)
    assert problem in str(refused.value)
    assert (live_rules(w), w.node.store.runtime_changes()) == before
    with pytest.raises(AdminError, match="no client 'nobody'"):
        w.admin("add-rule", client="nobody", match=["Modality=CT"], pool="demo")


def test_remove_rule_by_its_index(world):
    w = world()
    for modality in ("CT", "MR", "SR"):
        w.admin("add-rule", client=CLIENT, match=[f"Modality={modality}"], pool="demo")
    removed = w.admin("remove-rule", client=CLIENT, index=1)
    assert removed["removed"] == {"index": 1, "match": {"Modality": "MR"}, "pool": "demo",
                                  "action": None}  # fmt: skip
    assert [r["match"] for r in removed["rules"]] == [{"Modality": "CT"}, {"Modality": "SR"}]
    assert "note" not in removed  # the client still has its default pool
    assert render("remove-rule", removed).startswith(
        f"removed rule 1 of {CLIENT}: Modality=MR -> pool demo\n"
    )
    before = w.node.store.runtime_changes()
    for index, problem in ((2, "has no rule 2: it has 2 rules (0 to 1)"), (-1, "no rule -1")):
        with pytest.raises(AdminError, match=problem.replace("(", r"\(").replace(")", r"\)")):
            w.admin("remove-rule", client=CLIENT, index=index)
    assert w.node.store.runtime_changes() == before
    with pytest.raises(AdminError, match="no client"):
        w.admin("remove-rule", client="nobody", index=0)


def test_rule_changes_survive_a_restart_and_the_export_loads_back(world):
    w = world()
    lung(w)
    w.admin("add-rule", client=CLIENT, match=["Modality=CT", CHEST], pool="lung")
    w.admin("add-rule", client=CLIENT, match=["Modality=SR|PR|KO"], discard=True)
    w.admin("add-rule", client=CLIENT, match=["Modality=MR"], pool="demo", at=0)
    w.admin("remove-rule", client=CLIENT, index=0)
    shown = w.admin("rules", client=CLIENT)
    w.restart()
    assert w.admin("rules", client=CLIENT) == shown
    assert [m for m, _, _ in live_rules(w)] == [
        {"Modality": "CT", "SeriesDescription": "(?i).*chest.*"}, {"Modality": "SR|PR|KO"},
    ]  # fmt: skip
    exported = w.admin("config", export=True)
    assert '[[clients.rules]]\nmatch = { Modality = "CT", SeriesDescription = ' in exported
    assert CLIENT_AE not in exported
    again = parse(w.admin("config", export=True, show_secrets=True))
    assert again.clients == w.node.live.get().clients and again.workers == w.node.live.get().workers


def test_a_client_without_a_pool_refuses_every_series_until_it_has_rules(world):
    w = world()
    added = w.admin("add-client", name="gbg", ae_title="GBG_SECRET", destination="demo-pacs")
    assert added["note"].startswith("no pool and no rules: it refuses every series")
    assert w.admin("rules", client="gbg") == {"client": "gbg", "pool": None, "rules": []}
    assert {c["name"]: c["pool"] for c in w.admin("clients")} == {CLIENT: "demo", "gbg": None}
    assert render("rules", w.admin("rules", client="gbg")).endswith(
        "default pool: none: unmatched series are refused"
    )
    files = w.study("s", series=1, per_series=1)
    assert all(w.send(files, called="GBG_SECRET"))  # refused, not taken
    assert w.delivered() == 0
    w.admin("add-rule", client="gbg", match=["Modality=CT"], pool="demo")
    removed = w.admin("remove-rule", client="gbg", index=0)  # the last one: allowed, said
    assert removed["note"] == added["note"] and removed["rules"] == []
    w.restart()
    assert w.admin("rules", client="gbg")["pool"] is None
    assert parse(w.admin("config", export=True, show_secrets=True)).client("gbg").pool is None


def test_the_last_worker_of_a_pool_a_rule_or_client_names_is_not_removed(world):
    w = world()
    lung(w)
    w.admin("add-rule", client=CLIENT, match=["Modality=CT"], pool="lung")
    w.admin("add-rule", client=CLIENT, match=["Modality=MR"], pool="lung")
    for force in (False, True):  # even --force: the config left would name a pool nobody has
        with pytest.raises(AdminError) as refused:
            w.admin("remove-worker", name="cpu-l", force=force)
        assert str(refused.value) == (
            "worker cpu-l is the last of pool 'lung', which clients demo-hospital (rules[0], "
            "rules[1]) name: add another worker to it first, or change them (remove-rule, "
            "remove-client)"
        )
    w.admin("remove-worker", name="gpu-1")  # its pool has another
    with pytest.raises(AdminError, match=r"last of pool 'demo', .* demo-hospital \(its pool\)"):
        w.admin("remove-worker", name="gpu-2")
    for _ in range(2):
        w.admin("remove-rule", client=CLIENT, index=0)
    assert w.admin("remove-worker", name="cpu-l")["removed"] == "worker"
    assert "cpu-l" not in w.admin("names")["workers"] and w.admin("names")["pools"] == ["demo"]


def test_compacted_rule_changes_replay_to_the_same_config(world, caplog):
    """purge keeps each entry's last change; a rules change of a client gone since is a no-op."""
    w = world()
    w.admin("add-client", name="gbg", ae_title="GBG_SECRET", destination="demo-pacs")
    w.admin("add-rule", client="gbg", match=["Modality=CT"], pool="demo")
    w.admin("remove-client", name="gbg")  # its add is compacted away, its rules change is not
    for modality in ("CT", "MR"):
        w.admin("add-rule", client=CLIENT, match=[f"Modality={modality}"], pool="demo")
    shown = w.admin("rules", client=CLIENT)
    assert w.admin("purge")["runtime_changes"] == 2
    w.restart()
    assert w.admin("rules", client=CLIENT) == shown
    assert w.admin("names")["clients"] == [CLIENT]
    assert "no longer fits" not in caplog.text
