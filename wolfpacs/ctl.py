"""``wolfpacs ctl VERB ...``: the operator's verbs for scripts, and their words for people.

One argument parser per verb (shared with the shell, which parses each of
its lines the same way) and one rendering per verb: tables and a tree for
people, or the result itself as JSON with ``--json``.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from pathlib import Path
from typing import Any, NoReturn

from wolfpacs.admin import VERBS
from wolfpacs.config import load
from wolfpacs.control import ControlClient, ControlError

__all__ = ["connect", "parse_verb", "render", "verb_parser"]

EXIT_REFUSED = 1
EXIT_UNREACHABLE = 3


class _Parser(argparse.ArgumentParser):
    """argparse that raises instead of exiting: a shell must survive a typo."""

    def error(self, message: str) -> NoReturn:
        raise ValueError(f"{self.prog}: {message}")

    def exit(self, status: int = 0, message: str | None = None) -> NoReturn:
        raise _HelpShownError(message or "")


class _HelpShownError(Exception):
    """``--help`` was asked for, and printed."""


def _flag(parser: argparse.ArgumentParser, name: str, **kwargs: Any) -> None:
    parser.add_argument(f"--{name.replace('_', '-')}", dest=name, **kwargs)


def verb_parser() -> argparse.ArgumentParser:
    """A parser whose sub-commands are the verbs; each yields the verb's keyword args."""
    top = _Parser(prog="wolfpacs ctl", add_help=False)
    verbs = top.add_subparsers(dest="verb", required=True, parser_class=_Parser)
    one = {
        "inspect": "actor", "study": "uid", "drain": "worker", "resume": "worker",
        "kill": "actor", "remove-client": "name", "remove-worker": "name",
        "remove-destination": "name",
    }  # fmt: skip
    for verb, help_text in VERBS.items():
        p = verbs.add_parser(verb, help=help_text, description=help_text)
        if verb in one:
            p.add_argument(one[verb])
        if verb.startswith("remove-"):
            _flag(p, "force", action="store_true")
        if verb == "studies":
            for name in ("worker", "client"):
                _flag(p, name)
            _flag(p, "limit", type=int, default=50)
        elif verb == "retry-dead":
            p.add_argument("id", nargs="?")
            _flag(p, "all", action="store_true")
        elif verb == "move":
            p.add_argument("worker")
            _flag(p, "to", required=True)
            _flag(p, "studies", nargs="+")
        elif verb == "config":
            _flag(p, "export", action="store_true", required=True)
        elif verb.startswith("add-"):
            p.add_argument("name")
            _flag(p, "ae_title", required=True)
            if verb == "add-client":
                _flag(p, "destination", required=True)
                _flag(p, "pool", required=True)
                _flag(p, "calling_ae_titles", nargs="+")
                _flag(p, "allow", nargs="+")
            else:
                _flag(p, "host", required=True)
                _flag(p, "port", type=int, required=True)
                _flag(p, "tls", action="store_true", default=None)
            if verb == "add-worker":
                _flag(p, "pool", required=True)
                _flag(p, "capacity", type=int, default=1)
                _flag(p, "allow", nargs="+")
    return top


def parse_verb(words: list[str]) -> tuple[str, dict[str, Any]]:
    """(verb, args) from words such as ``["move", "gpu-a", "--to", "gpu-b"]``.

    Raises:
        ValueError: with argparse's message, for an unknown verb or bad arguments.
        LookupError: ``--help`` was given; the help has been printed.
    """
    try:
        namespace = verb_parser().parse_args(words)
    except _HelpShownError:
        raise LookupError("help shown") from None
    args = {k: v for k, v in vars(namespace).items() if k != "verb" and v is not None}
    return namespace.verb, args


# -- rendering ---------------------------------------------------------------------------


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


def connect(args: argparse.Namespace) -> ControlClient:
    """A client for the node named by ``--socket``, ``--port``/``--token`` or ``--config``."""
    if getattr(args, "port", None):
        return ControlClient(port=args.port, token=args.token or os.environ.get("WOLFPACS_TOKEN"))
    path = args.socket or os.environ.get("WOLFPACS_SOCKET")
    if path is None and getattr(args, "config", None):
        path = str(load(args.config).node.control_path)
    return ControlClient(path or Path("wolfpacs-data") / "control.sock")


def add_connection_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--socket", help="the node's control socket (default: from --config, "
                        "$WOLFPACS_SOCKET, or ./wolfpacs-data/control.sock)")  # fmt: skip
    parser.add_argument("--config", help="the node's config file, to find its socket")
    parser.add_argument("--port", type=int, help="TCP control port on 127.0.0.1")
    parser.add_argument("--token", help="TCP control token (or $WOLFPACS_TOKEN)")


def main(args: argparse.Namespace) -> int:
    """Run one verb; 0 done, 1 refused (the reason on stderr), 3 node unreachable."""
    try:
        verb, verb_args = parse_verb(args.words or ["--help"])
    except LookupError:
        return 0
    except ValueError as exc:
        print(f"wolfpacs ctl: {exc}", file=sys.stderr)
        return 2
    client = connect(args)
    try:
        result = client.call(verb, **verb_args)
    except ControlError as exc:
        print(f"wolfpacs ctl {verb}: {exc}", file=sys.stderr)
        return EXIT_UNREACHABLE if str(exc).startswith("cannot reach") else EXIT_REFUSED
    finally:
        client.close()
    print(json.dumps(result, indent=2, default=str) if args.json else render(verb, result))
    return 0


def words(line: str) -> list[str]:
    return shlex.split(line)
