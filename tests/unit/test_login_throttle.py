"""The IdMS's limits on password guessing, on a fake clock."""

from __future__ import annotations

from mcmig.idms.throttle import LoginThrottle


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_an_address_waits_until_its_oldest_failure_leaves_the_window() -> None:
    clock = Clock()
    throttle = LoginThrottle(failures=3, window=60, clock=clock)
    assert [throttle.failed("a") for _ in range(2)] == [False, False]
    assert throttle.wait_for("a") is None
    clock.now += 10
    assert throttle.failed("a")  # the third: reported once
    assert throttle.wait_for("a") == 50  # the first failure leaves the window in 50 s
    assert throttle.wait_for("b") is None  # another address is not held back
    clock.now += 49.5
    assert throttle.wait_for("a") == 1  # whole seconds, rounded up
    clock.now += 0.5
    assert throttle.wait_for("a") is None  # both first failures left the window
    assert not throttle.failed("a")  # two in the window
    assert throttle.failed("a")  # three: past the limit again, reported again
    assert throttle.wait_for("a") == 10  # until the one at +10 s leaves


def test_a_login_that_succeeds_forgets_the_addresss_failures() -> None:
    throttle = LoginThrottle(failures=2, window=60, clock=Clock())
    throttle.failed("a")
    throttle.succeeded("a")
    throttle.failed("a")
    assert throttle.wait_for("a") is None


def test_addresses_kept_are_bounded_the_least_recently_failed_forgotten_first() -> None:
    clock = Clock()
    throttle = LoginThrottle(failures=1, window=60, clock=clock, sources_kept=3)
    for source in ("a", "b", "c"):
        throttle.failed(source)
    throttle.failed("a")  # a failed most recently now
    throttle.failed("d")
    assert throttle.wait_for("b") is None  # forgotten
    assert all(throttle.wait_for(s) for s in ("a", "c", "d"))


def test_checks_in_progress_are_capped() -> None:
    throttle = LoginThrottle(checks_at_once=2, clock=Clock())
    assert not throttle.busy()
    throttle.checking = 2
    assert throttle.busy()
