"""The leash function as its two callers invoke it — the call's timer (`{"call_id", "backend", ...}`) and the
sweeper (`{"sweep": true}`) — against moto and the OpenAI stand-in: it always asks OpenAI to hang the call up,
whatever the record says, marks it ended once, treats OpenAI's 404 as done (on Live, only what the sideband says
counts), and raises on other failures so the timer retries."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from local.openai_standin.faults import Fault
from local.openai_standin.server import StandIn
from local.template_stack import LocalStack
from tests.integration.harness import LeashApi, TokenApi, body_of, load_leash, load_token_app
from tests.integration.offers import make_offer
from tokenvend import table
from tokenvend.errors import ApiError

HANGUP_ENDPOINT = {"realtime": "hangup", "live": "live_hangup"}
# Where a failure keeps a call from being ended: on Live the sideband decides, whatever the hangup answered.
DECIDING_ENDPOINT = {"realtime": "hangup", "live": "live_attach"}


@pytest.fixture(scope="module")
def offers() -> dict[bool, str]:
    return {channel: make_offer(data_channel=channel) for channel in (True, False)}


@pytest.fixture(params=sorted(HANGUP_ENDPOINT))
def backend(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def offer(offers: dict[bool, str], backend: str) -> str:
    return offers[backend == "live"]


@pytest.fixture
def live_offer(offers: dict[bool, str]) -> str:
    return offers[True]


@pytest.fixture
def apis(stack: LocalStack, fresh_standin: StandIn, backend: str) -> Iterator[tuple[TokenApi, LeashApi]]:
    api = load_token_app(stack, fresh_standin, MAX_CALL_SECONDS="10", VOICE_BACKEND=backend)
    api.put_key(fresh_standin.api_key)
    yield api, load_leash(stack, fresh_standin)
    fresh_standin.reset()


def start(api: TokenApi, offer: str) -> dict:
    response = api.call("POST", "/calls", {"sdp": offer})
    assert response.status == 201, response.body
    return body_of(response)


def item(api: TokenApi, call_id: str) -> dict:
    return api.dynamodb.get_item(TableName=api.stack.table_name, Key={"pk": {"S": table.call_pk(call_id)}},
                                 ConsistentRead=True)["Item"]


def move_end(api: TokenApi, call_id: str, ends_at: int) -> None:
    api.dynamodb.update_item(TableName=api.stack.table_name, Key={"pk": {"S": table.call_pk(call_id)}},
                             UpdateExpression="SET ends_at = :e", ExpressionAttributeValues={":e": {"N": str(ends_at)}})


def test_the_timer_hangs_up_marks_the_call_ended_and_always_asks_openai(apis: tuple[TokenApi, LeashApi],
                                                                        offer: str, backend: str) -> None:
    api, leash = apis
    call = start(api, offer)
    event = {"call_id": call["call_id"], "backend": backend}
    assert leash.invoke(event) == {"call_id": call["call_id"], "outcome": "hung_up"}
    assert api.standin.call(call["call_id"]).wait_ended(5)  # type: ignore[union-attr]
    record = item(api, call["call_id"])
    assert (record["state"]["S"], record["ended_by"]["S"]) == ("ended", "leash") and "active" not in record
    # The record says ended; OpenAI is asked all the same, and its 404 is success.
    assert leash.invoke(event)["outcome"] == "already_gone"
    assert [h.status for h in api.standin.hangups_for(call["call_id"])] == [200, 404]


def test_a_call_whose_record_is_gone_is_still_hung_up_from_its_timer(apis: tuple[TokenApi, LeashApi], offer: str,
                                                                     backend: str) -> None:
    api, leash = apis
    call = start(api, offer)
    api.dynamodb.delete_item(TableName=api.stack.table_name, Key={"pk": {"S": table.call_pk(call["call_id"])}})
    assert leash.invoke({"call_id": call["call_id"], "backend": backend})["outcome"] == "hung_up"
    assert api.standin.call(call["call_id"]).wait_ended(5)  # type: ignore[union-attr]


def test_a_call_openai_already_ended_is_done(apis: tuple[TokenApi, LeashApi], offer: str) -> None:
    api, leash = apis
    call = start(api, offer)
    api.standin.reset()  # OpenAI's side is gone: its hangup answers 404
    assert leash.invoke({"call_id": call["call_id"]})["outcome"] == "already_gone"
    assert item(api, call["call_id"])["state"]["S"] == "ended"


def test_hangup_failing_three_times_then_succeeding_still_ends_the_call(apis: tuple[TokenApi, LeashApi],
                                                                        offer: str, backend: str) -> None:
    """Step Functions retries a raised error; each invocation's own quick retry also counts an attempt."""
    api, leash = apis
    call = start(api, offer)
    api.standin.faults.add(Fault(status=500, times=3, endpoint=DECIDING_ENDPOINT[backend]))
    failures = 0
    for _ in range(4):  # the state machine retries many more times than this
        try:
            outcome = leash.invoke({"call_id": call["call_id"]})
            break
        except Exception:
            failures += 1
    else:
        pytest.fail("the call was never ended")
    assert failures >= 1 and item(api, call["call_id"])["state"]["S"] == "ended"
    # On Live the first attempt's hangup ended the session; only the sideband's confirmation was missing.
    assert outcome["outcome"] == ("hung_up" if backend == "realtime" else "already_gone")
    if backend == "realtime":
        assert [h.status for h in api.standin.hangups_for(call["call_id"])] == [500, 500, 500, 200]


