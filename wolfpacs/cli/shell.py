"""``wolfpacs shell``: an interactive console on a running node.

Every verb of ``wolfpacs ctl`` as a command, with tab completion of verbs
and of actor, worker, client, destination and pool names, history kept across
sessions (readline), ``help VERB``, and ``watch VERB`` to refresh a view
every second until Ctrl-C. Ctrl-D leaves.
"""

from __future__ import annotations

import argparse
import cmd
import contextlib
import os
import sys
import time
from pathlib import Path
from typing import Any

try:
    import readline
except ImportError:  # pragma: no cover - every Linux Python has it
    readline = None  # type: ignore[assignment]

from wolfpacs.cli.ctl import ctl_only, parse_verb, verb_lines, words
from wolfpacs.cli.options import connect
from wolfpacs.config.model import ConfigError
from wolfpacs.ops.control import ControlClient, ControlError
from wolfpacs.ops.render import render
from wolfpacs.ops.verbs import VERBS

__all__ = ["Shell", "main"]

HISTORY = Path(os.environ.get("WOLFPACS_HISTORY", Path.home() / ".wolfpacs_history"))
WATCH_INTERVAL = 1.0

# Which names complete a verb's first argument.
COMPLETES = {
    "inspect": "actors", "kill": "actors", "drain": "workers", "resume": "workers",
    "move": "workers", "remove-worker": "workers", "remove-client": "clients",
    "remove-destination": "destinations", "rules": "clients", "add-rule": "clients",
    "remove-rule": "clients",
}  # fmt: skip
# Which names complete the value of an option, whatever the verb.
OPTION_COMPLETES = {
    "--to": "workers", "--worker": "workers", "--client": "clients", "--pool": "pools",
}  # fmt: skip


def _node_name(client: ControlClient) -> str:
    """The node's AE title, for the prompt."""
    try:
        config = client.call("config", export=True)
    except ControlError:
        return "node"
    titles = (line.split("=", 1)[1] for line in config.splitlines() if line.startswith("ae_title"))
    return next(titles, "node").strip().strip('"')


class Shell(cmd.Cmd):
    """The console. ``client`` talks to the node; output goes to ``stdout``."""

    intro: str | None = "WolfPACS shell: 'help' lists the verbs, Tab completes, Ctrl-D leaves."

    def __init__(self, client: ControlClient, stdout: Any = None) -> None:
        super().__init__(stdout=stdout)
        self.client = client
        self._names: dict[str, list[str]] = {}
        self._names_at = 0.0
        self.prompt = f"wolfpacs({_node_name(client)})> "

    def say(self, text: str) -> None:
        self.stdout.write(text + "\n")
        self.stdout.flush()

    def run_verb(self, line: str) -> bool:
        """Run one line as a verb and print its result; False if it failed."""
        try:
            line_words = words(line)
            stray = ctl_only(line_words)
            if stray:  # the connection is the shell's, and people read its answers
                raise ValueError(f"{stray} is an option of 'wolfpacs ctl', not of a verb")
            verb, args = parse_verb(line_words)
        except LookupError:
            return True  # --help: printed
        except ValueError as exc:
            self.say(f"error: {exc}")
            return False
        try:
            self.say(render(verb, self.client.call(verb, **args)))
        except ControlError as exc:
            self.say(f"error: {exc}")
            return False
        return True

    def default(self, line: str) -> None:
        self.run_verb(line)

    def emptyline(self) -> bool:
        return False  # an empty line does nothing (not: repeat the last verb)

    def do_EOF(self, _arg: str) -> bool:  # noqa: N802 - cmd's name for Ctrl-D
        self.say("")
        return True

    def do_quit(self, _arg: str) -> bool:
        """Leave the shell (so does Ctrl-D)."""
        return True

    def do_watch(self, arg: str) -> None:
        """watch VERB [ARGS]: show VERB again every second, until Ctrl-C."""
        if not arg.strip():
            self.say("usage: watch VERB [ARGS]")
            return
        try:
            while True:
                self.stdout.write("\x1b[H\x1b[2J")  # home, clear: a screen that refreshes
                now = time.strftime("%H:%M:%S")
                self.say(f"every {WATCH_INTERVAL:.0f} s: {arg}   (Ctrl-C stops)   {now}")
                if not self.run_verb(arg):
                    return
                time.sleep(WATCH_INTERVAL)
        except KeyboardInterrupt:
            self.say("")

    def do_help(self, arg: str) -> None:
        """help [VERB]: the verbs, or one verb's arguments."""
        verb = arg.strip()
        if verb in VERBS:
            with contextlib.redirect_stdout(self.stdout), contextlib.suppress(LookupError):
                parse_verb([verb, "--help"])
            return
        self.say("verbs:")
        for line in verb_lines():
            self.say(line)
        self.say(f"  {'watch VERB':<19} repeat a verb every second until Ctrl-C")
        self.say(f"  {'quit':<19} leave (or Ctrl-D)")

    def names(self) -> dict[str, list[str]]:
        if time.monotonic() - self._names_at > 5:  # fresh enough to complete with
            with contextlib.suppress(ControlError):
                self._names = self.client.call("names")
                self._names_at = time.monotonic()
        return self._names

    def completenames(self, text: str, *_: Any) -> list[str]:
        return [v for v in [*VERBS, "watch", "help", "quit"] if v.startswith(text)]

    def completedefault(self, text: str, line: str, begidx: int, _endidx: int) -> list[str]:
        parts = line[:begidx].split()
        if parts and parts[0] == "watch":
            parts = parts[1:]
            if not parts:
                return [v for v in VERBS if v.startswith(text)]
        kind = None
        if len(parts) == 1:  # the verb's first argument
            kind = COMPLETES.get(parts[0])
        elif parts:
            kind = OPTION_COMPLETES.get(parts[-1])
        if kind is None:
            return []
        return [n for n in self.names().get(kind, []) if n.startswith(text)]

    def complete_help(self, text: str, *_: Any) -> list[str]:
        return [v for v in VERBS if v.startswith(text)]


def _readline(history: Path) -> Any:
    if readline is None:  # no readline on this Python: no history, no completion
        return None
    with contextlib.suppress(OSError):
        readline.read_history_file(history)
    readline.set_history_length(2000)
    readline.set_completer_delims(" \t")
    return readline


def main(args: argparse.Namespace) -> int:
    try:
        client = connect(args)
    except ConfigError as exc:
        print(f"wolfpacs shell: config error: {exc}", file=sys.stderr)
        return 2
    try:
        client.call("names")
    except ControlError as exc:
        print(f"wolfpacs shell: {exc}", file=sys.stderr)
        return 3
    history = _readline(HISTORY)
    shell = Shell(client)
    try:
        while True:
            try:
                shell.cmdloop()
                break
            except KeyboardInterrupt:  # Ctrl-C at the prompt: a fresh prompt, not an exit
                shell.intro = None
                print("^C")
    finally:
        client.close()
        if history is not None:
            with contextlib.suppress(OSError):
                history.write_history_file(HISTORY)
    return 0
