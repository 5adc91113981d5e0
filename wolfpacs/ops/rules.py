"""A client's routing rules at runtime: the ``rules``, ``add-rule`` and ``remove-rule`` verbs.

A change replaces the client's whole list of rules: one runtime change of
kind :data:`~wolfpacs.config.live.RULES`, checked as the file's rules are
(the same checker: unknown keyword, bad expression, unknown pool, pool and
action both or neither), persisted, then made live, in that order and
under the lock of :class:`~wolfpacs.ops.entries.Entries`. So it survives
a restart, ``config --export`` writes it, and the router, which reads the
live config at each decision, routes the next new series by it (a series
already decided keeps its decision).

The client's AE title is its secret: no result here names it.

Error contract: :class:`~wolfpacs.ops.verbs.AdminError` with the reason
(naming the client and the rule); nothing is changed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from wolfpacs.config.live import RULES
from wolfpacs.config.model import DISCARD, ConfigError
from wolfpacs.config.routing import rule_table
from wolfpacs.ops.entries import REFUSES_ALL
from wolfpacs.ops.verbs import AdminError

if TYPE_CHECKING:
    from wolfpacs.config.live import LiveConfig
    from wolfpacs.config.model import Client, Config
    from wolfpacs.ops.entries import Entries

__all__ = ["ClientRules", "view"]

# "clients[3]." of a whole-config error: the client is named in the message instead.
_CLIENT_KEY = re.compile(r"^clients\[\d+\]\.?")


def view(client: Client) -> dict[str, Any]:
    """What ``rules CLIENT`` returns: plain data with the same keys whatever the rules.

    ``{"client": name, "pool": the default pool or None (unmatched series are
    refused), "rules": [{"index": i, "match": {keyword: expression},
    "pool": name or None, "action": "discard" or None}, ...]}``, the rules in
    the order they are tried, ``index`` as ``add-rule --at`` and
    ``remove-rule`` count.
    """
    return {
        "client": client.name,
        "pool": client.pool,
        "rules": [
            {
                "index": i,
                "match": {c.key: c.pattern for c in rule.match},
                "pool": rule.pool or None,
                "action": rule.action or None,
            }
            for i, rule in enumerate(client.rules)
        ],
    }


@dataclass(kw_only=True, eq=False, repr=False)
class ClientRules:
    """The rule verbs of one node; its changes take ``entries.lock``, as every change does."""

    live: LiveConfig
    entries: Entries

    def rules(self, client: str) -> dict[str, Any]:
        """``client``'s rules, in order, and its default pool (see :func:`view`)."""
        return view(_client(self.live.get(), client))

    def add_rule(
        self,
        client: str,
        match: list[str],
        pool: str | None = None,
        discard: bool = False,
        at: int | None = None,
    ) -> dict[str, Any]:
        """Add a rule to ``client``'s: last, or at index ``at`` (the rules from there move up).

        ``match``: ``KEY=REGEX`` words, split at the first ``=`` (a keyword has
        none; an expression may). Exactly one of ``pool`` and ``discard``.
        Returns :func:`view` of the client after, with ``added``: the new rule's index.
        """
        if pool is not None and discard:
            raise AdminError("a rule sends its series to a pool (--pool P) or discards them "
                             "(--discard), not both")  # fmt: skip
        if pool is None and not discard:
            raise AdminError("say where the rule's series go: --pool P, or --discard")
        table: dict[str, Any] = {"match": _match(match)}
        table.update({"pool": pool} if pool is not None else {"action": DISCARD})
        with self.entries.lock:
            found = _client(self.live.get(), client)
            tables = [rule_table(rule) for rule in found.rules]
            index = len(tables) if at is None else at
            if not 0 <= index <= len(tables):
                raise AdminError(f"--at {at}: client {client} has {_rules(len(tables))}; "
                                 f"0 to {len(tables)} ({len(tables)} adds it last)")  # fmt: skip
            tables.insert(index, table)
            changed = self._set(found, tables)
        return {"added": index, **view(changed)}

    def remove_rule(self, client: str, index: int) -> dict[str, Any]:
        """Remove rule ``index`` of ``client``'s (the rules after it move down).

        Returns :func:`view` of the client after, with ``removed``: the rule
        as :func:`view` showed it; and ``note`` if the client is left with
        neither rules nor pool (it then refuses every series: allowed, as
        ``add-client`` without a pool is).
        """
        with self.entries.lock:
            found = _client(self.live.get(), client)
            if not 0 <= index < len(found.rules):
                have = f" (0 to {len(found.rules) - 1})" if found.rules else ""
                raise AdminError(
                    f"client {client} has no rule {index}: it has {_rules(len(found.rules))}"
                    f"{have}; see 'rules {client}'"
                )
            removed = view(found)["rules"][index]
            tables = [rule_table(rule) for i, rule in enumerate(found.rules) if i != index]
            changed = self._set(found, tables)
        result: dict[str, Any] = {"removed": removed, **view(changed)}
        if changed.pool is None and not changed.rules:
            result["note"] = REFUSES_ALL
        return result

    def _set(self, client: Client, tables: list[dict[str, Any]]) -> Client:
        """Make ``tables`` the client's rules (persisted, then live); the client as it is now.

        The caller holds ``entries.lock``.
        """
        try:
            self.entries.change(RULES, client.name, {"rules": tables})
        except ConfigError as exc:  # as the file's checker says it, for this client
            key = _CLIENT_KEY.sub("", exc.key)
            where = f"client {client.name}" + (f", {key}" if key else "")
            raise AdminError(f"{where}: {exc.problem}") from None
        changed = self.live.get().client(client.name)
        assert changed is not None  # under the lock, and a rules change keeps its client
        return changed


def _client(config: Config, name: str) -> Client:
    found = config.client(name)
    if found is None:
        raise AdminError(f"no client {name!r} (see 'clients')")
    return found


def _rules(n: int) -> str:
    return f"{n} rule" if n == 1 else f"{n} rules"


def _match(words: list[str]) -> dict[str, str]:
    """``KEY=REGEX`` words as a rule's ``match`` table, in their order.

    Split at the first ``=``: a DICOM keyword never has one, an expression
    may (``SeriesDescription=a=b`` is ``a=b``). The keys and expressions
    themselves are the checker's to judge.
    """
    if not words:
        raise AdminError("--match needs at least one KEY=REGEX")
    match: dict[str, str] = {}
    for word in words:
        key, equals, pattern = word.partition("=")
        key = key.strip()
        if not equals or not key:
            raise AdminError(f"--match {word!r}: write KEY=REGEX, e.g. Modality=CT")
        if key in match:
            raise AdminError(f"--match names {key} twice: one expression per key "
                             "(either of two values: A|B)")  # fmt: skip
        match[key] = pattern
    return match
