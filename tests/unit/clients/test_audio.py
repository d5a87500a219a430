"""WAV in (any format -> 48 kHz mono 20 ms frames, paced in real time) without a peer connection."""

from __future__ import annotations

import math
import time
from pathlib import Path

import pytest

from realtime_client import MicrophoneTrack, load_wav
from realtime_client.audio import FRAME_SAMPLES, SAMPLE_RATE, pcm_peak, pcm_rms
from tests.audio_files import write_tone


@pytest.mark.parametrize(
    ("rate", "channels", "width"),
    [(16_000, 2, 2), (22_050, 1, 2), (44_100, 2, 2), (8_000, 1, 1), (48_000, 1, 2)],
)
def test_load_wav_converts_any_format_to_48k_mono(tmp_path: Path, rate: int, channels: int, width: int) -> None:
    path = write_tone(tmp_path / "in.wav", seconds=0.5, rate=rate, channels=channels, width=width, amplitude=0.5)

    pcm = load_wav(path)

    assert abs(len(pcm) / 2 / SAMPLE_RATE - 0.5) < 0.01
    # A sine of amplitude A has RMS A/sqrt(2); 8-bit sources lose a little to quantisation.
    assert pcm_rms(pcm) == pytest.approx(0.5 * 32767 / math.sqrt(2), rel=0.05)


def test_load_wav_rejects_missing_and_non_audio_files(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.wav"
    garbage.write_bytes(b"RIFF....not really")

    with pytest.raises(ValueError, match="no such file"):
        load_wav(tmp_path / "missing.wav")
    with pytest.raises(ValueError, match="not a readable audio file"):
        load_wav(garbage)


async def test_microphone_plays_20ms_frames_in_real_time_then_silence(tmp_path: Path) -> None:
    track = MicrophoneTrack.from_wav(write_tone(tmp_path / "in.wav", seconds=0.1, rate=16_000))
    assert track.duration == pytest.approx(0.1, abs=0.001)
    started = time.monotonic()

    frames = [await track.recv() for _ in range(10)]

    elapsed = time.monotonic() - started
    assert elapsed >= 0.16  # paced: nine 20 ms waits after the first frame (how much longer is the machine's)
    for index, frame in enumerate(frames):
        assert (frame.format.name, frame.layout.name, frame.sample_rate) == ("s16", "mono", SAMPLE_RATE)
        assert frame.samples == FRAME_SAMPLES
        assert frame.pts == index * FRAME_SAMPLES
    peaks = [pcm_peak(bytes(frame.planes[0])) for frame in frames]
    assert all(peak > 10_000 for peak in peaks[:5])
    assert peaks[5:] == [0] * 5
    assert track.finished.is_set()
    track.stop()


def test_silent_microphone_is_finished_from_the_start() -> None:
    assert MicrophoneTrack().finished.is_set()
