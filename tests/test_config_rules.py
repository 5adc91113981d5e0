"""A client's rules and pools in the config: each error names the file, the line and the rule."""

from __future__ import annotations

import textwrap
from dataclasses import replace

import pytest

from wolfpacs.config import RULES as RULES_KIND
from wolfpacs.config import ConfigError, apply, entry_table, parse, parse_entry, to_toml
from wolfpacs.config.routing import rule_line
from wolfpacs.node.rules import REFUSED, decide

RULES = textwrap.dedent(
    """\
    [node]
    data_dir = "data"

    [[destinations]]
    name = "sthlm-pacs"
    host = "127.0.0.1"
    port = 11120
    ae_title = "STHLM_PACS"

    [[clients]]
    name = "sthlm"
    ae_title = "STHLM_SECRET"
    destination = "sthlm-pacs"
    pool = "stroke"

    [[clients.rules]]
    match = { Modality = "CT", SeriesDescription = "(?i).*(chest|lung).*" }
    pool = "lung"

    [[clients.rules]]
    match = { Modality = "SR|PR|KO" }
    action = "discard"

    [[workers]]
    name = "gpu-a"
    host = "127.0.0.1"
    port = 11130
    ae_title = "GPU_A"
    pool = "stroke"

    [[workers]]
    name = "cpu-l"
    host = "127.0.0.1"
    port = 11131
    ae_title = "CPU_L"
    pool = "lung"

    [[pools]]
    name = "lung"
    result_timeout = 900
    """
)
SOURCE = "/etc/wolfpacs.toml"


def error(old: str, new: str) -> tuple[ConfigError, str]:
    """The error of RULES with ``old`` replaced, and the text of the line it names."""
    assert old in RULES, old
    text = RULES.replace(old, new, 1)
    with pytest.raises(ConfigError) as failed:
        parse(text, SOURCE)
    line = text.splitlines()[failed.value.line - 1] if failed.value.line else ""
    return failed.value, line


def test_the_issues_example_loads():
    config = parse(RULES, SOURCE)
    client = config.client("sthlm")
    assert client.pool == "stroke"
    ct, sr = client.rules
    assert [(c.key, c.pattern) for c in ct.match] == [
        ("Modality", "CT"), ("SeriesDescription", "(?i).*(chest|lung).*"),
    ]  # fmt: skip
    assert (ct.pool, ct.action, sr.pool, sr.action) == ("lung", "", "", "discard")
    assert ct.match[1].regex.fullmatch("Thorax LUNG 1mm")  # compiled once, at load
    assert config.pool_settings("lung").result_timeout == 900
    assert config.pool_settings("stroke").result_timeout == 0  # no [[pools]]: not tracked
    hash(client)  # frozen all the way down: a config is a value


def test_a_client_may_have_rules_and_no_pool():
    config = parse(RULES.replace('pool = "stroke"\n\n[[clients.rules]]', "[[clients.rules]]"))
    assert config.client("sthlm").pool is None


