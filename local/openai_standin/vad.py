"""Turn detection: energy voice-activity detection (a level threshold with a hangover, in place of OpenAI's VAD
models) and the caller's utterances it cuts out of the audio."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from local.openai_standin.audio import FRAME_MS, dbfs, rms

DEFAULT_SILENCE_MS = 500
# Level dips inside words (stops, plosives) last up to ~150 ms; a shorter hangover than this would cut words apart,
# which OpenAI's model-based VAD does not do even at its 200 ms default.
MIN_SILENCE_MS = 300
DEFAULT_PREFIX_PADDING_MS = 300
# semantic_vad has no numbers of its own; its eagerness maps onto how long a pause ends a turn.
_EAGERNESS_SILENCE_MS = {"low": 1200, "medium": 700, "auto": 700, "high": 400}
# Voiced audio shorter than this (a click, a cough) does not start a turn.
_MIN_SPEECH_MS = 60
# A trailing quiet stretch after the last loud frame that still belongs to the utterance when it is replayed.
TAIL_MS = 120


def threshold_dbfs(threshold: float) -> float:
    """OpenAI's 0..1 `threshold` (default 0.5) as a level: 0.5 -> -40 dBFS, 0 -> -60, 1 -> -20."""
    return -60.0 + 40.0 * min(1.0, max(0.0, threshold))


@dataclass(frozen=True)
class VadSettings:
    threshold_dbfs: float = threshold_dbfs(0.5)
    prefix_padding_ms: int = DEFAULT_PREFIX_PADDING_MS
    silence_ms: int = DEFAULT_SILENCE_MS

    @classmethod
    def from_turn_detection(cls, turn_detection: dict[str, Any]) -> VadSettings:
        if turn_detection.get("type") == "semantic_vad":
            eagerness = turn_detection.get("eagerness") or "auto"
            return cls(silence_ms=_EAGERNESS_SILENCE_MS.get(eagerness, 700))
        threshold = turn_detection.get("threshold")
        prefix = turn_detection.get("prefix_padding_ms")
        silence = turn_detection.get("silence_duration_ms")
        return cls(
            threshold_dbfs=threshold_dbfs(threshold if isinstance(threshold, int | float) else 0.5),
            prefix_padding_ms=prefix if isinstance(prefix, int) else DEFAULT_PREFIX_PADDING_MS,
            silence_ms=max(MIN_SILENCE_MS, silence if isinstance(silence, int) else DEFAULT_SILENCE_MS),
        )


@dataclass(frozen=True)
class SpeechStarted:
    onset_ms: int  # start of the first loud frame


@dataclass(frozen=True)
class SpeechStopped:
    onset_ms: int
    voiced_end_ms: int  # end of the last loud frame
    end_ms: int  # when the silence hangover ran out, which is what OpenAI reports as audio_end_ms


class EnergyVad:
    def __init__(self, settings: VadSettings) -> None:
        self.settings = settings
        self.in_speech = False
        self._run_start: int | None = None
        self._onset = 0
        self._voiced_end = 0

    def feed(self, level_dbfs: float, at_ms: int) -> SpeechStarted | SpeechStopped | None:
        """Feed the level of the 20 ms frame that starts at `at_ms` (ms of input audio since the call began)."""
        voiced = level_dbfs >= self.settings.threshold_dbfs
        frame_end = at_ms + FRAME_MS
        if not self.in_speech:
            if not voiced:
                self._run_start = None
                return None
            if self._run_start is None:
                self._run_start = at_ms
            if frame_end - self._run_start < _MIN_SPEECH_MS:
                return None
            self.in_speech = True
            self._onset = self._run_start
            self._voiced_end = frame_end
            self._run_start = None
            return SpeechStarted(onset_ms=self._onset)
        if voiced:
            self._voiced_end = frame_end
            return None
        if frame_end - self._voiced_end < self.settings.silence_ms:
            return None
        self.in_speech = False
        return SpeechStopped(onset_ms=self._onset, voiced_end_ms=self._voiced_end, end_ms=frame_end)


# Between turns the buffer keeps the prefix padding plus the frames a starting onset may already cover.
_ONSET_SLACK_MS = 100
# OpenAI keeps at most ~15 MiB of appended audio; a minute at 48 kHz mono is 5.8 MB and plenty for a stand-in.
_MAX_BUFFER_MS = 60_000


@dataclass(frozen=True)
class Started:
    """The caller began speaking; `audio_start_ms` includes the prefix padding, as OpenAI reports it."""

    audio_start_ms: int


@dataclass(frozen=True)
class Utterance:
    """A finished turn of the caller's, with its audio cut to the speech (plus padding) for the echo."""

    audio_start_ms: int
    audio_end_ms: int
    pcm: bytes
    speech_seconds: float


class Listener:
    """Turns 20 ms frames of the caller's audio into turns: Started, then an Utterance. The timeline is the input
    audio itself (ms of audio since the first frame), as OpenAI's audio_start_ms/audio_end_ms are."""

    def __init__(self, settings: VadSettings | None) -> None:
        self._vad = EnergyVad(settings) if settings is not None else None
        self._buffer: list[tuple[int, bytes]] = []  # (ms since the first frame, frame) of the turn so far
        self.audio_ms = 0

    @property
    def settings(self) -> VadSettings:
        return self._vad.settings if self._vad else VadSettings()

    def reconfigure(self, settings: VadSettings | None) -> None:
        """New turn detection (a session.update); a turn in progress is forgotten, as OpenAI resets its VAD."""
        self._vad = EnergyVad(settings) if settings is not None else None

    def feed(self, pcm: bytes) -> Started | Utterance | None:
        at = self.audio_ms
        self.audio_ms += FRAME_MS
        self._buffer.append((at, pcm))
        if len(self._buffer) * FRAME_MS > _MAX_BUFFER_MS:
            del self._buffer[0]
        if self._vad is None:
            self._buffer.clear()  # no turn detection: nothing will ever take this audio
            return None
        padding = self._vad.settings.prefix_padding_ms
        outcome = self._vad.feed(dbfs(rms(pcm)), at)
        if isinstance(outcome, SpeechStarted):
            return Started(audio_start_ms=max(0, outcome.onset_ms - padding))
        if isinstance(outcome, SpeechStopped):
            start_ms = max(0, outcome.onset_ms - padding)
            frames = [f for t, f in self._buffer if start_ms <= t < outcome.voiced_end_ms + TAIL_MS]
            self._buffer = [(t, f) for t, f in self._buffer if t >= outcome.end_ms]
            return Utterance(start_ms, outcome.end_ms, b"".join(frames),
                             (outcome.voiced_end_ms - outcome.onset_ms) / 1000)
        if not self._vad.in_speech:
            # Between turns only the prefix padding (and a would-be onset) can still become part of an utterance.
            excess = len(self._buffer) - (padding + _ONSET_SLACK_MS) // FRAME_MS
            if excess > 0:
                del self._buffer[:excess]
        return None
