"""Energy voice-activity detection: a level threshold with a hangover, in place of OpenAI's VAD models."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from local.openai_standin.audio import FRAME_MS

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

    def reset(self) -> None:
        self.in_speech = False
        self._run_start = None

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
