"""One Realtime conversation, as far as the page, the `talk` CLI and the tests use it, with no WebRTC in it.

The peer feeds it 20 ms frames of the caller's audio and the text of `oai-events` messages; it answers through
`send` (server events) and a Player (the outgoing audio). It cannot think: a response plays the caller's last
utterance back, or a tone, and its transcript says so.

Server events: session.created, input_audio_buffer.speech_started/stopped,
conversation.item.input_audio_transcription.completed, response.created, response.output_audio_transcript.delta/done,
response.done, output_audio_buffer.started/stopped/cleared, session.updated, error. Client events: session.update
(a connected browser can rewrite its session on Realtime, which is why the product moved to server-side calls, so
this stays faithful), conversation.item.create (a message) and response.create (the Python client's text path).
"""

from __future__ import annotations

import asyncio
import copy
import json
import logging
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, Protocol

from local.openai_standin import events
from local.openai_standin.audio import Playback, seconds_of, tone
from local.openai_standin.call_log import EndReason
from local.openai_standin.events import ClientEventError, JsonObject, error_event, new_id, server_event
from local.openai_standin.session_update import apply_session_update
from local.openai_standin.vad import Listener, Started, Utterance, VadSettings

log = logging.getLogger(__name__)

Send = Callable[[JsonObject], None]

# A model generates faster than real time: the transcript streams over this share of the audio's length, so a
# response is active (and interruptible) for a while but done well before its audio has drained.
_GENERATION_SHARE = 0.4
_DELTA_COUNT = 4
_MIN_DELTA_INTERVAL_SECONDS = 0.03

CLIENT_EVENT_TYPES = ("session.update", "conversation.item.create", "response.create")


class Player(Protocol):
    def play(self, pcm: bytes, tag: str) -> Playback: ...

    def clear(self) -> list[Playback]: ...


@dataclass
class Turn:
    """What a response answers: the caller's last utterance or text."""

    text: str = ""
    pcm: bytes = b""
    speech_seconds: float = 0.0


@dataclass
class _Response:
    id: str
    item_id: str
    turn: Turn | None
    transcript: str = ""
    audio_seconds: float = 0.0
    task: asyncio.Task[None] | None = field(default=None, repr=False)


def reply_to(turn: Turn | None) -> tuple[str, bytes]:
    """The transcript of a response and the audio it plays."""
    if turn is None:
        return "The local stand-in has nothing to answer yet, so here is a short tone.", tone()
    if turn.text:
        return f"You wrote: {turn.text}", turn.pcm or tone()
    return f"You said something for {turn.speech_seconds:.1f} seconds; here it is played back.", turn.pcm


