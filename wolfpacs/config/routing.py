"""Checking where a client's series go: its ``pool``, its ``[[clients.rules]]``, ``[[pools]]``.

Part of the checker (:mod:`wolfpacs.config.checker` makes one
:class:`RoutingChecker` and gives it its own error reporting), kept apart
so that each stays one concept. Every problem is a :class:`ConfigError`
naming the file, the line and the rule: ``clients[0].rules[1].match.Modalty``.

A rule's keys are DICOM keywords, checked against pydicom's data
dictionary. pydicom is imported only then, lazily: a config without rules
(and the image's healthcheck, which reads the config every 30 s) does not
pay its quarter of a second.
"""

from __future__ import annotations

import difflib
import json
import re
from typing import Any, Protocol

from wolfpacs.config.model import (
    CALLING_AE,
    RULE_ACTIONS,
    Client,
    Condition,
    ConfigError,
    Pool,
    Rule,
    Worker,
)

__all__ = ["RoutingChecker", "rule_line", "rule_table", "rules_toml"]

PIXEL_DATA = 0x7FE00010
# VRs whose values are not text or numbers: nothing a regular expression can match.
_BINARY_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "UN", "AT"})
_RULE_KEYS = {"match", "pool", "action"}
_HEADER = re.compile(r"^\[\[?\s*([\w.-]+)\s*\]\]?$")


class _Host(Protocol):
    """What the checker lends: its error reporting and its checks of single values."""

    def fail(self, path: tuple[Any, ...], problem: str) -> ConfigError: ...

    def only(self, table: dict[str, Any], path: tuple[Any, ...], allowed: set[str]) -> None: ...

    def text(self, value: Any, path: tuple[Any, ...]) -> str: ...

    def number(
        self,
        value: Any,
        path: tuple[Any, ...],
        *,
        integer: bool = False,
        minimum: float | None = None,
        maximum: float | None = None,
    ) -> Any: ...


class RoutingChecker:
    """The routing half of the checker; ``host`` is the checker itself."""

    def __init__(self, host: _Host) -> None:
        self.host = host

    def rules(self, value: Any, client: int) -> tuple[Rule, ...]:
        """``clients[client].rules``, checked one by one (their pools: :meth:`cross_check`)."""
        path = ("clients", client, "rules")
        if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
            raise self.host.fail(path, "must be an array of tables ([[clients.rules]])")
        return tuple(self.rule(table, (*path, j)) for j, table in enumerate(value))

    def rule(self, table: dict[str, Any], path: tuple[Any, ...]) -> Rule:
        self.host.only(table, path, _RULE_KEYS)
        if ("pool" in table) == ("action" in table):
            both = "both pool and action" if "pool" in table else "neither pool nor action"
            why = f'has {both}: say where its series go (pool = "...") or '
            raise self.host.fail(path, why + f'action = "{RULE_ACTIONS[0]}"')
        if "action" in table and table["action"] not in RULE_ACTIONS:
            known = ", ".join(RULE_ACTIONS)
            why = f"unknown action {table['action']!r} (known: {known})"
            raise self.host.fail((*path, "action"), why)
        match = table.get("match")
        if not isinstance(match, dict) or not match:
            why = "must be a table of DICOM keywords (or calling_ae) to regular expressions"
            if isinstance(match, dict) or match is None:
                why = "missing or empty: a rule matches on at least one attribute"
            raise self.host.fail((*path, "match"), why)
        return Rule(
            match=tuple(self.condition(k, v, (*path, "match", k)) for k, v in match.items()),
            pool=self.host.text(table["pool"], (*path, "pool")) if "pool" in table else "",
            action=table.get("action", ""),
        )

    def condition(self, key: str, pattern: Any, path: tuple[Any, ...]) -> Condition:
        if key != CALLING_AE:
            problem = attribute_problem(key)
            if problem:
                raise self.host.fail(path, problem)
        if not isinstance(pattern, str):
            raise self.host.fail(path, "must be a regular expression (a string)")
        if not pattern:
            raise self.host.fail(path, "an empty regular expression matches no value")
        try:
            return Condition(key, pattern)
        except re.error as exc:
            raise self.host.fail(path, f"bad regular expression: {exc}") from None

    def pools(self, entries: list[dict[str, Any]]) -> tuple[Pool, ...]:
        """``[[pools]]``, each checked alone (names unique; workers: :meth:`cross_check`)."""
        pools: list[Pool] = []
        for i, table in enumerate(entries):
            path = ("pools", i)
            self.host.only(table, path, {"name", "result_timeout"})
            if "name" not in table:
                raise self.host.fail(path, "missing required key 'name'")
            name = self.host.text(table["name"], (*path, "name"))
            if any(p.name == name for p in pools):
                raise self.host.fail((*path, "name"), f"duplicate name {name!r}")
            timeout = table.get("result_timeout", 0)
            timeout = self.host.number(timeout, (*path, "result_timeout"), minimum=0)
            pools.append(Pool(name, float(timeout)))
        return tuple(pools)

    def cross_check(
        self, clients: tuple[Client, ...], workers: tuple[Worker, ...], pools: tuple[Pool, ...]
    ) -> None:
        """Every pool named (a client's, a rule's, a ``[[pools]]``'s) is some worker's.

        A ``[[pools]]`` entry for a pool no worker has is an error, not a
        warning: most likely a typo, which would leave the real pool's
        results silently untracked, the very thing ``result_timeout`` is
        there to catch; and an error here keeps the rule that an exported
        config loads again (this check runs on runtime changes too).
        """
        known = {w.pool for w in workers}
        for i, c in enumerate(clients):
            if c.pool is not None and c.pool not in known:
                raise self.host.fail(("clients", i, "pool"), _unknown_pool(c.pool, known))
            for j, rule in enumerate(c.rules):
                if rule.pool and rule.pool not in known:
                    path = ("clients", i, "rules", j, "pool")
                    raise self.host.fail(path, _unknown_pool(rule.pool, known))
        for i, pool in enumerate(pools):
            if pool.name not in known:
                raise self.host.fail(("pools", i, "name"), _unknown_pool(pool.name, known))


