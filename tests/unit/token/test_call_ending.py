"""The leash's job on its own: always ask OpenAI, whatever the record says (a 404 counts as ended), mark a call ended
once, raise when OpenAI cannot be told (so the timer retries), end a call that has no record from its timer's
backend, and sweep every active call past its end and the grace (or, for the owner, every active call)."""

from __future__ import annotations

import pytest

from tests.unit.token.fakes import Backend, Clock, Records, Secrets
from tokenvend.call_ending import SWEEP_GRACE_SECONDS, CallEnder
from tokenvend.call_records import CallRecord, CallState
from tokenvend.errors import ApiError
from tokenvend.openai_client import FailureKind, UpstreamFailure


def record(call_id: str, ends_at: int) -> CallRecord:
    return CallRecord(call_id=call_id, caller="c" * 32, backend="realtime", started_at=ends_at - 20,
                      ends_at=ends_at, reserved_seconds=25, day="2030-05-17", hangup_token_sha256="h")


def ender(*records: CallRecord) -> tuple[CallEnder, Backend, Records, Clock]:
    backend, store, clock = Backend(), Records({r.call_id: r for r in records}), Clock(1000)
    return CallEnder(Secrets(), store, {"realtime": backend}, clock=clock), backend, store, clock  # type: ignore


def test_end_hangs_up_and_marks_once_but_always_asks_openai() -> None:
    e, backend, store, _ = ender(record("rtc_a", 1000))
    assert e.end_by_id("rtc_a", by="leash") == ("hung_up", True)
    assert store.get("rtc_a").state is CallState.ENDED and store.get("rtc_a").ended_by == "leash"  # type: ignore
    # Ended by the record, but the record is not OpenAI: the timer's hangup goes out again (and gets a 404).
    assert e.end_by_id("rtc_a", by="leash") == ("already_gone", False)
    assert backend.hung_up == ["rtc_a", "rtc_a"]


def test_a_record_wrongly_marked_ended_is_still_hung_up() -> None:
    """An early hangup whose answer was wrong: the record says ended, the call runs on; the leash ends it."""
    e, backend, _, _ = ender(record("rtc_a", 1000)._replace(state=CallState.ENDED))
    assert e.end_by_id("rtc_a", by="leash") == ("hung_up", False)
    assert backend.hung_up == ["rtc_a"]


def test_a_call_openai_no_longer_knows_is_ended_too() -> None:
    e, backend, store, _ = ender(record("rtc_a", 1000))
    backend.gone.add("rtc_a")
    assert e.end_by_id("rtc_a", by="leash").outcome == "already_gone"
    assert store.get("rtc_a").state is CallState.ENDED  # type: ignore[union-attr]


def test_a_failure_is_raised_and_the_call_stays_active() -> None:
    e, backend, store, _ = ender(record("rtc_a", 1000))
    backend.hangup_failures.append(UpstreamFailure(FailureKind.ERROR, 503, "x"))
    with pytest.raises(ApiError):
        e.end_by_id("rtc_a", by="leash")
    assert store.get("rtc_a").state is CallState.ACTIVE  # type: ignore[union-attr]
    assert e.end_by_id("rtc_a", by="leash").outcome == "hung_up"


def test_a_call_without_a_record_is_hung_up_by_its_timers_backend() -> None:
    e, backend, _, _ = ender()
    assert e.end_by_id("rtc_x", by="leash", backend="realtime") == ("hung_up", False)
    assert backend.hung_up == ["rtc_x"]


@pytest.mark.parametrize("backend_name", [None, "", "sip", "__class__"])
def test_an_unknown_call_of_no_known_backend_is_left_alone(backend_name: str | None) -> None:
    e, backend, _, _ = ender()
    assert e.end_by_id("rtc_x", by="leash", backend=backend_name) == ("unknown", False) and backend.hung_up == []


def test_the_owner_ends_every_active_call_whatever_its_end() -> None:
    e, backend, store, _ = ender(record("rtc_a", 900), record("rtc_b", 5000),
                                 record("rtc_c", 5000)._replace(state=CallState.ENDED))
    assert e.end_all_active(by="owner") == {"due": 2, "failed": 0}
    assert sorted(backend.hung_up) == ["rtc_a", "rtc_b"]
    assert store.get("rtc_b").ended_by == "owner"  # type: ignore[union-attr]


def test_the_sweep_ends_only_calls_past_their_end_and_the_grace() -> None:
    late, just_due, future = record("rtc_late", 900), record("rtc_edge", 1000 - SWEEP_GRACE_SECONDS), \
        record("rtc_future", 995)
    e, backend, store, _ = ender(late, just_due, future)
    assert e.sweep() == {"due": 2, "failed": 0}
    assert sorted(backend.hung_up) == ["rtc_edge", "rtc_late"]
    assert store.get("rtc_future").state is CallState.ACTIVE  # type: ignore[union-attr]
    assert store.get("rtc_late").ended_by == "sweeper"  # type: ignore[union-attr]


def test_a_failing_call_does_not_stop_the_sweep() -> None:
    e, backend, store, _ = ender(record("rtc_a", 100), record("rtc_b", 200))
    backend.hangup_failures.append(UpstreamFailure(FailureKind.ERROR, 500, "x"))
    assert e.sweep() == {"due": 2, "failed": 1}
    assert [r.call_id for r in store.due(10_000)] == ["rtc_a"]
