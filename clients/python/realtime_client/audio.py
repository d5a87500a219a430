"""Audio in and out of the call: a WAV file as the microphone, and a WAV recorder for the reply.

Everything is 48 kHz mono signed 16-bit, the rate WebRTC's Opus runs at, so nothing is resampled twice.
numpy is not a dependency: PyAV does the resampling and `array` the level maths.
"""

from __future__ import annotations

import asyncio
import contextlib
import fractions
import logging
import math
import sys
import time
import wave
from array import array
from pathlib import Path

import av
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

SAMPLE_RATE = 48_000
FRAME_SAMPLES = 960  # 20 ms, WebRTC's usual Opus packet
FRAME_BYTES = FRAME_SAMPLES * 2
# Opus decodes silence to tiny non-zero values; anything under about -54 dBFS is not speech.
AUDIBLE_PEAK = 64

log = logging.getLogger(__name__)


def samples(pcm: bytes) -> array:
    """Signed 16-bit little-endian PCM as an array of ints."""
    values = array("h")
    values.frombytes(pcm[: len(pcm) - len(pcm) % 2])
    if sys.byteorder == "big":
        values.byteswap()
    return values


def pcm_rms(pcm: bytes) -> float:
    values = samples(pcm)
    if not values:
        return 0.0
    return math.sqrt(sum(v * v for v in values) / len(values))


def pcm_peak(pcm: bytes) -> int:
    values = samples(pcm)
    return max((abs(v) for v in values), default=0)


def _mono48k_resampler() -> av.AudioResampler:
    return av.AudioResampler(format="s16", layout="mono", rate=SAMPLE_RATE)


def _frame_pcm(frame: av.AudioFrame) -> bytes:
    # Planes may be padded past the last sample; only `samples` of them are real.
    return bytes(frame.planes[0])[: frame.samples * 2]


def load_wav(path: str | Path) -> bytes:
    """Decode a WAV (any rate, channels, sample format) to 48 kHz mono s16 PCM. Raises ValueError if unreadable."""
    pcm = bytearray()
    resampler = _mono48k_resampler()
    try:
        with av.open(str(path)) as container:
            if not container.streams.audio:
                raise ValueError(f"{path}: no audio stream")
            for frame in container.decode(audio=0):
                for out in resampler.resample(frame):
                    pcm += _frame_pcm(out)
            for out in resampler.resample(None):
                pcm += _frame_pcm(out)
    except (av.error.FFmpegError, OSError) as exc:
        if isinstance(exc, FileNotFoundError):
            raise ValueError(f"{path}: no such file") from None
        raise ValueError(f"{path}: not a readable audio file ({exc})") from None
    return bytes(pcm)


class PacedAudioTrack(MediaStreamTrack):
    """An outgoing 48 kHz mono s16 track that hands out one 20 ms frame per 20 ms of wall clock.

    Subclasses only say what the next chunk of PCM is (`next_chunk`); this class owns the clock. Frames are paced
    against the time of the first frame, not the previous one, so sleeps do not drift; after a stall longer than
    `MAX_LAG_SECONDS` (a busy loop, a paused debugger) the clock restarts instead of bursting frames to catch up,
    which a receiver's jitter buffer would only throw away.
    """

    kind = "audio"
    MAX_LAG_SECONDS = 0.2

    def __init__(self) -> None:
        super().__init__()
        self._start: float | None = None
        self._pts = 0
        self._time_base = fractions.Fraction(1, SAMPLE_RATE)

    def next_chunk(self) -> bytes:
        """The next 20 ms of PCM (FRAME_BYTES; shorter is padded with silence)."""
        raise NotImplementedError

    async def recv(self) -> av.AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        loop = asyncio.get_running_loop()
        if self._start is None:
            self._start = loop.time()
        else:
            wait = self._start + self._pts / SAMPLE_RATE - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            elif wait < -self.MAX_LAG_SECONDS:
                self._start = loop.time() - self._pts / SAMPLE_RATE
        # The track may have been stopped while this frame waited for its time.
        if self.readyState != "live":
            raise MediaStreamError
        frame = av.AudioFrame(format="s16", layout="mono", samples=FRAME_SAMPLES)
        frame.planes[0].update(self.next_chunk()[:FRAME_BYTES].ljust(FRAME_BYTES, b"\0"))
        frame.sample_rate = SAMPLE_RATE
        frame.time_base = self._time_base
        frame.pts = self._pts
        self._pts += FRAME_SAMPLES
        return frame


class MicrophoneTrack(PacedAudioTrack):
    """Plays PCM in real time as 20 ms frames, then silence, for as long as the call lasts.

    Silence after the file keeps RTP flowing, which server-side voice activity detection needs to see the end of
    the user's turn. `finished` is set once the last frame of the file has been handed to the sender.
    """

    def __init__(self, pcm: bytes = b"") -> None:
        super().__init__()
        self._pcm = pcm
        self._offset = 0
        self.finished = asyncio.Event()
        if not pcm:
            self.finished.set()

    @classmethod
    def from_wav(cls, path: str | Path) -> MicrophoneTrack:
        return cls(load_wav(path))

    @property
    def duration(self) -> float:
        return len(self._pcm) / 2 / SAMPLE_RATE

    def next_chunk(self) -> bytes:
        chunk = self._pcm[self._offset : self._offset + FRAME_BYTES]
        self._offset += len(chunk)
        if self._offset >= len(self._pcm):
            self.finished.set()
        return chunk


class AudioRecorder:
    """Writes the remote track to a WAV file, starting at the first audible frame (leading silence is dropped).

    The file is only created when audio arrives, so "no file" and `audible is False` mean the same thing.
    """

    def __init__(self, path: str | Path | None) -> None:
        self.path = Path(path) if path is not None else None
        self.frames_received = 0
        self.samples_written = 0
        self.last_audible_at: float | None = None  # time.monotonic()
        self.audio_started = asyncio.Event()
        self._wav: wave.Wave_write | None = None
        self._task: asyncio.Task[None] | None = None
        self._resampler = _mono48k_resampler()

    @property
    def audible(self) -> bool:
        return self.audio_started.is_set()

    @property
    def seconds_written(self) -> float:
        return self.samples_written / SAMPLE_RATE

    def quiet_for(self) -> float:
        """Seconds since the last audible frame (infinite if none yet)."""
        if self.last_audible_at is None:
            return math.inf
        return time.monotonic() - self.last_audible_at

    def start(self, track: MediaStreamTrack) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(track), name="realtime-client-recorder")

    async def _run(self, track: MediaStreamTrack) -> None:
        try:
            while True:
                frame = await track.recv()
                self._write(frame)
        except MediaStreamError:
            pass  # the peer connection closed: the normal end
        finally:
            self._close_file()

    def _write(self, frame: av.AudioFrame) -> None:
        self.frames_received += 1
        for out in self._resampler.resample(frame):
            pcm = _frame_pcm(out)
            if pcm_peak(pcm) >= AUDIBLE_PEAK:
                self.last_audible_at = time.monotonic()
                self.audio_started.set()
            if not self.audio_started.is_set():
                continue
            if self._wav is None and self.path is not None:
                self._wav = wave.open(str(self.path), "wb")  # noqa: SIM115 - lives as long as the call
                self._wav.setnchannels(1)
                self._wav.setsampwidth(2)
                self._wav.setframerate(SAMPLE_RATE)
            if self._wav is not None:
                self._wav.writeframes(pcm)
            self.samples_written += len(pcm) // 2

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._close_file()

    def _close_file(self) -> None:
        if self._wav is not None:
            self._wav.close()
            self._wav = None