def _unknown_pool(name: str, known: set[str]) -> str:
    near = difflib.get_close_matches(name, sorted(known), n=1)
    return f"unknown pool {name!r} (no worker has it" + (
        f"; did you mean {near[0]!r}?)" if near else ")"
    )


def attribute_problem(keyword: str) -> str | None:
    """Why ``keyword`` cannot be matched by a rule, or None if it can.

    A rule may match any attribute of the data dictionary whose value is
    text or numbers and which the peek reaches: in the dataset (not the
    command or file meta groups), before the pixel data, not a sequence.
    """
    # Here, not at the top: only a config with rules pays for pydicom (see the module's doc).
    from pydicom.datadict import dictionary_VR, keyword_dict, tag_for_keyword  # noqa: PLC0415

    tag = tag_for_keyword(keyword)
    if tag is None:
        near = difflib.get_close_matches(keyword, keyword_dict, n=1)
        hint = f" (did you mean {near[0]!r}?)" if near else ""
        return f"unknown DICOM keyword{hint}: a match names attributes of the data dictionary"
    where = f"({tag >> 16:04X},{tag & 0xFFFF:04X})"
    vr = dictionary_VR(tag)
    if tag >> 16 in (0x0000, 0x0002):
        return f"{where} is in the command or file meta group, not the dataset"
    if tag >= PIXEL_DATA:
        return f"{where} is not before PixelData (7FE0,0010): the peek never reads so far"
    if vr == "SQ":
        return f"{where} is a sequence: a rule matches values, not items"
    if " or " in vr:
        return f"{where} has a VR that depends on other attributes ({vr}): not matchable"
    if vr in _BINARY_VRS:
        return f"{where} has VR {vr}: a rule matches text and numbers only"
    return None


def rule_table(rule: Rule) -> dict[str, Any]:
    """A rule as its TOML table: ``{"match": {keyword: pattern}, "pool" or "action": ...}``."""
    table: dict[str, Any] = {"match": {c.key: c.pattern for c in rule.match}}
    if rule.pool:
        table["pool"] = rule.pool
    else:
        table["action"] = rule.action
    return table


def rules_toml(tables: list[dict[str, Any]]) -> list[str]:
    """``[[clients.rules]]`` sub-tables (from :func:`rule_table`), as lines of a TOML file."""
    lines: list[str] = []
    for table in tables:
        # Keywords are bare keys; a JSON string is a valid TOML basic string.
        match = ", ".join(f"{k} = {json.dumps(v)}" for k, v in table["match"].items())
        lines += ["", "[[clients.rules]]", f"match = {{ {match} }}"]
        lines += [f"{k} = {json.dumps(table[k])}" for k in ("pool", "action") if k in table]
    return lines


def rule_line(lines: list[str], path: tuple[Any, ...]) -> int | None:
    """The line of ``path`` = ("clients", i, "rules", j[, key[, keyword]]) in a file's ``lines``.

    The rule's own line for its key (or for a keyword of its ``match``,
    inline or as a ``[clients.rules.match]`` table); else its header;
    else its client's header. A best effort, for messages.
    """
    client, rule = path[1], path[3] if len(path) > 3 else None
    key, keyword = (*path[4:], None, None)[:2]
    clients = rules = -1
    client_line = rule_header = None
    in_rule = in_match = False
    for number, raw in enumerate(lines, start=1):
        line = raw.split("#", 1)[0].strip() if raw.lstrip().startswith("[") else raw.strip()
        header = _HEADER.match(line)
        if header:
            name, array = header.group(1), line.startswith("[[")
            if name == "clients" and array:
                clients += 1
                rules = -1
                client_line = number if clients == client else client_line
                in_rule = in_match = False
            elif name == "clients.rules" and array and clients == client:
                rules += 1
                in_rule, in_match = rules == rule, False
                rule_header = number if in_rule else rule_header
                if in_rule and key is None:
                    return number
            elif name == "clients.rules.match" and in_rule:
                in_match = True
                if key == "match" and keyword is None:
                    return number
            else:
                in_rule = in_match = False
            continue
        if not in_rule or key is None:
            continue
        if in_match and keyword is not None and re.match(rf"{re.escape(keyword)}\s*=", line):
            return number
        own_key = not in_match and re.match(rf"{re.escape(str(key))}\s*=", line)
        if own_key and (keyword is None or re.search(rf"[{{,]\s*{re.escape(keyword)}\s*=", line)):
            return number
    return rule_header or client_line
