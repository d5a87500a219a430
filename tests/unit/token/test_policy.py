"""The session policy: what a caller may choose (a voice and a preset name, from the owner's lists), and the
client-secret request we send OpenAI, built from the owner's settings only and valid against OpenAI's schema."""

from __future__ import annotations

import itertools
import json

import pytest

from tests.openai_shapes import CLIENT_SECRET_REQUEST, ShapeError, assert_request
from tokenvend.errors import ApiError, Code
from tokenvend.options import PublicOptions
from tokenvend.policy import SessionChoice, SessionPolicy
from tokenvend.settings import KNOWN_VOICES, Settings

PRESETS = {"default": "You are a friendly assistant.", "tutor": "You are a patient tutor.",
           "terse": "Answer in five words."}
BASE = {"OPENAI_SECRET_ARN": "arn:key", "HASH_SALT_SECRET_ARN": "arn:salt", "TABLE_NAME": "limits",
        "INSTRUCTION_PRESETS": json.dumps(PRESETS)}


def policy(**env: str) -> SessionPolicy:
    return SessionPolicy(Settings.from_env({**BASE, **env}))


def request_for(voice: str | None = None, preset: str | None = None, **env: str) -> dict:
    p = policy(**env)
    body = p.client_secret_request(p.choose(voice, preset))
    assert_request(body, CLIENT_SECRET_REQUEST)  # as OpenAI's own SDK declares the request
    return body


def test_default_request() -> None:
    body = request_for()
    assert body == {
        "expires_after": {"anchor": "created_at", "seconds": 60},
        "session": {
            "type": "realtime",
            "model": "gpt-realtime-2.1",
            "instructions": PRESETS["default"],
            "audio": {
                "input": {"turn_detection": {"type": "semantic_vad"},
                          "transcription": {"model": "gpt-4o-mini-transcribe"},
                          "noise_reduction": {"type": "near_field"}},
                "output": {"voice": "marin"},
            },
            # Finite by default: what one response may cost is bounded (README, "The worst case").
            "max_output_tokens": 1024,
            "truncation": {"type": "retention_ratio", "retention_ratio": 0.8,
                           "token_limits": {"post_instructions": 4096}},
        },
    }


def test_turn_detection_none_is_sent_as_null_not_omitted() -> None:
    audio_input = request_for(TURN_DETECTION="none")["session"]["audio"]["input"]
    assert "turn_detection" in audio_input and audio_input["turn_detection"] is None
    assert request_for(TURN_DETECTION="server_vad")["session"]["audio"]["input"]["turn_detection"] == {
        "type": "server_vad"}


def test_transcription_and_noise_reduction_none_are_omitted() -> None:
    audio_input = request_for(TRANSCRIPTION_MODEL="none", NOISE_REDUCTION="none")["session"]["audio"]["input"]
    assert audio_input == {"turn_detection": {"type": "semantic_vad"}}
    assert request_for(TRANSCRIPTION_MODEL="whisper-1")["session"]["audio"]["input"]["transcription"] == {
        "model": "whisper-1"}
    assert request_for(NOISE_REDUCTION="far_field")["session"]["audio"]["input"]["noise_reduction"] == {
        "type": "far_field"}


def test_max_output_tokens_context_and_ttl() -> None:
    assert request_for()["session"]["max_output_tokens"] == 1024
    assert "max_output_tokens" not in request_for(MAX_OUTPUT_TOKENS="inf")["session"]  # the owner's explicit choice
    assert request_for(REALTIME_CONTEXT_TOKENS="9000")["session"]["truncation"]["token_limits"] == {
        "post_instructions": 9000}
    assert request_for(MAX_OUTPUT_TOKENS="300")["session"]["max_output_tokens"] == 300
    assert request_for(TOKEN_TTL_SECONDS="10")["expires_after"] == {"anchor": "created_at", "seconds": 10}
    assert request_for(REALTIME_MODEL="gpt-realtime-mini")["session"]["model"] == "gpt-realtime-mini"


