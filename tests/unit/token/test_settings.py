"""Settings parsing: good values become an immutable configuration; every bad one stops the cold start with a
SettingsError that names the variable."""

from __future__ import annotations

import json
import re

import pytest

from local.parameters import ParameterError, validate
from local.rules import RuleError, check_rules
from local.template_stack import load_template, template_function_env
from tokenvend.settings import (
    DEFAULT_OPENAI_BASE_URL,
    KNOWN_VOICES,
    LIVE_MODEL,
    NOISE_REDUCTION_TYPES,
    PRESET_NAME,
    RANGES,
    TURN_DETECTION_TYPES,
    VOICE_BACKENDS,
    LeashSettings,
    Settings,
    SettingsError,
)

REQUIRED = {"OPENAI_SECRET_ARN": "arn:aws:secretsmanager:us-east-1:1:secret:key",
            "HASH_SALT_SECRET_ARN": "arn:aws:secretsmanager:us-east-1:1:secret:salt",
            "TABLE_NAME": "limits"}


def parse(**env: str) -> Settings:
    return Settings.from_env({**REQUIRED, **env})


def test_defaults() -> None:
    s = parse()
    assert s.openai_base_url == DEFAULT_OPENAI_BASE_URL
    assert s.client_secrets_url == "https://api.openai.com/v1/realtime/client_secrets"
    assert s.realtime_url == "https://api.openai.com/v1/realtime/calls"
    assert s.voices == ("marin", "cedar") and s.default_voice == "marin"
    assert list(s.presets) == ["default"] and s.default_preset == "default"
    assert s.token_ttl_seconds == 60 and s.max_output_tokens == 1024 and s.realtime_context_tokens == 4096
    assert s.voice_backend == "live" and s.data_channel  # GPT-Live's channel is allow-listed
    assert not s.realtime_data_channel and not s._replace(voice_backend="realtime").data_channel
    assert s.turn_detection == "semantic_vad" and s.noise_reduction == "near_field"
    assert s.transcription_model == "gpt-4o-mini-transcribe"
    assert s.allowed_origins == ()
    limits = s.limits
    assert (limits.anonymous_burst, limits.anonymous_rate_per_hour, limits.global_daily_limit) == (3, 10.0, 500)
    assert (limits.api_key_burst, limits.api_key_rate_per_hour) == (20, 120.0)
    assert limits.allow_anonymous and not limits.issuing_paused
    with pytest.raises(AttributeError):
        s.model = "other"  # type: ignore[misc]


def test_the_templates_environment_parses() -> None:
    env = template_function_env()
    s = Settings.from_env(env)
    assert s.table_name == env["TABLE_NAME"]
    assert list(s.presets) == ["default", "concise", "tutor"]
    assert all(o.startswith("https://") for o in s.allowed_origins)


def test_good_values() -> None:
    s = parse(OPENAI_BASE_URL="http://127.0.0.1:8080/v1/", ALLOWED_VOICES=" cedar , marin,cedar ",
              DEFAULT_VOICE="marin", INSTRUCTION_PRESETS=json.dumps({"a": "Be brief.", "b-2_x": "Be kind."}),
              DEFAULT_PRESET="b-2_x", TRANSCRIPTION_MODEL="none", TURN_DETECTION="none", NOISE_REDUCTION="none",
              MAX_OUTPUT_TOKENS="256", TOKEN_TTL_SECONDS="600",
              ALLOWED_ORIGINS="none, https://a.example/ ,http://localhost:8080,https://a.example",
              ANONYMOUS_RATE_PER_HOUR="0.5", GLOBAL_DAILY_LIMIT="0", ALLOW_ANONYMOUS="No", ISSUING_PAUSED="1")
    assert s.openai_base_url == "http://127.0.0.1:8080/v1"
    assert s.voices == ("cedar", "marin") and s.default_voice == "marin"
    assert s.default_preset == "b-2_x"
    assert (s.transcription_model, s.turn_detection, s.noise_reduction) == (None, None, None)
    assert s.max_output_tokens == 256 and s.token_ttl_seconds == 600
    assert s.allowed_origins == ("https://a.example", "http://localhost:8080")
    assert s.limits.anonymous_rate_per_hour == 0.5 and s.limits.global_daily_limit == 0
    assert not s.limits.allow_anonymous and s.limits.issuing_paused


