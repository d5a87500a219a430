"""The function's configuration: read from the environment once at start-up, validated, then immutable.

Every variable here is set by template.yaml from a stack parameter. A bad value stops the cold start with a
message naming the variable, rather than surfacing later as a confusing error on some request.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Mapping
from typing import NamedTuple
from urllib.parse import urlsplit

from tokenvend.table import LANES  # the kinds of caller, each with its share of the day

KNOWN_VOICES = ("alloy", "ash", "ballad", "coral", "echo", "sage", "shimmer", "verse", "marin", "cedar")
TURN_DETECTION_TYPES = ("semantic_vad", "server_vad", "none")
NOISE_REDUCTION_TYPES = ("near_field", "far_field", "none")
TOKEN_TTL_RANGE = (10, 600)  # our policy; OpenAI allows up to 7200, but a short TTL is the only lever on reuse
MAX_CALL_SECONDS_RANGE = (10, 3600)  # OpenAI ends a session at 60 minutes anyway
DAILY_CALL_MINUTES_RANGE = (0, 1_000_000)
BURST_RANGE = (1, 10_000)
RATE_PER_HOUR_RANGE = (0.001, 1_000_000)  # above zero: a bucket that never refills would lock a caller out for good
LANE_MINUTES_RANGE = (-1, 1_000_000)  # below 0: automatic
# A caller's automatic share of the day: this many calls of the longest length (15 1/4 minutes at the defaults).
AUTOMATIC_CALLER_CALLS = 3
# How late the leash may hang up after a call's end: the timer's one-second precision, the leash function's start
# and OpenAI's answer. Every call reserves this on top of its maximum length (measured locally: docs/benchmarks.md).
LEASH_SLACK_SECONDS = 5
# The day's lanes: what their MinutesVariables name, and how automatic lanes (-1) share what explicit ones leave of
# the day. Anonymous callers get two parts of it, keys and users one each: the public page is the usual use, and
# whatever the anonymous lane gets, it never takes minutes meant for keys or users (the lanes add up to the day).
LANE_VARIABLES = {"anonymous": "ANONYMOUS_DAILY_CALL_MINUTES", "api_key": "API_KEY_DAILY_CALL_MINUTES",
                  "user": "USER_DAILY_CALL_MINUTES"}
AUTOMATIC_LANE_PARTS = {"anonymous": 2, "api_key": 1, "user": 1}
# The stack parameters behind the lanes' variables, which only the settings can refuse: the owner typed these.
PARAMETER_OF = {"ANONYMOUS_DAILY_CALL_MINUTES": "AnonymousDailyCallMinutes",
                "API_KEY_DAILY_CALL_MINUTES": "ApiKeyDailyCallMinutes",
                "USER_DAILY_CALL_MINUTES": "UserDailyCallMinutes"}
LANE_NAMES = {"anonymous": "anonymous callers", "api_key": "API keys", "user": "signed-in users"}
# Every numeric variable's bounds, inclusive. template.yaml's MinValue/MaxValue for the parameter behind each (all
# but the timeout have one) are the same numbers (tests/unit/token/test_settings.py reads both), so what the deploy
# accepts, a cold start accepts.
RANGES: dict[str, tuple[float, float]] = {
    "OPENAI_TIMEOUT_SECONDS": (0.1, 25),
    "SECRET_CACHE_SECONDS": (0, 3600),
    "MAX_OUTPUT_TOKENS": (1, 4096),
    "REALTIME_CONTEXT_TOKENS": (256, 28_000),
    "TOKEN_TTL_SECONDS": TOKEN_TTL_RANGE,
    "MAX_CALL_SECONDS": MAX_CALL_SECONDS_RANGE,
    "DAILY_CALL_MINUTES": DAILY_CALL_MINUTES_RANGE,
    "ANONYMOUS_BURST": BURST_RANGE,
    "API_KEY_BURST": BURST_RANGE,
    "ANONYMOUS_RATE_PER_HOUR": RATE_PER_HOUR_RANGE,
    "API_KEY_RATE_PER_HOUR": RATE_PER_HOUR_RANGE,
    "GLOBAL_DAILY_LIMIT": (0, 10_000_000),
    "ANONYMOUS_DAILY_CALL_MINUTES": LANE_MINUTES_RANGE,
    "API_KEY_DAILY_CALL_MINUTES": LANE_MINUTES_RANGE,
    "USER_DAILY_CALL_MINUTES": LANE_MINUTES_RANGE,
    "CALLER_DAILY_CALL_MINUTES": LANE_MINUTES_RANGE,
    "USER_BURST": BURST_RANGE,
    "USER_RATE_PER_HOUR": RATE_PER_HOUR_RANGE,
    "CHALLENGE_AFTER_PERCENT": (0, 100),
}
# What CloudFormation takes for a Number parameter: digits with an optional fraction (no exponent, nan or inf).
_NUMBER = re.compile(r"-?(\d+\.?\d*|\.\d+)")
PRESET_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")
VOICE_BACKENDS = ("realtime", "live")
LIVE_MODEL = re.compile(r"^gpt-live-[0-9][a-z0-9.-]{0,30}$")
# What a browser on a GPT-Live call may send and receive over `oai-events`. Talking needs no client event at all
# (audio goes over the media track, and the hangup through our API), so none is allowed: the browser cannot touch
# the session. It receives only what the page renders, and never an event that carries the session resource
# (`session.started` and `session.closed` both do, instructions included): the call's start shows as the channel
# opening, its end as the connection closing.
LIVE_ALLOWED_CLIENT_EVENTS: tuple[str, ...] = ()
LIVE_ALLOWED_SERVER_EVENTS = ("session.input_transcript.delta", "session.output_transcript.delta",
                              "session.usage.updated", "error")

DEFAULT_OPENAI_BASE_URL = "https://api.openai.com/v1"
DEFAULT_TURNSTILE_VERIFY_URL = "https://challenges.cloudflare.com/turnstile/v0/siteverify"
TURNSTILE_ACTION = "call"  # what the page's widget is rendered with, and the verify answer must name
# Realtime's server-side bounds on what one response may cost (README, "The worst case"): at most this many output
# tokens (about 50 s of speech, longer than any answer a voice assistant should give), re-reading at most this many
# conversation tokens after the instructions (about two minutes of spoken dialogue).
DEFAULT_MAX_OUTPUT_TOKENS = 1024
DEFAULT_REALTIME_CONTEXT_TOKENS = 4096
DEFAULT_PRESETS = {"default": "You are a friendly, helpful voice assistant. Keep your answers short."}


class SettingsError(ValueError):
    """A configuration value is missing or invalid; the message names the environment variable."""


class LimitSettings(NamedTuple):
    anonymous_burst: int
    anonymous_rate_per_hour: float
    api_key_burst: int
    api_key_rate_per_hour: float
    global_daily_limit: int
    daily_call_seconds: int
    allow_anonymous: bool
    issuing_paused: bool
    user_burst: int = 5
    user_rate_per_hour: float = 20
    # Each lane's share of the day (seconds of calls, and tokens), keyed by lane; a lane missing here has none.
    # None: no lanes, any caller may take the whole day (how settings made without the template read).
    lane_call_seconds: Mapping[str, int] | None = None
    lane_tokens: Mapping[str, int] | None = None
    caller_daily_call_seconds: int = 900

    def lane_limit(self, call: bool, lane: str) -> int:
        lanes, day = ((self.lane_call_seconds, self.daily_call_seconds) if call
                      else (self.lane_tokens, self.global_daily_limit))
        return day if lanes is None else lanes.get(lane, 0)


class TurnstileSettings(NamedTuple):
    site_key: str
    secret_id: str
    verify_url: str
    challenge_after_percent: float

    @property
    def script_url(self) -> str:
        """Cloudflare serves the widget's script beside siteverify; so does a stand-in."""
        parts = urlsplit(self.verify_url)
        return f"{parts.scheme}://{parts.netloc}/turnstile/v0/api.js"


