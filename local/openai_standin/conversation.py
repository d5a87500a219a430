"""One realtime conversation: turn detection, responses and client events, with no WebRTC in it.

The call (peer.py) feeds it 20 ms frames of the caller's audio and the text of `oai-events` messages; it answers
through `send` (server events) and a Player (the outgoing audio). It cannot think: a response plays the caller's
last utterance back, or a tone, and its transcript says so.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import copy
import json
import logging
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, Protocol

from local.openai_standin import events
from local.openai_standin.audio import FRAME_BYTES, FRAME_MS, Playback, dbfs, rms, seconds_of, tone, upsample_24k
from local.openai_standin.events import JsonObject, error_event, new_id, server_event
from local.openai_standin.session_update import ClientEventError, apply_session_update
from local.openai_standin.vad import TAIL_MS, EnergyVad, SpeechStarted, SpeechStopped, VadSettings

log = logging.getLogger(__name__)

Send = Callable[[JsonObject], None]

# OpenAI keeps at most ~15 MiB of appended audio; a minute at 48 kHz mono is 5.8 MB and plenty for a stand-in.
_MAX_BUFFER_MS = 60_000
_MIN_COMMIT_MS = 100
# Between turns the buffer keeps the prefix padding plus the frames a starting onset may already cover.
_ONSET_SLACK_MS = 100
# A model generates faster than real time: the transcript streams over this share of the audio's length, so a
# response is active (cancellable, interruptible) for a while but done well before its audio has drained.
_GENERATION_SHARE = 0.4
_DELTA_COUNT = 4
_MIN_DELTA_INTERVAL_SECONDS = 0.03

CLIENT_EVENT_TYPES = (
    "session.update",
    "input_audio_buffer.append",
    "input_audio_buffer.commit",
    "input_audio_buffer.clear",
    "conversation.item.create",
    "conversation.item.delete",
    "conversation.item.retrieve",
    "conversation.item.truncate",
    "response.create",
    "response.cancel",
    "output_audio_buffer.clear",
)


class Player(Protocol):
    def play(self, pcm: bytes, tag: str) -> Playback: ...

    def clear(self) -> list[Playback]: ...

    def drop(self, tag: str) -> None: ...


@dataclass
class Turn:
    """What a response answers: the caller's last utterance or text."""

    text: str = ""
    pcm: bytes = b""
    speech_seconds: float = 0.0
    audio_seconds: float = 0.0


@dataclass
class _Response:
    id: str
    item_id: str
    audio: bool
    in_conversation: bool
    turn: Turn | None
    metadata: JsonObject | None
    transcript: str = ""
    audio_seconds: float = 0.0
    task: asyncio.Task[None] | None = field(default=None, repr=False)


def _say(turn: Turn | None) -> tuple[str, bytes]:
    """The transcript of a response and the audio it plays."""
    if turn is None:
        return "The local stand-in has nothing to answer yet, so here is a short tone.", tone()
    if turn.text:
        return f"You wrote: {turn.text}", turn.pcm or tone()
    if turn.pcm:
        return f"You said something for {turn.speech_seconds:.1f} seconds; here it is played back.", turn.pcm
    return (
        f"I heard {turn.audio_seconds:.1f} seconds of audio but no speech in it, so here is a short tone.",
        tone(),
    )


