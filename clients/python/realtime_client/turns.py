"""Decide from server events when the assistant has finished answering, so a one-shot call can hang up."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# After the server says the answer is over, wait this long for the last audio in flight before hanging up.
REALTIME_QUIET_SECONDS = 0.4
# GPT-Live says nothing when an answer ends, and an audio-only call says nothing at all; only a longer silence
# after the answer tells.
LIVE_QUIET_SECONDS = 1.5
AUDIO_ONLY_QUIET_SECONDS = LIVE_QUIET_SECONDS


@dataclass
class TurnTracker:
    """Over when our input is all sent and the answer has been given.

    Realtime: at least one response is done, none is running, the server has drained its audio buffer, and the
    user is not mid-utterance (server VAD would start another response). `output_audio_buffer.*` only exist on
    WebRTC/SIP; a server that never sends them simply never blocks the end, which is why the caller also waits
    for the received audio to go quiet (`quiet_seconds`).

    GPT-Live has no response events: the answer is over once the assistant has said something and its audio
    has been quiet for `quiet_seconds`.

    A call without `oai-events` (`events=False`) has no events at all: only the audio can tell, so the caller
    must also have heard the assistant (`needs_audio`) before its quiet counts.
    """

    input_finished: bool = False
    live: bool = False
    events: bool = True
    responses_done: int = 0
    assistant_spoke: bool = False
    _running: set[str] = field(default_factory=set)
    _playing: bool = False
    _user_turn_open: bool = False

    def feed(self, event: dict[str, Any]) -> None:
        kind = event.get("type")
        if kind == "input_audio_buffer.speech_started":
            self._user_turn_open = True
        elif kind == "response.created":
            # Server VAD answers a finished utterance with a response: the user's turn became this response.
            self._user_turn_open = False
            self._running.add(_response_id(event))
        elif kind == "response.done":
            self._running.discard(_response_id(event))
            self.responses_done += 1
        elif kind == "output_audio_buffer.started":
            self._playing = True
        elif kind in ("output_audio_buffer.stopped", "output_audio_buffer.cleared"):
            self._playing = False
        elif kind == "session.output_transcript.delta":
            self.assistant_spoke = True

    @property
    def quiet_seconds(self) -> float:
        if not self.events:
            return AUDIO_ONLY_QUIET_SECONDS
        return LIVE_QUIET_SECONDS if self.live else REALTIME_QUIET_SECONDS

    @property
    def needs_audio(self) -> bool:
        """Whether the answer's end must be read from received audio: GPT-Live's transcript can run ahead of its
        audio, and without events the audio is all there is."""
        return self.live or not self.events

    @property
    def done(self) -> bool:
        if not self.input_finished:
            return False
        if not self.events:
            return True  # nothing more to learn from events: the audio decides
        if self.live:
            return self.assistant_spoke
        return self.responses_done > 0 and not self._running and not self._playing and not self._user_turn_open


def _response_id(event: dict[str, Any]) -> str:
    response = event.get("response")
    if isinstance(response, dict) and isinstance(response.get("id"), str):
        return response["id"]
    return ""
