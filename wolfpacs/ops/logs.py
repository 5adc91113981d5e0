"""Logging for the node: readable lines, or JSON lines with stable keys."""

from __future__ import annotations

import json
import logging
import logging.handlers
import sys
import time
from pathlib import Path

__all__ = ["AUDIT_EVENTS", "JsonFormatter", "add_audit", "setup"]

# Records kept in the audit log: who associated and how it ended, where each new study
# went, what operators changed, and each study whose result did not come back in time.
AUDIT_EVENTS = frozenset({"association", "route", "admin", "overdue"})

# Keys an event may carry through ``extra=``: kept in JSON lines, as is.
EVENT_KEYS = (
    "event", "side", "peer", "outcome", "why", "instances", "bytes",
    "study", "client", "worker", "destination", "pool", "waiting_s",
)  # fmt: skip


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``ts``, ``level``, ``logger``, ``msg``, and event keys."""

    def format(self, record: logging.LogRecord) -> str:
        line = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key in EVENT_KEYS:
            if key in record.__dict__:
                line[key] = record.__dict__[key]
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


def setup(level: str = "info", fmt: str = "text") -> None:
    """Log to stderr at ``level`` as ``text`` or ``json``; pynetdicom only from warnings up."""
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    root = logging.getLogger()
    handler.setLevel(level.upper())
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # pynetdicom narrates every PDU at INFO; its warnings and errors still matter.
    logging.getLogger("pynetdicom").setLevel(max(logging.WARNING, root.level))
    # pykka logs an exception returned to a caller at INFO; the caller decides.
    logging.getLogger("pykka").setLevel(max(logging.WARNING, root.level))


def add_audit(path: Path) -> None:
    """Append one JSON line per audit event to ``path``, whatever the log level is."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # Watched: logrotate may move the file away; the next line reopens it.
    handler = logging.handlers.WatchedFileHandler(path, encoding="utf-8")
    handler.setFormatter(JsonFormatter())
    handler.addFilter(lambda record: getattr(record, "event", None) in AUDIT_EVENTS)
    root = logging.getLogger()
    root.addHandler(handler)
    # Audit events are INFO: the root must let them through, its other handlers need not.
    root.setLevel(min(root.level, logging.INFO))
