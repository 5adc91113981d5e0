"""What a person reads of a verb's result: aligned tables, the tree, fields.

One rendering per verb, shared by ``wolfpacs ctl``, ``wolfpacs shell``
and the status page of the HTTP port, so that all three say the same.
Plain functions of plain data (a verb's result); no I/O.
"""

from __future__ import annotations

import time
from typing import Any

__all__ = ["COLUMNS", "cell", "render", "table", "tree"]


def _when(stamp: Any) -> str:
    if not isinstance(stamp, (int, float)):
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(stamp))


def _age(seconds: Any) -> str:
    if not isinstance(seconds, (int, float)):
        return "-"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f}{unit}"
    return f"{seconds:.1f}s"


def cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3g}"
    if isinstance(value, (list, tuple)):
        return ",".join(map(str, value)) or "-"
    return str(value)


def table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    """Rows as an aligned text table of ``columns`` (``key`` or ``key:LABEL``)."""
    if not rows:
        return "(none)"
    keys = [c.split(":")[0] for c in columns]
    labels = [c.split(":")[-1].upper() for c in columns]
    cells = [[cell(row.get(k)) for k in keys] for row in rows]
    widths = [max(len(label), *(len(r[i]) for r in cells)) for i, label in enumerate(labels)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(labels, widths, strict=True))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)) for r in cells]
    return "\n".join(line.rstrip() for line in lines)


def tree(node: dict[str, Any], prefix: str = "", last: bool = True, top: bool = True) -> str:
    """The supervision tree, one actor a line."""
    alive = "up" if node.get("alive", True) else "DOWN"
    facts = [alive, f"restarts {node.get('restarts', 0)}"]
    if node.get("uptime") is not None:
        facts.append(f"up {_age(node['uptime'])}")
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
                "last_error"],
    "clients": ["name", "ae_title", "pool", "destination", "open_studies:open",
                "calling_ae_titles:calling", "allow"],
    "destinations": ["name", "ae_title", "host", "port", "queued", "up"],
    "studies": ["study_uid", "client", "worker", "instances_in:in", "instances_delivered:sent",
                "derived_in:derived", "derived_delivered:returned", "moved_from"],
    "queues": ["target", "kind", "instances", "bytes", "oldest_age_s:oldest"],
    "dead": ["id", "target", "study_uid", "reason"],
}  # fmt: skip


def render(verb: str, result: Any) -> str:
    """What a person reads for a verb's result."""
    if verb == "tree":
        return tree(result)
    if verb in COLUMNS:
        rows = result
        if verb == "queues":
            rows = [{**r, "oldest_age_s": _age(r.get("oldest_age_s"))} for r in result]
        return table(rows, COLUMNS[verb])
    if verb == "config":
        return str(result).rstrip()
    if verb == "study":  # every client's study with that UID: each a study of its own
        return "\n\n".join(_fields(study) for study in result)
    if verb == "stats":
        counters = "\n".join(f"  {k} = {v}" for k, v in sorted(result["counters"].items()))
        restarts = "\n".join(f"  {k} = {v}" for k, v in sorted(result["restarts"].items()))
        return (f"since {_when(result['since'])} (up {_age(result['uptime_s'])})\n"
                f"{counters or '  (nothing yet)'}\nrestarts:\n{restarts or '  none'}")  # fmt: skip
    if verb == "move":
        split = "".join(
            f"\n  study {uid}: {n} instances already at {result['from']}"
            for uid, n in result["already_delivered"].items()
        )
        return (f"moved {result['studies']} studies and {result['queued_moved']} queued "
                f"instances from {result['from']} to {result['to']}; "
                f"{result['split_studies']} studies are now split{split}")  # fmt: skip
    if isinstance(result, dict):
        return _fields(result)
    return cell(result)


def _fields(data: dict[str, Any], indent: str = "") -> str:
    """A map as ``key: value`` lines, nested maps indented under their key."""
    lines = []
    for key, value in data.items():
        if isinstance(value, dict):
            lines.append(f"{indent}{key}:")
            lines.append(_fields(value, indent + "  ") if value else f"{indent}  (empty)")
        else:
            lines.append(f"{indent}{key}: {cell(value)}")
    return "\n".join(lines)
