"""Shared test helpers: polling with a deadline, never sleeping to synchronise."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable
from typing import TypeVar

import pytest

T = TypeVar("T")


def wait_until(
    predicate: Callable[[], T], timeout: float = 10.0, interval: float = 0.01, what: str = ""
) -> T:
    """Poll ``predicate`` until it returns something truthy; fail the test at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"{what or predicate} not met within {timeout} s")
        time.sleep(interval)


def missing(what: str, install: str) -> None:
    """A tool or optional extra the README's test command does not install is missing.

    Skips the test with a one-line reason, except under ``CI=true``, where it
    fails: ``.ci/run`` installs every tool, so CI cannot go green by skipping.
    """
    reason = f"{what} is missing ({install})"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason}, and CI=true: CI must run this test")
    pytest.skip(reason)


def need_program(name: str, install: str, path: str | None = None) -> str:
    """The path of program ``name`` (at ``path``, else on PATH), or :func:`missing`."""
    found = path if path and os.access(path, os.X_OK) else shutil.which(name)
    if found is None:
        missing(name, install)
    return str(found)
