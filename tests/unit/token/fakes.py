"""In-memory stand-ins for the function's collaborators (Secrets Manager, DynamoDB, Step Functions, OpenAI), for
unit tests of the services: each keeps what it was asked, and fails when told to."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tokenvend.backends import CreatedCall
from tokenvend.call_records import CallRecord, CallState
from tokenvend.call_timer import TimerUnavailable
from tokenvend.errors import ApiError, limiter_unavailable
from tokenvend.limiter import Allowance, Spend
from tokenvend.openai_client import ClientSecret, Timed, UpstreamFailure
from tokenvend.settings import LimitSettings

LIMITS = LimitSettings(anonymous_burst=3, anonymous_rate_per_hour=10, api_key_burst=20, api_key_rate_per_hour=120,
                       global_daily_limit=500, daily_call_seconds=3600, allow_anonymous=True, issuing_paused=False)


@dataclass
class Secrets:
    keys: list[str] = field(default_factory=lambda: ["sk-fake-cached", "sk-fake-rotated"])
    reads: list[str] = field(default_factory=list)

    def openai_key(self) -> str:
        self.reads.append("cached")
        return self.keys[0]

    def refresh_openai_key(self) -> str:
        self.reads.append("refresh")
        self.keys.pop(0)
        return self.keys[0]

    def hash_salt(self) -> bytes:
        return b"a-salt-of-sixteen-or-more"


@dataclass(frozen=True)
class Grant:
    day: str
    spend: Spend
    lane: str = "anonymous"


@dataclass
class Limiter:
    refuse: ApiError | None = None
    limits: LimitSettings = LIMITS
    charged: list[Spend] = field(default_factory=list)
    released: list[tuple[Spend, int, bool]] = field(default_factory=list)  # (spend, seconds kept, slot kept)
    credited: list[tuple[str, int]] = field(default_factory=list)

    def acquire(self, caller: Any, spend: Spend) -> Grant:
        if self.refuse:
            raise self.refuse
        self.charged.append(spend)
        return Grant("2030-05-17", spend)

    def release(self, grant: Grant, *, keep_seconds: int = 0, keep_slot: bool = False) -> int:
        self.released.append((grant.spend, keep_seconds, keep_slot))
        return max(0, grant.spend.amount - keep_seconds)

    def credit(self, day: str, seconds: int, lane: str = "", caller_hash: str = "") -> bool:
        self.credited.append((day, seconds))
        return True

    def lane_share_used(self, lane: str) -> float | None:
        return 0.0

    def refuse_if_blocked(self, caller: Any) -> None:
        return None

    def allowance(self, caller: Any) -> Allowance:
        return Allowance(3, 1, 20)

    @staticmethod
    def allowance_of(grant: Grant) -> Allowance:
        return Allowance(3, 2, 10)


@dataclass
class OpenAI:
    """The client-secrets side of OpenAI."""

    failures: list[UpstreamFailure] = field(default_factory=list)
    calls: list[tuple[str, dict[str, Any], str]] = field(default_factory=list)

    def create_client_secret(self, api_key: str, body: dict[str, Any], safety_identifier: str) -> Timed[ClientSecret]:
        self.calls.append((api_key, body, safety_identifier))
        if self.failures:
            raise self.failures.pop(0)
        return Timed(ClientSecret("ek_fake", 1_900_000_000), 12.5)


@dataclass
class Backend:
    """A voice backend: calls created and hung up, with scripted failures."""

    name: str = "realtime"
    create_failures: list[UpstreamFailure] = field(default_factory=list)
    hangup_failures: list[UpstreamFailure] = field(default_factory=list)
    created: list[tuple[str, str, Any, str]] = field(default_factory=list)
    hung_up: list[str] = field(default_factory=list)
    gone: set[str] = field(default_factory=set)  # calls OpenAI no longer knows (404 on hangup)

    def create_call(self, api_key: str, offer_sdp: str, choice: Any, safety_identifier: str) -> Timed[CreatedCall]:
        self.created.append((api_key, offer_sdp, choice, safety_identifier))
        if self.create_failures:
            raise self.create_failures.pop(0)
        return Timed(CreatedCall(f"rtc_{len(self.created)}", "v=0\r\nanswer\r\n"), 20.0)

    def hang_up(self, api_key: str, call_id: str) -> Timed[bool]:
        if self.hangup_failures:
            raise self.hangup_failures.pop(0)
        self.hung_up.append(call_id)
        live = call_id not in self.gone
        self.gone.add(call_id)
        return Timed(live, 5.0)


@dataclass
class Records:
    items: dict[str, CallRecord] = field(default_factory=dict)
    fail_create: bool = False

    def create(self, record: CallRecord) -> None:
        if self.fail_create:
            raise limiter_unavailable()
        self.items[record.call_id] = record

    def get(self, call_id: str) -> CallRecord | None:
        return self.items.get(call_id)

    def end(self, call_id: str, *, by: str, at: int) -> bool:
        record = self.items[call_id]
        if record.state is CallState.ENDED:
            return False
        self.items[call_id] = record._replace(state=CallState.ENDED, ended_at=at, ended_by=by)
        return True

    def due(self, by: int) -> list[CallRecord]:
        return sorted((r for r in self.items.values() if r.state is CallState.ACTIVE and r.ends_at <= by),
                      key=lambda r: r.ends_at)

    def active(self) -> list[CallRecord]:
        return self.due(2**53)


@dataclass
class CallTimer:
    fail_start: bool = False
    started: list[tuple[str, str, int]] = field(default_factory=list)

    def start(self, call_id: str, backend: str, ends_at: int) -> None:
        if self.fail_start:
            raise TimerUnavailable("ServiceUnavailable")
        self.started.append((call_id, backend, ends_at))


class Clock:
    def __init__(self, now: float = 1_900_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now
