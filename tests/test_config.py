"""The config loader: every error names the file, the line and the key."""

from __future__ import annotations

import re
import textwrap
from dataclasses import fields
from pathlib import Path

import pytest

from wolfpacs.config import (
    Client,
    ConfigError,
    Destination,
    NodeConfig,
    Worker,
    load,
    parse,
    to_toml,
)  # fmt: skip
from wolfpacs.config.example import NODE_NOTES, example

GOOD = textwrap.dedent(
    """\
    [node]
    ae_title = "WOLFPACS"
    data_dir = "data"

    [[destinations]]
    name = "sthlm-pacs"
    host = "127.0.0.1"
    port = 11120
    ae_title = "STHLM_PACS"

    [[clients]]
    name = "stockholm"
    ae_title = "STHLM_SECRET"
    calling_ae_titles = ["STHLM_PACS"]
    allow = ["127.0.0.0/8"]
    destination = "sthlm-pacs"
    pool = "stroke"

    [[workers]]
    name = "gpu-a"
    host = "127.0.0.1"
    port = 11130
    ae_title = "GPU_A"
    pool = "stroke"
    capacity = 2

    [[workers]]
    name = "gpu-b"
    host = "127.0.0.1"
    port = 11131
    ae_title = "GPU_B"
    pool = "stroke"
    """
)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "wolfpacs.toml"
    path.write_text(text)
    return path


def error(tmp_path: Path, text: str, env: dict[str, str] | None = None) -> ConfigError:
    with pytest.raises(ConfigError) as failed:
        load(write(tmp_path, text), env=env or {})
    return failed.value


def test_a_good_file_loads_with_defaults_filled_in(tmp_path):
    config = load(write(tmp_path, GOOD), env={})
    assert config.node.outside_port == 11112 and config.node.inside_port == 11113
    assert config.node.durability == "fsync" and config.node.study_idle_timeout == 600
    assert config.node.max_handshakes_per_address == 16
    assert config.node.data_dir == tmp_path / "data"  # relative to the file
    assert [w.name for w in config.pool("stroke")] == ["gpu-a", "gpu-b"]
    client = config.client("stockholm")
    assert client.calling_ae_titles == ("STHLM_PACS",) and str(client.allow[0]) == "127.0.0.0/8"
    assert config.worker("gpu-b").capacity == 1


def test_env_overrides_the_ports(tmp_path):
    env = {"WOLFPACS_OUTSIDE_PORT": "4242", "WOLFPACS_INSIDE_PORT": "4243"}
    config = load(write(tmp_path, GOOD), env=env)
    assert (config.node.outside_port, config.node.inside_port) == (4242, 4243)


def test_a_bad_env_port_is_named(tmp_path):
    failed = error(tmp_path, GOOD, env={"WOLFPACS_INSIDE_PORT": "eleven"})
    assert "WOLFPACS_INSIDE_PORT" in str(failed) and "'eleven' is not a port" in str(failed)


def test_toml_syntax_error_names_the_line(tmp_path):
    failed = error(tmp_path, GOOD.replace("port = 11131", "port = = 11131"))
    assert failed.line == 30 and str(failed).startswith(f"{tmp_path / 'wolfpacs.toml'}:30:")


def test_unknown_key_names_key_and_line(tmp_path):
    failed = error(tmp_path, GOOD.replace("capacity = 2", 'capacity = 2\ncolour = "red"'))
    assert failed.key == "workers[0].colour" and failed.line == 26
    assert "unknown key" in str(failed)


def test_unknown_node_key(tmp_path):
    failed = error(tmp_path, GOOD.replace('data_dir = "data"', 'data_dri = "data"'))
    assert failed.key == "node.data_dri" and failed.line == 3


def test_missing_field_names_the_table(tmp_path):
    failed = error(tmp_path, GOOD.replace('ae_title = "GPU_B"\n', ""))
    assert failed.key == "workers[1]" and failed.line == 27
    assert "missing required key 'ae_title'" in str(failed)