def test_a_fraction_a_number_parameter_may_be_is_rounded_down_toward_less_spend() -> None:
    settings = Settings.from_env({**REQUIRED, "MAX_CALL_SECONDS": "10.9", "ANONYMOUS_BURST": "2.5",
                                  "TOKEN_TTL_SECONDS": "30.5", "SECRET_CACHE_SECONDS": "1.5",
                                  "DAILY_CALL_MINUTES": "0.5"})
    assert settings.max_call_seconds == 10
    assert settings.limits.anonymous_burst == 2
    assert settings.token_ttl_seconds == 30
    assert settings.secret_cache_seconds == 1
    assert settings.limits.daily_call_seconds == 30  # minutes count to the second


def test_token_ttl_bounds_are_inclusive() -> None:
    assert parse(TOKEN_TTL_SECONDS="10").token_ttl_seconds == 10
    assert parse(TOKEN_TTL_SECONDS="600").token_ttl_seconds == 600


@pytest.mark.parametrize("name", sorted(REQUIRED))
def test_required_variables(name: str) -> None:
    env = {k: v for k, v in REQUIRED.items() if k != name}
    with pytest.raises(SettingsError, match=name):
        Settings.from_env(env)
    with pytest.raises(SettingsError, match=name):
        Settings.from_env({**env, name: "   "})


@pytest.mark.parametrize(("name", "value"), [
    ("TOKEN_TTL_SECONDS", "9"),
    ("TOKEN_TTL_SECONDS", "601"),
    ("TOKEN_TTL_SECONDS", "7200"),
    ("TOKEN_TTL_SECONDS", "6e1"),
    ("TOKEN_TTL_SECONDS", "sixty"),
    ("ALLOWED_VOICES", "marin,nova"),
    ("ALLOWED_VOICES", "Marin"),
    ("ALLOWED_VOICES", " , ,"),
    ("INSTRUCTION_PRESETS", "{not json"),
    ("INSTRUCTION_PRESETS", "{}"),
    ("INSTRUCTION_PRESETS", "[]"),
    ("INSTRUCTION_PRESETS", '"text"'),
    ("INSTRUCTION_PRESETS", '{"Bad Name": "x"}'),
    ("INSTRUCTION_PRESETS", '{"../etc": "x"}'),
    ("INSTRUCTION_PRESETS", '{"_x": "x"}'),
    ("INSTRUCTION_PRESETS", json.dumps({"a" * 33: "x"})),
    ("INSTRUCTION_PRESETS", '{"ok": ""}'),
    ("INSTRUCTION_PRESETS", '{"ok": "   "}'),
    ("INSTRUCTION_PRESETS", '{"ok": 5}'),
    ("DEFAULT_PRESET", "missing"),
    ("ALLOWED_ORIGINS", "*"),
    ("ALLOWED_ORIGINS", "https://a.example,*"),
    ("ALLOWED_ORIGINS", "a.example"),
    ("ALLOWED_ORIGINS", "https://a.example/path"),
    ("ALLOWED_ORIGINS", "ftp://a.example"),
    ("OPENAI_BASE_URL", "api.openai.com/v1"),
    ("OPENAI_BASE_URL", "ftp://api.openai.com/v1"),
    ("OPENAI_BASE_URL", "https://"),
    ("OPENAI_BASE_URL", "https://api.openai.com/v1?x=1"),
    ("OPENAI_BASE_URL", "https://api.openai.com/v1#frag"),
    ("OPENAI_TIMEOUT_SECONDS", "0"),
    ("OPENAI_TIMEOUT_SECONDS", "26"),
    ("OPENAI_TIMEOUT_SECONDS", "nan"),
    ("SECRET_CACHE_SECONDS", "-1"),
    ("TURN_DETECTION", "vad"),
    ("NOISE_REDUCTION", "loud"),
    ("MAX_OUTPUT_TOKENS", "0"),
    ("MAX_OUTPUT_TOKENS", "4097"),
    ("MAX_OUTPUT_TOKENS", "lots"),
    ("ANONYMOUS_BURST", "0"),
    ("ANONYMOUS_BURST", "0.5"),
    ("ANONYMOUS_RATE_PER_HOUR", "0"),
    ("ANONYMOUS_RATE_PER_HOUR", "-1"),
    ("ANONYMOUS_RATE_PER_HOUR", "inf"),
    ("ANONYMOUS_RATE_PER_HOUR", "nan"),
    ("API_KEY_BURST", "10001"),
    ("API_KEY_RATE_PER_HOUR", "fast"),
    ("GLOBAL_DAILY_LIMIT", "-1"),
    ("ALLOW_ANONYMOUS", "maybe"),
    ("ISSUING_PAUSED", "on"),
])
def test_bad_values_name_the_variable(name: str, value: str) -> None:
    with pytest.raises(SettingsError) as caught:
        parse(**{name: value})
    assert name in str(caught.value)


