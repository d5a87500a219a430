"""Turn transcript events into readable lines: `you: ...` for the user, `assistant: ...` for the assistant.

Realtime sends an assistant transcript per response (deltas, then a final `done`) and the user's as one
`completed` event. GPT-Live sends only deltas for both (`session.input_transcript.delta`,
`session.output_transcript.delta`) and no final event: a line ends when the other side starts to speak, or when
the call ends (`close()`).
"""

from __future__ import annotations

from typing import Any, TextIO

LIVE_DELTAS = {"session.input_transcript.delta": "you", "session.output_transcript.delta": "assistant"}

_Key = tuple[str, str]


class TranscriptPrinter:
    """Writes one line per utterance. With `stream=True` (a terminal) words appear as they are spoken.

    Realtime deltas are keyed by response and item, because several responses can overlap when the user
    interrupts.
    """

    def __init__(self, out: TextIO, *, stream: bool = False) -> None:
        self._out = out
        self._stream = stream
        self._parts: dict[_Key, list[str]] = {}
        self._open_line: _Key | None = None  # the streamed line still waiting for its newline
        self._live_speaker: _Key | None = None  # the GPT-Live utterance being assembled

    def feed(self, event: dict[str, Any]) -> None:
        kind = event.get("type")
        if kind == "conversation.item.input_audio_transcription.completed":
            text = str(event.get("transcript", "")).strip()
            if text:
                self._line(f"you: {text}")
        elif kind == "response.output_audio_transcript.delta":
            self._delta(_key(event), "assistant", str(event.get("delta", "")))
        elif kind == "response.output_audio_transcript.done":
            self._realtime_done(event)
        elif isinstance(kind, str) and kind in LIVE_DELTAS:
            key = ("live", LIVE_DELTAS[kind])
            if self._live_speaker != key:
                self._end_live_utterance()
                self._live_speaker = key
            self._delta(key, LIVE_DELTAS[kind], str(event.get("delta", "")))

    def close(self) -> None:
        self._end_live_utterance()
        self._end_open_line()

    def _delta(self, key: _Key, speaker: str, delta: str) -> None:
        self._parts.setdefault(key, []).append(delta)
        if not self._stream:
            return
        if self._open_line != key:
            self._end_open_line()
            self._out.write(f"{speaker}: " + "".join(self._parts[key]).lstrip())
            self._open_line = key
        else:
            self._out.write(delta)
        self._out.flush()

    def _realtime_done(self, event: dict[str, Any]) -> None:
        key = _key(event)
        assembled = "".join(self._parts.pop(key, []))
        # The final transcript is authoritative; deltas can be missing if the channel opened late.
        final = event.get("transcript")
        text = final if isinstance(final, str) else assembled
        if self._stream and self._open_line == key:
            self._out.write(text[len(assembled) :] if text.startswith(assembled) else "")
            self._out.write("\n")
            self._out.flush()
            self._open_line = None
        elif text.strip():
            self._line(f"assistant: {text.strip()}")

    def _end_live_utterance(self) -> None:
        key, self._live_speaker = self._live_speaker, None
        if key is None:
            return
        text = "".join(self._parts.pop(key, [])).strip()
        if self._stream and self._open_line == key:
            self._end_open_line()
        elif text:
            self._line(f"{key[1]}: {text}")

    def _line(self, text: str) -> None:
        self._end_open_line()
        self._out.write(text + "\n")
        self._out.flush()

    def _end_open_line(self) -> None:
        if self._open_line is not None:
            self._out.write("\n")
            self._out.flush()
            self._open_line = None


def _key(event: dict[str, Any]) -> _Key:
    return str(event.get("response_id", "")), str(event.get("item_id", ""))
