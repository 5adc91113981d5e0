"""The effective configuration: the file, plus the changes an operator made at runtime.

Runtime changes (a client, worker or destination added or removed) are
kept in the store, so they survive restarts; the effective config is the
file's with those changes applied in order. :class:`LiveConfig` holds the
current one: an immutable snapshot that the router and the listeners read
on each decision, swapped whole when an operator changes something.
"""

from __future__ import annotations

import json
import threading
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from wolfpacs.config.checker import parse_entry, validate
from wolfpacs.config.model import SECTIONS, Client, Config, Entry, Pool
from wolfpacs.config.routing import rule_table, rules_toml
from wolfpacs.config.secrets import TOKENS, masked

__all__ = ["Change", "LiveConfig", "apply", "entry_table", "to_toml", "toml_value"]

# A change: (kind, name, table of the entry's keys), or (kind, name, None) for a removal.
Change = tuple[str, str, dict[str, Any] | None]


class LiveConfig:
    """The node's current Config; thread-safe (a reference swapped under a lock)."""

    def __init__(self, config: Config) -> None:
        self._lock = threading.Lock()
        self._config = config

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

    Raises:
        ConfigError: an entry is invalid, or the result is (a dangling reference,
            a duplicate AE title...).
    """
    sections = {kind: list(getattr(config, section)) for kind, section in SECTIONS.items()}
    for kind, name, table in changes:
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
