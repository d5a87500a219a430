"""PCM helpers and the stand-in's voice: 48 kHz mono 16-bit, cut into 20 ms frames.

numpy is not a dependency, so levels use `array` and `math.sumprod`, which run at C speed. The frame format and the
pacing come from the client package's PacedAudioTrack, so the stand-in and the client cannot disagree about them.
"""

from __future__ import annotations

import asyncio
import math
import sys
from array import array
from collections import deque
from typing import Literal

import av

from realtime_client.audio import FRAME_BYTES, FRAME_SAMPLES, SAMPLE_RATE, PacedAudioTrack

__all__ = ["FRAME_BYTES", "FRAME_MS", "FRAME_SAMPLES", "SAMPLE_RATE", "MonoPcm", "OutputTrack", "Playback"]

FRAME_MS = FRAME_SAMPLES * 1000 // SAMPLE_RATE
SILENT_FRAME = bytes(FRAME_BYTES)
SILENCE_DBFS = -120.0

PlaybackEnd = Literal["done", "cleared", "stopped"]


def _samples(pcm: bytes) -> array[int]:
    samples = array("h")
    samples.frombytes(pcm[: len(pcm) - len(pcm) % 2])
    if sys.byteorder == "big":
        samples.byteswap()  # PCM on the wire and in PyAV's packed s16 here is little-endian
    return samples


def rms(pcm: bytes) -> float:
    """Root mean square of 16-bit PCM, as a fraction of full scale (0..1)."""
    samples = _samples(pcm)
    if not samples:
        return 0.0
    return math.sqrt(math.sumprod(samples, samples) / len(samples)) / 32768.0


def dbfs(level: float) -> float:
    return 20.0 * math.log10(level) if level > 0 else SILENCE_DBFS


def seconds_of(pcm: bytes) -> float:
    return len(pcm) / (2 * SAMPLE_RATE)


def tone(seconds: float = 0.6, frequency: float = 660.0, level: float = 0.3) -> bytes:
    """A sine beep with 10 ms ramps, so it starts and stops without clicks."""
    count = int(seconds * SAMPLE_RATE)
    ramp = SAMPLE_RATE // 100
    samples = array("h", bytes(2 * count))
    for n in range(count):
        envelope = min(1.0, n / ramp, (count - 1 - n) / ramp)
        samples[n] = int(32767 * level * envelope * math.sin(2 * math.pi * frequency * n / SAMPLE_RATE))
    if sys.byteorder == "big":
        samples.byteswap()
    return samples.tobytes()


class MonoPcm:
    """Turns decoded frames of any layout and rate into a stream of 20 ms 48 kHz mono chunks."""

    def __init__(self) -> None:
        self._resampler = av.AudioResampler(format="s16", layout="mono", rate=SAMPLE_RATE)
        self._pending = bytearray()

    def feed(self, frame: av.AudioFrame) -> list[bytes]:
        # The resampler keeps its own clock; decoder timestamps that jump after packet loss would upset it.
        frame.pts = None
        try:
            converted = self._resampler.resample(frame)
        except ValueError:
            # The codec may change mid-call (Opus <-> PCMU); a fresh resampler accepts the new layout.
            self._resampler = av.AudioResampler(format="s16", layout="mono", rate=SAMPLE_RATE)
            converted = self._resampler.resample(frame)
        for out in converted:
            # Planes are padded for alignment; only `samples` of them are audio.
            self._pending += bytes(out.planes[0])[: out.samples * 2]
        chunks = []
        while len(self._pending) >= FRAME_BYTES:
            chunks.append(bytes(self._pending[:FRAME_BYTES]))
            del self._pending[:FRAME_BYTES]
        return chunks


class Playback:
    """One response's audio queued on the output track; `finished` says how it ended."""

    def __init__(self, pcm: bytes, tag: str) -> None:
        self.pcm = pcm
        self.tag = tag
        self.offset = 0
        self.finished: asyncio.Future[PlaybackEnd] = asyncio.get_running_loop().create_future()

    @property
    def seconds(self) -> float:
        return seconds_of(self.pcm)

    def end(self, how: PlaybackEnd) -> None:
        if not self.finished.done():
            self.finished.set_result(how)


class OutputTrack(PacedAudioTrack):
    """The stand-in's voice: queued playbacks in order, and silence whenever nothing plays.

    Frames never stop, as with OpenAI, so a browser's audio element keeps running between answers.
    """

    def __init__(self) -> None:
        super().__init__()
        self._queue: deque[Playback] = deque()

    def play(self, pcm: bytes, tag: str) -> Playback:
        playback = Playback(pcm, tag)
        if self.readyState != "live":
            playback.end("stopped")
        elif not pcm:
            playback.end("done")
        else:
            self._queue.append(playback)
        return playback

    def clear(self) -> list[Playback]:
        """Cut everything queued (barge-in); returns what was cut, for the caller to report."""
        cut = list(self._queue)
        self._queue.clear()
        for playback in cut:
            playback.end("cleared")
        return cut

    def stop(self) -> None:
        super().stop()
        while self._queue:
            self._queue.popleft().end("stopped")

    def next_chunk(self) -> bytes:
        if not self._queue:
            return SILENT_FRAME
        playback = self._queue[0]
        chunk = playback.pcm[playback.offset : playback.offset + FRAME_BYTES]
        playback.offset += FRAME_BYTES
        if playback.offset >= len(playback.pcm):
            self._queue.popleft()
            playback.end("done")
        return chunk
