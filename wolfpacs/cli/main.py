"""The ``wolfpacs`` command: ``run``, ``demo``, ``config``, ``ctl``, ``shell``, ``chaos``.

``ctl`` parses its own words (:func:`wolfpacs.cli.ctl.main`): its options may
follow the verb, which an argparse sub-command cannot allow.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import logging
import os
import sys
import threading
import time
from pathlib import Path

from wolfpacs import __version__
from wolfpacs.cli import configfile, ctl, shell
from wolfpacs.cli.demo import demo
from wolfpacs.cli.options import add_connection_options, add_log_options
from wolfpacs.cli.signals import stop_on_signals
from wolfpacs.cli.supervise import supervise
from wolfpacs.node.processes import CHILD_SHUTDOWN, child_config, stop_with_parent
from wolfpacs.node.tree import DataDirInUseError, Node
from wolfpacs.ops import logs
from wolfpacs.ops.operations import Operations
from wolfpacs.ops.starting import Starting
from wolfpacs.state.postgresql import DriverMissingError
from wolfpacs.state.schema import SchemaError
from wolfpacs.testing import chaos

__all__ = ["main"]

logger = logging.getLogger("wolfpacs")

EXIT_CONFIG = configfile.EXIT_CONFIG  # also: bad usage, as argparse has it

FIRST_STEPS = """\
first steps:
  wolfpacs demo                             a round trip on loopback, nothing to configure
  wolfpacs config example > wolfpacs.toml   a complete, commented config to edit
  wolfpacs config check wolfpacs.toml       check it (exit 0, or 2 and FILE:LINE: what)
  wolfpacs run --config wolfpacs.toml       run the node
  wolfpacs ctl --config wolfpacs.toml help  the operator's verbs on a running node