@pytest.mark.parametrize(
    ("old", "new", "key", "problem"),
    [
        ('Modality = "SR|PR|KO"', 'Modalty = "SR|PR|KO"', "clients[0].rules[1].match.Modalty",
         "unknown DICOM keyword (did you mean 'Modality'?)"),
        ('Modality = "SR|PR|KO"', 'PixelData = "x"', "clients[0].rules[1].match.PixelData",
         "(7FE0,0010) is not before PixelData"),
        ('Modality = "SR|PR|KO"', 'DataSetTrailingPadding = "x"',
         "clients[0].rules[1].match.DataSetTrailingPadding", "is not before PixelData"),
        ('Modality = "SR|PR|KO"', 'ReferencedImageSequence = "x"',
         "clients[0].rules[1].match.ReferencedImageSequence", "(0008,1140) is a sequence"),
        ('Modality = "SR|PR|KO"', 'TransferSyntaxUID = "x"',
         "clients[0].rules[1].match.TransferSyntaxUID", "file meta group"),
        ('Modality = "SR|PR|KO"', 'ICCProfile = "x"', "clients[0].rules[1].match.ICCProfile",
         "has VR OB"),
        ('Modality = "SR|PR|KO"', 'PixelPaddingValue = "x"',
         "clients[0].rules[1].match.PixelPaddingValue", "depends on other attributes (US or SS)"),
        ('"(?i).*(chest|lung).*"', '"(?i).*(chest|lung.*"',
         "clients[0].rules[0].match.SeriesDescription",
         "bad regular expression: missing ), unterminated subpattern at position 6"),
        ('Modality = "SR|PR|KO"', 'calling_ae = "A["', "clients[0].rules[1].match.calling_ae",
         "bad regular expression: unterminated character set"),
        ('Modality = "SR|PR|KO"', 'Modality = ""', "clients[0].rules[1].match.Modality",
         "an empty regular expression matches no value"),
        ('Modality = "SR|PR|KO"', "Modality = 3", "clients[0].rules[1].match.Modality",
         "must be a regular expression (a string)"),
        ('pool = "lung"\n\n[[clients.rules]]', 'pool = "lungs"\n\n[[clients.rules]]',
         "clients[0].rules[0].pool", "unknown pool 'lungs' (no worker has it; did you mean"),
        ('action = "discard"', 'action = "drop"', "clients[0].rules[1].action",
         "unknown action 'drop' (known: discard)"),
        ('match = { Modality = "SR|PR|KO" }', "match = {}", "clients[0].rules[1].match",
         "missing or empty"),
        ('match = { Modality = "SR|PR|KO" }', 'match = "CT"', "clients[0].rules[1].match",
         "must be a table of DICOM keywords"),
        ('action = "discard"', 'action = "discard"\ncolour = "red"',
         "clients[0].rules[1].colour", "unknown key"),
        ('action = "discard"', 'acton = "discard"', "clients[0].rules[1].acton",
         "unknown key (did you mean 'action'?)"),
        ('name = "lung"', 'name = "lungz"', "pools[0].name",
         "unknown pool 'lungz' (no worker has it; did you mean 'lung'?)"),
        ("result_timeout = 900", "result_timeout = -1", "pools[0].result_timeout",
         "must be >= 0"),
        ("result_timeout = 900", 'result_timeout = "15 min"', "pools[0].result_timeout",
         "must be a number"),
        ("result_timeout = 900", 'result_timeout = 9\nretries = 3', "pools[0].retries",
         "unknown key"),
    ],
)  # fmt: skip
def test_each_error_names_file_line_rule_and_key(old, new, key, problem):
    failed, line = error(old, new)
    assert failed.key == key
    assert problem in failed.problem
    assert str(failed).startswith(f"{SOURCE}:{failed.line}: {key}: ")
    # the line is the one the problem is on: the key's own, or the rule's match
    written = key.rsplit(".", 1)[-1].split("[")[0]
    assert written in line or (written == "match" and "match" in line), (key, line)


@pytest.mark.parametrize(
    ("old", "new", "problem"),
    [
        ('action = "discard"', 'action = "discard"\npool = "lung"', "has both pool and action"),
        ('action = "discard"\n', "", "has neither pool nor action"),
        ('match = { Modality = "SR|PR|KO" }\n', "", "missing or empty"),
    ],
)
def test_a_rule_without_one_thing_to_do_is_named_at_its_header(old, new, problem):
    failed, line = error(old, new)
    assert failed.key.startswith("clients[0].rules[1]") and problem in str(failed)
    assert failed.line == 20 and line == "[[clients.rules]]"


def test_a_client_with_neither_pool_nor_rules_loads_and_refuses_every_series():
    """A client being set up (add-client without --pool, before add-rule): its export loads."""
    text = RULES.split("[[clients.rules]]", 1)[0].replace('pool = "stroke"\n', "")
    text += RULES.split('action = "discard"\n', 1)[1]
    config = parse(text, SOURCE)
    client = config.client("sthlm")
    assert client is not None and client.pool is None and client.rules == ()
    assert decide(client, {"Modality": ("CT",)}) == REFUSED
    assert parse(to_toml(config, secrets=True), SOURCE).clients == config.clients


def test_a_rules_change_replaces_a_clients_rules_in_place_and_keeps_its_other_keys():
    config = parse(RULES, SOURCE)
    extra = {"name": "gbg", "ae_title": "GBG_SECRET", "destination": "sthlm-pacs", "pool": "lung"}
    config = apply(config, [("client", "gbg", extra)])
    # the file's client is edited since the change was made (its secret rotated): kept
    rotated = replace(config, clients=(replace(config.clients[0], ae_title="NEW_SECRET"),
                                       config.clients[1]))  # fmt: skip
    rules = [{"match": {"calling_ae": "CT_.*"}, "action": "discard"}]
    changed = apply(rotated, [(RULES_KIND, "sthlm", {"rules": rules})])
    assert [c.name for c in changed.clients] == ["sthlm", "gbg"]  # in place, not moved last
    sthlm = changed.client("sthlm")
    assert sthlm.ae_title == "NEW_SECRET" and sthlm.pool == "stroke"
    assert [entry_table(sthlm)["rules"]] == [rules]
    cleared = apply(config, [(RULES_KIND, "sthlm", {"rules": []})]).client("sthlm")
    assert cleared.rules == () and cleared.pool == "stroke"
    # a client removed since (from the file, or compacted): nothing to change, like a removal
    assert apply(config, [(RULES_KIND, "nobody", {"rules": rules})]) == config
    with pytest.raises(ConfigError, match="unknown pool 'lng'"):
        apply(config, [(RULES_KIND, "sthlm", {"rules": [{"match": {"Modality": "CT"},
                                                          "pool": "lng"}]})])  # fmt: skip
    with pytest.raises(ConfigError, match="unknown kind of change 'pool'"):
        apply(config, [("pool", "lung", {})])


