"""The metrics both functions emit, named once: the template's alarms and dashboard read these same names,
namespace and dimensions (a test holds the two together).

CloudWatch matches a metric by its exact set of dimensions: an alarm on `service` alone sees nothing of a datapoint
emitted with `service` and `kind`. So each count an alarm watches is emitted twice: once with its detail (for the
dashboard's breakdowns) and once with `service` alone (what the alarm names).
"""

from __future__ import annotations

from aws_lambda_powertools.metrics import MetricUnit

from tokenvend.observability import count, measure, metrics

NAMESPACE = "RealtimeTokenVend"
SERVICE_API = "token-vend"  # POWERTOOLS_SERVICE_NAME of the API's function
SERVICE_LEASH = "leash"  # ... and of the leash function

TOKENS_ISSUED = "TokensIssued"
CALLS_STARTED = "CallsStarted"
CALLS_ENDED = "CallsEnded"
LEASH_FAILURES = "LeashFailures"
UPSTREAM_ERRORS = "UpstreamErrors"
DENIED = "Denied"
UPSTREAM_LATENCY = "UpstreamLatency"
# What a call takes from the day's minutes when it starts (its limit plus the leash's slack), and what an early
# hangup gives back: their difference is what the day's counter holds, which the spend alarm compares to the cap.
CALL_SECONDS_RESERVED = "CallSecondsReserved"
CALL_SECONDS_CREDITED = "CallSecondsCredited"
# Offers OpenAI refused: each one reached OpenAI with the owner's key. The caller keeps its slot spent, and an alarm
# watches the count.
OFFERS_REJECTED = "OffersRejected"
# Every 4xx the function answers: API Gateway's own 4xx count minus this is what API Gateway refused by itself,
# which is its throttling (the catch-all route sends every other request to the function).
CLIENT_ERRORS = "ClientErrors"
# Per lane (dimension `lane`): the seconds calls reserved, and the refusals because a lane's share was used up; an
# alarm watches the anonymous lane running out (someone may be draining it).
LANE_SECONDS_RESERVED = "LaneSecondsReserved"
LANE_EXHAUSTED = "LaneExhausted"
BY_LANE = frozenset({LANE_SECONDS_RESERVED, LANE_EXHAUSTED})  # emitted with `service` and `lane` only

# Counts an alarm watches: each is also emitted with `service` alone.
ALARMED_COUNTS = frozenset({TOKENS_ISSUED, LEASH_FAILURES, UPSTREAM_ERRORS, OFFERS_REJECTED, CLIENT_ERRORS})
# Denied is emitted with `service` and `reason` (an error code); the denial alarm names these two reasons, and the
# drain alarm the day's budget running out.
DENIAL_REASONS_ALARMED = ("rate_limited", "origin_not_allowed", "daily_budget_exhausted")
# Which function emits which alarmed metric: an alarm sums it over these services.
EMITTED_BY: dict[str, tuple[str, ...]] = {
    TOKENS_ISSUED: (SERVICE_API,),
    CALLS_STARTED: (SERVICE_API,),
    CALLS_ENDED: (SERVICE_API, SERVICE_LEASH),
    LEASH_FAILURES: (SERVICE_API, SERVICE_LEASH),
    UPSTREAM_ERRORS: (SERVICE_API, SERVICE_LEASH),
    DENIED: (SERVICE_API,),
    UPSTREAM_LATENCY: (SERVICE_API, SERVICE_LEASH),
    CALL_SECONDS_RESERVED: (SERVICE_API,),
    CALL_SECONDS_CREDITED: (SERVICE_API,),
    OFFERS_REJECTED: (SERVICE_API,),
    CLIENT_ERRORS: (SERVICE_API,),
    LANE_SECONDS_RESERVED: (SERVICE_API,),
    LANE_EXHAUSTED: (SERVICE_API,),
}


def tally(name: str, **detail: str) -> None:
    """Count one event with its detail; an alarmed count once more with `service` alone."""
    count(name, **detail)
    if name in ALARMED_COUNTS and detail:
        count(name)


def seconds(name: str, value: int, **detail: str) -> None:
    """A number of seconds: with `service` alone, flushed with the invocation's other metrics; or with its detail."""
    if detail:
        measure(name, value, MetricUnit.Seconds, **detail)
    else:
        metrics.add_metric(name=name, unit=MetricUnit.Seconds, value=value)
