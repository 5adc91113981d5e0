"""The options commands share: logging, and how ``ctl`` and ``shell`` find a node."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from wolfpacs.config.checker import load
from wolfpacs.ops.control import ControlClient

__all__ = ["add_connection_options", "add_log_options", "connect"]

LEVELS = ("debug", "info", "warning", "error")


def add_log_options(parser: Any, level: str = "info") -> None:
    """``--log-level`` and ``--log-format`` on ``parser`` (a parser or an argument group)."""
    parser.add_argument("--log-level", default=level, choices=LEVELS, help=f"(default {level})")
    parser.add_argument(
        "--log-format", default="text", choices=("text", "json"), help="(default text)"
    )


def add_connection_options(parser: Any) -> None:
    """How to reach a node: ``--socket``, ``--config``, ``--port`` and ``--token``."""
    parser.add_argument(
        "--socket",
        metavar="PATH",
        help="the node's control socket (default: $WOLFPACS_SOCKET, from --config or "
        "$WOLFPACS_CONFIG, or ./wolfpacs-data/control.sock)",
    )
    parser.add_argument(
        "--config", metavar="FILE", help="the node's config file, to find its socket "
        "(or $WOLFPACS_CONFIG)"
    )  # fmt: skip
    parser.add_argument("--port", type=int, metavar="N", help="TCP control port on 127.0.0.1")
    parser.add_argument("--token", help="TCP control token (or $WOLFPACS_TOKEN)")


def connect(args: argparse.Namespace, reconnect: float = 10.0) -> ControlClient:
    """A client for the node named by ``--port``/``--token``, ``--socket`` or
    ``$WOLFPACS_SOCKET``, ``--config`` or ``$WOLFPACS_CONFIG`` (in the image, its config),
    in that order; else ``./wolfpacs-data/control.sock``.

    ``reconnect``: seconds the client keeps trying to connect (a restarting
    control actor comes back within them).

    Raises:
        ConfigError: the config named cannot be loaded.
    """
    if getattr(args, "port", None):
        token = args.token or os.environ.get("WOLFPACS_TOKEN")
        return ControlClient(port=args.port, token=token, reconnect=reconnect)
    path = args.socket or os.environ.get("WOLFPACS_SOCKET")
    config = getattr(args, "config", None) or os.environ.get("WOLFPACS_CONFIG")
    if path is None and config:
        path = str(load(config).node.control_path)
    return ControlClient(path or Path("wolfpacs-data") / "control.sock", reconnect=reconnect)
