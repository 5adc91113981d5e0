"""The chaos ledger counts what the peers hold, not what the node says."""

from wolfpacs.testing.ledger import Ledger, Sent


def sent(uid: str, study: str, owner: str = "h0", digest: str = "d", acked: bool = True) -> Sent:
    return Sent(uid, study, owner, digest, acked)


def test_delivered_duplicated_altered_dead_lost_refused():
    ledger = Ledger.count(
        [sent("1", "s1"), sent("2", "s1"), sent("3", "s1", digest="x"), sent("4", "s2"),
         sent("5", "s2"), sent("6", "s2", acked=False)],
        {"w0": [("1", "s1", "d"), ("1", "s1", "d"), ("2", "s1", "d"), ("3", "s1", "other")]},
        [], {}, dead={"4": "gave_up"}, expected_dead=frozenset({"gave_up"}),
    )  # fmt: skip
    assert (ledger.acknowledged, ledger.delivered, ledger.duplicated) == (5, 2, 1)
    assert (ledger.altered, ledger.dead, ledger.lost, ledger.refused) == (1, 1, 1, 1)
    assert ledger.lost_examples == ["5"] and not ledger.clean()


def test_a_study_on_two_workers_and_a_derived_instance_at_another_pacs_are_misrouted():
    ledger = Ledger.count(
        [sent("1", "s1"), sent("2", "s1")],
        {"w0": [("1", "s1", "d")], "w1": [("2", "s1", "d")]},
        [sent("d1", "s1", owner="h0"), sent("d2", "s1", owner="h0")],
        {"h0": [("d1", "s1", "")], "h1": [("d2", "s1", "")]},
        dead={},
    )
    assert ledger.misrouted_studies == 1 and ledger.derived_misrouted == 1
    assert ledger.derived_lost == 1 and ledger.misrouted == 2 and not ledger.clean()


def test_a_clean_run():
    ledger = Ledger.count([sent("1", "s1")], {"w0": [("1", "s1", "d")]}, [], {}, {})
    assert ledger.clean() and "CLEAN" in ledger.render()


def test_a_dead_letter_the_run_did_not_cause_is_a_failure():
    # A lost route: the worker's derived instance ends in dead/ as "unknown study".
    ledger = Ledger.count(
        [sent("1", "s1")], {"w0": [("1", "s1", "d")]},
        [sent("d1", "s1", owner="h0")], {}, dead={"d1": "unknown_study"},
    )  # fmt: skip
    assert ledger.derived_lost == 0 and ledger.unexplained_dead == 1
    assert not ledger.clean() and "unknown_study 1" in ledger.render()
    caused = Ledger.count(
        [sent("1", "s1")], {"w0": [("1", "s1", "d")]}, [], {}, dead={"9": "refused"},
        expected_dead=frozenset({"refused"}),
    )  # fmt: skip
    assert caused.clean()
