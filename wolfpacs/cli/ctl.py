"""``wolfpacs ctl VERB ...``: the operator's verbs for scripts, and their words for people.

One argument parser per verb (shared with the shell, which parses each of
its lines the same way); the result rendered for people
(:mod:`wolfpacs.ops.render`), or itself as JSON with ``--json``.

ctl's own options (``--json``, how to reach the node, logging, ``--help``)
may come before or after the verb: :func:`split` takes them out of the
words and leaves the verb's. After the verb, a flag the verb takes itself
is the verb's: ``--port`` after ``add-worker`` is the worker's port, before
the verb the node's TCP control port.
"""

from __future__ import annotations

import argparse
import difflib
import json
import shlex
import sys
import textwrap
from typing import Any, NoReturn

from wolfpacs.cli.options import add_connection_options, add_log_options, connect
from wolfpacs.config.model import ConfigError
from wolfpacs.ops import logs
from wolfpacs.ops.control import ControlError
from wolfpacs.ops.render import render
from wolfpacs.ops.verbs import VERBS

__all__ = [
    "ctl_only", "main", "options_parser", "overview", "parse_verb", "split", "verb_lines",
    "verb_parser",
]  # fmt: skip

EXIT_REFUSED = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3
# A one-shot command waits this long for a control socket: enough for a control actor
# that restarts, short for a node that is not running at all.
CONNECT_WAIT = 3.0
UNREACHABLE_HINT = (
    "is the node running? Name it with --config FILE (or $WOLFPACS_CONFIG), "
    "--socket PATH, or --port N --token T"
)


class _Parser(argparse.ArgumentParser):
    """argparse that raises instead of exiting: a shell must survive a typo."""

    def error(self, message: str) -> NoReturn:
        usage = self.format_usage().strip()
        raise ValueError(f"{self.prog}: {message}" + (f"\n{usage}" if usage else ""))

    def exit(self, status: int = 0, message: str | None = None) -> NoReturn:
        raise _HelpShownError(message or "")


class _HelpShownError(Exception):
    """``--help`` was asked for, and printed."""


def _flag(parser: argparse.ArgumentParser, name: str, **kwargs: Any) -> None:
    parser.add_argument(f"--{name.replace('_', '-')}", dest=name, **kwargs)


def _flags(parser: argparse.ArgumentParser) -> dict[str, bool]:
    """Each option string of ``parser`` → whether it takes a value."""
    return {flag: action.nargs != 0 for action in parser._actions for flag in action.option_strings}


def verb_parser() -> argparse.ArgumentParser:
    """A parser whose sub-commands are the verbs; each yields the verb's keyword args."""
    return _verb_parsers()[0]


def _verb_parsers() -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    """The parser of all verbs, and each verb's own."""
    top = _Parser(prog="wolfpacs ctl", add_help=False)
    verbs = top.add_subparsers(dest="verb", required=True, parser_class=_Parser)
    each: dict[str, argparse.ArgumentParser] = {}
    one = {
        "inspect": "actor", "study": "uid", "drain": "worker", "resume": "worker",
        "retry": "target",
        "kill": "actor", "remove-client": "name", "remove-worker": "name",
        "remove-destination": "name", "rules": "client", "add-rule": "client",
        "remove-rule": "client", "forget-node": "name",
    }  # fmt: skip
    for verb, help_text in VERBS.items():
        p = each[verb] = verbs.add_parser(verb, help=help_text, description=help_text)
        if verb in one:
            p.add_argument(one[verb])
        if verb.startswith("remove-") and verb != "remove-rule":
            _flag(p, "force", action="store_true")
        if verb in ("add-rule", "remove-rule"):
            _rule_arguments(p, verb)
        elif verb == "studies":
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
                _flag(p, "pool")  # none: series no rule matches are refused
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
    return top, each


def _rule_arguments(p: argparse.ArgumentParser, verb: str) -> None:
    """add-rule's and remove-rule's arguments after the client's name."""
    if verb == "remove-rule":
        p.add_argument("index", type=int, metavar="N", help="the rule's index, as 'rules' shows")
        return
    # Both --pool and --discard, or neither, is the node's to refuse (exit 1), as the
    # config checker does: one place says what a rule needs, not argparse (exit 2).
    _flag(p, "match", nargs="+", required=True, metavar="KEY=REGEX",
          help="a DICOM keyword (or calling_ae) and the expression its whole value must "
               "match; split at the first '='; all must match")  # fmt: skip
    _flag(p, "pool", help="where the series it matches go")
    _flag(p, "discard", action="store_true", default=None,
          help="answer success and forward them nowhere")  # fmt: skip
    _flag(p, "at", type=int, metavar="N", help="insert at index N (0: first); default: last")


def parse_verb(words: list[str]) -> tuple[str, dict[str, Any]]:
    """(verb, args) from words such as ``["move", "gpu-a", "--to", "gpu-b"]``.

    Raises:
        ValueError: no verb, an unknown one (the nearest named), or bad arguments
            (argparse's message and the verb's usage).
        LookupError: ``--help`` was given; the help has been printed.
    """
    if not words or words[0].startswith("-"):
        raise ValueError("no verb given")
    if words[0] not in VERBS:
        near = difflib.get_close_matches(words[0], VERBS, n=1)
        raise ValueError(
            f"unknown verb {words[0]!r}" + (f" (did you mean {near[0]!r}?)" if near else "")
        )
    try:
        namespace = verb_parser().parse_args(words)
    except _HelpShownError:
        raise LookupError("help shown") from None
    args = {k: v for k, v in vars(namespace).items() if k != "verb" and v is not None}
    return namespace.verb, args