def test_client_naming_an_unknown_destination(tmp_path):
    failed = error(tmp_path, GOOD.replace('destination = "sthlm-pacs"', 'destination = "nowhere"'))
    assert failed.key == "clients[0].destination" and failed.line == 16
    assert "unknown destination 'nowhere'" in str(failed)


def test_client_naming_an_unknown_pool(tmp_path):
    failed = error(
        tmp_path, GOOD.replace('pool = "stroke"\n\n[[workers]]', 'pool = "lungs"\n\n[[workers]]', 1)
    )
    assert failed.key == "clients[0].pool" and "unknown pool 'lungs'" in str(failed)


@pytest.mark.parametrize(
    ("old", "new", "key", "problem"),
    [
        ("port = 11120", "port = 70000", "destinations[0].port", "must be <= 65535"),
        ("port = 11120", 'port = "11120"', "destinations[0].port", "must be an integer"),
        (
            'ae_title = "GPU_A"',
            'ae_title = "A_TITLE_LONGER_THAN_16"',
            "workers[0].ae_title",
            "AE title",
        ),
        ("capacity = 2", "capacity = 0", "workers[0].capacity", "must be >= 1"),
        (
            'allow = ["127.0.0.0/8"]',
            'allow = ["not-a-net"]',
            "clients[0].allow",
            "not an IP network",
        ),
        ('ae_title = "WOLFPACS"', 'ae_title = "WOLF\\\\PACS"', "node.ae_title", "AE title"),
        ('data_dir = "data"', 'durability = "sometimes"', "node.durability", "fsync, os"),
        (
            'data_dir = "data"',
            "max_handshakes_per_address = 0",
            "node.max_handshakes_per_address",
            "must be >= 1",
        ),
        ('name = "gpu-b"', 'name = "gpu-a"', "workers[1].name", "already the name"),
        ('ae_title = "GPU_B"', 'ae_title = "GPU_A"', "workers[1].ae_title", "duplicate ae_title"),
        ('name = "gpu-b"', 'name = "sthlm-pacs"', "workers[1].name", "already the name"),
    ],
)
def test_bad_values_name_the_key(tmp_path, old, new, key, problem):
    assert old in GOOD
    failed = error(
        tmp_path, GOOD.replace(old, new, 1) if "gpu-b" not in old else GOOD.replace(old, new)
    )
    assert failed.key == key and problem in str(failed)
    assert failed.line is not None


def test_same_ports_are_refused(tmp_path):
    failed = error(
        tmp_path, GOOD.replace('data_dir = "data"', "outside_port = 5000\ninside_port = 5000")
    )
    assert failed.key == "node.inside_port"


def test_unreadable_file(tmp_path):
    with pytest.raises(ConfigError, match="cannot read the file"):
        load(tmp_path / "missing.toml")


def test_empty_config_is_valid_defaults():
    config = parse("", env={})
    assert config.clients == () and config.node.ae_title == "WOLFPACS"


def test_tokens_and_fault_injection_may_come_from_the_environment(tmp_path):
    env = {"WOLFPACS_HTTP_TOKEN": "h" * 16, "WOLFPACS_METRICS_TOKEN": "m" * 20,
           "WOLFPACS_FAULT_INJECTION": "1"}  # fmt: skip
    node = load(write(tmp_path, GOOD), env=env).node
    assert (node.http_token, node.metrics_token, node.fault_injection) == ("h" * 16, "m" * 20, True)
    assert load(write(tmp_path, GOOD), env={}).node.fault_injection is False
    failed = error(tmp_path, GOOD, env={"WOLFPACS_HTTP_TOKEN": "short"})
    assert str(failed) == "environment variable WOLFPACS_HTTP_TOKEN: must be 16+ characters"


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('http_token = "too short"', "node.http_token: must be 16+ characters"),
        (
            "retention_days = 0.5",
            "node.retention_days: must be 0 (keep for ever) or at least 1 day",
        ),
    ],
)
def test_tokens_and_retention_are_checked(tmp_path, line, message):
    assert str(error(tmp_path, GOOD.replace("[node]\n", f"[node]\n{line}\n"))).endswith(message)


