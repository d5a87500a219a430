"""PARAMETER_OVERRIDES as `sam deploy --parameter-overrides` takes it, checked against the template's own
constraints with a message naming the parameter."""

from __future__ import annotations

import pytest

from local.parameters import ParameterError, parse_overrides, validate
from local.template_stack import load_template

DECLARED = {
    "MaxCallSeconds": {"Type": "Number", "Default": 300, "MinValue": 10, "MaxValue": 3600},
    "DailyCallMinutes": {"Type": "Number", "Default": 60, "MinValue": 0},
    "EnableTokenRoute": {"Type": "String", "Default": "false", "AllowedValues": ["true", "false"]},
    "MaxOutputTokens": {"Type": "String", "Default": "inf", "AllowedPattern": "^(inf|[1-9][0-9]{0,3})$"},
    "Name": {"Type": "String", "Default": "x", "MinLength": 1, "MaxLength": 5, "AllowedPattern": "[a-z]+"},
}


def test_parses_space_separated_pairs_with_quoted_values() -> None:
    assert parse_overrides('MaxCallSeconds=20 DailyCallMinutes=2 Name="a b" Empty= Eq=a=b') == {
        "MaxCallSeconds": "20", "DailyCallMinutes": "2", "Name": "a b", "Empty": "", "Eq": "a=b"}
    assert parse_overrides("") == {}
    assert parse_overrides("  ") == {}


@pytest.mark.parametrize("text", ["MaxCallSeconds", "=20", 'Name="unclosed'])
def test_refuses_what_is_not_name_value(text: str) -> None:
    with pytest.raises(ParameterError, match="PARAMETER_OVERRIDES"):
        parse_overrides(text)


def test_accepts_values_within_the_constraints() -> None:
    validate({"MaxCallSeconds": "10", "DailyCallMinutes": "0", "EnableTokenRoute": "true",
              "MaxOutputTokens": "4096", "Name": "abcde"}, DECLARED)


@pytest.mark.parametrize("values, message", [
    ({"MaxCallSeconds": "9"}, "MaxCallSeconds='9': must be at least 10"),
    ({"MaxCallSeconds": "3601"}, "MaxCallSeconds='3601': must be at most 3600"),
    ({"MaxCallSeconds": "ten"}, "MaxCallSeconds='ten': must be a number"),
    ({"MaxCallSeconds": "nan"}, "must be a number"),
    ({"DailyCallMinutes": "-1"}, "DailyCallMinutes='-1': must be at least 0"),
    ({"EnableTokenRoute": "yes"}, "EnableTokenRoute='yes': must be one of true, false"),
    ({"MaxOutputTokens": "0"}, "MaxOutputTokens='0': must match the pattern"),
    ({"Name": "abcdef"}, "Name='abcdef': must be at most 5 characters long"),
    ({"Name": ""}, "Name='': must be at least 1 characters long"),
    ({"Name": "ab1"}, "must match the pattern"),  # the whole value, as CloudFormation matches it
    ({"MaxCallSecs": "20"}, "MaxCallSecs: the template declares no such parameter (did you mean MaxCallSeconds?)"),
])
def test_refuses_with_a_message_naming_the_parameter(values: dict[str, str], message: str) -> None:
    with pytest.raises(ParameterError) as refused:
        validate(values, DECLARED)
    assert message in str(refused.value)


def test_the_templates_own_defaults_pass_its_own_constraints() -> None:
    declared = load_template()["Parameters"]
    validate({name: str(spec.get("Default", "")) for name, spec in declared.items()
              if name != "ExistingSecretArn" or spec.get("Default") == ""}, declared)
