"""What a person reads of a verb's result: aligned tables, the tree, fields.

One rendering per verb, shared by ``wolfpacs ctl``, ``wolfpacs shell``
and the status page of the HTTP port, so that all three say the same.
Plain functions of plain data (a verb's result); no I/O.

Times are told by their keys, in every verb's result: a key ending in
``_at``, or ``since``, ``at``, ``last_success``, ``oldest``, holds epoch
seconds, shown as local time with its UTC offset and how long ago (in a
table, only how long ago); a key ending in ``_s``, or ``uptime``, holds
seconds, shown as "3.2 s", "4 min", "2 h 5 min". ``--json`` keeps the
numbers as they are.
"""

from __future__ import annotations

import shlex
import time
from datetime import datetime
from typing import Any

__all__ = [
    "COLUMNS", "ago", "cell", "client_rules", "duration", "moment", "render", "shown", "table",
    "tree",
]  # fmt: skip

STAMPS = frozenset({"since", "at", "last_success", "oldest", "last_heartbeat"})  # and *_at
# Epoch seconds before this (2001) cannot be a wall-clock time: a monotonic clock's, say.
_EPOCH_FLOOR = 1e9


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_stamp(key: str) -> bool:
    return key in STAMPS or key.endswith("_at")


def _is_duration(key: str) -> bool:
    return key.endswith("_s") or key == "uptime"


def duration(seconds: Any) -> str:
    """``0.4 s``, ``42 s``, ``4 min``, ``2 h 5 min``, ``3 d 4 h``; ``-`` for no number."""
    if not _number(seconds):
        return "-"
    if seconds < 9.95:
        return f"{max(seconds, 0):.1f} s"
    minutes, rest = divmod(round(seconds), 60)
    if not minutes:
        return f"{rest} s"
    hours, minutes = divmod(minutes, 60)
    if not hours:
        return f"{minutes} min"
    days, hours = divmod(hours, 24)
    if not days:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    return f"{days} d {hours} h" if hours else f"{days} d"


def ago(stamp: Any, now: float | None = None) -> str:
    """``4 min ago``; ``in 3 s`` for a time ahead of ``now`` (default: this clock)."""
    if not _number(stamp):
        return "-"
    delta = (time.time() if now is None else now) - stamp
    return f"{duration(delta)} ago" if delta >= 0 else f"in {duration(-delta)}"


def moment(stamp: Any) -> str:
    """``2026-11-29 13:05:12 +01:00``: local time, to the second, with its UTC offset."""
    if not _number(stamp):
        return "-"
    text = datetime.fromtimestamp(stamp).astimezone().isoformat(sep=" ", timespec="seconds")
    return f"{text[:19]} {text[19:]}"


def cell(value: Any) -> str:
    """Any value, short: ``-`` for none, lists comma-separated, floats to 3 digits."""
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.0f}" if value.is_integer() or abs(value) >= 1000 else f"{value:.3g}"
    if isinstance(value, (list, tuple)):
        return ",".join(map(str, value)) or "-"
    return str(value)


def shown(key: str, value: Any, now: float | None = None, full: bool = False) -> str:
    """``value`` of ``key`` as a person reads it: a time or a duration by its key, else
    :func:`cell`. A time is how long ago; with ``full``, the moment too."""
    if _number(value) and _is_stamp(key) and value > _EPOCH_FLOOR:
        return f"{moment(value)} ({ago(value, now)})" if full else ago(value, now)
    if _number(value) and _is_duration(key):
        return duration(value)
    return cell(value)


def table(rows: list[dict[str, Any]], columns: list[str], now: float | None = None) -> str:
    """Rows as an aligned text table of ``columns`` (``key`` or ``key:LABEL``)."""
    if not rows:
        return "(none)"
    keys = [c.split(":")[0] for c in columns]
    labels = [c.split(":")[-1].upper() for c in columns]
    cells = [[shown(k, row.get(k), now) for k in keys] for row in rows]
    widths = [max(len(label), *(len(r[i]) for r in cells)) for i, label in enumerate(labels)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(labels, widths, strict=True))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)) for r in cells]
    return "\n".join(line.rstrip() for line in lines)


def tree(node: dict[str, Any], prefix: str = "", last: bool = True, top: bool = True) -> str:
    """The supervision tree, one actor a line."""
    alive = "up" if node.get("alive", True) else "DOWN"
    facts = [alive, f"restarts {node.get('restarts', 0)}"]
    if node.get("uptime") is not None:
        facts.append(f"up {duration(node['uptime'])}")
    if node.get("mailbox"):
        facts.append(f"mailbox {node['mailbox']}")
    if node.get("strategy"):
        facts.append(node["strategy"])
    if node.get("last_exit"):
        facts.append(f"last exit: {node['last_exit']}")
    branch = "" if top else ("└── " if last else "├── ")
    lines = [f"{prefix}{branch}{node['id']}  [{', '.join(facts)}]"]
    children = node.get("children") or []
    for i, child in enumerate(children):
        more = "" if top else ("    " if last else "│   ")
        lines.append(tree(child, prefix + more, i == len(children) - 1, top=False))
    return "\n".join(lines)