def test_a_duplicate_client_ae_title_is_named_masked(tmp_path):
    text = GOOD + (
        '\n[[clients]]\nname = "gbg"\nae_title = "STHLM_SECRET"\n'
        'destination = "sthlm-pacs"\npool = "stroke"\n'
    )
    failed = str(error(tmp_path, text))
    assert "duplicate ae_title 'ST\u2026ET'" in failed and "STHLM_SECRET" not in failed


def test_a_certificate_pin_needs_a_tls_port(tmp_path):
    text = GOOD.replace(
        'pool = "stroke"\n\n[[workers]]', 'pool = "stroke"\ntls_subject = "CN=h"\n\n[[workers]]', 1
    )
    failed = error(tmp_path, text)
    assert "clients[0].tls_subject: a certificate is pinned only on a TLS port" in str(failed)
    fingerprint = "sha256:" + "AB:" * 31 + "AB"
    text = GOOD.replace(
        'pool = "stroke"\ncapacity = 2',
        f'pool = "stroke"\ncapacity = 2\ntls_fingerprint = "{fingerprint}"',
    )
    failed = str(error(tmp_path, text))
    assert "workers[0].tls_fingerprint: a certificate is pinned only on a TLS port" in failed
    assert failed.endswith("set [node] tls_inside")


def test_a_certificate_pin_needs_tls_ca_even_when_client_certificates_are_optional(tmp_path):
    node = 'data_dir = "data"\ntls_outside = true\ntls_cert = "n.crt"\ntls_key = "n.key"\n'
    text = GOOD.replace('data_dir = "data"\n', node + "tls_require_client_cert = false\n", 1)
    for name in ("n.crt", "n.key"):  # only that they exist is checked here
        (tmp_path / name).write_text("")
    load(write(tmp_path, text), env={})  # optional certificates, nothing pinned: no CA needed
    pinned = text.replace(
        'pool = "stroke"\n\n[[workers]]', 'pool = "stroke"\ntls_subject = "CN=h"\n\n[[workers]]', 1
    )
    failed = str(error(tmp_path, pinned))
    assert "clients[0].tls_subject: a pinned certificate is checked on [node] tls_ca" in failed


# -- the example, and typos -----------------------------------------------------------------


def test_the_example_states_every_node_key_with_its_default():
    text = example()
    assert set(NODE_NOTES) == {f.name for f in fields(NodeConfig)}  # a new key needs a note
    node = text.split("\n[node]\n")[1].split("[[")[0]
    stated = {line.split(" = ")[0] for line in node.splitlines() if re.match(r"\w+ = ", line)}
    assert stated == set(NODE_NOTES)
    config = parse(text, "example", env={})
    assert config.node == NodeConfig()  # every value written is the default
    assert (len(config.clients), len(config.workers), len(config.destinations)) == (1, 2, 1)


@pytest.mark.parametrize(
    ("section", "model"), [("destinations", Destination), ("clients", Client), ("workers", Worker)]
)
def test_the_example_names_every_key_of_each_entry(section, model):
    table = example().split(f"[[{section}]]")[1].split("[[")[0]
    named = set(re.findall(r"^(?:# )?(\w+) = ", table, re.M))
    if section == "clients" and "# [[clients.rules]]\n" in example():
        named.add("rules")  # sub-tables, after the client's keys
    assert named == {f.name for f in fields(model)}


