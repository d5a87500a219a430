"""Decide from server events when the assistant has finished answering, so a one-shot call can hang up."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class TurnTracker:
    """Over when: our input is all sent, at least one response is done, none is running, the server has drained
    its audio buffer, and the user is not mid-utterance (server VAD would start another response).

    `output_audio_buffer.*` only exist on WebRTC/SIP; a server that never sends them simply never blocks the end,
    which is why the caller also waits for the received audio to go quiet.
    """

    input_finished: bool = False
    responses_done: int = 0
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

    @property
    def done(self) -> bool:
        return (
            self.input_finished
            and self.responses_done > 0
            and not self._running
            and not self._playing
            and not self._user_turn_open
        )


def _response_id(event: dict[str, Any]) -> str:
    response = event.get("response")
    if isinstance(response, dict) and isinstance(response.get("id"), str):
        return response["id"]
    return ""
