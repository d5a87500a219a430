"""Builders for Realtime server events and the objects inside them, shaped like the RealtimeServerEvent* schemas."""

from __future__ import annotations

import math
import secrets
import string
from typing import Any

_BASE62 = string.ascii_letters + string.digits

JsonObject = dict[str, Any]


class ClientEventError(Exception):
    """A client event OpenAI would refuse; becomes an `error` server event and leaves the session as it was."""

    def __init__(self, code: str, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.param = param


def new_id(prefix: str) -> str:
    """An id in OpenAI's style: a prefix and 21 base62 characters (`event_C9G8pqbTEddBSIxbBN6Os`)."""
    return prefix + "_" + "".join(secrets.choice(_BASE62) for _ in range(21))


def server_event(event_type: str, **fields: Any) -> JsonObject:
    return {"type": event_type, "event_id": new_id("event"), **fields}


def error_event(
    code: str | None,
    message: str,
    *,
    param: str | None = None,
    client_event_id: str | None = None,
    error_type: str = "invalid_request_error",
) -> JsonObject:
    return server_event(
        "error",
        error={"type": error_type, "code": code, "message": message, "param": param, "event_id": client_event_id},
    )


def assistant_item(item_id: str, *, status: str, transcript: str) -> JsonObject:
    return {
        "id": item_id,
        "object": "realtime.item",
        "type": "message",
        "status": status,
        "role": "assistant",
        "content": [{"type": "output_audio", "transcript": transcript}],
    }


def usage(
    *, instructions: str, input_text: str, input_audio_seconds: float, output_text: str, output_audio_seconds: float
) -> JsonObject:
    """A plausible token count: OpenAI bills audio at roughly 10 input and 20 output tokens a second."""
    input_text_tokens = math.ceil(len(instructions) / 4) + math.ceil(len(input_text) / 4)
    input_audio_tokens = math.ceil(input_audio_seconds * 10)
    output_text_tokens = math.ceil(len(output_text) / 4)
    output_audio_tokens = math.ceil(output_audio_seconds * 20)
    input_tokens = input_text_tokens + input_audio_tokens
    output_tokens = output_text_tokens + output_audio_tokens
    return {
        "total_tokens": input_tokens + output_tokens,
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        "input_token_details": {
            "text_tokens": input_text_tokens,
            "audio_tokens": input_audio_tokens,
            "image_tokens": 0,
            "cached_tokens": 0,
            "cached_tokens_details": {"text_tokens": 0, "audio_tokens": 0, "image_tokens": 0},
        },
        "output_token_details": {"text_tokens": output_text_tokens, "audio_tokens": output_audio_tokens},
    }


def response_object(
    response_id: str,
    *,
    status: str,
    status_details: JsonObject | None,
    output: list[JsonObject],
    conversation_id: str,
    session: JsonObject,
    usage_block: JsonObject | None,
) -> JsonObject:
    output_audio = (session.get("audio") or {}).get("output") or {}
    response: JsonObject = {
        "object": "realtime.response",
        "id": response_id,
        "status": status,
        "output": output,
        "output_modalities": ["audio"],
        "max_output_tokens": session.get("max_output_tokens", "inf"),
        "audio": {
            "output": {
                "format": output_audio.get("format") or {"type": "audio/pcm", "rate": 24000},
                "voice": output_audio.get("voice", "alloy"),
            }
        },
        "metadata": None,
    }
    # OpenAI's examples show these as null while empty, but the schema types them as object/string only;
    # leaving them out keeps every event valid against RealtimeResponse.
    optional = {"status_details": status_details, "usage": usage_block, "conversation_id": conversation_id}
    response.update({key: value for key, value in optional.items() if value is not None})
    return response
