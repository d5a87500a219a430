"""The attack matrix (issue 21): what a hostile caller sends, one row each, and what it costs the owner, through the
real handler (moto over HTTP, the OpenAI stand-in over HTTP and WebSocket) and through the local system (the
gateway with its throttles, the functions in their containers, the Step Functions runner).

Each row asserts the answer and the cost, read from the limits table itself (the `day#...` items the requests
wrote, whichever UTC day they are for; the caller's `bucket#...` item) and from what reached the stand-in. The
outcome of every row goes to `test-artifacts/security-figures.json` (section `attack_matrix`), which the README's
attack matrix quotes.
"""

from __future__ import annotations

import io
import json
import re
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from local.openai_standin.faults import Fault
from local.openai_standin.server import StandIn
from local.template_stack import LocalStack
from tests.integration.harness import EVIDENCE, TokenApi, body_of, load_leash, load_token_app
from tests.integration.offers import make_offer
from tests.integration.security.security_support import (
    Caller,
    record_figures,
    start_system,
    stop_system,
    table_state,
)
from tokenvend import admin, table
from tokenvend.admission import RequestFacts
from tokenvend.limiter import Limiter, Spend

RESULTS: list[dict[str, Any]] = []
IP = "198.51.100.21"
CREATE = {"realtime": "calls", "live": "live_sessions"}


@pytest.fixture(scope="module", autouse=True)
def figures() -> Iterator[None]:
    yield
    record_figures("attack_matrix", rows=RESULTS, passed=len(RESULTS))


@pytest.fixture(scope="module")
def offers() -> dict[bool, str]:
    return {channel: make_offer(data_channel=channel) for channel in (True, False)}


def load(stack: LocalStack, standin: StandIn, backend: str, **env: str) -> TokenApi:
    api = load_token_app(stack, standin, VOICE_BACKEND=backend, MAX_CALL_SECONDS="20", **env)
    api.put_key(standin.api_key)
    return api


def post_call(api: TokenApi, sdp: str, ip: str = IP) -> Any:
    return api.call("POST", "/calls", {"sdp": sdp}, source_ip=ip)


def day_seconds(api: TokenApi) -> int:
    """Call seconds held by the day items this test's table holds (a run across midnight writes two)."""
    pages = api.dynamodb.get_paginator("scan").paginate(TableName=api.stack.table_name)
    items = [i for page in pages for i in page["Items"] if i["pk"]["S"].startswith("day#")]
    return sum(int(i[table.CALL_SECONDS]["N"]) for i in items if table.CALL_SECONDS in i)


def buckets(api: TokenApi) -> dict[str, int]:
    return table_state(api.dynamodb, api.stack.table_name)["bucket"]


def call_item(api: TokenApi, call_id: str) -> dict[str, Any]:
    return api.dynamodb.get_item(TableName=api.stack.table_name, Key={"pk": {"S": table.call_pk(call_id)}},
                                 ConsistentRead=True)["Item"]


def metric_values(lines: list[str], name: str) -> list[float]:
    """Every value of one metric in the EMF lines the function printed."""
    values: list[float] = []
    for line in lines:
        if f'"{name}"' not in line:
            continue
        try:
            record = json.loads(line)
        except ValueError:
            continue
        value = record.get(name)
        values.extend(value if isinstance(value, list) else [value] if value is not None else [])
    return values


def row(name: str, **outcome: Any) -> None:
    RESULTS.append({"row": name, **outcome})


# --- offers: refused before anything is charged ------------------------------------------------------------------

def without(sdp: str, prefix: str) -> str:
    return "".join(line + "\r\n" for line in sdp.splitlines() if not line.startswith(prefix))