@pytest.mark.parametrize("refusal", [400, 404])
def test_a_refused_live_hangup_ends_the_session_through_its_sideband(stack: LocalStack, fresh_standin: StandIn,
                                                                     live_offer: str, refusal: int) -> None:
    """OpenAI documents Live's hangup for SIP calls: if it refuses one for a WebRTC session (even as 'not found'),
    the leash closes the session on its sideband, and only OpenAI's `session.closed` there counts as ended."""
    api = load_token_app(stack, fresh_standin, MAX_CALL_SECONDS="10", VOICE_BACKEND="live")
    api.put_key(fresh_standin.api_key)
    leash = load_leash(stack, fresh_standin)
    call = start(api, live_offer)
    fresh_standin.faults.add(Fault(status=refusal, endpoint="live_hangup"))
    assert leash.invoke({"call_id": call["call_id"]}) == {"call_id": call["call_id"], "outcome": "hung_up"}
    session = fresh_standin.call(call["call_id"])
    assert session is not None and session.wait_ended(5) and session.end_reason == "sideband_close"
    assert [h.status for h in fresh_standin.hangups_for(call["call_id"])] == [refusal]
    deadline = time.monotonic() + 2  # the stand-in records the socket once its closing handshake is over
    while not fresh_standin.requests_to("live_attach") and time.monotonic() < deadline:
        time.sleep(0.02)
    assert [r.status for r in fresh_standin.requests_to("live_attach")] == [101]
    assert item(api, call["call_id"])["state"]["S"] == "ended"
    fresh_standin.reset()


def test_a_refused_live_hangup_and_a_failing_sideband_leave_the_call_to_the_retries(
        stack: LocalStack, fresh_standin: StandIn, live_offer: str) -> None:
    api = load_token_app(stack, fresh_standin, MAX_CALL_SECONDS="10", VOICE_BACKEND="live")
    api.put_key(fresh_standin.api_key)
    leash = load_leash(stack, fresh_standin)
    call = start(api, live_offer)
    fresh_standin.faults.add(Fault(status=400, endpoint="live_hangup"))
    fresh_standin.faults.add(Fault(status=503, endpoint="live_attach"))
    with pytest.raises(ApiError):  # raised, so Step Functions retries and the sweeper stays behind it
        leash.invoke({"call_id": call["call_id"]})
    assert item(api, call["call_id"])["state"]["S"] == "active"
    assert leash.invoke({"call_id": call["call_id"]})["outcome"] == "hung_up"  # the hangup works this time
    assert [h.status for h in fresh_standin.hangups_for(call["call_id"])] == [400, 200]
    fresh_standin.reset()


def test_the_sweeper_ends_calls_past_their_end_and_leaves_the_rest(apis: tuple[TokenApi, LeashApi],
                                                                   offer: str) -> None:
    api, leash = apis
    late, current = start(api, offer), start(api, offer)
    move_end(api, late["call_id"], late["ends_at"] - 60)
    assert leash.invoke({"sweep": True}) == {"due": 1, "failed": 0}
    assert item(api, late["call_id"])["ended_by"]["S"] == "sweeper"
    assert item(api, current["call_id"])["state"]["S"] == "active"
    assert api.standin.hangups_for(current["call_id"]) == []
    assert leash.invoke({"sweep": True}) == {"due": 0, "failed": 0}


def test_a_sweep_survives_a_failing_call_and_retries_it_next_time(apis: tuple[TokenApi, LeashApi],
                                                                   offer: str, backend: str) -> None:
    api, leash = apis
    call = start(api, offer)
    move_end(api, call["call_id"], call["ends_at"] - 60)
    # Each sweep fails once: a Realtime hangup is tried twice per sweep (one quick retry), the sideband once.
    api.standin.faults.add(Fault(status=503, times=2 if backend == "realtime" else 1,
                                 endpoint=DECIDING_ENDPOINT[backend]))
    assert leash.invoke({"sweep": True}) == {"due": 1, "failed": 1}
    assert leash.invoke({"sweep": True}) == {"due": 1, "failed": 0}
    assert item(api, call["call_id"])["state"]["S"] == "ended"


def test_an_event_without_a_call_id_is_ignored(apis: tuple[TokenApi, LeashApi]) -> None:
    _, leash = apis
    assert leash.invoke({"something": "else"}) == {"outcome": "ignored"}
