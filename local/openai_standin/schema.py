"""Our own strict model of OpenAI's Realtime session requests (GA shape), as JSON Schema: the body of
`POST /v1/realtime/client_secrets` and the `session` part of a server-side `POST /v1/realtime/calls`; both carry a
RealtimeSessionCreateRequestGA.

Strict like OpenAI: an unknown parameter anywhere is an error, types and ranges are checked, and `session.type`
is required. Only realtime sessions are modelled; the stand-in refuses transcription sessions.
"""

from __future__ import annotations

from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError

# Realtime's built-in voices (a session may also name a custom voice by id).
VOICES = ("alloy", "ash", "ballad", "coral", "echo", "sage", "shimmer", "verse", "marin", "cedar")


def _obj(properties: dict[str, Any], required: list[str] | None = None) -> dict[str, Any]:
    return {"type": "object", "properties": properties, "required": required or [], "additionalProperties": False}


_AUDIO_FORMAT = {"anyOf": [
    _obj({"type": {"enum": ["audio/pcm"]}, "rate": {"enum": [24000]}}),
    _obj({"type": {"enum": ["audio/pcmu"]}}),
    _obj({"type": {"enum": ["audio/pcma"]}}),
]}

_SERVER_VAD = _obj({
    "type": {"const": "server_vad"},
    "threshold": {"type": "number", "minimum": 0, "maximum": 1},
    "prefix_padding_ms": {"type": "integer"},
    "silence_duration_ms": {"type": "integer"},
    "create_response": {"type": "boolean"},
    "interrupt_response": {"type": "boolean"},
    "idle_timeout_ms": {"anyOf": [{"type": "integer", "minimum": 5000, "maximum": 30000}, {"type": "null"}]},
}, ["type"])

_SEMANTIC_VAD = _obj({
    "type": {"const": "semantic_vad"},
    "eagerness": {"enum": ["low", "medium", "high", "auto"]},
    "create_response": {"type": "boolean"},
    "interrupt_response": {"type": "boolean"},
}, ["type"])

_TRANSCRIPTION = _obj({
    "model": {"type": "string"},
    "language": {"type": "string"},
    "languages": {"type": "array", "minItems": 1, "items": {"type": "string"}},
    "keywords": {"type": "array", "items": {"type": "string"}},
    "prompt": {"type": "string"},
    "delay": {"enum": ["minimal", "low", "medium", "high", "xhigh"]},
})

_VOICE = {"anyOf": [{"type": "string"}, _obj({"id": {"type": "string"}}, ["id"])]}

SESSION = _obj({
    "type": {"const": "realtime"},
    "output_modalities": {"type": "array", "items": {"enum": ["text", "audio"]}},
    "model": {"type": "string"},
    "instructions": {"type": "string"},
    "audio": _obj({
        "input": _obj({
            "format": _AUDIO_FORMAT,
            "transcription": _TRANSCRIPTION,
            "noise_reduction": _obj({"type": {"enum": ["near_field", "far_field"]}}),
            "turn_detection": {"anyOf": [_SERVER_VAD, _SEMANTIC_VAD, {"type": "null"}]},
        }),
        "output": _obj({
            "format": _AUDIO_FORMAT,
            "voice": _VOICE,
            "speed": {"type": "number", "minimum": 0.25, "maximum": 1.5},
        }),
    }),
    "include": {"type": "array", "items": {"enum": ["item.input_audio_transcription.logprobs"]}},
    "tracing": {"anyOf": [{"const": "auto"}, {"type": "object"}, {"type": "null"}]},
    "tools": {"type": "array", "items": {"type": "object"}},
    "tool_choice": {"anyOf": [{"enum": ["none", "auto", "required"]}, {"type": "object"}]},
    "parallel_tool_calls": {"type": "boolean"},
    "reasoning": {"type": "object"},
    "max_output_tokens": {"anyOf": [{"type": "integer", "minimum": 1, "maximum": 4096}, {"const": "inf"}]},
    # OpenAI's RealtimeTruncation: a strategy name, or the retention ratio with its optional token limit (a count
    # of tokens, so at least one). Strict, since the product sends the object form: a misspelt key must be refused
    # here as it would be at OpenAI.
    "truncation": {"anyOf": [{"enum": ["auto", "disabled"]}, _obj({
        "type": {"const": "retention_ratio"},
        "retention_ratio": {"type": "number", "minimum": 0, "maximum": 1},
        "token_limits": _obj({"post_instructions": {"type": "integer", "minimum": 1}}),
    }, ["type", "retention_ratio"])]},
    "prompt": {"anyOf": [{"type": "object"}, {"type": "null"}]},
}, ["type"])

CLIENT_SECRET_REQUEST = _obj({
    "expires_after": _obj({
        "anchor": {"const": "created_at"},
        "seconds": {"type": "integer", "minimum": 10, "maximum": 7200},
    }),
    "session": SESSION,
})

# The multipart `session` part, wrapped so that error paths name it as OpenAI does: `session.audio...`.
_CALL_SESSION = _obj({"session": SESSION}, ["session"])

_VALIDATOR = Draft202012Validator(CLIENT_SECRET_REQUEST)
_CALL_SESSION_VALIDATOR = Draft202012Validator(_CALL_SESSION)


class RequestError(ValueError):
    """A request OpenAI would refuse with 400: `param` is the dotted path, `code` OpenAI-like."""

    def __init__(self, message: str, param: str | None, code: str) -> None:
        super().__init__(message)
        self.param = param
        self.code = code


def validate_client_secret_request(body: Any) -> None:
    validate(_VALIDATOR, body)


def validate_call_session(session: Any) -> None:
    """The `session` part of a server-side call; errors name `session.<field>`."""
    validate(_CALL_SESSION_VALIDATOR, {"session": session})


def validate(validator: Draft202012Validator, body: Any) -> None:
    """RequestError for the shallowest problem, as OpenAI reports one parameter at a time."""
    errors = sorted(validator.iter_errors(body), key=lambda e: (len(e.absolute_path), str(e.absolute_path)))
    if errors:
        raise _as_request_error(errors[0])


def _as_request_error(error: ValidationError) -> RequestError:
    if error.validator == "anyOf" and isinstance(error.instance, dict):
        # An object that fits none of the alternatives because of a key its alternative does not have (a misspelt
        # `truncation.retention_ratio`, at any depth): OpenAI names that key, not the whole object.
        unknown = [e for e in error.context or () if e.validator == "additionalProperties"]
        if unknown:
            return _as_request_error(unknown[0])
    path = ".".join(str(p) for p in error.absolute_path) or None
    if error.validator == "additionalProperties":
        extra = sorted(set(error.instance) - set(error.schema.get("properties", {})))
        name = ".".join(p for p in [path, extra[0] if extra else None] if p)
        return RequestError(f"Unknown parameter: '{name}'.", name, "unknown_parameter")
    if error.validator == "required":
        missing = error.message.split("'")[1]
        name = f"{path}.{missing}" if path else missing
        return RequestError(f"Missing required parameter: '{name}'.", name, "missing_required_parameter")
    if error.validator == "type":
        return RequestError(f"Invalid type for '{path}': {error.message}.", path, "invalid_type")
    return RequestError(f"Invalid value for '{path}': {error.message}.", path, "invalid_value")
