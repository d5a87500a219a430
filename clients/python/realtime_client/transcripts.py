"""Turn transcript events into readable lines: `you: ...` for the user, `assistant: ...` per response."""

from __future__ import annotations

from typing import Any, TextIO


class TranscriptPrinter:
    """Writes one line per utterance. With `stream=True` (a terminal) assistant words appear as they are spoken.

    Deltas are keyed by response and item, because several responses can overlap when the user interrupts.
    """

    def __init__(self, out: TextIO, *, stream: bool = False) -> None:
        self._out = out
        self._stream = stream
        self._parts: dict[tuple[str, str], list[str]] = {}
        self._open_line: tuple[str, str] | None = None  # the streamed line still waiting for its newline

    def feed(self, event: dict[str, Any]) -> None:
        kind = event.get("type")
        if kind == "conversation.item.input_audio_transcription.completed":
            text = str(event.get("transcript", "")).strip()
            if text:
                self._line(f"you: {text}")
        elif kind == "response.output_audio_transcript.delta":
            key = _key(event)
            delta = str(event.get("delta", ""))
            self._parts.setdefault(key, []).append(delta)
            if self._stream:
                if self._open_line != key:
                    self._end_open_line()
                    self._out.write("assistant: " + "".join(self._parts[key]))
                    self._open_line = key
                else:
                    self._out.write(delta)
                self._out.flush()
        elif kind == "response.output_audio_transcript.done":
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

    def close(self) -> None:
        self._end_open_line()

    def _line(self, text: str) -> None:
        self._end_open_line()
        self._out.write(text + "\n")
        self._out.flush()

    def _end_open_line(self) -> None:
        if self._open_line is not None:
            self._out.write("\n")
            self._open_line = None


def _key(event: dict[str, Any]) -> tuple[str, str]:
    return str(event.get("response_id", "")), str(event.get("item_id", ""))
