"""The effective configuration: the file, plus the changes an operator made at runtime.

Runtime changes (a client, worker or destination added or removed; a
client's rules replaced) are kept in the store, so they survive restarts;
the effective config is the file's with those changes applied in order.
:class:`LiveConfig` holds the current one: an immutable snapshot that the
router and the listeners read on each decision, swapped whole when an
operator changes something, here or on another node sharing the store
(:mod:`wolfpacs.node.changes`).

The store's history of changes also carries :data:`MOVE` entries: a
worker's studies moved to another. They change no config (:func:`apply`
passes over them); they tell the other nodes that their cached routes to
that worker are stale.
"""

from __future__ import annotations

import json
import threading
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from wolfpacs.config.checker import parse_entry, validate
from wolfpacs.config.model import MOVE, SECTIONS, Client, Config, ConfigError, Entry, Pool
from wolfpacs.config.routing import rule_table, rules_toml
from wolfpacs.config.secrets import TOKENS, has_password, masked, redacted_url

__all__ = [
    "MOVE", "RULES", "Change", "LiveConfig", "apply", "describe", "entry_table", "to_toml",
    "toml_value",
]  # fmt: skip

# A change: (kind, name, table of the entry's keys), or (kind, name, None) for a removal;
# kind is one of SECTIONS, or RULES.
Change = tuple[str, str, dict[str, Any] | None]
# The kind of change that replaces one client's rules, and only them: (RULES, client,
# {"rules": [rule tables]}). Not the whole client: a file edited since (its AE title
# rotated, say) keeps its edits, and the runtime's rules are laid on the client it has.
RULES = "rules"
# MOVE (config.model's): a move in the history, (MOVE, worker, {"to": worker, "origin": who
# moved}). No change of the config: other nodes learn from it that routes to the worker moved.


class LiveConfig:
    """The node's current Config; thread-safe (a reference swapped under a lock).

    :attr:`changing` is held by whoever changes it (an operator's verb, or
    the watcher of other nodes' changes) from the read of the config it
    starts from to the :meth:`set` of the one it made: two at once would
    lose one of them.
    """

    def __init__(self, config: Config) -> None:
        self._lock = threading.Lock()
        self._config = config
        self.changing = threading.RLock()

    def get(self) -> Config:
        with self._lock:
            return self._config

    def set(self, config: Config) -> None:
        with self._lock:
            self._config = config


def entry_table(entry: Entry | Pool) -> dict[str, Any]:
    """An entry's keys as a TOML/JSON table (networks as strings; empty optionals left out).

    A client's ``rules`` come last, as a list of tables (each
    :func:`~wolfpacs.config.routing.rule_table`): in TOML they are
    sub-tables, which follow the client's own keys. :func:`parse_entry`
    reads the table back into an equal entry.
    """
    table = asdict(entry)
    for key in ("allow", "calling_ae_titles"):
        if key in table:
            table[key] = [str(v) for v in table[key]]
            if not table[key]:
                del table[key]
    if isinstance(entry, Client):
        if entry.pool is None:  # rules only; TOML has no null
            del table["pool"]
        del table["rules"]
        if entry.rules:
            table["rules"] = [rule_table(rule) for rule in entry.rules]
    return table


def apply(config: Config, changes: list[Change]) -> Config:
    """``config`` with ``changes`` applied in order, then checked as a whole.

    An entry's table replaces any entry of that name (else it is added, last);
    a removal of an entry that is not there changes nothing. A :data:`RULES`
    change replaces its client's rules in place, checked as in a file, and
    changes nothing if there is no such client (removed since, like a removal).
    A :data:`MOVE` changes nothing here.

    Raises:
        ConfigError: an unknown kind of change, an invalid entry or rule, or a
            result that is invalid (a dangling reference, a duplicate AE title...).
    """
    sections = {kind: list(getattr(config, section)) for kind, section in SECTIONS.items()}
    for kind, name, table in changes:
        if kind == MOVE:  # a note for the other nodes: no config in it
            continue
        if kind == RULES:
            sections["client"] = _with_rules(sections["client"], name, table or {})
            continue
        if kind not in sections:  # a newer node's, say: refused, never half-understood
            raise ConfigError("runtime", None, "", f"unknown kind of change {kind!r}")
        entries = [e for e in sections[kind] if e.name != name]
        if table is not None:
            entries.append(parse_entry(kind, table))
        sections[kind] = entries
    result = replace(
        config,
        clients=tuple(sections["client"]),
        workers=tuple(sections["worker"]),
        destinations=tuple(sections["destination"]),
    )
    validate(result)
    return result


def _with_rules(clients: list[Entry], name: str, table: dict[str, Any]) -> list[Entry]:
    """``clients`` with client ``name``'s rules replaced by ``table["rules"]`` (in place)."""
    found = next((i for i, c in enumerate(clients) if c.name == name), None)
    if found is None:
        return clients
    client = {**entry_table(clients[found]), "rules": table.get("rules", [])}
    if not client["rules"]:
        del client["rules"]
    return [*clients[:found], parse_entry("client", client), *clients[found + 1 :]]


def describe(change: Change) -> str:
    """A change in a few words, for a log line: ``add worker gpu-c``, ``set the rules of
    client x``."""
    kind, name, table = change
    if kind == RULES:
        return f"set the rules of client {name}"
    if kind == MOVE:
        return f"move studies of worker {name} to {(table or {}).get('to')}"
    return f"{'add' if table is not None else 'remove'} {kind} {name}"


def toml_value(value: Any) -> str:
    """``value`` (a bool, number, string or list of them) as TOML writes it."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return json.dumps(str(value))  # a JSON string is a valid TOML basic string


def to_toml(config: Config, secrets: bool = False) -> str:
    """The effective config as a TOML file that :func:`wolfpacs.config.load` reads back.

    Without ``secrets``, the secrets (clients' AE titles, tokens) are not
    written, only named in a comment with the title masked: such a file is
    for reading, and loads only once they are put back.
    """
    lines = ["# WolfPACS effective configuration: the file plus runtime changes", "[node]"]
    for key, value in asdict(config.node).items():
        if key in TOKENS and value and not secrets:
            lines.append(f"# {key}: not exported (a secret; config --export --show-secrets)")
        elif key == "store" and has_password(value) and not secrets:
            shown = redacted_url(value)
            lines.append(f"# store = {shown} (its password: config --export --show-secrets)")
        elif value != "":
            lines.append(f"{key} = {toml_value(str(value) if isinstance(value, Path) else value)}")
    for section in (*SECTIONS.values(), "pools"):
        for entry in getattr(config, section):
            lines += ["", f"[[{section}]]"]
            for key, value in entry_table(entry).items():
                if key == "rules":  # a client's last key: [[clients.rules]] sub-tables
                    lines += rules_toml(value)
                    continue
                if section == "clients" and key == "ae_title" and not secrets:
                    lines.append(f"# ae_title = {masked(value)} (a secret: --show-secrets)")
                else:
                    lines.append(f"{key} = {toml_value(value)}")
    return "\n".join(lines) + "\n"