class JwtSettings(NamedTuple):
    """The signed-in users' issuer: API Gateway checks their tokens (the audience too, which the function never
    needs: the template's Rules pair the two); the function checks the issuer once more."""

    issuer: str


class Settings(NamedTuple):
    openai_base_url: str
    openai_timeout_seconds: float
    openai_secret_id: str
    hash_salt_secret_id: str
    table_name: str
    secret_cache_seconds: int
    model: str
    voices: tuple[str, ...]
    default_voice: str
    presets: Mapping[str, str]
    default_preset: str
    transcription_model: str | None
    turn_detection: str | None
    noise_reduction: str | None
    max_output_tokens: int | None  # None: "inf", which the owner must choose explicitly
    realtime_context_tokens: int
    realtime_data_channel: bool
    token_ttl_seconds: int
    max_call_seconds: int
    enable_token_route: bool
    voice_backend: str  # "realtime" or "live"
    live_model: str
    state_machine_arn: str | None  # the leash; the leash function itself has none (it is what the machine runs)
    allowed_origins: tuple[str, ...]
    limits: LimitSettings
    jwt: JwtSettings | None = None  # None: no signed-in lane, POST /user/calls answers 404
    turnstile: TurnstileSettings | None = None  # None: no human check

    @property
    def call_model(self) -> str:
        """The model calls run on: the Realtime model, or the GPT-Live model on the live backend."""
        return self.live_model if self.voice_backend == "live" else self.model

    @property
    def data_channel(self) -> bool:
        """Whether a caller's offer may carry the `oai-events` data channel: always on GPT-Live, whose channel is
        allow-listed (the browser may send nothing); on Realtime only when the owner lets callers rewrite the
        session."""
        return self.voice_backend == "live" or self.realtime_data_channel

    @property
    def realtime_url(self) -> str:
        """Where a client posts its SDP offer: derived from the base URL so a local peer works unchanged."""
        return f"{self.openai_base_url}/realtime/calls"

    @property
    def client_secrets_url(self) -> str:
        return f"{self.openai_base_url}/realtime/client_secrets"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        return _parse(_Env(os.environ if env is None else env))


