"""Pure logic: transcript lines from events, and when a one-shot exchange is over."""

from __future__ import annotations

import io
from typing import Any

from realtime_client.transcripts import TranscriptPrinter
from realtime_client.turns import TurnTracker


def delta(text: str, response: str = "resp_1") -> dict[str, Any]:
    return {"type": "response.output_audio_transcript.delta", "response_id": response, "item_id": "i", "delta": text}


def done(text: str, response: str = "resp_1") -> dict[str, Any]:
    kind = "response.output_audio_transcript.done"
    return {"type": kind, "response_id": response, "item_id": "i", "transcript": text}


USER = {"type": "conversation.item.input_audio_transcription.completed", "item_id": "u", "transcript": " Hi there "}


def run(events: list[dict[str, Any]], *, stream: bool) -> str:
    out = io.StringIO()
    printer = TranscriptPrinter(out, stream=stream)
    for event in events:
        printer.feed(event)
    printer.close()
    return out.getvalue()


def test_lines_are_one_per_utterance() -> None:
    events = [USER, delta("Hello"), delta(", you."), {"type": "response.done"}, done("Hello, you.")]

    assert run(events, stream=False) == "you: Hi there\nassistant: Hello, you.\n"


def test_done_without_deltas_still_prints_the_transcript() -> None:
    assert run([done("Only the end.")], stream=False) == "assistant: Only the end.\n"


def test_overlapping_responses_are_assembled_separately() -> None:
    events = [delta("A1 ", "r1"), delta("B1 ", "r2"), delta("A2", "r1"), done("A1 A2", "r1"), done("B1", "r2")]

    assert run(events, stream=False) == "assistant: A1 A2\nassistant: B1\n"


def test_streaming_writes_words_as_they_arrive_and_keeps_lines_whole() -> None:
    events = [delta("Hel"), delta("lo"), USER, delta(" again"), done("Hello again")]

    assert run(events, stream=True) == "assistant: Hello\nyou: Hi there\nassistant: Hello again\n"


def feed(tracker: TurnTracker, *kinds: str) -> None:
    for kind in kinds:
        tracker.feed({"type": kind, "response": {"id": "resp_1"}, "response_id": "resp_1"})


def test_text_turn_is_over_after_response_done_and_audio_stopped() -> None:
    tracker = TurnTracker(input_finished=True)
    feed(tracker, "session.created", "response.created", "output_audio_buffer.started", "response.done")
    assert not tracker.done

    feed(tracker, "output_audio_buffer.stopped")
    assert tracker.done


def test_not_over_while_input_is_still_playing_or_the_user_speaks() -> None:
    tracker = TurnTracker()
    feed(tracker, "response.created", "response.done")
    assert not tracker.done  # the file is still playing

    feed(tracker, "input_audio_buffer.speech_started")
    tracker.input_finished = True
    assert not tracker.done  # server VAD will answer this utterance

    feed(tracker, "input_audio_buffer.speech_stopped", "response.created")
    assert not tracker.done
    feed(tracker, "response.done")
    assert tracker.done


def test_cleared_audio_buffer_counts_as_stopped() -> None:
    tracker = TurnTracker(input_finished=True)
    feed(tracker, "response.created", "output_audio_buffer.started", "response.done", "output_audio_buffer.cleared")

    assert tracker.done


def live(kind: str, text: str, start_ms: int = 0) -> dict[str, Any]:
    return {"type": f"session.{kind}_transcript.delta", "event_id": "e", "delta": text, "start_ms": start_ms,
            "end_ms": start_ms + 100}


def test_live_deltas_become_one_line_per_speaker_turn() -> None:
    events = [
        {"type": "session.started", "session": {"id": "live_1"}},
        live("input", "What is "), live("input", "the time?"),
        live("output", "It is "), {"type": "session.usage.updated", "usage": {"seconds": 3.2}},
        live("output", "noon."),
        live("input", "Thanks."),
    ]

    assert run(events, stream=False) == "you: What is the time?\nassistant: It is noon.\nyou: Thanks.\n"


def test_live_streaming_writes_words_as_they_arrive() -> None:
    events = [live("input", " Hi"), live("input", " there"), live("output", "Hello"), live("output", " you")]

    assert run(events, stream=True) == "you: Hi there\nassistant: Hello you\n"


def test_live_utterance_without_text_prints_nothing() -> None:
    assert run([live("output", " "), live("input", "")], stream=False) == ""


def test_live_turn_is_over_once_the_assistant_spoke_and_input_is_all_sent() -> None:
    tracker = TurnTracker(live=True)
    tracker.feed({"type": "session.started"})
    tracker.feed(live("output", "Hello"))
    assert not tracker.done  # the file is still playing

    tracker.input_finished = True
    assert tracker.done
    assert tracker.quiet_seconds > TurnTracker().quiet_seconds  # no response.done: only silence tells


def test_live_turn_is_not_over_before_the_assistant_says_anything() -> None:
    tracker = TurnTracker(live=True, input_finished=True)
    tracker.feed(live("input", "Hello"))

    assert not tracker.done


def test_an_audio_only_turn_is_left_to_the_audio_once_the_input_is_sent() -> None:
    tracker = TurnTracker(events=False)
    assert not tracker.done  # the file is still playing

    tracker.input_finished = True
    assert tracker.done
    assert tracker.needs_audio  # nothing but the received audio can say the answer came and went quiet
    assert tracker.quiet_seconds > TurnTracker().quiet_seconds


def test_only_audio_only_and_live_turns_need_the_audio() -> None:
    assert not TurnTracker().needs_audio  # Realtime's events say when its audio stopped
    assert TurnTracker(live=True).needs_audio
    assert TurnTracker(events=False).needs_audio