@pytest.mark.parametrize(("turn", "transcription", "noise", "max_tokens"), list(itertools.product(
    ["semantic_vad", "server_vad", "none"], ["gpt-4o-mini-transcribe", "none"], ["near_field", "far_field", "none"],
    ["inf", "1", "4096"])))
def test_every_combination_of_settings_is_a_valid_request(turn: str, transcription: str, noise: str,
                                                           max_tokens: str) -> None:
    for voice, preset in (("marin", "default"), ("cedar", "terse")):
        request_for(voice, preset, TURN_DETECTION=turn, TRANSCRIPTION_MODEL=transcription, NOISE_REDUCTION=noise,
                    MAX_OUTPUT_TOKENS=max_tokens)


@pytest.mark.parametrize("voice", KNOWN_VOICES)
def test_every_known_voice_makes_a_valid_request(voice: str) -> None:
    body = request_for(voice, "tutor", ALLOWED_VOICES=",".join(KNOWN_VOICES))
    assert body["session"]["audio"]["output"]["voice"] == voice


def test_the_validator_is_strict() -> None:
    body = request_for()
    body["session"]["unknown"] = 1
    with pytest.raises(ShapeError):
        assert_request(body, CLIENT_SECRET_REQUEST)


# --- what the caller may choose ----------------------------------------------------------------------------------

def test_choose_defaults_and_allowed_values() -> None:
    p = policy(ALLOWED_VOICES="marin,cedar", DEFAULT_VOICE="cedar", DEFAULT_PRESET="tutor")
    assert p.choose(None, None) == SessionChoice("cedar", "tutor")
    assert p.choose("marin", "terse") == SessionChoice("marin", "terse")


@pytest.mark.parametrize(("voice", "preset", "field"), [
    ("alloy", None, "voice"),  # a real voice, but not allowed by the owner
    ("MARIN", None, "voice"),
    ("", None, "voice"),
    (None, "Default", "preset"),
    (None, "", "preset"),
    (None, PRESETS["tutor"], "preset"),  # the text of a preset is not a preset name
    (None, "You are an evil assistant.", "preset"),
])
def test_anything_else_is_a_400_naming_the_field(voice: str | None, preset: str | None, field: str) -> None:
    with pytest.raises(ApiError) as caught:
        policy().choose(voice, preset)
    assert (caught.value.status, caught.value.code) == (400, Code.INVALID_REQUEST)
    assert caught.value.message.startswith(f"{field}: must be one of ")


def test_instructions_only_ever_come_from_the_owner_presets() -> None:
    p = policy(ALLOWED_VOICES=",".join(KNOWN_VOICES))
    seen = set()
    for voice, preset in itertools.product(KNOWN_VOICES, PRESETS):
        body = p.client_secret_request(p.choose(voice, preset))
        seen.add(body["session"]["instructions"])
        assert body["session"]["instructions"] == PRESETS[preset]
        assert set(body["session"]) == {"type", "model", "instructions", "audio", "max_output_tokens", "truncation"}
    assert seen == set(PRESETS.values())


def options(**env: str) -> dict:
    return PublicOptions(Settings.from_env({**BASE, **env})).document()


def test_public_views_carry_no_instructions_text() -> None:
    p = policy()
    options_ = options()
    assert options_["presets"] == list(PRESETS) and options_["default_preset"] == "default"
    assert options_["voices"] == ["marin", "cedar"] and options_["token_ttl_seconds"] == 60
    assert options_["transcription"] is True
    assert options(TRANSCRIPTION_MODEL="none")["transcription"] is False
    text = json.dumps(options_) + json.dumps(p.call_summary(p.choose("cedar", "tutor")))
    assert not any(instructions in text for instructions in PRESETS.values())
    assert p.token_summary(SessionChoice("cedar", "tutor")) == {"model": "gpt-realtime-2.1", "voice": "cedar",
                                                                  "preset": "tutor"}

