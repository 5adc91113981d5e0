"""``wolfpacs ctl VERB ...``: the operator's verbs for scripts, and their words for people.

One argument parser per verb (shared with the shell, which parses each of
its lines the same way); the result rendered for people
(:mod:`wolfpacs.ops.render`), or itself as JSON with ``--json``.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
from pathlib import Path
from typing import Any, NoReturn

from wolfpacs.config.checker import load
from wolfpacs.config.model import ConfigError
from wolfpacs.ops.control import ControlClient, ControlError
from wolfpacs.ops.render import render
from wolfpacs.ops.verbs import VERBS

__all__ = ["connect", "parse_verb", "verb_parser"]

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
        "retry": "target",
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
        elif verb == "purge":
            _flag(p, "dry_run", action="store_true", default=None)
        elif verb == "config":
            _flag(p, "export", action="store_true", required=True)
            _flag(p, "show_secrets", action="store_true", default=None)
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
                p.add_argument("--no-check-hostname", dest="tls_check_hostname",
                               action="store_false", default=None)  # fmt: skip
            if verb in ("add-client", "add-worker"):
                _flag(p, "tls_subject")
                _flag(p, "tls_fingerprint")
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


def connect(args: argparse.Namespace) -> ControlClient:
    """A client for the node named by ``--port``/``--token``, ``--socket`` or
    ``$WOLFPACS_SOCKET``, ``--config`` or ``$WOLFPACS_CONFIG`` (in the image, its config),
    in that order; else ``./wolfpacs-data/control.sock``.

    Raises:
        ConfigError: the config named cannot be loaded.
    """
    if getattr(args, "port", None):
        return ControlClient(port=args.port, token=args.token or os.environ.get("WOLFPACS_TOKEN"))
    path = args.socket or os.environ.get("WOLFPACS_SOCKET")
    config = getattr(args, "config", None) or os.environ.get("WOLFPACS_CONFIG")
    if path is None and config:
        path = str(load(config).node.control_path)
    return ControlClient(path or Path("wolfpacs-data") / "control.sock")


def add_connection_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--socket",
        help="the node's control socket (default: $WOLFPACS_SOCKET, from --config or "
        "$WOLFPACS_CONFIG, or ./wolfpacs-data/control.sock)",
    )
    parser.add_argument(
        "--config", help="the node's config file, to find its socket (or $WOLFPACS_CONFIG)"
    )
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
    try:
        client = connect(args)
    except ConfigError as exc:
        print(f"wolfpacs ctl: config error: {exc}", file=sys.stderr)
        return 2
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