class _Env:
    def __init__(self, env: Mapping[str, str]) -> None:
        self._env = env

    def str(self, name: str, default: str | None = None) -> str:
        value = self._env.get(name, "").strip()
        if value:
            return value
        if default is None:
            raise SettingsError(f"{name} must be set")
        return default

    def optional(self, name: str) -> str | None:
        return self._env.get(name, "").strip() or None

    def int(self, name: str, default: int) -> int:
        """A whole number. A Number stack parameter may also be a fraction (CloudFormation takes 10.5): it is
        rounded down, toward less time and fewer calls, after the range check (whose ends are whole, so the
        result stays inside)."""
        return math.floor(self.float(name, default))

    def float(self, name: str, default: float) -> float:
        low, high = RANGES[name]
        raw = self.str(name, str(default))
        if _NUMBER.fullmatch(raw) is None:
            raise SettingsError(f"{name} must be a number, got {raw!r}")
        value = float(raw)
        if not low <= value <= high:
            raise SettingsError(f"{name} must be between {_plain(low)} and {_plain(high)}, got {raw}")
        return value

    def bool(self, name: str, default: bool) -> bool:
        raw = self.str(name, "true" if default else "false").lower()
        if raw in ("true", "1", "yes"):
            return True
        if raw in ("false", "0", "no"):
            return False
        raise SettingsError(f"{name} must be true or false, got {raw!r}")

    def choice(self, name: str, default: str, choices: tuple[str, ...]) -> str:
        value = self.str(name, default)
        if value not in choices:
            raise SettingsError(f"{name} must be one of {', '.join(choices)}, got {value!r}")
        return value

    def pattern(self, name: str, default: str, pattern: re.Pattern[str]) -> str:
        value = self.str(name, default)
        if not pattern.match(value):
            raise SettingsError(f"{name} must match {pattern.pattern}, got {value!r}")
        return value

    def csv(self, name: str, default: str) -> tuple[str, ...]:
        items = tuple(dict.fromkeys(part.strip() for part in self.str(name, default).split(",") if part.strip()))
        if not items:
            raise SettingsError(f"{name} must list at least one value")
        return items