def mutations(audio_only: str) -> dict[str, str]:
    """Offers no browser makes, each from a real one."""
    lines = audio_only.splitlines()
    return {
        "no a=ice-ufrag": without(audio_only, "a=ice-ufrag"),
        "no a=ice-pwd": without(audio_only, "a=ice-pwd"),
        "no a=fingerprint": without(audio_only, "a=fingerprint"),
        "no a=setup": without(audio_only, "a=setup"),
        "a non-ASCII letter": audio_only + "a=tool:caf\u00e9\r\n",
        # Once charged, then failed while the request to OpenAI was built (a 500 that kept its reservation).
        "a lone surrogate": audio_only + "a=tool:\udcff\r\n",
        "a NUL": audio_only + "a=tool:\x00\r\n",
        "a bare CR inside a line": audio_only + "a=tool:x\ry\r\n",
        "a blank line first": "\r\n" + audio_only,
        "not version 0": audio_only.replace("v=0", "v=1", 1),
        "no media section": "".join(line + "\r\n" for line in lines if not line.startswith("m=")),
        "a video section": audio_only + "m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:1\r\n",
        "five media sections": audio_only + "m=audio 0 UDP/TLS/RTP/SAVPF 0\r\n" * 4,
        "over 12 KB": audio_only + "".join(f"a=x-pad:{n:04d}{'p' * 50}\n" for n in range(220)),
        "not type=value lines": audio_only + "hello world\r\n",
    }


@pytest.mark.parametrize("backend", ["realtime", "live"])
def test_malformed_offers_are_400_and_charge_nothing(stack: LocalStack, fresh_standin: StandIn,
                                                    offers: dict[bool, str], backend: str) -> None:
    api = load(stack, fresh_standin, backend)
    refused = {}
    for name, sdp in mutations(offers[False]).items():
        response = api.call("POST", "/calls", raw=json.dumps({"sdp": sdp}), source_ip=IP,
                            headers={"content-type": "application/json"})
        assert response.status == 400, (name, response.body)
        assert body_of(response)["error"]["message"].startswith("sdp: "), name
        refused[name] = body_of(response)["error"]["message"]
    assert fresh_standin.requests_to(CREATE[backend]) == [] and day_seconds(api) == 0 and buckets(api) == {}
    row(f"malformed offers ({backend})", offers=len(refused), status=400, reached_openai=0, charged=0)


def test_a_data_channel_offer_on_realtime_is_refused_and_charges_nothing(
        stack: LocalStack, fresh_standin: StandIn, offers: dict[bool, str]) -> None:
    api = load(stack, fresh_standin, "realtime")
    response = post_call(api, offers[True])
    assert response.status == 400 and "no data channel" in body_of(response)["error"]["message"]
    assert fresh_standin.requests_to("calls") == [] and day_seconds(api) == 0 and buckets(api) == {}
    allowed = load(stack, fresh_standin, "realtime", REALTIME_DATA_CHANNEL="true")
    assert post_call(allowed, offers[True]).status == 201  # only where the owner says so
    fresh_standin.reset()
    row("a data channel on Realtime", status=400, reached_openai=0, charged=0)


# --- a failure at each step after the charge ---------------------------------------------------------------------

class Boom(RuntimeError):
    """A failure no code path expects."""


def _raise(*_: Any, **__: Any) -> None:
    raise Boom("injected")


STEPS: dict[str, tuple[Callable[[Any, pytest.MonkeyPatch], None], int, str]] = {
    # step: (how to break it, answer, what may exist at OpenAI then)
    "building the session": (lambda desk, mp: mp.setattr(desk._backend._policy, "realtime_session", _raise),
                             500, "nothing"),
    "encoding the request": (lambda desk, mp: mp.setattr(desk._backend._openai._http, "post", _raise), 500,
                             "nothing"),
    "reading OpenAI's answer": (lambda desk, mp: mp.setattr("tokenvend.backends._realtime_call", _raise), 500,
                                "an unnamed call"),
    "making the hangup token": (lambda desk, mp: mp.setattr("tokenvend.calls.secrets.token_urlsafe", _raise), 503,
                                "a call, hung up"),
    "recording the call": (lambda desk, mp: mp.setattr(desk._records, "create", _raise), 503, "a call, hung up"),
    "starting its timer": (lambda desk, mp: mp.setattr(desk._timer, "start", _raise), 503, "a call, hung up"),
}