def _chunks(text: str, count: int) -> list[str]:
    words = text.split(" ")
    size = max(1, -(-len(words) // count))
    parts = [" ".join(words[i : i + size]) for i in range(0, len(words), size)]
    return [part + (" " if i < len(parts) - 1 else "") for i, part in enumerate(parts)]


def _text_of(item: JsonObject) -> str:
    content = item.get("content")
    if not isinstance(content, list):
        return ""
    return " ".join(p["text"] for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))


class Conversation:
    def __init__(self, session: JsonObject, send: Send, player: Player) -> None:
        self.session = copy.deepcopy(session)
        self.session.setdefault("type", "realtime")
        self.session.setdefault("object", "realtime.session")
        self.session.setdefault("id", new_id("sess"))
        self.conversation_id = new_id("conv")
        self._send = send
        self._player = player
        self._tasks: set[asyncio.Task[None]] = set()
        self._items: list[JsonObject] = []
        self._buffer: list[tuple[int, bytes]] = []  # (ms since the call began, 20 ms frame) since the last commit
        self._audio_ms = 0
        self._speech_item: str | None = None
        self._vad: EnergyVad | None = None
        self._last_turn: Turn | None = None
        self._active: _Response | None = None
        self._last_response_id: str | None = None
        self._audio_sent = False
        self._configure_vad()

    # -- lifecycle ---------------------------------------------------------------------------------------------

    def session_created(self) -> JsonObject:
        return server_event("session.created", session=copy.deepcopy(self.session))

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

    # -- settings ----------------------------------------------------------------------------------------------

    @property
    def _audio_input(self) -> JsonObject:
        return (self.session.get("audio") or {}).get("input") or {}

    @property
    def _turn_detection(self) -> JsonObject | None:
        # Absent means OpenAI's default, server VAD; an explicit null turns detection off.
        return self._audio_input.get("turn_detection", {"type": "server_vad"})

    def _configure_vad(self) -> None:
        turn_detection = self._turn_detection
        self._vad = EnergyVad(VadSettings.from_turn_detection(turn_detection)) if turn_detection else None
        self._speech_item = None

    @property
    def _vad_settings(self) -> VadSettings:
        return self._vad.settings if self._vad else VadSettings()

    # -- incoming audio ----------------------------------------------------------------------------------------

    def on_audio(self, pcm: bytes) -> None:
        """One 20 ms frame of the caller's audio, 48 kHz mono 16-bit."""
        at = self._audio_ms
        self._audio_ms += FRAME_MS
        self._buffer.append((at, pcm))
        if len(self._buffer) * FRAME_MS > _MAX_BUFFER_MS:
            del self._buffer[0]
        if self._vad is None:
            return
        outcome = self._vad.feed(dbfs(rms(pcm)), at)
        if isinstance(outcome, SpeechStarted):
            self._speech_started(outcome)
        elif isinstance(outcome, SpeechStopped):
            self._speech_stopped(outcome)
        elif not self._vad.in_speech:
            # Between turns only the prefix padding (and a would-be onset) can still become part of an utterance.
            keep_ms = self._vad.settings.prefix_padding_ms + _ONSET_SLACK_MS
            excess = len(self._buffer) - keep_ms // FRAME_MS
            if excess > 0:
                del self._buffer[:excess]

    def _speech_started(self, started: SpeechStarted) -> None:
        self._speech_item = new_id("item")
        audio_start_ms = max(0, started.onset_ms - self._vad_settings.prefix_padding_ms)
        self._send(
            server_event("input_audio_buffer.speech_started", audio_start_ms=audio_start_ms, item_id=self._speech_item)
        )
        if (self._turn_detection or {}).get("interrupt_response", True):
            self._interrupt()

    def _speech_stopped(self, stopped: SpeechStopped) -> None:
        item_id = self._speech_item or new_id("item")
        self._speech_item = None
        self._send(server_event("input_audio_buffer.speech_stopped", audio_end_ms=stopped.end_ms, item_id=item_id))
        start_ms = max(0, stopped.onset_ms - self._vad_settings.prefix_padding_ms)
        frames = [pcm for at, pcm in self._buffer if start_ms <= at < stopped.voiced_end_ms + TAIL_MS]
        self._buffer = [(at, pcm) for at, pcm in self._buffer if at >= stopped.end_ms]
        speech_seconds = (stopped.voiced_end_ms - stopped.onset_ms) / 1000
        pcm = b"".join(frames)
        self._commit(item_id, Turn(pcm=pcm, speech_seconds=speech_seconds, audio_seconds=seconds_of(pcm)))
        if (self._turn_detection or {}).get("create_response", True) and self._active is None:
            self._start_response(self._last_turn, modalities=None, in_conversation=True, metadata=None)

    def _interrupt(self) -> None:
        """Barge-in: the caller speaks over an answer, so its audio is cut and the response cancelled."""
        for response_id in dict.fromkeys(p.tag for p in self._player.clear()):
            self._send(server_event("output_audio_buffer.cleared", response_id=response_id))
        if self._active is not None:
            self._finish(self._active, "cancelled", reason="turn_detected")

    def _commit(self, item_id: str, turn: Turn) -> None:
        previous = self._items[-1]["id"] if self._items else None
        self._send(server_event("input_audio_buffer.committed", previous_item_id=previous, item_id=item_id))
        item = events.user_audio_item(item_id)
        self._add_item(item, previous)
        self._last_turn = turn
        if not self._audio_input.get("transcription"):
            return
        heard = f"(local stand-in heard {turn.speech_seconds:.1f} s of speech)"
        self._send(
            server_event(
                "conversation.item.input_audio_transcription.delta",
                item_id=item_id,
                content_index=0,
                delta=heard,
            )
        )
        self._send(
            server_event(
                "conversation.item.input_audio_transcription.completed",
                item_id=item_id,
                content_index=0,
                transcript=heard,
                usage={"type": "duration", "seconds": round(turn.audio_seconds, 3)},
            )
        )
        item["content"][0]["transcript"] = heard

    def _add_item(self, item: JsonObject, previous: str | None) -> None:
        self._items.append(item)
        self._send(server_event("conversation.item.added", previous_item_id=previous, item=copy.deepcopy(item)))
        self._send(server_event("conversation.item.done", previous_item_id=previous, item=copy.deepcopy(item)))

    # -- responses ---------------------------------------------------------------------------------------------

    def _start_response(
        self, turn: Turn | None, *, modalities: list[str] | None, in_conversation: bool, metadata: JsonObject | None
    ) -> None:
        modalities = modalities or self.session.get("output_modalities") or ["audio"]
        response = _Response(
            id=new_id("resp"),
            item_id=new_id("item"),
            audio="audio" in modalities,
            in_conversation=in_conversation,
            turn=turn,
            metadata=metadata,
        )
        if in_conversation:
            self._active = response
        self._last_response_id = response.id
        # The opening events go out now, so a response.cancel right behind response.create still finds them sent.
        transcript, pcm = self._open_response(response)
        response.task = self._spawn(self._stream_transcript(response, transcript, seconds_of(pcm)))

    def _response_object(self, response: _Response, status: str, output: list[JsonObject], **extra: Any) -> JsonObject:
        return events.response_object(
            response.id,
            status=status,
            output=output,
            conversation_id=self.conversation_id if response.in_conversation else None,
            modalities=["audio"] if response.audio else ["text"],
            session=self.session,
            metadata=response.metadata,
            status_details=extra.get("status_details"),
            usage_block=extra.get("usage_block"),
        )

    def _part(self, response: _Response, text: str) -> JsonObject:
        return {"type": "audio", "transcript": text} if response.audio else {"type": "text", "text": text}

    def _open_response(self, response: _Response) -> tuple[str, bytes]:
        ids = {"response_id": response.id, "item_id": response.item_id, "output_index": 0}
        self._send(server_event("response.created", response=self._response_object(response, "in_progress", [])))
        item = events.assistant_item(response.item_id, status="in_progress", audio=response.audio, transcript=None)
        if response.in_conversation:
            previous = self._items[-1]["id"] if self._items else None
            self._send(server_event("conversation.item.added", previous_item_id=previous, item=item))
        self._send(server_event("response.output_item.added", response_id=response.id, output_index=0, item=item))
        self._send(server_event("response.content_part.added", **ids, content_index=0, part=self._part(response, "")))
        transcript, pcm = _say(response.turn)
        if response.audio:
            playback = self._player.play(pcm, response.id)
            response.audio_seconds = playback.seconds
            self._audio_sent = True
            self._send(server_event("output_audio_buffer.started", response_id=response.id))
            self._spawn(self._report_drained(playback))
        return transcript, pcm

    async def _stream_transcript(self, response: _Response, transcript: str, audio_seconds: float) -> None:
        ids = {"response_id": response.id, "item_id": response.item_id, "output_index": 0}
        delta_type = "response.output_audio_transcript.delta" if response.audio else "response.output_text.delta"
        interval = max(_MIN_DELTA_INTERVAL_SECONDS, _GENERATION_SHARE * audio_seconds / _DELTA_COUNT)
        for chunk in _chunks(transcript, _DELTA_COUNT):
            await asyncio.sleep(interval)
            self._send(server_event(delta_type, **ids, content_index=0, delta=chunk))
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
        if status == "cancelled" and response.audio:
            self._player.drop(response.id)
        ids = {"response_id": response.id, "item_id": response.item_id, "output_index": 0}
        text = response.transcript
        if response.audio:
            self._send(server_event("response.output_audio.done", **ids, content_index=0))
            self._send(server_event("response.output_audio_transcript.done", **ids, content_index=0, transcript=text))
        else:
            self._send(server_event("response.output_text.done", **ids, content_index=0, text=text))
        self._send(server_event("response.content_part.done", **ids, content_index=0, part=self._part(response, text)))
        item_status = "completed" if status == "completed" else "incomplete"
        item = events.assistant_item(response.item_id, status=item_status, audio=response.audio, transcript=text)
        self._send(server_event("response.output_item.done", response_id=response.id, output_index=0, item=item))
        if response.in_conversation:
            previous = self._items[-1]["id"] if self._items else None
            self._items.append(item)
            self._send(server_event("conversation.item.done", previous_item_id=previous, item=copy.deepcopy(item)))
        turn = response.turn or Turn()
        usage = events.usage(
            instructions=str(self.session.get("instructions") or ""),
            input_text=turn.text,
            input_audio_seconds=turn.audio_seconds,
            output_text=text,
            output_audio_seconds=response.audio_seconds,
        )
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
                    "invalid_value", f"Invalid value: '{event_type}'. Supported values are: {supported}.", "type"
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
            self._configure_vad()
        self._send(server_event("session.updated", session=copy.deepcopy(self.session)))

    def _on_input_audio_buffer_append(self, message: JsonObject) -> None:
        audio = message.get("audio")
        if not isinstance(audio, str):
            raise ClientEventError("missing_required_parameter", "Missing required parameter: 'audio'.", "audio")
        try:
            pcm = base64.b64decode(audio, validate=True)
        except binascii.Error as exc:
            raise ClientEventError("invalid_value", "Invalid 'audio': not valid base64.", "audio") from exc
        pcm = upsample_24k(pcm)
        for start in range(0, len(pcm) - FRAME_BYTES + 1, FRAME_BYTES):
            self.on_audio(pcm[start : start + FRAME_BYTES])

    def _on_input_audio_buffer_commit(self, message: JsonObject) -> None:
        buffered_ms = len(self._buffer) * FRAME_MS
        if buffered_ms < _MIN_COMMIT_MS:
            raise ClientEventError(
                "input_audio_buffer_commit_empty",
                f"Error committing input audio buffer: buffer too small. Expected at least {_MIN_COMMIT_MS}ms of "
                f"audio, but buffer only has {buffered_ms:.2f}ms of audio.",
            )
        item_id = self._speech_item or new_id("item")
        if self._vad is not None:
            self._vad.reset()
        self._speech_item = None
        self._commit(item_id, self._trimmed_turn())
        self._buffer = []

    def _trimmed_turn(self) -> Turn:
        """The buffered audio cut to where its loud frames are, so a manual commit replays speech, not silence."""
        threshold = self._vad_settings.threshold_dbfs
        loud = [i for i, (_, pcm) in enumerate(self._buffer) if dbfs(rms(pcm)) >= threshold]
        audio_seconds = len(self._buffer) * FRAME_MS / 1000
        if not loud:
            return Turn(audio_seconds=audio_seconds)
        first = max(0, loud[0] - self._vad_settings.prefix_padding_ms // FRAME_MS)
        last = loud[-1] + TAIL_MS // FRAME_MS
        pcm = b"".join(pcm for _, pcm in self._buffer[first : last + 1])
        return Turn(pcm=pcm, speech_seconds=(loud[-1] - loud[0] + 1) * FRAME_MS / 1000, audio_seconds=audio_seconds)

    def _on_input_audio_buffer_clear(self, message: JsonObject) -> None:
        self._buffer = []
        if self._vad is not None:
            self._vad.reset()
        self._speech_item = None
        self._send(server_event("input_audio_buffer.cleared"))

    def _find_item(self, message: JsonObject) -> JsonObject:
        item_id = message.get("item_id")
        if not isinstance(item_id, str):
            raise ClientEventError("missing_required_parameter", "Missing required parameter: 'item_id'.", "item_id")
        for item in self._items:
            if item.get("id") == item_id:
                return item
        raise ClientEventError("item_not_found", f"Item with item_id not found: {item_id}", "item_id")

    def _on_conversation_item_create(self, message: JsonObject) -> None:
        item = message.get("item")
        if not isinstance(item, dict):
            raise ClientEventError("missing_required_parameter", "Missing required parameter: 'item'.", "item")
        kind = item.get("type")
        if kind not in ("message", "function_call", "function_call_output"):
            raise ClientEventError(
                "invalid_value",
                f"Invalid value: '{kind}'. Supported values are: 'message', 'function_call', "
                "and 'function_call_output'.",
                "item.type",
            )
        if kind == "message":
            if item.get("role") not in ("user", "assistant", "system"):
                raise ClientEventError(
                    "invalid_value", "Invalid 'item.role': expected 'user', 'assistant' or 'system'.", "item.role"
                )
            if not isinstance(item.get("content"), list):
                raise ClientEventError(
                    "missing_required_parameter", "Missing required parameter: 'item.content'.", "item.content"
                )
        previous = message.get("previous_item_id")
        if previous is None:
            previous = self._items[-1]["id"] if self._items else None
        elif previous != "root" and not any(i.get("id") == previous for i in self._items):
            raise ClientEventError(
                "item_not_found", f"Item with previous_item_id not found: {previous}", "previous_item_id"
            )
        stored = {**copy.deepcopy(item), "object": "realtime.item", "status": "completed"}
        stored.setdefault("id", new_id("item"))
        if any(i.get("id") == stored["id"] for i in self._items):
            raise ClientEventError("invalid_value", f"Item with id already exists: {stored['id']}", "item.id")
        self._add_item(stored, None if previous == "root" else previous)
        if kind == "message" and item.get("role") == "user" and _text_of(item):
            self._last_turn = Turn(text=_text_of(item))

    def _on_conversation_item_delete(self, message: JsonObject) -> None:
        item = self._find_item(message)
        self._items.remove(item)
        self._send(server_event("conversation.item.deleted", item_id=item["id"]))

    def _on_conversation_item_retrieve(self, message: JsonObject) -> None:
        self._send(server_event("conversation.item.retrieved", item=copy.deepcopy(self._find_item(message))))

    def _on_conversation_item_truncate(self, message: JsonObject) -> None:
        item = self._find_item(message)
        audio_end_ms = message.get("audio_end_ms")
        if item.get("role") != "assistant":
            raise ClientEventError("invalid_value", "Only assistant messages can be truncated.", "item_id")
        if not isinstance(audio_end_ms, int) or audio_end_ms < 0:
            raise ClientEventError(
                "invalid_value", "Invalid 'audio_end_ms': expected a non-negative integer.", "audio_end_ms"
            )
        self._send(
            server_event(
                "conversation.item.truncated", item_id=item["id"], content_index=0, audio_end_ms=audio_end_ms
            )
        )

    def _on_response_create(self, message: JsonObject) -> None:
        params = message.get("response") or {}
        if not isinstance(params, dict):
            raise ClientEventError("invalid_type", "Invalid type for 'response': expected an object.", "response")
        in_conversation = params.get("conversation", "auto") != "none"
        if in_conversation and self._active is not None:
            raise ClientEventError(
                "conversation_already_has_active_response",
                f"Conversation already has an active response in progress: {self._active.id}. "
                "Wait until the response is finished before creating a new one.",
            )
        modalities = params.get("output_modalities")
        if modalities is not None and modalities not in (["audio"], ["text"]):
            raise ClientEventError(
                "invalid_value",
                "Invalid 'output_modalities': expected ['audio'] or ['text'].",
                "response.output_modalities",
            )
        turn = self._last_turn
        if isinstance(params.get("input"), list):
            texts = [_text_of(i) for i in params["input"] if isinstance(i, dict) and i.get("role") == "user"]
            turn = Turn(text=texts[-1]) if texts and texts[-1] else None
        metadata = params.get("metadata") if isinstance(params.get("metadata"), dict) else None
        self._start_response(turn, modalities=modalities, in_conversation=in_conversation, metadata=metadata)

    def _on_response_cancel(self, message: JsonObject) -> None:
        active = self._active
        wanted = message.get("response_id")
        if active is None or (wanted is not None and wanted != active.id):
            raise ClientEventError("response_cancel_not_active", "Cancellation failed: no active response found.")
        self._finish(active, "cancelled", reason="client_cancelled")

    def _on_output_audio_buffer_clear(self, message: JsonObject) -> None:
        cut = self._player.clear()
        response_ids = list(dict.fromkeys(p.tag for p in cut))
        if not response_ids and self._last_response_id is not None:
            # Nothing was playing: acknowledge anyway, so a client that clears defensively is not told off.
            response_ids = [self._last_response_id]
        if not response_ids:
            raise ClientEventError("no_output_audio", "There is no output audio to clear.")
        for response_id in response_ids:
            self._send(server_event("output_audio_buffer.cleared", response_id=response_id))