def test_a_match_written_as_a_table_has_its_keywords_lines():
    text = RULES.replace(
        'match = { Modality = "SR|PR|KO" }\naction = "discard"',
        'action = "discard"\n\n[clients.rules.match]\nModality = "SR|PR|KO"\nModalty = "x"',
    )
    with pytest.raises(ConfigError) as failed:
        parse(text, SOURCE)
    assert failed.value.key == "clients[0].rules[1].match.Modalty"
    assert text.splitlines()[failed.value.line - 1] == 'Modalty = "x"'
    good = parse(text.replace('Modalty = "x"\n', ""), SOURCE)
    assert good.client("sthlm").rules[1].match[0].key == "Modality"


def test_rule_lines_of_the_second_client_are_its_own():
    second = RULES.split("[[workers]]", 1)[0].split("[[clients]]", 1)[1]
    text = RULES.replace("[[workers]]", "[[clients]]" + second + "[[workers]]", 1)
    lines = text.splitlines()
    assert lines[rule_line(lines, ("clients", 1, "rules", 1)) - 1] == "[[clients.rules]]"
    assert rule_line(lines, ("clients", 1, "rules", 1)) > rule_line(
        lines, ("clients", 0, "rules", 1)
    )
    at = rule_line(lines, ("clients", 1, "rules", 0, "pool"))
    assert at > 30 and lines[at - 1] == 'pool = "lung"'
    assert rule_line(lines, ("clients", 1, "rules", 5)) == 24  # no such rule: its client


def test_export_round_trips_rules_and_pools():
    config = parse(RULES, SOURCE)
    text = to_toml(config, secrets=True)
    assert '[[clients.rules]]\nmatch = { Modality = "SR|PR|KO" }\naction = "discard"' in text
    assert '[[pools]]\nname = "lung"\nresult_timeout = 900.0' in text
    again = parse(text, SOURCE)
    assert again.clients == config.clients and again.pools == config.pools


def test_export_of_a_client_without_a_pool_and_a_tricky_pattern():
    config = parse(
        RULES.replace('pool = "stroke"\n\n[[clients.rules]]', "[[clients.rules]]").replace(
            '"SR|PR|KO"', r'"\\d{3}|\"quoted\"|é#not-a-comment"'
        )
    )
    text = to_toml(config, secrets=True)
    assert "None" not in text
    again = parse(text, SOURCE)
    assert again.clients == config.clients
    assert again.client("sthlm").rules[1].match[0].pattern == '\\d{3}|"quoted"|é#not-a-comment'


def test_a_client_table_reads_back_into_the_same_client():
    """What the runtime's changes store (entry_table) is what parse_entry reads."""
    client = parse(RULES, SOURCE).client("sthlm")
    table = entry_table(client)
    assert list(table)[-1] == "rules" and table["rules"][1] == {
        "match": {"Modality": "SR|PR|KO"}, "action": "discard",
    }  # fmt: skip
    table = {k: v for k, v in table.items() if v != ""}
    assert parse_entry("client", table) == client


def test_a_runtime_client_with_a_bad_rule_names_the_rule():
    table = {"name": "x", "ae_title": "X_SECRET", "destination": "sthlm-pacs",
             "rules": [{"match": {"Modality": "CT"}, "pool": "lung"},
                       {"match": {"SeriesDescription": "(("}, "action": "discard"}]}  # fmt: skip
    with pytest.raises(ConfigError) as failed:
        parse_entry("client", table)
    assert failed.value.key == "rules[1].match.SeriesDescription"
    assert "bad regular expression" in str(failed.value) and failed.value.line is None


def test_removing_the_last_worker_of_a_rules_pool_is_refused():
    config = parse(RULES, SOURCE)
    with pytest.raises(ConfigError, match="unknown pool 'lung'") as failed:
        apply(config, [("worker", "cpu-l", None)])
    assert failed.value.key == "clients[0].rules[0].pool"


def test_the_readmes_rules_example_loads():
    """The README's example, with the destination and the workers it names."""
    from pathlib import Path

    readme = (Path(__file__).parent.parent / "README.md").read_text()
    section = readme.split("### Rules", 1)[1].split("\n## ", 1)[0]
    example = section.split("```toml\n", 1)[1].split("```", 1)[0]
    around = RULES.split("[[clients]]", 1)[0] + RULES.split('action = "discard"\n', 1)[1]
    config = parse(around.split("[[pools]]", 1)[0] + example, SOURCE)
    assert config == parse(RULES, SOURCE)  # the same as the issue's, which the tests use
