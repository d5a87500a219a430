"""The rate arithmetic: GCRA (the generic cell rate algorithm), a token bucket kept as one number.

State is the theoretical arrival time `tat` (ms). With burst B and emission interval T = 1/rate, a request at time t
is allowed iff max(tat, t) + T <= t + B*T, and then tat becomes max(tat, t) + T. Over any interval of length D a
caller gets at most B + D/T requests (the bucket holds B and refills one per T). Integer milliseconds throughout,
with T rounded up, so rounding can only make the limit stricter.
"""

from __future__ import annotations

import math
from typing import NamedTuple

MS_PER_HOUR = 3_600_000


class Bucket(NamedTuple):
    burst: int
    interval_ms: int  # one token is earned back every interval_ms

    @classmethod
    def per_hour(cls, burst: int, rate_per_hour: float) -> Bucket:
        return cls(burst=burst, interval_ms=max(1, math.ceil(MS_PER_HOUR / rate_per_hour)))

    def capacity_ms(self) -> int:
        return self.burst * self.interval_ms


class Decision(NamedTuple):
    allowed: bool
    new_tat: int  # tat after this request (unchanged when denied)
    remaining: int  # requests still allowed right now, after this one
    reset_seconds: int  # seconds until the bucket is full again
    retry_after_seconds: int  # when denied: whole seconds until a request would succeed; 0 when allowed


def decide(bucket: Bucket, tat: int | None, now: int) -> Decision:
    base = now if tat is None or tat < now else tat
    new_tat = base + bucket.interval_ms
    if new_tat - now <= bucket.capacity_ms():
        return Decision(True, new_tat, _remaining(bucket, new_tat, now), _ceil_seconds(new_tat - now), 0)
    wait_ms = new_tat - now - bucket.capacity_ms()
    return Decision(False, base, 0, _ceil_seconds(base - now), max(1, _ceil_seconds(wait_ms)))


def _remaining(bucket: Bucket, tat: int, now: int) -> int:
    return max(0, (now + bucket.capacity_ms() - tat) // bucket.interval_ms)


def _ceil_seconds(ms: int) -> int:
    return max(0, -(-ms // 1000))