def chunks(text: str, count: int) -> list[str]:
    """`text` in about `count` word-aligned deltas that join back to it."""
    words = text.split(" ")
    size = max(1, -(-len(words) // count))
    parts = [" ".join(words[i : i + size]) for i in range(0, len(words), size)]
    return [part + (" " if i < len(parts) - 1 else "") for i, part in enumerate(parts)]


def _text_of(item: JsonObject) -> str:
    content = item.get("content")
    if not isinstance(content, list):
        return ""
    return " ".join(p["text"] for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))


def describe_duration(seconds: float) -> str:
    """As OpenAI words it: "60 minutes"; sub-minute limits (tests) in seconds."""
    if seconds >= 60 and seconds % 60 == 0:
        minutes = int(seconds // 60)
        return f"{minutes} minute" + ("s" if minutes != 1 else "")
    return f"{seconds:g} second" + ("s" if seconds != 1 else "")


def vad_settings(turn_detection: JsonObject | None) -> VadSettings | None:
    return VadSettings.from_turn_detection(turn_detection) if turn_detection else None


class Conversation:
    def __init__(self, session: JsonObject, send: Send, player: Player, *, max_session_seconds: float) -> None:
        self.session = copy.deepcopy(session)
        self._max_seconds = max_session_seconds
        self.conversation_id = new_id("conv")
        self._send = send
        self._player = player
        self._tasks: set[asyncio.Task[None]] = set()
        self._listener = Listener(vad_settings(self._turn_detection))
        self._user_item: str | None = None
        self._last_turn: Turn | None = None
        self._active: _Response | None = None
        self._audio_sent = False

    # -- the peer's side of it ---------------------------------------------------------------------------------

    def opening_events(self) -> list[JsonObject]:
        return [server_event("session.created", session=copy.deepcopy(self.session))]

    def closing_events(self, reason: EndReason) -> list[JsonObject]:
        # OpenAI has no terminal event on Realtime: a hangup just ends the connection. Only expiry says why.
        if reason == "expired":
            limit = describe_duration(self._max_seconds)
            return [error_event("session_expired", f"Your session hit the maximum duration of {limit}.")]
        return []

    async def aclose(self) -> None:
        tasks = [t for t in self._tasks if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("conversation task failed", exc_info=task.exception())

    # -- incoming audio ----------------------------------------------------------------------------------------

    @property
    def _turn_detection(self) -> JsonObject | None:
        # Absent means OpenAI's default, server VAD; an explicit null turns detection off.
        audio_input = (self.session.get("audio") or {}).get("input") or {}
        return audio_input.get("turn_detection", {"type": "server_vad"})

    def on_audio(self, pcm: bytes) -> None:
        """One 20 ms frame of the caller's audio, 48 kHz mono 16-bit."""
        heard = self._listener.feed(pcm)
        if isinstance(heard, Started):
            self._user_item = new_id("item")
            self._send(server_event("input_audio_buffer.speech_started", audio_start_ms=heard.audio_start_ms,
                                    item_id=self._user_item))
            if (self._turn_detection or {}).get("interrupt_response", True):
                self._interrupt()
        elif isinstance(heard, Utterance):
            self._speech_stopped(heard)

    def _speech_stopped(self, heard: Utterance) -> None:
        item_id = self._user_item or new_id("item")
        self._user_item = None
        self._send(server_event("input_audio_buffer.speech_stopped", audio_end_ms=heard.audio_end_ms, item_id=item_id))
        self._last_turn = Turn(pcm=heard.pcm, speech_seconds=heard.speech_seconds)
        if ((self.session.get("audio") or {}).get("input") or {}).get("transcription"):
            said = f"(local stand-in heard {heard.speech_seconds:.1f} s of speech)"
            self._send(server_event("conversation.item.input_audio_transcription.completed", item_id=item_id,
                                    content_index=0, transcript=said,
                                    usage={"type": "duration", "seconds": round(seconds_of(heard.pcm), 3)}))
        if (self._turn_detection or {}).get("create_response", True) and self._active is None:
            self._start_response(self._last_turn)

    def _interrupt(self) -> None:
        """Barge-in: the caller speaks over an answer, so its audio is cut and the response cancelled."""
        for response_id in dict.fromkeys(p.tag for p in self._player.clear()):
            self._send(server_event("output_audio_buffer.cleared", response_id=response_id))
        if self._active is not None:
            self._finish(self._active, "cancelled", reason="turn_detected")

    # -- responses ---------------------------------------------------------------------------------------------

    def _start_response(self, turn: Turn | None) -> None:
        response = _Response(id=new_id("resp"), item_id=new_id("item"), turn=turn)
        self._active = response
        self._send(server_event("response.created", response=self._response_object(response, "in_progress", [])))
        transcript, pcm = reply_to(turn)
        playback = self._player.play(pcm, response.id)
        response.audio_seconds = playback.seconds
        self._audio_sent = True
        self._send(server_event("output_audio_buffer.started", response_id=response.id))
        self._spawn(self._report_drained(playback))
        response.task = self._spawn(self._stream_transcript(response, transcript, seconds_of(pcm)))

    def _response_object(self, response: _Response, status: str, output: list[JsonObject], **extra: Any) -> JsonObject:
        return events.response_object(response.id, status=status, output=output,
                                      conversation_id=self.conversation_id, session=self.session,
                                      status_details=extra.get("status_details"), usage_block=extra.get("usage_block"))

    async def _stream_transcript(self, response: _Response, transcript: str, audio_seconds: float) -> None:
        interval = max(_MIN_DELTA_INTERVAL_SECONDS, _GENERATION_SHARE * audio_seconds / _DELTA_COUNT)
        for chunk in chunks(transcript, _DELTA_COUNT):
            await asyncio.sleep(interval)
            self._send(server_event("response.output_audio_transcript.delta", response_id=response.id,
                                    item_id=response.item_id, output_index=0, content_index=0, delta=chunk))
            response.transcript += chunk
        self._finish(response, "completed")

    async def _report_drained(self, playback: Playback) -> None:
        # A cleared buffer is reported as output_audio_buffer.cleared where it is cleared; only a drain is "stopped".
        if await playback.finished == "done":
            self._send(server_event("output_audio_buffer.stopped", response_id=playback.tag))

    def _finish(self, response: _Response, status: str, reason: str | None = None) -> None:
        """Close a response with the events OpenAI sends, also when it is cancelled half-way."""
        if response.task is not None and response.task is not asyncio.current_task():
            response.task.cancel()
        text = response.transcript
        self._send(server_event("response.output_audio_transcript.done", response_id=response.id,
                                item_id=response.item_id, output_index=0, content_index=0, transcript=text))
        item_status = "completed" if status == "completed" else "incomplete"
        item = events.assistant_item(response.item_id, status=item_status, transcript=text)
        turn = response.turn or Turn()
        usage = events.usage(instructions=str(self.session.get("instructions") or ""), input_text=turn.text,
                             input_audio_seconds=seconds_of(turn.pcm), output_text=text,
                             output_audio_seconds=response.audio_seconds)
        details = None if status == "completed" else {"type": status, "reason": reason}
        done = self._response_object(response, status, [item], status_details=details, usage_block=usage)
        self._send(server_event("response.done", response=done))
        if self._active is response:
            self._active = None

    # -- client events -----------------------------------------------------------------------------------------

    def on_client_message(self, data: str | bytes) -> None:
        if isinstance(data, bytes):
            self._send(error_event("invalid_event", "Binary messages are not supported; send events as JSON text."))
            return
        try:
            message = json.loads(data)
        except ValueError as exc:
            self._send(error_event("invalid_json", f"We could not parse the JSON body of your event: {exc}."))
            return
        if not isinstance(message, dict):
            self._send(error_event("invalid_event", "An event must be a JSON object."))
            return
        event_id = message.get("event_id")
        client_event_id = event_id if isinstance(event_id, str) else None
        event_type = message.get("type")
        try:
            if event_type is None:
                raise ClientEventError("invalid_event", "The 'type' field is missing.")
            if event_type not in CLIENT_EVENT_TYPES:
                supported = ", ".join(f"'{t}'" for t in CLIENT_EVENT_TYPES)
                raise ClientEventError(
                    "invalid_value",
                    f"Invalid value: '{event_type}'. The local stand-in supports: {supported}.",
                    "type",
                )
            getattr(self, "_on_" + event_type.replace(".", "_"))(message)
        except ClientEventError as exc:
            self._send(error_event(exc.code, exc.message, param=exc.param, client_event_id=client_event_id))

    def _on_session_update(self, message: JsonObject) -> None:
        if "session" not in message:
            raise ClientEventError("missing_required_parameter", "Missing required parameter: 'session'.", "session")
        before = self._turn_detection
        self.session = apply_session_update(self.session, message["session"], audio_sent=self._audio_sent)
        if self._turn_detection != before:
            self._listener.reconfigure(vad_settings(self._turn_detection))
            self._user_item = None
        self._send(server_event("session.updated", session=copy.deepcopy(self.session)))

    def _on_conversation_item_create(self, message: JsonObject) -> None:
        item = message.get("item")
        if not isinstance(item, dict):
            raise ClientEventError("missing_required_parameter", "Missing required parameter: 'item'.", "item")
        if item.get("type") != "message":
            raise ClientEventError(
                "invalid_value", "The local stand-in only takes items of type 'message'.", "item.type"
            )
        if item.get("role") not in ("user", "assistant", "system"):
            raise ClientEventError(
                "invalid_value", "Invalid 'item.role': expected 'user', 'assistant' or 'system'.", "item.role"
            )
        if not isinstance(item.get("content"), list):
            raise ClientEventError(
                "missing_required_parameter", "Missing required parameter: 'item.content'.", "item.content"
            )
        if item["role"] == "user" and _text_of(item):
            self._last_turn = Turn(text=_text_of(item))

    def _on_response_create(self, message: JsonObject) -> None:
        if self._active is not None:
            raise ClientEventError(
                "conversation_already_has_active_response",
                f"Conversation already has an active response in progress: {self._active.id}. "
                "Wait until the response is finished before creating a new one.",
            )
        self._start_response(self._last_turn)
