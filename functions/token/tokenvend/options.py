"""`GET /options`: what a client may choose and how much it may ask for. Preset names only: instructions text
stays server-side, and nothing here says how much of today's budget is left."""

from __future__ import annotations

from typing import Any

from tokenvend.settings import LANES, TURNSTILE_ACTION, Settings


class PublicOptions:
    def __init__(self, settings: Settings) -> None:
        s, limits = settings, settings.limits
        self._document = {
            "backend": s.voice_backend,
            "max_call_seconds": s.max_call_seconds,
            "data_channel": s.data_channel,
            "token_route": s.enable_token_route,
            "model": s.call_model,
            "voices": list(s.voices),
            "default_voice": s.default_voice,
            "presets": list(s.presets),
            "default_preset": s.default_preset,
            "token_ttl_seconds": s.token_ttl_seconds,
            "transcription": s.transcription_model is not None,
            "realtime_url": s.realtime_url,
            "anonymous": {"enabled": limits.allow_anonymous, "burst": limits.anonymous_burst,
                          "rate_per_hour": limits.anonymous_rate_per_hour,
                          "global_daily_limit": limits.global_daily_limit},
            # Signed-in users call POST /user/calls with their identity provider's token.
            "user_calls": s.jwt is not None,
            # The human check anonymous callers pass (the page renders the widget from script_url).
            "turnstile": None if s.turnstile is None else {
                "site_key": s.turnstile.site_key, "script_url": s.turnstile.script_url, "action": TURNSTILE_ACTION},
            # Each lane's and each caller's share of a day, in minutes (how much is left is not said).
            "daily_minutes": {"total": limits.daily_call_seconds / 60,
                              **{lane: limits.lane_limit(True, lane) / 60 for lane in LANES},
                              "per_caller": limits.caller_daily_call_seconds / 60},
        }

    def document(self) -> dict[str, Any]:
        return self._document
