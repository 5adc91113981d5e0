"""Options and fixtures for the whole test run (tests/ and integration/)."""

from __future__ import annotations

import pykka
import pytest

from tests.world import World

# The session's PostgreSQL and the store fixtures on both backends (tests/postgres.py).
pytest_plugins = ["tests.postgres"]


def pytest_addoption(parser):
    parser.addoption(
        "--long", action="store_true", help="fuzz with 100,000 PDUs instead of a few hundred"
    )


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