@pytest.mark.parametrize(("env", "name"), [
    ({"ALLOWED_VOICES": "marin", "DEFAULT_VOICE": "cedar"}, "DEFAULT_VOICE"),
    ({"DEFAULT_VOICE": "alloy"}, "DEFAULT_VOICE"),  # a known voice, but not one the owner allowed
    ({"DEFAULT_VOICE": "nova"}, "DEFAULT_VOICE"),
    ({"INSTRUCTION_PRESETS": '{"a": "x"}', "DEFAULT_PRESET": "default"}, "DEFAULT_PRESET"),
])
def test_defaults_must_be_among_the_allowed(env: dict[str, str], name: str) -> None:
    with pytest.raises(SettingsError, match=name):
        parse(**env)


def test_every_known_voice_is_accepted() -> None:
    assert parse(ALLOWED_VOICES=",".join(KNOWN_VOICES)).voices == KNOWN_VOICES


def test_every_refusal_names_the_variable_the_template_sets() -> None:
    """Whatever variable holds garbage, the cold start's message points the owner at it."""
    env = template_function_env()
    refused = []
    for name in env:
        try:
            Settings.from_env({**env, name: "\u00a7garbage\u00a7"})
        except SettingsError as error:
            assert str(error).startswith(name) or f" {name}" in str(error), f"{name}: {error}"
            refused.append(name)
    # Names and ids the template fills in itself, and Powertools' own, are the only ones garbage can pass.
    free_text = {"OPENAI_SECRET_ARN", "HASH_SALT_SECRET_ARN", "TABLE_NAME", "STATE_MACHINE_ARN", "REALTIME_MODEL",
                 "TRANSCRIPTION_MODEL", "POWERTOOLS_SERVICE_NAME", "POWERTOOLS_METRICS_NAMESPACE",
                 "POWERTOOLS_LOG_LEVEL"}
    assert set(refused) == set(env) - free_text


# --- the template and the function agree: what a deploy accepts, a cold start accepts ----------------------------

TEMPLATE = load_template()
PARAMETERS = TEMPLATE["Parameters"]
# What the template cannot say, and where it is checked instead.
BEYOND_THE_TEMPLATE = {
    "InstructionPresets": "a JSON object of presets: no CloudFormation constraint reads JSON (the rehearsal does)",
    "DefaultPreset": "a key of InstructionPresets: Rules cannot read JSON (the rehearsal does)",
    # Rules compare no numbers: these are refused in combination (test_lanes_and_callers_that_contradict_the_day).
    "AnonymousDailyCallMinutes": "no larger than DailyCallMinutes",
    "ApiKeyDailyCallMinutes": "no larger than DailyCallMinutes",
    "UserDailyCallMinutes": "no larger than DailyCallMinutes, and only with JwtIssuer",
    "CallerDailyCallMinutes": "at least one call of MaxCallSeconds",
}
# Accepted and refused values beyond the ones each constraint gives (defaults, bounds, allowed values).
MORE_ACCEPTED = {
    "MaxOutputTokens": ["1", "999", "1000", "4096", "inf"],
    "LiveModel": ["gpt-live-1", "gpt-live-2" + "a" * 30],
    "AllowedOrigins": ["none", "http://localhost:8080", ",".join(["https://a.example"] * 16)],
    "OpenAIBaseUrl": ["https://gateway.example:8443/openai/v1"],
    "AllowedVoices": [",".join(KNOWN_VOICES), "marin"],
}
# Read by Powertools, not by the settings: the template's AllowedValues is the only check.
NO_RULE_IN_THE_FUNCTION = {"LogLevel"}
MORE_REFUSED = {
    "MaxOutputTokens": ["0", "4097", "9999", "lots"],
    "LiveModel": ["gpt-live-x", "gpt-4o"],
    "AllowedOrigins": ["*", "https://a.example/path", "a.example"],
    "AllowedVoices": ["marin,nova", "Marin"],
    "DefaultVoice": ["nova"],
}


