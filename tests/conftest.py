"""Shared test helpers: polling with a deadline, never sleeping to synchronise."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

import pykka
import pytest

from tests.world import World

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


@pytest.fixture(autouse=True)
def _no_leftover_actors():
    """Every test leaves no actor running, so one test's tree never leaks into the next."""
    yield
    pykka.ActorRegistry.stop_all(block=True, timeout=10)


@pytest.fixture
def world(tmp_path):
    worlds: list[World] = []

    def make(**settings: object) -> World:
        worlds.append(World(tmp_path / f"w{len(worlds)}", **settings))
        return worlds[-1]

    yield make
    for w in worlds:
        w.stop()
