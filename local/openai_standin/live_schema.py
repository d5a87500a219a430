"""Our own strict model of GPT-Live's `POST /v1/live/sessions` body (WebRTC transport), as JSON Schema.

Strict like OpenAI: no unknown keys on the request, the session, its audio, or the transport; `session.model`,
`transport.type` and `transport.sdp` required. No `session.type` here (only a SIP accept takes `type: "live"`).
The stand-in knows the two Live models; an unknown model is refused rather than silently run.
"""

from __future__ import annotations

from typing import Any

from jsonschema import Draft202012Validator

from local.openai_standin.schema import validate

LIVE_MODELS = ("gpt-live-1", "gpt-live-1.1")
LIVE_VOICES = ("alloy", "ash", "ballad", "beacon", "bossa", "cedar", "cinder", "coral", "delta", "echo", "gleam",
               "marin", "meridian", "quartz", "ripple", "sage", "shimmer", "stone", "tempo", "verse", "vesper",
               "willow")
DEFAULT_VOICE = "marin"
# Every Live client event; `session.start` exists only on WebSockets (a WebRTC session starts with its POST).
CLIENT_EVENT_TYPES = ("session.start", "session.update", "session.input_audio.append", "session.input_audio.mute",
                      "session.input_audio.unmute", "session.instructions.append", "session.thinking.append",
                      "session.commentary.append", "response.item.create", "response.create", "session.close")


def _obj(properties: dict[str, Any], required: list[str] | None = None, *, strict: bool = True) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "object", "properties": properties, "required": required or []}
    if strict:
        schema["additionalProperties"] = False
    return schema


_NULLABLE_STRING = {"type": ["string", "null"]}

_VOICE = {"anyOf": [{"enum": list(LIVE_VOICES)}, _obj({"id": {"type": "string", "minLength": 1, "maxLength": 128}},
                                                        ["id"])]}

_EVENT_TYPE = {"type": "string", "minLength": 1, "maxLength": 256,
               "pattern": r"^(?:error|info|[a-z][a-z0-9_-]*(?:\.[a-z0-9_-]+)+)$"}

_SERVER_EVENT_SELECTOR = {
    **_obj({"type": {"type": "string", "minLength": 1, "maxLength": 256}, "response_event": {"type": "string"}},
           ["type"]),
    # response_event goes with type response.event and with nothing else.
    "if": {"properties": {"type": {"const": "response.event"}}},
    "then": {"required": ["response_event"]},
    "else": {"not": {"required": ["response_event"]}},
}

_DATA_CHANNEL = _obj({
    "allowed_client_events": {"anyOf": [{"const": "all"},
                                        {"type": "array", "maxItems": 256, "items": _EVENT_TYPE}]},
    "allowed_server_events": {"anyOf": [{"const": "all"},
                                        {"type": "array", "maxItems": 256, "items": _SERVER_EVENT_SELECTOR}]},
})

_INITIAL_ITEM = _obj({
    "type": {"const": "message"},
    "role": {"enum": ["developer", "user", "assistant"]},
    "id": _NULLABLE_STRING,
    "status": {"enum": ["incomplete", "completed", None]},
    "content": {"type": "array", "minItems": 1, "maxItems": 1,
                "items": _obj({"type": {"enum": ["input_text", "text", "output_text"]}, "text": {"type": "string"}},
                              ["text"])},
}, ["role", "content"])

_DELEGATION = {"anyOf": [
    {"type": "null"},
    _obj({"type": {"const": "client"}}, ["type"]),
    _obj({"type": {"const": "responses"}, "responses": _obj({"model": {"type": "string"}}, ["model"], strict=False)},
         ["type", "responses"]),
]}

SESSION = _obj({
    "model": {"enum": list(LIVE_MODELS)},
    "instructions": _NULLABLE_STRING,
    "audio": _obj({"output": _obj({"voice": _VOICE})}),
    "client": _obj({"data_channel": _DATA_CHANNEL}, ["data_channel"]),
    "delegation": _DELEGATION,
    "input": {"type": "array", "maxItems": 128, "items": _INITIAL_ITEM},
    "store": {"type": "boolean"},
    # Also in openai-python 3.63.0's MediaSessionConfigParam, so OpenAI takes them; the stand-in accepts them and
    # models nothing of them. The SDK gives no bounds: an idle timeout is whole seconds, so at least one.
    "safety_identifier": _NULLABLE_STRING,
    "idle_timeout_s": {"type": "integer", "minimum": 1},
    "wake_policy": _obj({"type": {"const": "speech"}, "vad_threshold": {"type": "number", "minimum": 0, "maximum": 1}},
                        ["type"]),
}, ["model"])

CREATE_REQUEST = _obj({
    "session": SESSION,
    "transport": _obj({"type": {"const": "webrtc"}, "sdp": {"type": "string", "minLength": 1}}, ["type", "sdp"]),
}, ["session", "transport"])

_VALIDATOR = Draft202012Validator(CREATE_REQUEST)


def validate_live_create(body: Any) -> None:
    """RequestError naming the first wrong field, as OpenAI reports one at a time."""
    validate(_VALIDATOR, body)