COLUMNS = {
    "workers": ["name", "pool", "capacity", "state", "open_studies:open", "queued", "peer",
                "last_success:last_ok", "last_error"],
    "clients": ["name", "ae_title", "pool", "destination", "open_studies:open",
                "calling_ae_titles:calling", "allow"],
    "destinations": ["name", "ae_title", "host", "port", "queued", "up",
                     "last_success:last_ok"],
    "studies": ["study_uid", "client", "pool", "worker", "routed_at:routed", "instances_in:in",
                "instances_delivered:sent", "derived_in:derived", "derived_delivered:returned",
                "moved_from"],
    "queues": ["target", "kind", "instances", "bytes", "oldest_age_s:oldest"],
    "overdue": ["study", "client", "pool", "worker", "delivered_at:delivered",
                "waiting_s:waiting"],
    "dead": ["id", "at:when", "target", "study_uid", "reason"],
    "nodes": ["node_id:node", "this", "state", "epoch", "last_heartbeat", "started_at:started",
              "queued", "adopted_from", "adopted_by"],
}  # fmt: skip


def render(verb: str, result: Any, now: float | None = None) -> str:
    """What a person reads for a verb's result; times relative to ``now`` (default: this clock)."""
    now = time.time() if now is None else now
    if verb == "tree":
        return _whence(result) + tree(result)
    if verb in COLUMNS:
        return table(result, COLUMNS[verb], now)
    if verb == "config":
        return str(result).rstrip()
    if verb in ("rules", "add-rule", "remove-rule"):
        return client_rules(result)
    if verb == "study":  # every client's study with that UID: each a study of its own
        return "\n\n".join(_fields(study, now) for study in result)
    if verb == "stats":
        counters = "\n".join(f"  {k} = {cell(v)}" for k, v in sorted(result["counters"].items()))
        restarts = "\n".join(f"  {k} = {v}" for k, v in sorted(result["restarts"].items()))
        return (f"since {moment(result['since'])} (up {duration(result['uptime_s'])})\n"
                f"{counters or '  (nothing yet)'}\nrestarts:\n{restarts or '  none'}")  # fmt: skip
    if verb == "move":
        split = "".join(
            f"\n  study {uid}: {n} instances already at {result['from']}"
            for uid, n in result["already_delivered"].items()
        )
        split_now = _count(result["split_studies"], "study", "studies")
        return (f"moved {_count(result['studies'], 'study', 'studies')} and "
                f"{_count(result['queued_moved'], 'queued instance', 'queued instances')} from "
                f"{result['from']} to {result['to']}; {split_now} "
                f"{'is' if result['split_studies'] == 1 else 'are'} now split{split}")  # fmt: skip
    if isinstance(result, dict):
        return _fields(result, now)
    return cell(result)


def _whence(result: dict[str, Any]) -> str:
    """The line above a tree: the node it comes from, and its peers (several nodes)."""
    node = result.get("node")
    if not node:
        return ""
    peers = result.get("peers")
    seen = ", ".join(f"{p['node_id']} ({p['state']})" for p in peers or []) or "none"
    return f"node {node['node_id']} (epoch {node['epoch']}); peers: {seen}\n"


def client_rules(result: dict[str, Any]) -> str:
    """A client's rules (:func:`wolfpacs.ops.rules.view`) as a table, its default pool below.

    Each match is written as ``add-rule --match`` takes it, quoted for a
    shell where it needs to be: a rule can be read off and typed again.
    """
    client, rules = result["client"], result["rules"]
    lines = []
    if "added" in result:
        lines.append(f"added rule {result['added']} to {client}")
    if "removed" in result:
        removed = result["removed"]
        lines.append(f"removed rule {removed['index']} of {client}: "
                     f"{_match_words(removed['match'])} -> {_then(removed)}")  # fmt: skip
    if rules:
        lines.append(f"client {client}: rules tried in order, the first that matches decides")
        rows = [{"index": r["index"], "match": _match_words(r["match"]), "then": _then(r)}
                for r in rules]  # fmt: skip
        lines.append(table(rows, ["index:#", "match", "then"]))
    else:
        lines.append(f"client {client}: no rules")
    pool = result["pool"]
    lines.append(f"default pool: {pool}" if pool else
                 "default pool: none: unmatched series are refused")  # fmt: skip
    if result.get("note"):
        lines.append(f"note: {result['note']}")
    return "\n".join(lines)


def _match_words(match: dict[str, str]) -> str:
    return " ".join(shlex.quote(f"{key}={pattern}") for key, pattern in match.items())


def _then(rule: dict[str, Any]) -> str:
    return f"pool {rule['pool']}" if rule.get("pool") else str(rule.get("action"))


def _count(n: int, one: str, many: str) -> str:
    return f"{n} {one if n == 1 else many}"


def _fields(data: dict[str, Any], now: float, indent: str = "") -> str:
    """A map as ``key: value`` lines, nested maps (and lists of maps) indented under their key."""
    lines = []
    for key, value in data.items():
        if isinstance(value, dict):
            lines.append(f"{indent}{key}:")
            lines.append(_fields(value, now, indent + "  ") if value else f"{indent}  (empty)")
        elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            lines.append(f"{indent}{key}:")  # e.g. a study's series, one block each
            for item in value:
                block = _fields(item, now, indent + "    ").split("\n")
                lines.append(f"{indent}  - {block[0].lstrip()}")
                lines.extend(block[1:])
        else:
            lines.append(f"{indent}{key}: {shown(key, value, now, full=True)}")
    return "\n".join(lines)
