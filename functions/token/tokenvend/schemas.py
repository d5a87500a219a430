"""The HTTP API's request and response models. They drive validation and the generated OpenAPI description.

Request models check shape and types only. The token request's `voice` and `preset` are documented as enums of the
owner's lists, so the description tells a client exactly what it may send; whether a value is in the policy is
checked in one place, `SessionPolicy.choose`.

The response models only describe answers (for /openapi.json), so their schemas are built on first use, not at
import: a cold start does not pay for them.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model

from tokenvend.settings import Settings


class _Described(BaseModel):
    model_config = ConfigDict(defer_build=True)


class ErrorDetail(_Described):
    code: str = Field(description="Stable machine-readable code, e.g. `rate_limited`")
    message: str = Field(description="Human-readable explanation, safe to show")


class ErrorBody(_Described):
    error: ErrorDetail


class SessionSummary(_Described):
    model: str
    voice: str
    preset: str


class TokenResponse(_Described):
    token: str = Field(description="OpenAI ephemeral client secret (`ek_...`); send it as the Bearer of the SDP POST")
    expires_at: int = Field(description="Unix seconds after which the token can start no new session")
    realtime_url: str = Field(description="Where to POST the SDP offer (Content-Type: application/sdp)")
    session: SessionSummary


class CallResponse(_Described):
    call_id: str = Field(description="OpenAI's id of the call (`rtc_...`, or `live_...` on GPT-Live)")
    sdp: str = Field(description="The SDP answer: hand it to `setRemoteDescription`")
    ends_at: int = Field(description="Unix seconds at which the server hangs the call up")
    max_seconds: int = Field(description="The call's time limit in seconds")
    hangup_token: str = Field(description="Send it to `POST /calls/{call_id}/hangup` to end the call early and "
                              "give its unused minutes back. Given once; keep it private.")
    session: SessionSummary


class HangupResponse(_Described):
    call_id: str
    state: Literal["ended"]
    credited_seconds: int = Field(description="Seconds given back to today's budget (0 if it had already ended)")


class AnonymousAllowance(_Described):
    enabled: bool
    burst: int = Field(description="Tokens an anonymous caller may take at once")
    rate_per_hour: float = Field(description="Tokens per hour an anonymous caller earns back")
    global_daily_limit: int = Field(description="Tokens per UTC day across all callers")


class Options(_Described):
    backend: Literal["realtime", "live"] = Field(description="Which OpenAI API calls go to: the Realtime API or "
                                                 "GPT-Live")
    max_call_seconds: int = Field(description="Every call is hung up by the server after this many seconds")
    token_route: bool = Field(description="Whether `POST /token` is switched on for clients that must hold a token")
    model: str
    voices: list[str]
    default_voice: str
    presets: list[str]
    default_preset: str
    token_ttl_seconds: int
    transcription: bool = Field(description="Whether the session transcribes what the user says")
    realtime_url: str
    anonymous: AnonymousAllowance


class Health(_Described):
    status: Literal["ok"]


# What `calls.check_offer` requires (and checks, in that one place), said in the description: `v=0` first, an
# `m=audio` line. Whether OpenAI can use the offer (ICE, DTLS, codecs) no schema can say; a 400 names `sdp` then.
OFFER_PATTERN = r"^[ \t\r\n]*v=0[ \t]*\r?\n([\s\S]*\n)?m=audio "


def _choice_fields(settings: Settings) -> dict[str, Any]:
    return {
        "voice": (str | None, Field(default=None, description=f"Default: {settings.default_voice}",
                                    json_schema_extra={"enum": [*settings.voices, None]})),
        "preset": (str | None, Field(default=None, description=f"Default: {settings.default_preset}",
                                     json_schema_extra={"enum": [*settings.presets, None]})),
    }


def token_request_model(settings: Settings) -> type[BaseModel]:
    return create_model("TokenRequest", __config__=ConfigDict(extra="forbid", strict=True),
                        **_choice_fields(settings))


def call_request_model(settings: Settings) -> type[BaseModel]:
    return create_model(
        "CallRequest",
        __config__=ConfigDict(extra="forbid", strict=True),
        sdp=(str, Field(description="The browser's WebRTC SDP offer (with an audio section and the `oai-events` "
                        "data channel)", json_schema_extra={"pattern": OFFER_PATTERN})),
        **_choice_fields(settings),
    )


class HangupRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, defer_build=True)

    hangup_token: str | None = Field(default=None, description="The `hangup_token` of the call's setup answer")
