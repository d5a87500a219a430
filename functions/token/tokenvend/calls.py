"""Calls set up by the server (`POST /calls`) and hung up early by their caller (`POST /calls/{id}/hangup`).

Setting up: the caller's choice and offer are checked first (a bad request charges nothing); the key and the salt
are read before the limiter is charged; the limiter reserves the call's maximum length plus the leash's slack from
the day's minutes before OpenAI is called; the call is recorded and its timer started before the answer goes back.
If OpenAI fails, the reservation is given back. If the call cannot be leashed (the record or the timer cannot be
written), it is hung up at once, given back, and refused: there is never a call without a leash.

Hanging up early: only with the call's hangup token (a random secret returned once, stored hashed). The call is
hung up at OpenAI first and marked ended only then, so a failure leaves its leash in place; the one request that
marks it ended stops its timer and credits the unused seconds back to the day it was paid from.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import secrets
import time
from collections.abc import Callable

from tokenvend.admission import Admission, RequestFacts
from tokenvend.backends import CreatedCall, VoiceBackend
from tokenvend.call_ending import CallEnder
from tokenvend.call_records import CallRecord, CallRecords, CallState
from tokenvend.errors import ApiError, Code, invalid_request
from tokenvend.leash_clock import LeashClock, LeashUnavailable
from tokenvend.limiter import Grant, Limiter, Spend
from tokenvend.metric_names import (
    CALL_SECONDS_CREDITED,
    CALL_SECONDS_RESERVED,
    CALLS_ENDED,
    CALLS_STARTED,
    LEASH_FAILURES,
    UPSTREAM_LATENCY,
    seconds,
    tally,
)
from tokenvend.observability import latency, logger
from tokenvend.openai_client import FailureKind, UpstreamFailure
from tokenvend.policy import SessionChoice, SessionPolicy
from tokenvend.vending import Answer

# How late the leash may hang up after a call's end: the timer's one-second precision, the leash function's start
# and OpenAI's answer. Every call reserves this on top of its maximum length (measured locally: docs/benchmarks.md).
LEASH_SLACK_SECONDS = 5
LEASH_RETRY_AFTER_SECONDS = 5


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def check_offer(sdp: str) -> None:
    """A WebRTC SDP offer with an audio section, before anything is charged or sent to OpenAI."""
    lines = sdp.lstrip().splitlines()
    if not lines or lines[0].strip() != "v=0":
        raise invalid_request("sdp: not an SDP offer (it must start with v=0)")
    if not any(line.startswith("m=audio ") for line in lines):
        raise invalid_request("sdp: the offer has no audio section (m=audio)")


class CallDesk:
    def __init__(self, policy: SessionPolicy, admission: Admission, limiter: Limiter, backend: VoiceBackend,
                 records: CallRecords, clock_of_calls: LeashClock, ender: CallEnder, *, max_call_seconds: int,
                 clock: Callable[[], float] = time.time) -> None:
        self._policy = policy
        self._admission = admission
        self._limiter = limiter
        self._backend = backend
        self._records = records
        self._leash = clock_of_calls
        self._ender = ender
        self._max_seconds = max_call_seconds
        self._spend = Spend.call(limiter.limits, max_call_seconds + LEASH_SLACK_SECONDS)
        self._clock = clock

    # --- POST /calls ---------------------------------------------------------------------------------------------

    def start(self, facts: RequestFacts, offer_sdp: str, voice: str | None, preset: str | None) -> Answer:
        choice = self._policy.choose(voice, preset)
        check_offer(offer_sdp)
        caller = self._admission.identify(facts)
        with self._admission.allowance_on_error(caller):
            created, grant = self._admission.create_metered(
                caller, self._spend, lambda key: self._create(key, offer_sdp, choice, caller.hash))
            started_at = self._clock()
            hangup_token = secrets.token_urlsafe(32)
            # Rounded up: the timer has one-second precision, and a call must never be cut short of its limit.
            record = CallRecord(call_id=created.call_id, caller=caller.hash, backend=self._backend.name,
                                started_at=int(started_at), ends_at=math.ceil(started_at + self._max_seconds),
                                reserved_seconds=self._spend.amount, day=grant.day,
                                hangup_token_sha256=sha256(hangup_token))
            self._leash_or_abandon(record, grant)
        tally(CALLS_STARTED, caller_kind=str(caller.kind), backend=self._backend.name)
        seconds(CALL_SECONDS_RESERVED, record.reserved_seconds)
        logger.append_keys(call_id=record.call_id)
        body = {
            "call_id": record.call_id,
            "sdp": created.answer_sdp,
            "ends_at": record.ends_at,
            "max_seconds": self._max_seconds,
            "hangup_token": hangup_token,
            "session": self._policy.call_summary(choice),
        }
        return Answer(body, self._limiter.allowance_of(grant).headers())

    def _create(self, api_key: str, offer_sdp: str, choice: SessionChoice, safety_identifier: str) -> CreatedCall:
        try:
            timed = self._backend.create_call(api_key, offer_sdp, choice, safety_identifier)
        except UpstreamFailure as failure:
            if failure.kind is FailureKind.REJECTED and not (failure.param or "").startswith("session"):
                # OpenAI refused the request but not our session: the caller's offer is what it could not use.
                logger.info("OpenAI refused the offer", extra={"upstream": failure.detail})
                raise invalid_request("sdp: OpenAI could not use this offer.") from None
            raise
        latency(UPSTREAM_LATENCY, timed.latency_ms)
        return timed.value

    def _leash_or_abandon(self, record: CallRecord, grant: Grant) -> None:
        recorded = False
        try:
            self._records.create(record)
            recorded = True
            self._leash.start(record.call_id, record.ends_at)
        except (ApiError, LeashUnavailable) as exc:
            tally(LEASH_FAILURES, stage="start")
            logger.error("the call could not be leashed; hanging it up", extra={"error": str(exc)})
            self._abandon(record, grant, recorded)
            raise ApiError(503, Code.LEASH_UNAVAILABLE,
                           "The call could not be given its time limit, so it was ended; try again shortly.",
                           {"Retry-After": str(LEASH_RETRY_AFTER_SECONDS)}) from None

    def _abandon(self, record: CallRecord, grant: Grant, recorded: bool) -> None:
        try:
            self._ender.hang_up(record)
        except Exception:
            # Still running at OpenAI: keep the reservation, and the record if there is one (the sweeper ends it).
            tally(LEASH_FAILURES, stage="abandon")
            logger.exception("could not hang up an unleashed call", extra={"call_id": record.call_id})
            return
        if recorded:
            try:
                self._records.end(record.call_id, by="setup", at=int(self._clock()))
            except ApiError:
                logger.warning("an abandoned call stays recorded as active", extra={"call_id": record.call_id})
        self._limiter.release(grant)

    # --- POST /calls/{call_id}/hangup ------------------------------------------------------------------------------

    def hang_up(self, call_id: str, hangup_token: str | None) -> Answer:
        record = self._records.get(call_id)
        if record is None:
            raise ApiError(404, Code.NOT_FOUND, "No such call.")
        if not hangup_token or not hmac.compare_digest(sha256(hangup_token), record.hangup_token_sha256):
            raise ApiError(403, Code.INVALID_HANGUP_TOKEN, "This hangup token does not belong to this call.")
        logger.append_keys(call_id=call_id)
        credited = 0
        if record.state is CallState.ACTIVE:
            self._ender.hang_up(record)
            now = self._clock()
            if self._records.end(call_id, by="caller", at=int(now)):
                self._leash.stop(call_id)
                # Whole seconds not yet used, rounded down: never more than the call could still have had.
                credited = min(record.reserved_seconds, max(0, math.floor(record.ends_at - now)))
                if not self._limiter.credit(record.day, credited):
                    credited = 0
                tally(CALLS_ENDED, by="caller")
                seconds(CALL_SECONDS_CREDITED, credited)
        return Answer({"call_id": call_id, "state": str(CallState.ENDED), "credited_seconds": credited},
                      {"Cache-Control": "no-store"})