@pytest.mark.parametrize(
    ("old", "new", "key", "nearest"),
    [
        ('data_dir = "data"', 'data_dri = "data"', "node.data_dri", "data_dir"),
        ('destination = "sthlm-pacs"', 'destinaton = "sthlm-pacs"', "clients[0].destinaton",
         "destination"),
        ("capacity = 2", "capacty = 2", "workers[0].capacty", "capacity"),
        ('host = "127.0.0.1"\nport = 11120', 'hots = "127.0.0.1"\nport = 11120',
         "destinations[0].hots", "host"),
        ("[node]", "[nodes]", "nodes", "node"),
        ("[[clients]]", "[[client]]", "client", "clients"),
    ],
)  # fmt: skip
def test_an_unknown_key_is_named_with_the_nearest_known_one(tmp_path, old, new, key, nearest):
    assert old in GOOD
    failed = error(tmp_path, GOOD.replace(old, new, 1))
    assert failed.key == key and failed.line is not None
    assert failed.problem == f"unknown key (did you mean {nearest!r}?)"


def test_an_unknown_key_with_nothing_near_lists_no_keys(tmp_path):
    failed = error(tmp_path, GOOD.replace('data_dir = "data"', "colour = 3"))
    assert failed.problem == "unknown key (see `wolfpacs config example`)"


def test_a_default_said_out_loud_is_accepted(tmp_path):
    empty = ["audit_log", "tls_cert", "tls_key", "tls_ca", "control_token", "http_token",
             "metrics_token"]  # fmt: skip
    text = GOOD.replace("[node]\n", "[node]\n" + "".join(f'{key} = ""\n' for key in empty))
    text = text.replace("capacity = 2", 'capacity = 2\ntls_subject = ""\ntls_fingerprint = ""')
    config = load(write(tmp_path, text), env={})
    assert all(getattr(config.node, key) == "" for key in empty)
    assert config.worker("gpu-a").tls_subject == ""


def test_an_exported_config_loads_back(tmp_path):
    config = load(write(tmp_path, GOOD), env={})
    again = load(write(tmp_path, to_toml(config, secrets=True)), env={})
    assert (again.node, again.clients, again.workers, again.destinations) == (
        config.node, config.clients, config.workers, config.destinations)  # fmt: skip


@pytest.mark.parametrize(
    "store", ["sqlite", "postgresql://wolfpacs@db.internal/wolfpacs", "postgres:///wolfpacs"]
)
def test_the_store_is_sqlite_or_a_postgresql_url(tmp_path, store):
    config = load(write(tmp_path, GOOD.replace('data_dir = "data"', f"store = {store!r}")), env={})
    assert config.node.store == store
    assert NodeConfig().store == "sqlite"


@pytest.mark.parametrize(
    "store", ["mysql://db/wolfpacs", "postgresql://wolfpacs:s3cret@db/wolfpacs x", "SQLite"]
)
def test_a_bad_store_is_named_and_its_password_never_shown(tmp_path, store):
    failed = error(tmp_path, GOOD.replace('data_dir = "data"', f"store = {store!r}"))
    assert failed.key == "node.store" and failed.line == 3
    assert "postgresql://" in str(failed) and "s3cret" not in str(failed)


def test_the_password_of_a_stores_url_is_exported_only_when_asked(tmp_path):
    url = "postgresql://wolfpacs:s3cret@db.internal:5432/wolfpacs?sslmode=require"
    config = load(write(tmp_path, GOOD.replace('data_dir = "data"', f"store = {url!r}")), env={})
    exported = to_toml(config)
    assert "s3cret" not in exported
    assert (
        "# store = postgresql://wolfpacs:\u2026@db.internal:5432/wolfpacs?sslmode=require "
        "(its password: config --export --show-secrets)"
    ) in exported
    assert load(write(tmp_path, to_toml(config, secrets=True)), env={}).node.store == url
    without = GOOD.replace('data_dir = "data"', 'store = "postgresql://wolfpacs@db/wolfpacs"')
    assert 'store = "postgresql://wolfpacs@db/wolfpacs"' in to_toml(
        load(write(tmp_path, without), env={})
    )  # no password: nothing to hide
