"""The GCRA arithmetic against a clock we control: bursts, refill, the rate bound over any window, Retry-After."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tokenvend.gcra import MS_PER_HOUR, Bucket, decide


class Clocked:
    """A caller's bucket state as the limiter keeps it (one `tat`), driven by explicit times."""

    def __init__(self, bucket: Bucket) -> None:
        self.bucket = bucket
        self.tat: int | None = None

    def request(self, now: int):
        decision = decide(self.bucket, self.tat, now)
        if decision.allowed:
            self.tat = decision.new_tat
        else:
            assert decision.new_tat == (now if self.tat is None or self.tat < now else self.tat)
        return decision


def first_success_ms(bucket: Bucket, tat: int | None, now: int) -> int:
    """The first moment at or after `now` a request succeeds, found by search (not by the formula under test)."""
    low, high = now, now + bucket.capacity_ms() + bucket.interval_ms + 1
    assert decide(bucket, tat, high).allowed
    while low < high:
        middle = (low + high) // 2
        if decide(bucket, tat, middle).allowed:
            high = middle
        else:
            low = middle + 1
    return low


def test_per_hour_rounds_the_interval_up() -> None:
    assert Bucket.per_hour(3, 10).interval_ms == 360_000
    assert Bucket.per_hour(1, 7).interval_ms == math.ceil(MS_PER_HOUR / 7)  # 514285.7 -> 514286: stricter
    assert Bucket.per_hour(1, 0.001).interval_ms == 3_600_000_000
    assert Bucket.per_hour(1, 10_000_000).interval_ms == 1  # never zero
    assert Bucket.per_hour(4, 10).capacity_ms() == 4 * 360_000


def test_a_full_bucket_allows_exactly_the_burst_at_one_instant() -> None:
    caller = Clocked(Bucket.per_hour(3, 10))
    now = 1_700_000_000_000
    decisions = [caller.request(now) for _ in range(5)]
    assert [d.allowed for d in decisions] == [True, True, True, False, False]
    assert [d.remaining for d in decisions] == [2, 1, 0, 0, 0]
    assert [d.reset_seconds for d in decisions[:3]] == [360, 720, 1080]
    assert decisions[3].retry_after_seconds == 360  # one interval until one slot is earned back
    assert decisions[3].reset_seconds == 1080  # denial changes nothing


def test_refill_earns_one_request_per_interval_and_no_more_than_the_burst() -> None:
    bucket = Bucket.per_hour(2, 3600)  # one per second
    caller = Clocked(bucket)
    t = 10_000_000
    assert caller.request(t).allowed and caller.request(t).allowed
    assert not caller.request(t + 999).allowed
    assert caller.request(t + 1000).allowed
    assert not caller.request(t + 1000).allowed
    # A long idle time refills to the burst, never beyond it.
    later = t + 3_600_000
    assert [caller.request(later).allowed for _ in range(3)] == [True, True, False]


def test_first_request_without_state_is_a_full_bucket() -> None:
    decision = decide(Bucket.per_hour(5, 60), None, 123_456)
    assert decision.allowed and decision.remaining == 4 and decision.new_tat == 123_456 + 60_000
    # A tat in the past is the same as none.
    assert decide(Bucket.per_hour(5, 60), 1, 123_456) == decision


def test_burst_one_is_a_plain_rate() -> None:
    bucket = Bucket.per_hour(1, 60)  # one a minute
    caller = Clocked(bucket)
    assert caller.request(0).allowed
    denied = caller.request(30_000)
    assert not denied.allowed and denied.retry_after_seconds == 30
    assert caller.request(60_000).allowed


@pytest.mark.parametrize(("wait_ms", "expected"), [(1, 1), (999, 1), (1000, 1), (1001, 2), (59_999, 60)])
def test_retry_after_is_whole_seconds_rounded_up(wait_ms: int, expected: int) -> None:
    bucket = Bucket(burst=1, interval_ms=60_000)
    now = 1_000_000
    tat = now + wait_ms  # burst 1: the next request succeeds exactly when now reaches tat
    decision = decide(bucket, tat, now)
    assert not decision.allowed
    assert decision.retry_after_seconds == expected
    assert decide(bucket, tat, now + wait_ms).allowed
    assert not decide(bucket, tat, now + wait_ms - 1).allowed


# --- properties over random schedules ------------------------------------------------------------------------

buckets = st.builds(Bucket, burst=st.integers(1, 8), interval_ms=st.integers(1, 5_000))
gaps = st.lists(st.integers(0, 6_000), min_size=1, max_size=80)


@settings(max_examples=300, deadline=None)
@given(bucket=buckets, gaps=gaps, start=st.integers(0, 10**12))
def test_over_any_window_at_most_burst_plus_rate_times_length(bucket: Bucket, gaps: list[int], start: int) -> None:
    caller = Clocked(bucket)
    now, allowed = start, []
    for gap in gaps:
        now += gap
        if caller.request(now).allowed:
            allowed.append(now)
    # The worst windows start and end on allowed requests: check every such window [t_i, t_j].
    for i in range(len(allowed)):
        for j in range(i, len(allowed)):
            length = allowed[j] - allowed[i]
            assert j - i + 1 <= bucket.burst + length / bucket.interval_ms, (i, j, length)


@settings(max_examples=300, deadline=None)
@given(bucket=buckets, gaps=gaps, start=st.integers(0, 10**12))
def test_a_caller_who_waits_long_enough_always_gets_through(bucket: Bucket, gaps: list[int], start: int) -> None:
    """Liveness, the other half: requests spaced one interval apart are never refused."""
    caller = Clocked(bucket)
    now = start
    for gap in gaps:
        now += max(gap, bucket.interval_ms)
        assert caller.request(now).allowed


@settings(max_examples=300, deadline=None)
@given(bucket=buckets, gaps=gaps, start=st.integers(0, 10**12))
def test_retry_after_is_within_a_second_of_the_first_success(bucket: Bucket, gaps: list[int], start: int) -> None:
    caller = Clocked(bucket)
    now = start
    for gap in gaps:
        now += gap
        tat_before = caller.tat
        decision = caller.request(now)
        if decision.allowed:
            assert decision.retry_after_seconds == 0
            assert 0 <= decision.remaining < bucket.burst
            continue
        first = first_success_ms(bucket, tat_before, now)
        wait_ms = first - now
        assert wait_ms > 0
        # Whole seconds, rounded up: never early, at most one second late.
        assert decision.retry_after_seconds == max(1, math.ceil(wait_ms / 1000))
        assert wait_ms <= decision.retry_after_seconds * 1000 < wait_ms + 1000
        assert decide(bucket, tat_before, now + decision.retry_after_seconds * 1000).allowed
        assert decision.remaining == 0


@settings(max_examples=200, deadline=None)
@given(bucket=buckets, gaps=gaps, start=st.integers(0, 10**12))
def test_remaining_and_reset_agree_with_what_actually_happens(bucket: Bucket, gaps: list[int], start: int) -> None:
    caller = Clocked(bucket)
    now = start
    for gap in gaps:
        now += gap
        decision = caller.request(now)
        if not decision.allowed:
            continue
        # `remaining` more requests succeed right now, and not one more.
        probe = Clocked(bucket)
        probe.tat = caller.tat
        results = [probe.request(now).allowed for _ in range(decision.remaining + 1)]
        assert results == [True] * decision.remaining + [False]
        # After `reset_seconds` the bucket is full again: a whole burst goes through.
        probe.tat = caller.tat
        later = now + decision.reset_seconds * 1000
        assert all(probe.request(later).allowed for _ in range(bucket.burst))
