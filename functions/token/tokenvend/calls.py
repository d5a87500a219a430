"""Calls set up by the server (`POST /calls`) and hung up early by their caller (`POST /calls/{id}/hangup`).

Setting up reads top-down in `CallDesk.start`: check the request (a bad one charges nothing), identify the caller
(an address, an API key, or a signed-in user whose token API Gateway checked), ask an anonymous caller for the
human check when the owner wants one (a refusal charges nothing), read the key (a misconfigured stack charges
nobody), charge the caller, its lane and the day, create the call at OpenAI, record it and start its timer, answer.
Once charged, every way out is decided in one place each:
- OpenAI created nothing (it refused, or the request never went out): the charge is given back, all of it; but an
  offer OpenAI refused keeps the caller's slot spent and is counted (`OffersRejected`), so that sending OpenAI bad
  offers costs an attacker as much as calls do.
- OpenAI may have created a call we cannot name (a timeout, a lost connection, an answer we cannot read, anything
  unexpected): the day keeps what such a call can cost (GPT-Live bills 15 s for a session that never connects), and
  the caller keeps the slot spent.
- The call exists but could not be given its record and timer: it is hung up at once and the charge given back but
  what OpenAI bills; if it cannot be hung up, everything stays charged and the timer or the sweeper ends it.
There is never a call without a leash, and nothing charged that is not given back or used.

Hanging up early: only with the call's hangup token (a random secret returned once, stored hashed). The call is
hung up at OpenAI first (on GPT-Live, confirmed) and marked ended only then, so a failure leaves its leash in place;
the one request that marks it ended credits the unused seconds back to the day it was paid from. The call's timer is
never stopped: at the call's end it hangs up once more, whatever the record says.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import re
import secrets
import time
from collections.abc import Callable
from typing import NamedTuple

from tokenvend.admission import Admission, RequestFacts
from tokenvend.backends import MINIMUM_BILLED_SECONDS, CreatedCall, VoiceBackend
from tokenvend.call_ending import CallEnder
from tokenvend.call_records import CallRecord, CallRecords, CallState
from tokenvend.call_timer import CallTimer
from tokenvend.caller import Caller
from tokenvend.errors import ApiError, Code, invalid_request
from tokenvend.human_check import HumanCheck
from tokenvend.limiter import Grant, Limiter, Spend
from tokenvend.metric_names import (
    CALL_SECONDS_CREDITED,
    CALL_SECONDS_RESERVED,
    CALLS_STARTED,
    LANE_SECONDS_RESERVED,
    LEASH_FAILURES,
    OFFERS_REJECTED,
    seconds,
    tally,
)
from tokenvend.observability import logger
from tokenvend.offer_policy import check_offer
from tokenvend.openai_client import FailureKind, UpstreamFailure
from tokenvend.policy import SessionChoice, SessionPolicy
from tokenvend.secret_store import SecretStore
from tokenvend.settings import LEASH_SLACK_SECONDS
from tokenvend.upstream import as_api_error, with_key_refresh
from tokenvend.vending import Answer

__all__ = ["LEASH_SLACK_SECONDS", "CallDesk"]
LEASH_RETRY_AFTER_SECONDS = 5
# What the call ids OpenAI gives look like; anything else is no call of ours, answered without a read.
CALL_ID = re.compile(r"^(rtc|live)_[A-Za-z0-9_-]{1,128}$")
HANGUP_TOKEN_BYTES = 32
HANGUP_TOKEN = re.compile(r"^[A-Za-z0-9_-]{43}$")  # secrets.token_urlsafe(32)


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


class _Settlement(NamedTuple):
    """How a failure after the charge is settled: what the day keeps, and whether the caller keeps the slot spent."""

    keep_seconds: int
    keep_slot: bool


class CallDesk:
    def __init__(self, policy: SessionPolicy, admission: Admission, limiter: Limiter, secrets_store: SecretStore,
                 backend: VoiceBackend, records: CallRecords, timer: CallTimer, ender: CallEnder,
                 human_check: HumanCheck, *, max_call_seconds: int, data_channel: bool,
                 clock: Callable[[], float] = time.time) -> None:
        self._policy = policy
        self._admission = admission
        self._limiter = limiter
        self._secrets = secrets_store
        self._backend = backend
        self._records = records
        self._timer = timer
        self._ender = ender
        self._human_check = human_check
        self._max_seconds = max_call_seconds
        self._data_channel = data_channel
        self._spend = Spend.call(limiter.limits, max_call_seconds + LEASH_SLACK_SECONDS)
        self._minimum_seconds = MINIMUM_BILLED_SECONDS[backend.name]
        self._clock = clock

    # --- POST /calls ---------------------------------------------------------------------------------------------

    def start(self, facts: RequestFacts, offer_sdp: str, voice: str | None, preset: str | None,
              turnstile_token: str | None = None) -> Answer:
        choice = self._policy.choose(voice, preset)
        check_offer(offer_sdp, data_channel=self._data_channel)
        caller = self._admission.identify(facts)
        with self._admission.allowance_on_error(caller):
            self._human_check.require(caller, turnstile_token, facts.source_ip)
            api_key = self._secrets.openai_key()
            grant = self._charge(caller)
            created = self._create(grant, api_key, offer_sdp, choice, caller)
            record, hangup_token = self._leash(created, grant, caller)
        tally(CALLS_STARTED, caller_kind=str(caller.kind), backend=self._backend.name)
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

    def _charge(self, caller: Caller) -> Grant:
        grant = self._limiter.acquire(caller, self._spend)
        seconds(CALL_SECONDS_RESERVED, grant.spend.amount)  # now, so that the spend alarm sees every charge
        seconds(LANE_SECONDS_RESERVED, grant.spend.amount, lane=grant.lane)
        return grant

    def _create(self, grant: Grant, api_key: str, offer_sdp: str, choice: SessionChoice,
                caller: Caller) -> CreatedCall:
        try:
            timed = with_key_refresh(self._secrets, api_key, lambda key: self._backend.create_call(
                key, offer_sdp, choice, caller.hash))
        except UpstreamFailure as failure:
            self._give_back(grant, self._settle(failure))
            if _refused_offer(failure):
                tally(OFFERS_REJECTED)
                logger.info("OpenAI refused the offer", extra={"upstream": failure.detail})
                raise invalid_request("sdp: OpenAI could not use this offer.") from None
            raise as_api_error(failure) from None
        except Exception:
            # Anything unexpected: whether the request went out is unknown, so settle as if a call may exist.
            self._give_back(grant, _Settlement(self._minimum_seconds, keep_slot=True))
            raise
        return timed.value

    def _settle(self, failure: UpstreamFailure) -> _Settlement:
        if failure.may_have_acted:
            return _Settlement(self._minimum_seconds, keep_slot=True)
        return _Settlement(0, keep_slot=_refused_offer(failure))

    def _leash(self, created: CreatedCall, grant: Grant, caller: Caller) -> tuple[CallRecord, str]:
        """The call's record and its timer; a call that cannot have both is ended at once and refused."""
        call_id = created.call_id
        started_at = self._clock()
        # Rounded up: the timer has one-second precision, and a call must never be cut short of its limit.
        ends_at = math.ceil(started_at + self._max_seconds)
        recorded = timed = False
        try:
            hangup_token = secrets.token_urlsafe(HANGUP_TOKEN_BYTES)
            record = CallRecord(call_id=call_id, caller=caller.hash, backend=self._backend.name,
                                started_at=int(started_at), ends_at=ends_at, reserved_seconds=grant.spend.amount,
                                day=grant.day, hangup_token_sha256=sha256(hangup_token), lane=grant.lane)
            self._records.create(record)
            recorded = True
        except Exception as exc:
            logger.error("the call could not be recorded", extra={"error": type(exc).__name__})
        try:
            # Started even without a record: the timer carries the backend, so it can still hang the call up.
            self._timer.start(call_id, self._backend.name, ends_at)
            timed = True
        except Exception as exc:
            logger.error("the call's timer could not be started", extra={"error": type(exc).__name__})
        if recorded and timed:
            return record, hangup_token
        tally(LEASH_FAILURES, stage="start")
        self._abandon(call_id, grant, recorded)
        raise ApiError(503, Code.LEASH_UNAVAILABLE,
                       "The call could not be given its time limit, so it was ended; try again shortly.",
                       {"Retry-After": str(LEASH_RETRY_AFTER_SECONDS)})

    def _abandon(self, call_id: str, grant: Grant, recorded: bool) -> None:
        try:
            self._ender.hang_up(self._backend.name, call_id)
        except Exception:
            # Still running at OpenAI: keep the charge, and the record and timer if there are any (they end it).
            tally(LEASH_FAILURES, stage="abandon")
            logger.exception("could not hang up an unleashed call", extra={"call_id": call_id})
            return
        if recorded:
            try:
                self._records.end(call_id, by="setup", at=int(self._clock()))
            except ApiError:
                logger.warning("an abandoned call stays recorded as active", extra={"call_id": call_id})
        self._give_back(grant, _Settlement(self._minimum_seconds, keep_slot=False))

    def _give_back(self, grant: Grant, settlement: _Settlement) -> None:
        given = self._limiter.release(grant, keep_seconds=settlement.keep_seconds, keep_slot=settlement.keep_slot)
        if given:
            seconds(CALL_SECONDS_CREDITED, given)

    # --- POST /calls/{call_id}/hangup ------------------------------------------------------------------------------

    def hang_up(self, call_id: str, hangup_token: str | None) -> Answer:
        if not CALL_ID.fullmatch(call_id):
            raise ApiError(404, Code.NOT_FOUND, "No such call.")
        if hangup_token and not HANGUP_TOKEN.fullmatch(hangup_token):
            raise invalid_request("hangup_token: must be the 43-character hangup_token of the call's setup answer")
        record = self._records.get(call_id)
        if record is None:
            raise ApiError(404, Code.NOT_FOUND, "No such call.")
        if not hangup_token or not hmac.compare_digest(sha256(hangup_token), record.hangup_token_sha256):
            raise ApiError(403, Code.INVALID_HANGUP_TOKEN, "This hangup token does not belong to this call.")
        logger.append_keys(call_id=call_id)
        credited = 0
        if record.state is CallState.ACTIVE:
            ending = self._ender.end(record, by="caller")
            if ending.marked:
                credited = self._unused_seconds(record)
                # A record from before lanes has no lane and no caller's day to give back to: the day alone.
                if not self._limiter.credit(record.day, credited, record.lane,
                                            record.caller if record.lane else ""):
                    credited = 0
                seconds(CALL_SECONDS_CREDITED, credited)
        return Answer({"call_id": call_id, "state": str(CallState.ENDED), "credited_seconds": credited},
                      {"Cache-Control": "no-store"})

    def _unused_seconds(self, record: CallRecord) -> int:
        """Whole seconds the call could still have had, rounded down; never what OpenAI bills a call however short
        (GPT-Live's 15 s), so the day's counter keeps at least what the call cost."""
        left = math.floor(record.ends_at - self._clock())
        most = record.reserved_seconds - LEASH_SLACK_SECONDS - MINIMUM_BILLED_SECONDS.get(record.backend, 0)
        return max(0, min(left, most))


def _refused_offer(failure: UpstreamFailure) -> bool:
    """OpenAI refused the request but not our session: the caller's offer is what it could not use."""
    return failure.kind is FailureKind.REJECTED and not (failure.param or "").startswith("session")

