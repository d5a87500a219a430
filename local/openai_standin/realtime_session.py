"""The session object OpenAI answers with and a Realtime call runs on: what was asked for, defaults filled in."""

from __future__ import annotations

import secrets
from typing import Any

DEFAULT_SERVER_VAD = {"type": "server_vad", "threshold": 0.5, "prefix_padding_ms": 300, "silence_duration_ms": 200,
                      "idle_timeout_ms": None, "create_response": True, "interrupt_response": True}
PCM_24K = {"type": "audio/pcm", "rate": 24000}


def effective_session(requested: dict[str, Any]) -> dict[str, Any]:
    """The session object OpenAI returns: what was asked for, with OpenAI's defaults filled in."""
    audio = requested.get("audio", {})
    audio_in, audio_out = audio.get("input", {}), audio.get("output", {})
    turn_detection = audio_in.get("turn_detection", DEFAULT_SERVER_VAD)
    if turn_detection is not None and turn_detection.get("type") == "server_vad":
        turn_detection = {**DEFAULT_SERVER_VAD, **turn_detection}
    return {
        "type": "realtime",
        "object": "realtime.session",
        "id": "sess_" + secrets.token_hex(10),
        "model": requested.get("model", "gpt-realtime"),
        "output_modalities": requested.get("output_modalities", ["audio"]),
        "instructions": requested.get("instructions", "You are a helpful assistant (local stand-in)."),
        "tools": requested.get("tools", []),
        "tool_choice": requested.get("tool_choice", "auto"),
        "max_output_tokens": requested.get("max_output_tokens", "inf"),
        "tracing": requested.get("tracing"),
        "truncation": requested.get("truncation", "auto"),
        "prompt": requested.get("prompt"),
        "expires_at": 0,
        "audio": {
            "input": {
                "format": audio_in.get("format", PCM_24K),
                "transcription": audio_in.get("transcription"),
                "noise_reduction": audio_in.get("noise_reduction"),
                "turn_detection": turn_detection,
            },
            "output": {
                "format": audio_out.get("format", PCM_24K),
                "voice": audio_out.get("voice", "alloy"),
                "speed": audio_out.get("speed", 1.0),
            },
        },
        "include": requested.get("include"),
    }
