"""The HTTP API's request and response shapes, as plain data: `bodies` parses requests with the request specs, and
`openapi` writes all of them into the OpenAPI document (as JSON Schema, the way pydantic used to).

Request specs check shape and types only. `voice` and `preset` are documented as enums of the owner's lists (filled
in from the settings when the document is served), so the description tells a client exactly what it may send;
whether a value is in the policy is checked in one place, `SessionPolicy.choose`. No pydantic at run time: this
module is data, and costs a cold start nothing worth measuring.
"""

from __future__ import annotations

from typing import Any, NamedTuple

# Part of what `offer_policy.check_offer` requires (and checks, in that one place), said in the description: `v=0`
# first, an `m=audio` line. The rest (printable ASCII, the ICE and DTLS attributes, the media sections the owner
# allows) is in the field's description; whether OpenAI can use the offer no schema can say: a 400 names `sdp` then.
OFFER_PATTERN = r"^v=0\r?\n([\s\S]*\n)?m=audio "


class StringField(NamedTuple):
    """A string member of a request body. `null` (and absence) means "use the default" unless `required`."""

    name: str
    description: str = ""
    required: bool = False
    pattern: str | None = None
    choices: str | None = None  # "voices" or "presets": the owner's list, documented as the field's enum


class BodySpec(NamedTuple):
    """A JSON object body: its members in the order their errors are reported, and whether it may be absent."""

    name: str
    fields: tuple[StringField, ...]
    optional: bool

    def field(self, name: str) -> StringField | None:
        return next((f for f in self.fields if f.name == name), None)


VOICE = StringField("voice", choices="voices")
PRESET = StringField("preset", choices="presets")
TOKEN_REQUEST = BodySpec("TokenRequest", (VOICE, PRESET), optional=True)
CALL_REQUEST = BodySpec("CallRequest", (
    StringField("sdp", "The browser's WebRTC SDP offer: printable ASCII lines (CRLF or LF), `v=0` first, at most "
                "12 KB and 4 media sections, with `a=ice-ufrag`, `a=ice-pwd`, `a=fingerprint` and `a=setup`; exactly "
                "one active audio section, plus the `oai-events` data channel (`m=application`) only where "
                "`GET /options` says `data_channel: true`",
                required=True, pattern=OFFER_PATTERN),
    VOICE, PRESET,
    # No pattern here: a token that is not Turnstile's is the human check's 403, not a malformed request's 400.
    StringField("turnstile_token", "The Cloudflare Turnstile widget's token (single use, at most 2048 characters): "
                "required from anonymous callers where `GET /options` names `turnstile`")), optional=False)
HANGUP_REQUEST = BodySpec("HangupRequest", (
    StringField("hangup_token", "The `hangup_token` of the call's setup answer (43 characters of base64url)",
                pattern=r"^[A-Za-z0-9_-]{43}$"),), optional=True)
REQUESTS = (TOKEN_REQUEST, CALL_REQUEST, HANGUP_REQUEST)


# --- responses: described only (for /openapi.json), as JSON Schema --------------------------------------------

def _p(kind: str, description: str = "", **extra: Any) -> dict[str, Any]:
    return {"type": kind, **extra, **({"description": description} if description else {})}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


RESPONSES: dict[str, dict[str, Any]] = {
    "ErrorDetail": {
        "code": _p("string", "Stable machine-readable code, e.g. `rate_limited`"),
        "message": _p("string", "Human-readable explanation, safe to show"),
    },
    "ErrorBody": {"error": _ref("ErrorDetail")},
    "SessionSummary": {"model": _p("string"), "voice": _p("string"), "preset": _p("string")},
    "TokenResponse": {
        "token": _p("string", "OpenAI ephemeral client secret (`ek_...`); send it as the Bearer of the SDP POST"),
        "expires_at": _p("integer", "Unix seconds after which the token can start no new session"),
        "realtime_url": _p("string", "Where to POST the SDP offer (Content-Type: application/sdp)"),
        "session": _ref("SessionSummary"),
    },
    "CallResponse": {
        "call_id": _p("string", "OpenAI's id of the call (`rtc_...`, or `live_...` on GPT-Live)"),
        "sdp": _p("string", "The SDP answer: hand it to `setRemoteDescription`"),
        "ends_at": _p("integer", "Unix seconds at which the server hangs the call up"),
        "max_seconds": _p("integer", "The call's time limit in seconds"),
        "hangup_token": _p("string", "Send it to `POST /calls/{call_id}/hangup` to end the call early and give its "
                           "unused minutes back. Given once; keep it private."),
        "session": _ref("SessionSummary"),
    },
    "HangupResponse": {
        "call_id": _p("string"),
        "state": _p("string", const="ended"),
        "credited_seconds": _p("integer", "Seconds given back to today's budget (0 if it had already ended)"),
    },
    "AnonymousAllowance": {
        "enabled": _p("boolean"),
        "burst": _p("integer", "Tokens an anonymous caller may take at once"),
        "rate_per_hour": _p("number", "Tokens per hour an anonymous caller earns back"),
        "global_daily_limit": _p("integer", "Tokens per UTC day across all callers"),
    },
    "Options": {
        "backend": _p("string", "Which OpenAI API calls go to: the Realtime API or GPT-Live",
                      enum=["realtime", "live"]),
        "max_call_seconds": _p("integer", "Every call is hung up by the server after this many seconds"),
        "data_channel": _p("boolean", "Whether an offer may carry the `oai-events` data channel. When false, offer "
                           "exactly one audio section and nothing else (no data channel): any other offer is a 400"),
        "token_route": _p("boolean", "Whether `POST /token` is switched on for clients that must hold a token"),
        "model": _p("string"),
        "voices": _p("array", items={"type": "string"}),
        "default_voice": _p("string"),
        "presets": _p("array", items={"type": "string"}),
        "default_preset": _p("string"),
        "token_ttl_seconds": _p("integer"),
        "transcription": _p("boolean", "Whether the session transcribes what the user says"),
        "realtime_url": _p("string"),
        "anonymous": _ref("AnonymousAllowance"),
        "user_calls": _p("boolean", "Whether signed-in users may call `POST /user/calls` with their identity "
                         "provider's token (the owner set `JwtIssuer`)"),
        "turnstile": {"anyOf": [_ref("Turnstile"), {"type": "null"}],
                      "description": "The human check anonymous callers pass, or null when there is none"},
        "daily_minutes": _ref("DailyMinutes"),
    },
    "Turnstile": {
        "site_key": _p("string", "Render Cloudflare Turnstile's widget with this site key"),
        "script_url": _p("string", "The widget's script"),
        "action": _p("string", "The widget's action; a token made for another is refused"),
    },
    "DailyMinutes": {
        "total": _p("number", "Call minutes per UTC day across all callers"),
        "anonymous": _p("number", "The anonymous callers' lane"),
        "api_key": _p("number", "The API keys' lane"),
        "user": _p("number", "The signed-in users' lane"),
        "per_caller": _p("number", "Most minutes one caller holds per UTC day (an API key may have its own)"),
    },
    "Health": {"status": _p("string", const="ok")},
}
