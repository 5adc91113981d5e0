"""SIGTERM and SIGINT as an event that the long-running verbs wait on.

A Python signal handler runs in the main thread between two bytecodes, so
a handler that set a ``threading.Event`` itself could interrupt the main
thread inside that event's own ``set()`` (a second signal arriving while
the first is handled: a service manager's SIGTERM and the kernel's, or
Ctrl-C and a forwarded SIGTERM) and wait for ever on the lock the
interrupted ``set()`` holds. The handler here only writes a byte to a pipe;
a thread reads it and sets the event.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading

__all__ = ["stop_on_signals"]

SIGNALS = (signal.SIGTERM, signal.SIGINT)


def stop_on_signals() -> threading.Event:
    """An event set once SIGTERM or SIGINT has arrived (installs the handlers: main thread)."""
    stop = threading.Event()
    read_end, write_end = os.pipe()
    os.set_blocking(write_end, False)  # a handler never blocks: one byte is enough to wake

    def wake(*_: object) -> None:
        with contextlib.suppress(BlockingIOError):  # full of earlier signals: awake already
            os.write(write_end, b"\0")

    def watch() -> None:
        os.read(read_end, 1)
        stop.set()

    threading.Thread(target=watch, name="signals", daemon=True).start()
    for sig in SIGNALS:
        signal.signal(sig, wake)
    return stop
