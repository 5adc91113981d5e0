"""Rule matching: whole values, any of several, never a missing one, the first rule wins."""

from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st
from pydicom.datadict import tag_for_keyword

from wolfpacs.config.model import CALLING_AE, DISCARD, Client, Condition, Rule
from wolfpacs.node.rules import REFUSED, Decision, decide, matches, wanted_tags

KEYWORDS = ["Modality", "SeriesDescription", "BodyPartExamined", "ImageType"]
# Values from a small alphabet, so that values, prefixes and patterns collide often;
# with characters that mean something to a regular expression (escaped in patterns).
values = st.text(alphabet="CTMR .*|\\^$-", max_size=6)
attributes = st.dictionaries(st.sampled_from(KEYWORDS), st.tuples() | st.lists(values, max_size=3)
                             .map(tuple))  # fmt: skip


def client(*rules: Rule, pool: str | None = "default") -> Client:
    return Client("sthlm", "STHLM_SECRET", "sthlm-pacs", pool, rules=rules)


def rule(pool: str = "p", **match: str) -> Rule:
    return Rule(tuple(Condition(k, v) for k, v in match.items()), pool=pool)


@given(values, values.filter(bool))
def test_a_literal_pattern_matches_that_value_only(value, literal):
    assert matches(rule(Modality=re.escape(literal)), {"Modality": (value,)}) == (value == literal)


@given(st.text(alphabet="CTMR", min_size=1, max_size=6), st.text(alphabet="CTMR", min_size=1))
def test_a_prefix_or_a_part_is_not_a_match(value, more):
    assert matches(rule(Modality=re.escape(value)), {"Modality": (value,)})
    assert not matches(rule(Modality=re.escape(value)), {"Modality": (value + more,)})
    assert not matches(rule(Modality=re.escape(value)), {"Modality": (more + value,)})
    assert matches(rule(Modality=f".*{re.escape(value)}.*"), {"Modality": (more + value + more,)})


@given(st.lists(values, max_size=4), values)
def test_a_multi_valued_attribute_matches_when_one_value_does(held, wanted):
    if wanted:
        found = matches(rule(ImageType=re.escape(wanted)), {"ImageType": tuple(held)})
        assert found == (wanted in held)


@given(attributes, st.sampled_from([".*", ".+", "CT", "(?s).*", "|"]))
def test_a_missing_or_empty_attribute_never_matches(attrs, pattern):
    missing = {k: v for k, v in attrs.items() if k != "BodyPartExamined"}
    assert not matches(rule(BodyPartExamined=pattern), missing)
    for empty in [(), ("",), ("", "")]:
        assert not matches(rule(BodyPartExamined=pattern), {**attrs, "BodyPartExamined": empty})


@given(st.lists(st.booleans(), max_size=6), st.booleans())
def test_rules_are_tried_in_order_and_the_first_match_decides(hits, has_pool):
    rules = [rule(f"pool-{i}", Modality="CT" if hit else "MR") for i, hit in enumerate(hits)]
    decision = decide(client(*rules, pool="default" if has_pool else None), {"Modality": ("CT",)})
    if True in hits:
        first = hits.index(True)
        assert decision == Decision("pool", f"pool-{first}", first)
        assert decision.reason == f"rules[{first}]"
    elif has_pool:
        assert decision == Decision("pool", "default") and decision.rule is None
    else:
        assert decision == REFUSED and decision.outcome == "refuse"


@given(st.dictionaries(st.sampled_from(KEYWORDS), st.booleans(), min_size=1))
def test_every_condition_of_a_rule_must_hold(conditions):
    the_rule = rule(**{k: "yes" for k in conditions})
    attrs = {k: ("yes" if holds else "no",) for k, holds in conditions.items()}
    assert matches(the_rule, attrs) == all(conditions.values())


@given(st.lists(st.tuples(st.sampled_from(KEYWORDS), st.sampled_from(["CT", "C.", ".*", "MR|CT",
       "(?i)ct", "T"])), min_size=1, max_size=3), attributes, values)  # fmt: skip
def test_decide_agrees_with_a_plain_model(conditions, attrs, calling):
    """Written plainly: re.fullmatch on each non-empty value, condition by condition, in order."""
    rules = [Rule(tuple(Condition(k, p) for k, p in conditions[: i + 1]), pool=f"p{i}")
             for i in range(len(conditions))]  # fmt: skip
    rules.append(Rule((Condition(CALLING_AE, "MOD.*"),), action=DISCARD))

    def holds(key, pattern):
        found = (calling.strip(),) if key == CALLING_AE else attrs.get(key, ())
        return any(v and re.fullmatch(pattern, v) for v in found)

    expected = next(
        (i for i, r in enumerate(rules) if all(holds(c.key, c.pattern) for c in r.match)), None
    )
    decision = decide(client(*rules), attrs, calling)
    assert decision.rule == expected
    if expected == len(rules) - 1:
        assert decision.outcome == "discard" and decision.pool == ""
    elif expected is None:
        assert decision == Decision("pool", "default")


def test_the_issues_example():
    sthlm = client(
        rule("lung", Modality="CT", SeriesDescription="(?i).*(chest|lung).*"),
        Rule((Condition("Modality", "SR|PR|KO"),), action=DISCARD),
        pool="stroke",
    )
    assert decide(sthlm, {"Modality": ("CT",), "SeriesDescription": ("Thorax LUNG",)}).pool == (
        "lung"
    )
    assert decide(sthlm, {"Modality": ("CT",), "SeriesDescription": ("Head",)}).pool == "stroke"
    assert decide(sthlm, {"Modality": ("CT",)}).pool == "stroke"  # no description: no match
    assert decide(sthlm, {"Modality": ("KO",)}) == Decision("discard", rule=1)
    assert decide(sthlm, {"Modality": ("SRX",)}).pool == "stroke"  # whole value only
    assert decide(sthlm, {"Modality": ("MR",)}, "MODALITY").reason == "the client's default pool"


def test_calling_ae_is_one_value_of_the_association():
    by_caller = client(rule("research", calling_ae="RESEARCH_.*"), pool=None)
    assert decide(by_caller, {}, "RESEARCH_CT1 ").pool == "research"  # AE titles are padded
    assert decide(by_caller, {}, "CLINICAL_CT1") == REFUSED
    assert decide(by_caller, {}, "") == REFUSED
    assert REFUSED.reason == "no rule matched and the client has no default pool"


def test_wanted_tags_are_the_rules_keywords_of_every_client():
    a = client(rule(Modality="CT", calling_ae="X"), rule(SeriesNumber="1"))
    b = client(rule(Rows="512"))
    assert wanted_tags((a, b)) == {
        tag_for_keyword("Modality"), tag_for_keyword("SeriesNumber"), tag_for_keyword("Rows"),
    }  # fmt: skip
    assert wanted_tags((client(),)) == frozenset()  # no rules: the peek reads no further


def test_a_clients_pools_are_its_rules_then_its_own_each_once():
    both_ways = client(rule("lung", Modality="CT"), Rule((Condition("Modality", "SR"),),
                       action=DISCARD), rule("stroke", Modality="MR"), pool="stroke")  # fmt: skip
    assert both_ways.pools == ("lung", "stroke")
    assert client(rule("lung", Modality="CT"), pool=None).pools == ("lung",)
    assert client().pools == ("default",)