def _parse(env: _Env) -> Settings:
    voices = env.csv("ALLOWED_VOICES", "marin,cedar")
    unknown = [v for v in voices if v not in KNOWN_VOICES]
    if unknown:
        raise SettingsError(f"ALLOWED_VOICES has unknown voices {unknown}; known: {', '.join(KNOWN_VOICES)}")
    default_voice = env.str("DEFAULT_VOICE", voices[0])
    if default_voice not in voices:
        raise SettingsError(f"DEFAULT_VOICE {default_voice!r} must be one of ALLOWED_VOICES")

    presets = _parse_presets(env.str("INSTRUCTION_PRESETS", json.dumps(DEFAULT_PRESETS)))
    default_preset = env.str("DEFAULT_PRESET", next(iter(presets)))
    if default_preset not in presets:
        raise SettingsError(f"DEFAULT_PRESET {default_preset!r} must be a key of INSTRUCTION_PRESETS")

    transcription = env.str("TRANSCRIPTION_MODEL", "gpt-4o-mini-transcribe")
    turn_detection = env.choice("TURN_DETECTION", "semantic_vad", TURN_DETECTION_TYPES)
    noise_reduction = env.choice("NOISE_REDUCTION", "near_field", NOISE_REDUCTION_TYPES)
    max_output = env.str("MAX_OUTPUT_TOKENS", str(DEFAULT_MAX_OUTPUT_TOKENS))
    jwt = _parse_jwt(env)
    return Settings(
        openai_base_url=_parse_base_url(env.str("OPENAI_BASE_URL", DEFAULT_OPENAI_BASE_URL)),
        openai_timeout_seconds=env.float("OPENAI_TIMEOUT_SECONDS", 10),
        openai_secret_id=env.str("OPENAI_SECRET_ARN"),
        hash_salt_secret_id=env.str("HASH_SALT_SECRET_ARN"),
        table_name=env.str("TABLE_NAME"),
        secret_cache_seconds=env.int("SECRET_CACHE_SECONDS", 300),
        model=env.str("REALTIME_MODEL", "gpt-realtime-2.1"),
        voices=voices,
        default_voice=default_voice,
        presets=presets,
        default_preset=default_preset,
        transcription_model=None if transcription == "none" else transcription,
        turn_detection=None if turn_detection == "none" else turn_detection,
        noise_reduction=None if noise_reduction == "none" else noise_reduction,
        max_output_tokens=None if max_output == "inf" else env.int("MAX_OUTPUT_TOKENS", DEFAULT_MAX_OUTPUT_TOKENS),
        realtime_context_tokens=env.int("REALTIME_CONTEXT_TOKENS", DEFAULT_REALTIME_CONTEXT_TOKENS),
        realtime_data_channel=env.bool("REALTIME_DATA_CHANNEL", False),
        token_ttl_seconds=env.int("TOKEN_TTL_SECONDS", 60),
        max_call_seconds=env.int("MAX_CALL_SECONDS", 300),
        enable_token_route=env.bool("ENABLE_TOKEN_ROUTE", False),
        voice_backend=env.choice("VOICE_BACKEND", "live", VOICE_BACKENDS),
        live_model=env.pattern("LIVE_MODEL", "gpt-live-1.1", LIVE_MODEL),
        state_machine_arn=env.optional("STATE_MACHINE_ARN"),
        allowed_origins=_parse_origins(env.str("ALLOWED_ORIGINS", "none")),
        limits=_parse_limits(env, jwt is not None),
        jwt=jwt,
        turnstile=_parse_turnstile(env),
    )