def _feeds(function: str) -> dict[str, str]:
    """Parameter -> the environment variable of `function` it becomes."""
    feeds = {}
    for variable, value in TEMPLATE["Resources"][function]["Properties"]["Environment"]["Variables"].items():
        if isinstance(value, dict) and "Fn::Join" in value:
            value = value["Fn::Join"][1]
        if isinstance(value, dict) and value.get("Ref") in PARAMETERS:
            feeds[value["Ref"]] = variable
    return feeds


API_FEEDS, LEASH_FEEDS = _feeds("TokenFunction"), _feeds("LeashFunction")


def _leash_env() -> dict[str, str]:
    defaults = {variable: str(PARAMETERS[name]["Default"]) for name, variable in LEASH_FEEDS.items()}
    return {**defaults, "OPENAI_SECRET_ARN": "arn:aws:secretsmanager:us-east-1:1:secret:key", "TABLE_NAME": "t"}


def _function_refusal(name: str, value: str) -> str | None:
    """What the functions' settings say to this parameter value (None: both accept it)."""
    try:
        if name in API_FEEDS:
            Settings.from_env({**template_function_env(), API_FEEDS[name]: value})
        if name in LEASH_FEEDS:
            LeashSettings.from_env({**_leash_env(), LEASH_FEEDS[name]: value})
    except SettingsError as error:
        return str(error)
    return None


def _template_refusal(name: str, value: str) -> str | None:
    try:
        validate({name: value}, PARAMETERS)
        check_rules(TEMPLATE, {name: value})
    except (ParameterError, RuleError) as error:
        return str(error)
    return None


def _accepted_by_constraints(name: str) -> list[str]:
    spec = PARAMETERS[name]
    values = [str(spec["Default"]), *MORE_ACCEPTED.get(name, [])]
    values += [str(v) for v in spec.get("AllowedValues", []) if name != "AllowedVoices"]
    values += [str(spec[k]) for k in ("MinValue", "MaxValue") if k in spec]
    if spec["Type"] == "Number" and float(spec["MinValue"]) + 0.5 <= float(spec["MaxValue"]):
        values.append(str(float(spec["MinValue"]) + 0.5))  # CloudFormation takes fractions for any Number
    return values


def _refused_by_constraints(name: str) -> list[str]:
    spec = PARAMETERS[name]
    values = list(MORE_REFUSED.get(name, []))
    if "AllowedValues" in spec and spec["Type"] == "String":
        values.append("bogus")
    if "MinValue" in spec:
        low = float(spec["MinValue"])
        values.append(str(low / 2) if 0 < low < 1 else str(int(low) - 1))
    if "MaxValue" in spec:
        values.append(str(int(float(spec["MaxValue"])) + 1))
    return values


FED = sorted(set(API_FEEDS) | set(LEASH_FEEDS))


def test_every_parameter_the_functions_read_is_checked_here() -> None:
    assert len(FED) >= 25
    # Every numeric one is bounded in the template exactly as in the function.
    for name in FED:
        variable = API_FEEDS.get(name) or LEASH_FEEDS[name]
        if PARAMETERS[name]["Type"] == "Number" or variable in RANGES:
            spec = PARAMETERS[name]
            if variable == "MAX_OUTPUT_TOKENS":  # a String ("inf" or a number): its pattern says 1..4096
                continue
            assert (float(spec["MinValue"]), float(spec["MaxValue"])) == RANGES[variable], name


@pytest.mark.parametrize(("name", "choices"), [
    ("VoiceBackend", VOICE_BACKENDS), ("TurnDetection", TURN_DETECTION_TYPES),
    ("NoiseReduction", NOISE_REDUCTION_TYPES), ("AllowedVoices", KNOWN_VOICES), ("DefaultVoice", KNOWN_VOICES),
])
def test_allowed_values_are_the_functions(name: str, choices: tuple[str, ...]) -> None:
    assert sorted(PARAMETERS[name]["AllowedValues"]) == sorted(choices)


@pytest.mark.parametrize(("name", "pattern"), [("LiveModel", LIVE_MODEL), ("DefaultPreset", PRESET_NAME)])
def test_patterns_are_the_functions(name: str, pattern: re.Pattern[str]) -> None:
    assert PARAMETERS[name]["AllowedPattern"] == pattern.pattern


@pytest.mark.parametrize(("name", "value"), [(n, v) for n in FED if n not in BEYOND_THE_TEMPLATE
                                             for v in _accepted_by_constraints(n)])
def test_what_the_template_accepts_the_function_accepts(name: str, value: str) -> None:
    assert _template_refusal(name, value) is None, f"the test's own value {name}={value!r} is not a good one"
    assert _function_refusal(name, value) is None


