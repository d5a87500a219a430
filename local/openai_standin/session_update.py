"""Applying a `session.update` client event to a live session, with the checks OpenAI's GA API makes."""

from __future__ import annotations

import copy
from typing import Any

from local.openai_standin.events import ClientEventError
from local.openai_standin.schema import SESSION, VOICES

# The fields of RealtimeSessionCreateRequestGA, from the same model client_secrets and calls are checked against;
# anything else is an unknown parameter, as OpenAI says.
_SESSION_FIELDS = frozenset(SESSION["properties"])
_AUDIO_FIELDS = {direction: frozenset(part["properties"])
                 for direction, part in SESSION["properties"]["audio"]["properties"].items()}
_VAD_DEFAULTS: dict[str, dict[str, Any]] = {
    "server_vad": {
        "threshold": 0.5,
        "prefix_padding_ms": 300,
        "silence_duration_ms": 200,  # as client_secrets fills it in, after OpenAI's session examples
        "idle_timeout_ms": None,
        "create_response": True,
        "interrupt_response": True,
    },
    "semantic_vad": {"eagerness": "auto", "create_response": True, "interrupt_response": True},
}


def _unknown(param: str) -> ClientEventError:
    return ClientEventError("unknown_parameter", f"Unknown parameter: '{param}'.", param)


def _invalid_type(param: str, expected: str, value: Any) -> ClientEventError:
    return ClientEventError(
        "invalid_type",
        f"Invalid type for '{param}': expected {expected}, but got {type(value).__name__} instead.",
        param,
    )


def _check_turn_detection(value: Any) -> dict[str, Any] | None:
    param = "session.audio.input.turn_detection"
    if value is None:
        return None
    if not isinstance(value, dict):
        raise _invalid_type(param, "an object", value)
    kind = value.get("type", "server_vad")
    if kind not in _VAD_DEFAULTS:
        raise ClientEventError(
            "invalid_value",
            f"Invalid value: '{kind}'. Supported values are: 'server_vad' and 'semantic_vad'.",
            f"{param}.type",
        )
    threshold = value.get("threshold")
    if threshold is not None and (not isinstance(threshold, int | float) or not 0 <= threshold <= 1):
        raise ClientEventError(
            "decimal_out_of_range", "Invalid 'threshold': expected a number between 0 and 1.", f"{param}.threshold"
        )
    return {"type": kind, **_VAD_DEFAULTS[kind], **value}


def _check_output(output: dict[str, Any], current_voice: Any, audio_sent: bool) -> None:
    param = "session.audio.output"
    if "voice" in output:
        voice = output["voice"]
        if isinstance(voice, str):
            if voice not in VOICES:
                raise ClientEventError(
                    "invalid_value",
                    f"Invalid value: '{voice}'. Supported values are: " + ", ".join(f"'{v}'" for v in sorted(VOICES)),
                    f"{param}.voice",
                )
        elif not (isinstance(voice, dict) and isinstance(voice.get("id"), str)):
            raise _invalid_type(f"{param}.voice", "a string", voice)
        if audio_sent and voice != current_voice:
            raise ClientEventError(
                "cannot_update_voice",
                "Cannot update a conversation's voice if assistant audio is present.",
                f"{param}.voice",
            )
    speed = output.get("speed")
    if speed is not None and (not isinstance(speed, int | float) or not 0.25 <= speed <= 1.5):
        raise ClientEventError(
            "decimal_out_of_range", "Invalid 'speed': expected a number between 0.25 and 1.5.", f"{param}.speed"
        )


def apply_session_update(current: dict[str, Any], update: Any, *, audio_sent: bool) -> dict[str, Any]:
    """The merged session, or ClientEventError. Only fields present change; `audio.input`/`audio.output` merge."""
    if not isinstance(update, dict):
        raise _invalid_type("session", "an object", update)
    if "type" not in update:
        raise ClientEventError(
            "missing_required_parameter", "Missing required parameter: 'session.type'.", "session.type"
        )
    if update["type"] != "realtime":
        raise ClientEventError(
            "invalid_value",
            f"Invalid value: '{update['type']}'. This is a realtime session; its type cannot change.",
            "session.type",
        )
    for key in update:
        if key not in _SESSION_FIELDS:
            raise _unknown(f"session.{key}")
    if "model" in update and update["model"] != current.get("model"):
        raise ClientEventError("invalid_value", "Cannot update a session's model.", "session.model")
    if "instructions" in update and not isinstance(update["instructions"], str):
        raise _invalid_type("session.instructions", "a string", update["instructions"])
    modalities = update.get("output_modalities")
    if modalities is not None and modalities not in (["audio"], ["text"]):
        raise ClientEventError(
            "invalid_value",
            "Invalid 'output_modalities': expected ['audio'] or ['text'].",
            "session.output_modalities",
        )

    merged = copy.deepcopy(current)
    for key, value in update.items():
        if key != "audio":
            merged[key] = copy.deepcopy(value)
    audio_update = update.get("audio")
    if audio_update is None:
        return merged
    if not isinstance(audio_update, dict):
        raise _invalid_type("session.audio", "an object", audio_update)
    audio = merged.setdefault("audio", {})
    current_voice = ((current.get("audio") or {}).get("output") or {}).get("voice")
    for direction, part in audio_update.items():
        if direction not in _AUDIO_FIELDS:
            raise _unknown(f"session.audio.{direction}")
        if not isinstance(part, dict):
            raise _invalid_type(f"session.audio.{direction}", "an object", part)
        for key in part:
            if key not in _AUDIO_FIELDS[direction]:
                raise _unknown(f"session.audio.{direction}.{key}")
        part = copy.deepcopy(part)
        if direction == "input" and "turn_detection" in part:
            part["turn_detection"] = _check_turn_detection(part["turn_detection"])
        if direction == "output":
            _check_output(part, current_voice, audio_sent)
        target = audio.get(direction)
        audio[direction] = {**(target if isinstance(target, dict) else {}), **part}
    return merged
