"""What people read of the verbs' results: times as times, durations in words."""

from __future__ import annotations

import re

import pytest

from wolfpacs.ops.render import ago, duration, moment, render, shown

NOW = 1_795_957_622.0  # 2026-11-29, about
MOMENT = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d [+-]\d\d:\d\d"


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0.04, "0.0 s"), (3.24, "3.2 s"), (42.4, "42 s"), (59.6, "1 min"), (240, "4 min"),
        (7500, "2 h 5 min"), (7200, "2 h"), (3 * 86400 + 4 * 3600 + 59, "3 d 4 h"),
        (2 * 86400, "2 d"), (None, "-"),
    ],
)  # fmt: skip
def test_durations_in_words(seconds, text):
    assert duration(seconds) == text


def test_times_ago_and_ahead():
    assert ago(NOW - 180, NOW) == "3 min ago"
    assert ago(NOW + 5, NOW) == "in 5.0 s"  # another clock, a little ahead
    assert re.fullmatch(MOMENT, moment(NOW))


def test_a_study_says_when_it_was_routed():
    study = {"study_uid": "1.2.3", "routed_at": NOW - 180, "last_activity_at": NOW - 7500,
             "instances_in": 3, "queued": {"gpu-1": 3}}  # fmt: skip
    text = render("study", [study], now=NOW)
    assert re.search(rf"^routed_at: {MOMENT} \(3 min ago\)$", text, re.M), text
    assert re.search(rf"^last_activity_at: {MOMENT} \(2 h 5 min ago\)$", text, re.M)
    assert "e+09" not in text and "  gpu-1: 3" in text


def test_tables_say_how_long_ago_and_how_old():
    workers = [
        {"name": "gpu-1", "last_success": NOW - 240, "last_error": None},
        {"name": "gpu-2", "last_success": None, "last_error": "cannot associate"},
    ]
    text = render("workers", workers, now=NOW)
    assert "LAST_OK" in text and "4 min ago" in text and "e+09" not in text
    queues = [{"target": "gpu-2", "kind": "worker", "instances": 2, "bytes": 10,
               "oldest": NOW - 3720, "oldest_age_s": 3720.2}]  # fmt: skip
    assert render("queues", queues, now=NOW).splitlines()[1].endswith("  1 h 2 min")
    dead = [{"id": "d1", "at": NOW - 90, "target": "gpu-1", "study_uid": "1.2", "reason": "x"}]
    assert "WHEN" in render("dead", dead, now=NOW) and "1 min ago" in render("dead", dead, now=NOW)
    studies = [{"study_uid": "1.2", "routed_at": NOW - 5}]
    assert "5.0 s ago" in render("studies", studies, now=NOW)


def test_the_tree_and_stats_say_uptime_in_words():
    root = {"id": "wolfpacs", "children": [{"id": "store", "uptime": 250.0}]}
    assert "store  [up, restarts 0, up 4 min]" in render("tree", root)
    stats = {"since": NOW - 7500, "uptime_s": 7500.0, "counters": {"c": 36160.0}, "restarts": {}}
    text = render("stats", stats, now=NOW)
    assert re.match(rf"since {MOMENT} \(up 2 h 5 min\)$", text.splitlines()[0])
    assert "  c = 36160" in text


def test_only_wall_clock_times_are_shown_as_times():
    assert shown("started_at", 12345.6) == "12346"  # a monotonic clock's: shown as it is
    assert shown("routed_at", True) == "True"
    assert shown("name", "gpu-1") == "gpu-1"


def test_a_move_counts_in_words():
    moved = {"from": "gpu-a", "to": "gpu-b", "studies": 1, "queued_moved": 4,
             "already_delivered": {"1.2": 6}, "split_studies": 1}  # fmt: skip
    assert render("move", moved).splitlines() == [
        "moved 1 study and 4 queued instances from gpu-a to gpu-b; 1 study is now split",
        "  study 1.2: 6 instances already at gpu-a",
    ]