@pytest.mark.parametrize(("name", "value"), [(n, v) for n in FED for v in _refused_by_constraints(n)])
def test_what_the_template_refuses_the_function_refuses(name: str, value: str) -> None:
    assert _template_refusal(name, value) is not None
    if name in NO_RULE_IN_THE_FUNCTION:
        return
    refusal = _function_refusal(name, value)
    assert refusal is not None and (API_FEEDS.get(name) or LEASH_FEEDS[name]) in refusal


def test_the_default_voice_rule_fails_the_deploy_as_it_fails_the_cold_start() -> None:
    overrides = {"AllowedVoices": "marin,cedar", "DefaultVoice": "alloy"}
    with pytest.raises(RuleError, match="DefaultVoiceIsAllowed"):
        check_rules(TEMPLATE, overrides)
    with pytest.raises(SettingsError, match="DEFAULT_VOICE"):
        Settings.from_env({**template_function_env(), "ALLOWED_VOICES": "marin,cedar", "DEFAULT_VOICE": "alloy"})
    check_rules(TEMPLATE, {**overrides, "DefaultVoice": "cedar"})


def test_the_leash_functions_defaults_parse() -> None:
    settings = LeashSettings.from_env(_leash_env())
    assert settings.secret_cache_seconds == int(PARAMETERS["SecretCacheSeconds"]["Default"])
    assert set(LEASH_FEEDS) == {"OpenAIBaseUrl", "SecretCacheSeconds", "LogLevel"}


# --- lanes and a caller's share of the day ----------------------------------------------------------------------

def test_automatic_lanes_add_up_to_the_day_among_the_lanes_in_use() -> None:
    alone = parse().limits  # no signed-in users: anonymous callers two parts, keys one
    assert dict(alone.lane_call_seconds or {}) == {"anonymous": 2400, "api_key": 1200, "user": 0}
    signed_in = parse(JWT_ISSUER="https://issuer.example/").limits
    assert dict(signed_in.lane_call_seconds or {}) == {"anonymous": 1800, "api_key": 900, "user": 900}
    keys_only = parse(ALLOW_ANONYMOUS="false").limits
    assert dict(keys_only.lane_call_seconds or {}) == {"anonymous": 0, "api_key": 3600, "user": 0}
    # Tokens follow the same shares of the day.
    assert dict(signed_in.lane_tokens or {}) == {"anonymous": 250, "api_key": 125, "user": 125}


def test_explicit_lanes_are_kept_and_automatic_ones_share_the_rest() -> None:
    limits = parse(JWT_ISSUER="https://issuer.example/", USER_DAILY_CALL_MINUTES="40").limits
    assert dict(limits.lane_call_seconds or {}) == {"anonymous": 800, "api_key": 400, "user": 2400}
    overbooked = parse(ANONYMOUS_DAILY_CALL_MINUTES="60", API_KEY_DAILY_CALL_MINUTES="60").limits
    assert dict(overbooked.lane_call_seconds or {}) == {"anonymous": 3600, "api_key": 3600, "user": 0}


@pytest.mark.parametrize(("env", "names"), [
    ({"ANONYMOUS_DAILY_CALL_MINUTES": "61"}, "ANONYMOUS_DAILY_CALL_MINUTES"),
    ({"DAILY_CALL_MINUTES": "2", "API_KEY_DAILY_CALL_MINUTES": "3"}, "API_KEY_DAILY_CALL_MINUTES"),
    ({"CALLER_DAILY_CALL_MINUTES": "5", "MAX_CALL_SECONDS": "300"}, "CALLER_DAILY_CALL_MINUTES"),
    ({"TURNSTILE_SITE_KEY": "0x4AAA"}, "TURNSTILE_SECRET_ARN"),
])
def test_lanes_and_callers_that_contradict_the_day(env: dict[str, str], names: str) -> None:
    """Rules compare no numbers: a lane larger than the day, or a caller's share that holds no call, is refused
    by every cold start (and so by make run and make deploy-check) instead."""
    with pytest.raises(SettingsError, match=names):
        parse(**env)


def test_a_callers_automatic_share_is_three_of_the_longest_calls() -> None:
    assert parse().limits.caller_daily_call_seconds == 3 * 305
    assert parse(MAX_CALL_SECONDS="3600").limits.caller_daily_call_seconds == 3 * 3605
    assert parse(CALLER_DAILY_CALL_MINUTES="10.5").limits.caller_daily_call_seconds == 630
