"""Log lines: JSON with stable keys."""

from __future__ import annotations

import json
import logging

from wolfpacs.ops.logs import JsonFormatter


def test_json_lines_carry_the_event_keys():
    record = logging.LogRecord(
        "wolfpacs.node.router", logging.INFO, __file__, 1, "route: %s", ("x",), None
    )
    record.event, record.study, record.worker = "route", "1.2.3", "gpu-a"
    line = json.loads(JsonFormatter().format(record))
    assert (
        line["msg"] == "route: x"
        and line["level"] == "info"
        and line["logger"] == "wolfpacs.node.router"
    )
    assert (line["event"], line["study"], line["worker"]) == ("route", "1.2.3", "gpu-a")
    assert line["ts"].endswith("Z")


def test_exceptions_are_one_json_value():
    try:
        raise ValueError("boom")
    except ValueError:
        import sys

        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed", (), sys.exc_info())
    line = json.loads(JsonFormatter().format(record))
    assert "ValueError: boom" in line["exc"]
