"""Make and measure WAV files with the stdlib only, so the tests do not trust the code they test."""

from __future__ import annotations

import math
import sys
import wave
from array import array
from dataclasses import dataclass
from pathlib import Path


def write_tone(
    path: Path,
    *,
    seconds: float,
    rate: int = 48_000,
    channels: int = 1,
    width: int = 2,
    freq: float = 440.0,
    amplitude: float = 0.5,
    lead_silence: float = 0.0,
    tail_silence: float = 0.0,
) -> Path:
    """A sine tone between optional silences; `width` 1 (unsigned 8-bit) or 2 (signed 16-bit)."""
    total = int((lead_silence + seconds + tail_silence) * rate)
    start, stop = int(lead_silence * rate), int((lead_silence + seconds) * rate)
    values = []
    for n in range(total):
        level = amplitude * math.sin(2 * math.pi * freq * n / rate) if start <= n < stop else 0.0
        values.append(level)
    if width == 1:
        frames = bytes(int(128 + 127 * v) for v in values for _ in range(channels))
    else:
        data = array("h", (int(32767 * v) for v in values for _ in range(channels)))
        if sys.byteorder == "big":
            data.byteswap()
        frames = data.tobytes()
    with wave.open(str(path), "wb") as out:
        out.setnchannels(channels)
        out.setsampwidth(width)
        out.setframerate(rate)
        out.writeframes(frames)
    return path


@dataclass(frozen=True)
class WavStats:
    rate: int
    channels: int
    width: int
    seconds: float
    rms: float


def wav_stats(path: Path) -> WavStats:
    with wave.open(str(path), "rb") as wav:
        rate, channels, width, count = wav.getframerate(), wav.getnchannels(), wav.getsampwidth(), wav.getnframes()
        raw = wav.readframes(count)
    assert width == 2, "only 16-bit files are measured"
    values = array("h")
    values.frombytes(raw)
    if sys.byteorder == "big":
        values.byteswap()
    rms = math.sqrt(sum(v * v for v in values) / len(values)) if values else 0.0
    return WavStats(rate, channels, width, count / rate, rms)