def options_parser() -> argparse.ArgumentParser:
    """ctl's own options: ``--json``, the connection's, logging's, ``--help``."""
    parser = _Parser(
        prog="wolfpacs ctl", add_help=False, usage=argparse.SUPPRESS,
        formatter_class=lambda prog: argparse.HelpFormatter(prog, max_help_position=22),
    )  # fmt: skip
    group = parser.add_argument_group("options, before or after the verb")
    group.add_argument("--json", action="store_true",
                       help="the result as JSON, for scripts (times in epoch seconds)")  # fmt: skip
    add_connection_options(group)
    add_log_options(group, level="warning")
    group.add_argument("-h", "--help", action="store_true",
                       help="this help; a verb's: VERB --help, or help VERB")  # fmt: skip
    return parser


def split(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    """ctl's own options, and the verb's words, from ``argv`` in any order.

    Before the verb, every flag must be ctl's; after it, a flag is the
    verb's if the verb takes it, else ctl's if ctl takes it, else the
    verb's (whose parser then refuses it).

    Raises:
        ValueError: an unknown option before the verb, or a bad value of ctl's own.
    """
    parser = options_parser()
    ours = _flags(parser)
    verbs = _verb_parsers()[1]
    mine: list[str] = []
    theirs: list[str] = []
    verb_flags: dict[str, bool] = {}
    words = iter(argv)
    for word in words:
        flag = word.split("=", 1)[0]
        if not theirs and not word.startswith("-"):
            theirs.append(word)  # the verb
            verb_flags = _flags(verbs[word]) if word in verbs else {}
        elif flag in ours and flag not in verb_flags:
            mine.append(word)
            if ours[flag] and "=" not in word:
                value = next(words, None)  # missing: argparse says so
                mine += [] if value is None else [value]
        elif not theirs:
            near = difflib.get_close_matches(flag, list(ours), n=1)
            hint = f" (did you mean {near[0]!r}?)" if near else ""
            raise ValueError(f"wolfpacs ctl: unknown option {flag!r}{hint}")
        else:
            theirs.append(word)
    return parser.parse_args(mine), theirs


def ctl_only(words: list[str]) -> str | None:
    """The first of ``words`` that is an option of ctl's own, not of its verb's.

    The shell refuses it: its connection is set when it starts, and people read its answers.
    """
    verbs = _verb_parsers()[1]
    if not words or words[0] not in verbs:
        return None  # parse_verb says what is wrong
    ours = set(_flags(options_parser())) - set(_flags(verbs[words[0]]))
    return next((w for w in words[1:] if w.split("=", 1)[0] in ours), None)


def verb_lines(width: int = 79) -> list[str]:
    """Each verb and its help, aligned, wrapped within ``width`` columns."""
    lines = []
    for name, text in VERBS.items():
        lines += textwrap.wrap(text, width, initial_indent=f"  {name:<19} ",
                               subsequent_indent=" " * 22)  # fmt: skip
    return lines


def overview() -> str:
    """What ``wolfpacs ctl --help`` prints: the verbs, one line each, and ctl's options."""
    return "\n".join([
        "usage: wolfpacs ctl [OPTIONS] VERB [ARGS] [OPTIONS]",
        "",
        "One verb on a running node, for scripts and people ('wolfpacs shell': the same",
        "verbs, interactively). 'wolfpacs ctl help VERB' shows a verb's arguments.",
        "",
        "verbs:",
        *verb_lines(),
        "",
        options_parser().format_help().rstrip(),
        "  (after the verb, a flag the verb takes is the verb's: the --port of add-worker",
        "  and add-destination is the peer's port)",
        "",
        "exit status: 0 done; 1 the node refused (the reason on stderr); 2 bad usage or",
        "config; 3 the node cannot be reached",
    ])  # fmt: skip


def main(argv: list[str]) -> int:
    """``wolfpacs ctl`` with ``argv``: 0 done, 1 refused, 2 bad usage or config, 3 unreachable.

    ``help``, ``--help`` and ``-h`` print the overview (a verb's help, with a
    verb), exit 0. No verb at all prints the overview on stderr, exit 2: a
    script whose verb came out empty must not pass for one that worked.
    """
    try:
        options, words = split(argv)
    except ValueError as exc:
        return _usage_error(str(exc))
    logs.setup(options.log_level, options.log_format)
    if words[:1] == ["help"]:
        words, options.help = words[1:], True
    if not words:
        print(overview(), file=sys.stdout if options.help else sys.stderr)
        return 0 if options.help else EXIT_USAGE
    try:
        verb, verb_args = parse_verb([*words[:1], "--help"] if options.help else words)
    except LookupError:
        return 0
    except ValueError as exc:
        return _usage_error(str(exc))
    try:
        client = connect(options, reconnect=CONNECT_WAIT)
    except ConfigError as exc:
        print(f"wolfpacs ctl: config error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        result = client.call(verb, **verb_args)
    except ControlError as exc:
        unreachable = str(exc).startswith("cannot reach")
        print(f"wolfpacs ctl {verb}: {exc}", file=sys.stderr)
        if unreachable:
            print(f"wolfpacs ctl: {UNREACHABLE_HINT}", file=sys.stderr)
        return EXIT_UNREACHABLE if unreachable else EXIT_REFUSED
    finally:
        client.close()
    print(json.dumps(result, indent=2, default=str) if options.json else render(verb, result))
    return 0


def _usage_error(message: str) -> int:
    if not message.startswith("wolfpacs ctl"):
        message = f"wolfpacs ctl: {message}"
    print(f"{message}\n('wolfpacs ctl help' lists the verbs and options)", file=sys.stderr)
    return EXIT_USAGE


def words(line: str) -> list[str]:
    return shlex.split(line)
