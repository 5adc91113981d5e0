"""Restart intensity counts on a monotonic clock in a sliding window."""

from supervisors import RestartIntensity


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_more_than_max_restarts_in_the_window_is_refused():
    clock = Clock()
    intensity = RestartIntensity(max_restarts=2, max_seconds=5.0, clock=clock)
    assert intensity.add() and intensity.add()
    assert not intensity.add()


def test_restarts_older_than_the_window_no_longer_count():
    clock = Clock()
    intensity = RestartIntensity(max_restarts=2, max_seconds=5.0, clock=clock)
    assert intensity.add()
    clock.now += 3
    assert intensity.add()
    clock.now += 2.5  # the first is now 5.5 s old
    assert intensity.add() and intensity.count() == 2
    clock.now += 10
    assert intensity.count() == 0


def test_zero_restarts_allowed_means_the_first_crash_gives_up():
    assert not RestartIntensity(max_restarts=0, max_seconds=1.0).add()