def _parse_limits(env: _Env, user_lane: bool) -> LimitSettings:
    day = math.floor(60 * env.float("DAILY_CALL_MINUTES", 60))
    allow_anonymous = env.bool("ALLOW_ANONYMOUS", True)
    in_use = {"anonymous": allow_anonymous, "api_key": True, "user": user_lane}
    lanes = _parse_lanes(env, day, in_use)
    tokens = env.int("GLOBAL_DAILY_LIMIT", 500)
    max_call = env.int("MAX_CALL_SECONDS", 300)
    one_call = max_call + LEASH_SLACK_SECONDS
    caller_minutes = env.float("CALLER_DAILY_CALL_MINUTES", -1)
    caller = AUTOMATIC_CALLER_CALLS * one_call if caller_minutes < 0 else math.floor(60 * caller_minutes)
    if caller < one_call:
        raise SettingsError(f"CALLER_DAILY_CALL_MINUTES (the stack's CallerDailyCallMinutes, "
                            f"{_plain(caller_minutes)}) holds no call: one reserves MaxCallSeconds + "
                            f"{LEASH_SLACK_SECONDS} s = {one_call} s")
    return LimitSettings(
        anonymous_burst=env.int("ANONYMOUS_BURST", 3),
        anonymous_rate_per_hour=env.float("ANONYMOUS_RATE_PER_HOUR", 10),
        api_key_burst=env.int("API_KEY_BURST", 20),
        api_key_rate_per_hour=env.float("API_KEY_RATE_PER_HOUR", 120),
        global_daily_limit=tokens,
        daily_call_seconds=day,
        allow_anonymous=allow_anonymous,
        issuing_paused=env.bool("ISSUING_PAUSED", False),
        user_burst=env.int("USER_BURST", 5),
        user_rate_per_hour=env.float("USER_RATE_PER_HOUR", 20),
        lane_call_seconds=lanes,
        # Tokens follow the lanes in the same proportions of the day.
        lane_tokens={lane: math.floor(tokens * share) for lane, share in _shares(lanes, day, in_use).items()},
        caller_daily_call_seconds=caller,
    )


