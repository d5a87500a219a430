"""Why a call ended: GPT-Live's reasons in plain words, and the same reasons inferred for Realtime."""

from __future__ import annotations

import pytest

from realtime_client.endings import in_words, infer_reason, live_reason


@pytest.mark.parametrize(
    ("reason", "words"),
    [
        ("expired", "the time limit was reached"),
        ("close_requested", "hung up"),
        ("connection_lost", "the connection was lost"),
        ("remote_hangup", "the other side hung up"),
        ("content", "OpenAI's content filter ended it"),
        ("something_new", "ended (something_new)"),
    ],
)
def test_reasons_in_words(reason: str, words: str) -> None:
    assert in_words(reason) == words


@pytest.mark.parametrize(
    ("state", "elapsed", "max_seconds", "reason"),
    [
        ("closed", 10.2, 10, "expired"),
        ("closed", 8.5, 10, "expired"),  # within the slack: the server's clock and scheduling are not ours
        ("closed", 5.0, 10, "remote_hangup"),
        ("closed", 5.0, None, "remote_hangup"),  # the token path has no limit of ours
        ("failed", 10.5, 10, "connection_lost"),
        ("failed", 1.0, None, "connection_lost"),
    ],
)
def test_realtime_reason_from_how_and_when(state: str, elapsed: float, max_seconds: int | None, reason: str) -> None:
    assert infer_reason(connection_state=state, elapsed=elapsed, max_seconds=max_seconds) == reason


@pytest.mark.parametrize(
    ("reason", "elapsed", "max_seconds", "expected"),
    [
        ("close_requested", 20.3, 20, "expired"),  # the leash hangs Live up: that is the limit
        ("close_requested", 4.0, 20, "close_requested"),
        ("expired", 4.0, 20, "expired"),
        ("connection_lost", 20.5, 20, "connection_lost"),
        ("content", 3.0, None, "content"),
    ],
)
def test_live_reason_turns_the_leash_hangup_into_the_limit(
    reason: str, elapsed: float, max_seconds: int | None, expected: str
) -> None:
    assert live_reason(reason, elapsed=elapsed, max_seconds=max_seconds) == expected