@pytest.mark.parametrize("step", list(STEPS))
def test_an_exception_at_each_step_after_the_charge_gives_the_day_its_seconds_back(
        stack: LocalStack, fresh_standin: StandIn, offers: dict[bool, str], step: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    api = load(stack, fresh_standin, "realtime")
    before = day_seconds(api)
    breaks, answer, at_openai = STEPS[step]
    breaks(api.module.services.calls, monkeypatch)
    first_line = len(EVIDENCE.lines)
    response = post_call(api, offers[False])
    lines = EVIDENCE.lines[first_line:]
    assert response.status == answer, response.body
    assert "injected" not in response.body.decode() and "Traceback" not in response.body.decode()
    assert day_seconds(api) == before, f"{step}: the day keeps {day_seconds(api) - before} s"
    reserved, credited = metric_values(lines, "CallSecondsReserved"), metric_values(lines, "CallSecondsCredited")
    assert reserved == [25] and credited == [25], (reserved, credited)  # the spend alarm sees both
    created = fresh_standin.requests_to("calls")
    if at_openai == "nothing":
        assert created == []
    if at_openai == "a call, hung up":
        (call,) = fresh_standin.calls.all()
        assert call.wait_ended(5), "a call that cannot be leashed is ended at once"
    monkeypatch.undo()
    assert post_call(api, offers[False], ip="198.51.100.22").status == 201, "and the service still works"
    fresh_standin.reset()
    row(f"exception while {step}", status=answer, day_seconds_after=day_seconds(api) - 25 - before,
        at_openai=at_openai)


def test_on_live_a_call_that_may_exist_keeps_only_openais_15_seconds(
        stack: LocalStack, fresh_standin: StandIn, offers: dict[bool, str], monkeypatch: pytest.MonkeyPatch) -> None:
    api = load(stack, fresh_standin, "live")
    monkeypatch.setattr("tokenvend.backends._live_session", _raise)
    assert post_call(api, offers[True]).status == 500
    assert day_seconds(api) == 15, "GPT-Live bills a created session 15 s even if it never connects"
    fresh_standin.reset()
    row("exception after a Live session may exist", status=500, day_seconds_kept=15)


# --- OpenAI refusing offers: the owner's key is not a free oracle -----------------------------------------------

@pytest.mark.parametrize("backend", ["realtime", "live"])
def test_openai_rejecting_offers_from_one_address_lets_at_most_the_burst_through(
        stack: LocalStack, fresh_standin: StandIn, offers: dict[bool, str], backend: str) -> None:
    api = load(stack, fresh_standin, backend, ANONYMOUS_BURST="3")
    fresh_standin.faults.add(Fault(status=400, times=100, endpoint=CREATE[backend]))
    first_line = len(EVIDENCE.lines)
    statuses = [post_call(api, offers[backend == "live"]).status for _ in range(12)]
    reached = len(fresh_standin.requests_to(CREATE[backend]))
    assert statuses[:3] == [400] * 3 and set(statuses[3:]) == {429}, statuses
    assert reached == 3, "each refusal kept the caller's slot spent"
    assert day_seconds(api) == 0, "the day's seconds came back"
    assert metric_values(EVIDENCE.lines[first_line:], "OffersRejected") == [1.0] * 3  # what the alarm reads
    fresh_standin.reset()
    row(f"OpenAI rejects every offer ({backend})", requests=12, reached_openai=reached, charged_seconds=0,
        counted=3)


# --- the leash: no early answer takes a call off it --------------------------------------------------------------

def test_a_live_hangup_that_answers_2xx_but_ends_nothing_is_still_ended_through_the_sideband(
        stack: LocalStack, fresh_standin: StandIn, offers: dict[bool, str]) -> None:
    api = load(stack, fresh_standin, "live")
    call = body_of(post_call(api, offers[True]))
    fresh_standin.faults.add(Fault(status=200, endpoint="live_hangup"))  # an empty yes that does nothing
    ended = api.call("POST", f"/calls/{call['call_id']}/hangup", {"hangup_token": call["hangup_token"]})
    assert ended.status == 200, ended.body
    session = fresh_standin.call(call["call_id"])
    assert session is not None and session.wait_ended(5) and session.end_reason == "sideband_close"
    assert call_item(api, call["call_id"])["state"]["S"] == "ended"
    assert body_of(ended)["credited_seconds"] <= 20 - 15, "an early Live hangup keeps OpenAI's 15 s minimum"
    # The leash's own hangup, at the end, gets the same treatment: the sideband, not the 2xx, says it is over.
    leash = load_leash(stack, fresh_standin)
    fresh_standin.faults.add(Fault(status=200, endpoint="live_hangup"))
    attached = len(fresh_standin.requests_to("live_attach"))
    assert leash.invoke({"call_id": call["call_id"], "backend": "live"})["call_id"] == call["call_id"]
    assert [r.status for r in fresh_standin.requests_to("live_attach")[attached:]] == [404]
    fresh_standin.reset()
    row("a Live hangup answering 2xx without ending the session", ended_by="sideband session.close",
        credited_at_most=5)


def test_the_owner_pauses_and_hangs_up_every_running_call(stack: LocalStack, fresh_standin: StandIn,
                                                          offers: dict[bool, str]) -> None:
    api = load(stack, fresh_standin, "live")
    calls = [body_of(post_call(api, offers[True], ip=f"198.51.100.{n}")) for n in (31, 32)]
    out, err = io.StringIO(), io.StringIO()
    code = admin.main(["--table", stack.table_name, "pause", "--hang-up-all",
                       "--secret-id", stack.physical_ids["OpenAIKeySecret"], "--openai-base-url",
                       fresh_standin.base_url], out=out, err=err)
    assert code == 0, err.getvalue()
    assert "running calls ended: 2 of 2" in out.getvalue()
    for call in calls:
        session = fresh_standin.call(call["call_id"])
        assert session is not None and session.wait_ended(5)
        assert call_item(api, call["call_id"])["ended_by"]["S"] == "owner"
    paused = post_call(api, offers[True], ip="198.51.100.33")
    assert paused.status == 503 and body_of(paused)["error"]["code"] == "issuing_paused"
    assert admin.main(["--table", stack.table_name, "resume"], out=io.StringIO(), err=io.StringIO()) == 0
    fresh_standin.reset()
    row("pause --hang-up-all", running_calls=2, ended=2, new_calls="503 issuing_paused")


def test_a_give_back_never_takes_the_day_below_zero(stack: LocalStack, fresh_standin: StandIn,
                                                    offers: dict[bool, str]) -> None:
    api = load(stack, fresh_standin, "realtime")
    call = body_of(post_call(api, offers[False]))
    day = call_item(api, call["call_id"])["day"]["S"]
    limiter: Limiter = api.module.services.calls._limiter
    assert not limiter.credit(day, 26), "more than the day holds (25 s) is refused whole"
    assert day_seconds(api) == 25
    assert limiter.credit(day, 25) and day_seconds(api) == 0
    assert not limiter.credit(day, 1) and day_seconds(api) == 0
    grant_like = limiter.acquire(api.module.services.calls._admission.identify(
        RequestFacts(None, "198.51.100.40")), Spend.call(limiter.limits, 25))
    api.dynamodb.update_item(TableName=stack.table_name, Key={"pk": {"S": table.day_pk(grant_like.day)}},
                             UpdateExpression="SET call_seconds = :zero", ExpressionAttributeValues={
                                 ":zero": {"N": "0"}})
    assert limiter.release(grant_like) == 0, "a release that would go below zero gives nothing back"
    assert day_seconds(api) == 0
    fresh_standin.reset()
    row("a give-back larger than the day holds", refused=True, day_seconds=0)


# --- through the local system: the gateway, the containers, the timers -----------------------------------------

@pytest.fixture(scope="module")
def system() -> Iterator[Any]:
    running = start_system({"VoiceBackend": "realtime", "MaxCallSeconds": "10", "AnonymousBurst": "50",
                            "ThrottleBurstLimit": "5", "ThrottleRateLimit": "1"})
    try:
        yield running
    finally:
        stop_system(running)


def timer_invocations(system: Any, call_id: str) -> list[Any]:
    return [i for i in system.leash.invocations if isinstance(i.payload, dict) and i.payload.get("call_id") == call_id]


def wait_for_timers(system: Any, calls: list[dict[str, Any]], slack: float = 30) -> None:
    """Until each call's timer has fired (at its end, plus what its retries take)."""
    deadline = time.monotonic() + max([c["ends_at"] - time.time() for c in calls] + [0]) + slack
    while time.monotonic() < deadline:
        if all(timer_invocations(system, c["call_id"]) for c in calls):
            return
        time.sleep(0.2)
    raise AssertionError("a call's timer never fired")


CREATED: list[dict[str, Any]] = []  # calls the local system's rows set up: their timers run beside later rows


def test_an_early_hangup_leaves_the_timer_which_still_fires_and_finds_the_call_ended(
        system: Any, offers: dict[bool, str]) -> None:
    with Caller(system.api_url) as caller:
        created = caller.request("POST", "/calls", json={"sdp": offers[False]})
        assert created.status_code == 201, created.text
        call = created.json()
        CREATED.append(call)
        ended = caller.request("POST", f"/calls/{call['call_id']}/hangup", json={"hangup_token": call["hangup_token"]})
        assert ended.status_code == 200 and ended.json()["credited_seconds"] > 0
    wait_for_timers(system, [call])
    timer = timer_invocations(system, call["call_id"])
    assert timer[0].error is None and timer[0].due is not None and timer[0].due >= call["ends_at"]
    statuses = [h.status for h in system.standin.hangups_for(call["call_id"])]
    assert statuses == [200, 404], "the early hangup, then the timer's, which OpenAI finds over"
    row("an early hangup", timer_fired=True, openai_hangups=statuses)


def test_a_flood_of_post_calls_never_starves_the_hangup_route(system: Any, offers: dict[bool, str]) -> None:
    with Caller(system.api_url) as caller:
        time.sleep(6)  # the POST /calls bucket (burst 5, 1 per s) full again after the test before
        call = caller.request("POST", "/calls", json={"sdp": offers[False]}).json()
        CREATED.append(call)
    barrier = threading.Barrier(41)

    def flood(_: int) -> int:
        with httpx.Client(base_url=system.api_url, timeout=30) as client:
            barrier.wait()
            return client.post("/calls", json={"sdp": "v=0"}).status_code

    def hang_up() -> httpx.Response:
        with Caller(system.api_url) as client:
            barrier.wait()
            return client.request("POST", f"/calls/{call['call_id']}/hangup",
                                  json={"hangup_token": call["hangup_token"]})

    with ThreadPoolExecutor(max_workers=41) as pool:
        floods = [pool.submit(flood, n) for n in range(40)]
        hangup = pool.submit(hang_up)
        statuses = [f.result() for f in floods]
        answer = hangup.result()
    throttled = statuses.count(429)
    # A burst of 5 and 1 a second: the gateway refused most of them (how many depends on how fast 40 threads go).
    assert throttled > 0 and statuses.count(429) + statuses.count(400) == len(statuses), statuses
    assert answer.status_code == 200 and answer.json()["state"] == "ended", answer.text
    row("a POST /calls flood", flood=len(statuses), throttled_by_gateway=throttled, hangup_status=200)


def test_openai_failing_hangups_for_one_call_leaves_later_calls_leashed(system: Any,
                                                                       offers: dict[bool, str]) -> None:
    """Every hangup fails while the first call is due (its timer retries, the sweeper keeps trying); a later call
    is still hung up by its timer once OpenAI answers again: no worker pool broke on the way."""
    wait_for_timers(system, CREATED)  # no other call's hangup may take the faults meant for this one
    time.sleep(6)  # the POST /calls bucket full again
    with Caller(system.api_url) as caller:
        first = caller.request("POST", "/calls", json={"sdp": offers[False]}).json()
        # Three attempts of its timer fail (each asks twice: one quick retry); the fourth succeeds.
        system.standin.faults.add(Fault(status=500, times=6, endpoint="hangup"))
        time.sleep(max(0.0, first["ends_at"] - time.time()) + 3)
        second = caller.request("POST", "/calls", json={"sdp": offers[False]})
        assert second.status_code == 201, second.text
        second_call = second.json()
    deadline = time.monotonic() + max(0.0, second_call["ends_at"] - time.time()) + 60
    while time.monotonic() < deadline:
        ended = [h.status for h in system.standin.hangups_for(second_call["call_id"])]
        if 200 in ended and 200 in [h.status for h in system.standin.hangups_for(first["call_id"])]:
            break
        time.sleep(0.3)
    first_statuses = [h.status for h in system.standin.hangups_for(first["call_id"])]
    assert 500 in first_statuses and 200 in first_statuses, first_statuses
    assert 200 in [h.status for h in system.standin.hangups_for(second_call["call_id"])]
    failures = [i for i in system.leash.invocations if i.error]
    assert all(re.fullmatch(r"\w+", i.error or "") for i in failures)  # Lambda's errorType, not a broken pool
    assert not any("BrokenProcessPool" in (i.error or "") for i in system.leash.invocations)
    row("OpenAI failing hangups for one call (make run)", first_call_hangups=first_statuses,
        later_call_ended=True, failed_invocations=len(failures))