def _parse_lanes(env: _Env, day: int, in_use: Mapping[str, bool]) -> dict[str, int]:
    """Each lane's seconds: explicit ones as given (never more than the day), automatic ones (-1) sharing what the
    explicit ones leave, by AUTOMATIC_LANE_PARTS, among the lanes that can have callers."""
    explicit: dict[str, int] = {}
    for lane, name in LANE_VARIABLES.items():
        minutes = env.float(name, -1)
        if minutes < 0:
            continue
        explicit[lane] = math.floor(60 * minutes)
        if explicit[lane] > day:
            raise SettingsError(f"{name} (the stack's {PARAMETER_OF[name]}, {_plain(minutes)}) is larger than "
                                f"the day: DailyCallMinutes is {_plain(day / 60)}, and no lane can have more than all "
                                "of it")
    left = max(0, day - sum(explicit.values()))
    automatic = [lane for lane in LANES if lane not in explicit and in_use[lane]]
    parts = sum(AUTOMATIC_LANE_PARTS[lane] for lane in automatic)
    return {lane: explicit.get(lane, left * AUTOMATIC_LANE_PARTS[lane] // parts if lane in automatic else 0)
            for lane in LANES}


def _shares(lanes: Mapping[str, int], day: int, in_use: Mapping[str, bool]) -> dict[str, float]:
    if day > 0:
        return {lane: seconds / day for lane, seconds in lanes.items()}
    parts = sum(AUTOMATIC_LANE_PARTS[lane] for lane in LANES if in_use[lane])
    return {lane: AUTOMATIC_LANE_PARTS[lane] / parts if in_use[lane] else 0 for lane in LANES}


def _parse_jwt(env: _Env) -> JwtSettings | None:
    issuer = env.optional("JWT_ISSUER")
    if issuer is None:
        return None
    parts = urlsplit(issuer)
    if parts.scheme not in ("https", "http") or not parts.netloc or parts.query or parts.fragment:
        raise SettingsError(f"JWT_ISSUER must be an https URL (the tokens' iss), got {issuer!r}")
    return JwtSettings(issuer)


def _parse_turnstile(env: _Env) -> TurnstileSettings | None:
    # Checked even when unused: a typo is a typo.
    challenge_after = env.float("CHALLENGE_AFTER_PERCENT", 0)
    verify_url = env.str("TURNSTILE_VERIFY_URL", DEFAULT_TURNSTILE_VERIFY_URL)
    parts = urlsplit(verify_url)
    if parts.scheme not in ("https", "http") or not parts.netloc or parts.query or parts.fragment:
        raise SettingsError(f"TURNSTILE_VERIFY_URL must be an http(s) URL, got {verify_url!r}")
    site_key, secret = env.optional("TURNSTILE_SITE_KEY"), env.optional("TURNSTILE_SECRET_ARN")
    if site_key is None and secret is None:
        return None
    if site_key is None or secret is None:
        raise SettingsError("TURNSTILE_SITE_KEY and TURNSTILE_SECRET_ARN go together: set both, or neither")
    return TurnstileSettings(site_key, secret, verify_url, challenge_after)


def _parse_base_url(raw: str) -> str:
    parts = urlsplit(raw)
    if parts.scheme not in ("https", "http") or not parts.netloc or parts.query or parts.fragment:
        raise SettingsError(f"OPENAI_BASE_URL must be an http(s) URL without query, got {raw!r}")
    return raw.rstrip("/")


def _parse_presets(raw: str) -> dict[str, str]:
    try:
        presets = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise SettingsError(f"INSTRUCTION_PRESETS must be a JSON object of name -> instructions: {exc}") from None
    if not isinstance(presets, dict) or not presets:
        raise SettingsError("INSTRUCTION_PRESETS must be a non-empty JSON object of name -> instructions")
    for name, text in presets.items():
        if not PRESET_NAME.match(name):
            raise SettingsError(f"INSTRUCTION_PRESETS name {name!r} must match {PRESET_NAME.pattern}")
        if not isinstance(text, str) or not text.strip():
            raise SettingsError(f"INSTRUCTION_PRESETS[{name!r}] must be non-empty text")
    return presets


def _parse_origins(raw: str) -> tuple[str, ...]:
    """`none` (or nothing) means no browser origin is allowed: API-only use. `*` is refused: it would defeat
    the check. The template appends the site's CloudFront origin to the owner's list, so `none` may sit
    beside real origins."""
    parts = (o.strip().rstrip("/") for o in raw.split(","))
    origins = tuple(dict.fromkeys(o for o in parts if o and o.lower() != "none"))
    for origin in origins:
        parts = urlsplit(origin)
        if origin == "*" or parts.scheme not in ("https", "http") or not parts.netloc or parts.path:
            raise SettingsError(f"ALLOWED_ORIGINS entries must be origins like https://example.com, got {origin!r}")
    return origins


class LeashSettings(NamedTuple):
    """The leash function's configuration: only what hanging up a call needs."""

    openai_base_url: str
    openai_timeout_seconds: float
    openai_secret_id: str
    table_name: str
    secret_cache_seconds: int

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> LeashSettings:
        e = _Env(os.environ if env is None else env)
        return cls(
            openai_base_url=_parse_base_url(e.str("OPENAI_BASE_URL", DEFAULT_OPENAI_BASE_URL)),
            openai_timeout_seconds=e.float("OPENAI_TIMEOUT_SECONDS", 10),
            openai_secret_id=e.str("OPENAI_SECRET_ARN"),
            table_name=e.str("TABLE_NAME"),
            secret_cache_seconds=e.int("SECRET_CACHE_SECONDS", 300),
        )


def _plain(bound: float) -> str:
    return str(int(bound)) if bound == int(bound) else str(bound)
