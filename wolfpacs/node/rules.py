"""Routing by content: which pool a series goes to, by its client's rules.

Pure functions over the config's :class:`~wolfpacs.config.model.Rule`
(their patterns compiled once, at config load) and a series' attributes
as the peek read them from its first instance
(:attr:`wolfpacs.dicom.peek.RoutingTags.attributes`). No I/O, no state:
the caller decides once per series and keeps the decision.

What matches, exactly:

- a rule matches when every condition of its ``match`` holds (AND);
  the rules are tried in order and the first that matches decides; none
  matching, the client's ``pool`` does, and with no ``pool`` the series
  is refused;
- a condition holds when one of the attribute's values matches its
  regular expression *whole* (:meth:`re.Pattern.fullmatch`): ``CT``
  matches ``CT``, never ``CTA``;
- a missing attribute never matches, and neither does an empty value: in
  DICOM a present but empty (type 2) attribute means "unknown", and no
  rule can say what unknown is; so ``.*`` means "has a value";
- ``calling_ae`` is the association's calling AE title, one value.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from pydicom.datadict import tag_for_keyword

from wolfpacs.config.model import CALLING_AE, DISCARD, Client, Rule

__all__ = ["REFUSED", "Attributes", "Decision", "decide", "matches", "wanted_tags"]

# A series' attributes: DICOM keyword -> its values, each a string (see peek).
Attributes = Mapping[str, tuple[str, ...]]


@dataclass(frozen=True)
class Decision:
    """What the rules say about one series: plain data, for a message or the store.

    ``outcome`` is ``"pool"`` (go to ``pool``), ``"discard"`` (answer
    success, forward nowhere) or ``"refuse"`` (no rule matched and the
    client has no default pool). ``rule`` is the index in the client's
    rules of the rule that decided, None for the default pool or a refusal.
    """

    outcome: Literal["pool", "discard", "refuse"]
    pool: str = ""
    rule: int | None = None

    @property
    def reason(self) -> str:
        """Why, in a few words, for a log line or a refusal's comment."""
        if self.rule is not None:
            return f"rules[{self.rule}]"
        if self.outcome == "pool":
            return "the client's default pool"
        return "no rule matched and the client has no default pool"


REFUSED = Decision("refuse")


def matches(rule: Rule, attributes: Attributes, calling_ae: str = "") -> bool:
    """True if every condition of ``rule`` holds for a series with these attributes."""
    for condition in rule.match:
        if condition.key == CALLING_AE:
            values: tuple[str, ...] = (calling_ae.strip(),)
        else:
            values = attributes.get(condition.key, ())
        fullmatch = condition.regex.fullmatch
        if not any(value and fullmatch(value) for value in values):
            return False
    return True


def decide(client: Client, attributes: Attributes, calling_ae: str = "") -> Decision:
    """Where ``client``'s series with these attributes goes: the first matching rule, else
    its default pool, else :data:`REFUSED`.

    ``attributes`` needs the keywords of :func:`wanted_tags` (others are
    ignored; a missing one never matches). Never raises.
    """
    for index, rule in enumerate(client.rules):
        if matches(rule, attributes, calling_ae):
            if rule.action == DISCARD:
                return Decision("discard", rule=index)
            return Decision("pool", rule.pool, index)
    return REFUSED if client.pool is None else Decision("pool", client.pool)


@functools.lru_cache(maxsize=8)
def wanted_tags(clients: tuple[Client, ...]) -> frozenset[int]:
    """The tags whose values the rules of ``clients`` need: what the peek must read.

    Pass the config's ``clients`` tuple (it is hashable, being frozen):
    the answer is cached for the last few configs, so calling this for
    every series costs a hash of the tuple. Empty when no client has rules:
    the peek reads no further than it did without rules.
    """
    tags: set[int] = set()
    for client in clients:
        for rule in client.rules:
            for condition in rule.match:
                tag = tag_for_keyword(condition.key) if condition.key != CALLING_AE else None
                if tag is not None:  # the checker made sure every other key is a keyword
                    tags.add(tag)
    return frozenset(tags)
