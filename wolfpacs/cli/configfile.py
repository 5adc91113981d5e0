"""``wolfpacs config example`` and ``wolfpacs config check FILE``: a config without a node.

``example`` prints a complete, commented config
(:func:`wolfpacs.config.example.example`); ``check`` reads a file exactly as
``wolfpacs run`` does, environment variables included, and starts nothing.
Both write only to stdout and stderr.
"""

from __future__ import annotations

import sys

from wolfpacs.config.checker import load
from wolfpacs.config.example import example
from wolfpacs.config.model import Config, ConfigError

__all__ = ["EXIT_CONFIG", "check", "load_or_say", "print_example"]

EXIT_CONFIG = 2


def load_or_say(path: str) -> Config | None:
    """The config in ``path``, or None once its problem is on stderr as ``run`` says it:

    ``wolfpacs: config error: FILE:LINE: KEY: what is wrong``.
    """
    try:
        return load(path)
    except ConfigError as exc:
        print(f"wolfpacs: config error: {exc}", file=sys.stderr)
        return None


def check(path: str) -> int:
    """0 and one line of what the file holds if ``path`` is a valid config; else 2."""
    config = load_or_say(path)
    if config is None:
        return EXIT_CONFIG
    counts = ", ".join(
        _count(len(entries), kind)
        for entries, kind in ((config.clients, "client"), (config.workers, "worker"),
                              (config.destinations, "destination"))
    )  # fmt: skip
    print(f"{path}: ok ({counts})")
    return 0


def print_example() -> int:
    sys.stdout.write(example())
    return 0


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"