"""


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="wolfpacs", description="A DICOM load balancer.", epilog=FIRST_STEPS,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    top.add_argument("-V", "--version", action="version", version=f"wolfpacs {__version__}")
    verbs = top.add_subparsers(dest="verb", required=True)
    run = verbs.add_parser("run", help="run a node (foreground; SIGTERM stops it cleanly)")
    run.add_argument("--config", required=True, help="the node's TOML file")
    # A child of the process supervisor ([node] processes > 1): which one, its private HTTP
    # port, the node's id, its pid (wolfpacs.node.processes.child_argv). Not for people.
    run.add_argument("--process", type=int, default=0, help=argparse.SUPPRESS)
    run.add_argument("--process-http", type=int, default=0, help=argparse.SUPPRESS)
    run.add_argument("--process-node", default="", help=argparse.SUPPRESS)
    run.add_argument("--process-supervisor", type=int, default=0, help=argparse.SUPPRESS)
    add_log_options(run)
    demo = verbs.add_parser("demo", help="a self-contained round trip on loopback")
    demo.add_argument("--keep", action="store_true", help="keep the demo's data directory")
    add_log_options(demo, level="warning")  # the demo's own lines tell the story
    config = verbs.add_parser("config", help="a complete example config, or check one")
    config_verbs = config.add_subparsers(
        dest="config_verb", required=True, metavar="{example,check}"
    )
    config_verbs.add_parser("example", help="print a commented config: every key, its default")
    check = config_verbs.add_parser(
        "check", help="check a config as 'run' would (exit 0, or 2 and FILE:LINE); starts nothing"
    )  # fmt: skip
    check.add_argument("file")
    chaos_parser = verbs.add_parser(
        "chaos", help="a node under injected faults, and the ledger of every instance"
    )
    for flag, default in (("instances", 300), ("studies", 10), ("clients", 2), ("workers", 3),
                          ("seed", 1), ("faults", 10), ("kills", 1), ("size", 32)):  # fmt: skip
        chaos_parser.add_argument(f"--{flag}", type=int, default=default)
    chaos_parser.add_argument("--duration", type=float, default=60.0, help="seconds of faults")
    chaos_parser.add_argument("--keep", action="store_true", help="keep the run's directory")
    chaos_parser.add_argument("--report", type=Path, help="also write the ledger as JSON")
    chaos_parser.add_argument("--data-dir", type=Path, help="the node's data_dir (e.g. on LazyFS)")
    chaos_parser.add_argument(
        "--power-cut",
        type=Path,
        metavar="FIFO",
        help="LazyFS's faults FIFO: each kill -9 also clears its cache",
    )
    chaos_parser.add_argument("--durability", choices=("fsync", "os"), default="fsync")
    chaos_parser.add_argument("--nodes", type=int, default=1, help="nodes sharing one store")
    chaos_parser.add_argument(
        "--store", default="sqlite", metavar="URL",
        help="the nodes' store: sqlite (one node), or a postgresql:// URL they share",
    )  # fmt: skip
    chaos_parser.add_argument(
        "--store-restart", metavar="COMMAND",
        help="a shell command that restarts the database server: a fault of the schedule",
    )  # fmt: skip
    chaos_parser.add_argument(
        "--lease-seconds", type=float, default=3.0,
        help="with several nodes: how soon a killed node's queue is adopted",
    )  # fmt: skip
    chaos_parser.add_argument(
        "--processes", type=int, default=1,
        help="[node] processes of each node; > 1: single processes are killed with kill -9 too",
    )  # fmt: skip
    add_log_options(chaos_parser, level="warning")
    # Listed here for the help; main() hands ctl's words to ctl.main before argparse sees them.
    ctl_parser = verbs.add_parser(
        "ctl", help="one verb on a running node (see 'wolfpacs ctl help')", add_help=False
    )
    ctl_parser.add_argument("words", nargs=argparse.REMAINDER, help="VERB and its arguments")
    shell_parser = verbs.add_parser("shell", help="an interactive console on a running node")
    add_connection_options(shell_parser)
    add_log_options(shell_parser, level="warning")
    return top


def run(
    config_path: str, process: int = 0, process_http: int = 0, process_node: str = "",
    supervisor: int = 0,
) -> int:  # fmt: skip
    """Run a node until SIGTERM or SIGINT; 0 after a clean stop, 1 if the tree gave up.

    2 before it starts: a config error, a state database of a newer WolfPACS, or
    a PostgreSQL store without psycopg installed (each says what to do, and none
    goes away by starting again). A PostgreSQL that cannot be reached yet is
    waited for (a log line every few seconds, 503 on the HTTP port), until
    SIGTERM (then 0). With ``[node] processes`` > 1, the process supervisor
    (:mod:`wolfpacs.cli.supervise`); ``process`` (from 1): one of its
    children, which stops when its supervisor (pid ``supervisor``) is gone.
    """
    parent = supervisor or os.getppid()  # (given: it may have died before this look)
    if process:  # SIGTERM when its supervisor dies (handled as a service manager's)
        stop_with_parent()
        if os.getppid() != parent:  # it died before the kernel was asked: nothing to do
            logger.error("the process supervisor is gone: not starting")
            return 1
    config = configfile.load_or_say(config_path)
    if config is None:
        return EXIT_CONFIG
    if process:
        named = dataclasses.replace(config, node=dataclasses.replace(
            config.node, node_id=process_node))  # fmt: skip
        config = child_config(named, process, process_http)
    elif config.node.processes > 1:
        try:
            return supervise(config_path, config)
        except (SchemaError, DriverMissingError) as exc:
            print(f"wolfpacs: {exc}", file=sys.stderr)
            return EXIT_CONFIG
    node = Node(config, operations=Operations, process=process)
    if config.node.audit_log:
        logs.add_audit(node.spool.root / config.node.audit_log)
    stop = stop_on_signals()
    try:
        if not _wait_for_store(node, stop):
            return 0  # stopped while it waited: nothing had started
        if process:
            _start_process(node, stop)
        else:
            node.start()
    except (SchemaError, DriverMissingError) as exc:
        print(f"wolfpacs: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except Exception as exc:
        logger.error("the node could not start: %s", exc)
        return 1
    while not stop.is_set() and not node.exited.is_set():
        stop.wait(0.5)  # wakes for signals too: a handler only runs between waits
        if process and os.getppid() != parent:  # its supervisor was killed: no orphans
            logger.error("the process supervisor is gone: stopping")
            break
    if node.exited.is_set():
        if node.fatal is not None:  # its lease was lost: another node has its queue
            logger.critical("stopped: %s", node.fatal)
        else:
            logger.critical("the supervision tree gave up: %s", node.exit_reason)
        return 1
    logger.info("stopping: no new associations; finishing what is in flight")
    clean = node.stop(timeout=60)
    logger.info("stopped%s", "" if clean else " (some actors did not end in time)")
    return 0


def _start_process(node: Node, stop: threading.Event) -> None:
    """Start a child of the process supervisor once its queues are free.

    The process of the same index under a supervisor that was killed
    (``kill -9``) is an orphan that finishes what it had in flight and stops
    by itself (see :func:`run`); its successor waits for its lock, up to
    :data:`~wolfpacs.node.processes.CHILD_SHUTDOWN`, rather than failing at
    once (its supervisor would count each failure as a death, and give up).
    """
    deadline, said = time.monotonic() + CHILD_SHUTDOWN, False
    while True:
        try:
            node.start()
            return
        except DataDirInUseError as exc:
            if time.monotonic() > deadline or stop.is_set():
                raise
            if not said:
                logger.warning("waiting for the process before this one to stop: %s", exc)
                said = True
            stop.wait(0.2)  # (a flock is waited on without a deadline, or not at all)


def _wait_for_store(node: Node, stop: threading.Event) -> bool:
    """Wait for a store that cannot be reached yet, the HTTP port saying 503 meanwhile.

    Compose (or systemd) starts the database and the nodes together: a node
    that exited would only be started again, with less said. False if
    ``stop`` came first.
    """
    problem = ["waiting for the store"]
    starting = None
    if node.config.node.http_port:
        try:
            starting = Starting(node.config.node, lambda: problem[0])
        except OSError as exc:  # the tree's own HTTP port will say it (and fail) in turn
            logger.warning("the HTTP port cannot answer while the node waits: %s", exc)
    try:
        return node.wait_for_store(stop, failed=lambda why: problem.__setitem__(0, why))
    finally:
        if starting is not None:
            starting.close()


def _chaos_options(args: argparse.Namespace) -> chaos.Options:
    fields = ("instances", "studies", "clients", "workers", "seed", "faults", "kills", "size",
              "duration", "data_dir", "power_cut", "durability", "nodes", "store",
              "store_restart", "lease_seconds", "processes")  # fmt: skip
    return chaos.Options(**{name: getattr(args, name) for name in fields})


def main(argv: list[str] | None = None) -> int:
    """Run the command ``argv`` (else the process's) and end the process with its exit code."""
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["ctl"]:
        code = ctl.main(argv[1:])
    elif not argv:  # the whole help, first steps included, not only "a verb is required"
        parser().print_help(sys.stderr)
        code = EXIT_CONFIG
    else:
        args = parser().parse_args(argv)
        logs.setup(getattr(args, "log_level", "warning"), getattr(args, "log_format", "text"))
        verbs = {
            "run": lambda: run(
                args.config,
                args.process,
                args.process_http,
                args.process_node,
                args.process_supervisor,
            ),
            "demo": lambda: demo(keep=args.keep),
            "config": lambda: (
                configfile.print_example()
                if args.config_verb == "example"
                else configfile.check(args.file)
            ),
            "shell": lambda: shell.main(args),
            "chaos": lambda: chaos.main(_chaos_options(args), args.keep, args.report),
        }
        code = verbs[args.verb]()
    logging.shutdown()
    with contextlib.suppress(BrokenPipeError):  # `config example | head`: the reader had enough
        sys.stdout.flush()  # os._exit does not
    # Threads of abandoned actors or peers must not keep a stopped node alive.
    os._exit(code)


if __name__ == "__main__":
    sys.exit(main())
