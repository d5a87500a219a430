"""The session policy: what the owner fixed, what a caller may choose, and the request we send to OpenAI.

The caller chooses only a voice and a preset name from the owner's lists; instructions text, model, lifetime and
audio settings never come from the caller. The request body follows OpenAI's GA
`RealtimeCreateClientSecretRequest` (not the retired beta shape).
"""

from __future__ import annotations

from typing import Any, NamedTuple

from tokenvend.errors import invalid_request
from tokenvend.settings import LIVE_ALLOWED_CLIENT_EVENTS, LIVE_ALLOWED_SERVER_EVENTS, Settings

# The share of the context kept when it is truncated (OpenAI's own example value for cache-friendly truncation).
RETENTION_RATIO = 0.8


class SessionChoice(NamedTuple):
    voice: str
    preset: str


class SessionPolicy:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings

    @property
    def data_channel(self) -> bool:
        return self._settings.data_channel

    def choose(self, voice: str | None, preset: str | None) -> SessionChoice:
        """The one place a caller's voice and preset are checked: 400 naming the field for anything else."""
        s = self._settings
        voice = s.default_voice if voice is None else voice
        preset = s.default_preset if preset is None else preset
        if voice not in s.voices:
            raise invalid_request(f"voice: must be one of {', '.join(s.voices)}")
        if preset not in s.presets:
            raise invalid_request(f"preset: must be one of {', '.join(s.presets)}")
        return SessionChoice(voice=voice, preset=preset)

    def client_secret_request(self, choice: SessionChoice) -> dict[str, Any]:
        """The body of `POST /realtime/client_secrets`: the session and the token's lifetime."""
        return {"expires_after": {"anchor": "created_at", "seconds": self._settings.token_ttl_seconds},
                "session": self.realtime_session(choice)}

    def realtime_session(self, choice: SessionChoice, *, events: bool = True) -> dict[str, Any]:
        """A GA `RealtimeSessionCreateRequest`: the `session` of a client secret or of a server-side call.
        `events`: whether anyone receives the session's events (a token's client does; an audio-only call's browser
        has no channel, so transcripts would be paid for and read by nobody)."""
        s = self._settings
        # Turn detection is null, not absent, when off: absent means OpenAI's default (server VAD).
        # Transcription and noise reduction are off by default and their schemas do not admit null: omit them.
        audio_input: dict[str, Any] = {"turn_detection": {"type": s.turn_detection} if s.turn_detection else None}
        if s.transcription_model and events:
            audio_input["transcription"] = {"model": s.transcription_model}
        if s.noise_reduction:
            audio_input["noise_reduction"] = {"type": s.noise_reduction}
        session: dict[str, Any] = {
            "type": "realtime",
            "model": s.model,
            "instructions": s.presets[choice.preset],
            "audio": {"input": audio_input, "output": {"voice": choice.voice}},
        }
        if s.max_output_tokens is not None:
            session["max_output_tokens"] = s.max_output_tokens
        # Every response re-reads the whole conversation as input: this caps what it re-reads. Past the cap the
        # oldest turns go, down to RETENTION_RATIO of it, so that truncations are rare and the cache stays warm.
        session["truncation"] = {"type": "retention_ratio", "retention_ratio": RETENTION_RATIO,
                                 "token_limits": {"post_instructions": s.realtime_context_tokens}}
        # No `idle_timeout_ms` in the turn detection: it would make the model start turns by itself.
        return session

    def live_session(self, choice: SessionChoice) -> dict[str, Any]:
        """The `session` of `POST /v1/live/sessions`. Everything in it is fixed for the session's life, and the
        browser's data channel is limited to the allow-lists in settings."""
        s = self._settings
        return {
            "model": s.live_model,
            "instructions": s.presets[choice.preset],
            "audio": {"output": {"voice": choice.voice}},
            "client": {"data_channel": {
                "allowed_client_events": list(LIVE_ALLOWED_CLIENT_EVENTS),
                "allowed_server_events": [{"type": event} for event in LIVE_ALLOWED_SERVER_EVENTS],
            }},
        }

    def call_summary(self, choice: SessionChoice) -> dict[str, str]:
        """What a caller may know of its call's session: never the instructions text."""
        return {"model": self._settings.call_model, "voice": choice.voice, "preset": choice.preset}

    def token_summary(self, choice: SessionChoice) -> dict[str, str]:
        """The same for a token, which is always for the Realtime API."""
        return {"model": self._settings.model, "voice": choice.voice, "preset": choice.preset}
