"""Stack parameters for the local system, given as to `sam deploy --parameter-overrides` and checked against the
template's own constraints (each parameter's, then the template's Rules) before anything starts, with the message
CloudFormation would give naming the parameter."""

from __future__ import annotations

import difflib
import re
import shlex
from typing import Any

from local.rules import RuleError, check_rules


class ParameterError(ValueError):
    pass


def parse_overrides(text: str) -> dict[str, str]:
    """Either form `sam deploy --parameter-overrides` takes, space-separated, values may be quoted (shell rules):
    `Name=Value Other="a value"` or `ParameterKey=Name,ParameterValue=Value`."""
    try:
        words = shlex.split(text)
    except ValueError as exc:
        raise ParameterError(f"PARAMETER_OVERRIDES: {exc}") from None
    values: dict[str, str] = {}
    for word in words:
        long_form = re.fullmatch(r"ParameterKey=([^,=]+),ParameterValue=(.*)", word, flags=re.DOTALL)
        if long_form:
            name, value = long_form.groups()
        elif word.startswith("ParameterKey="):
            raise ParameterError(f"PARAMETER_OVERRIDES: {word!r} is not ParameterKey=Name,ParameterValue=Value")
        else:
            name, equals, value = word.partition("=")
            if not equals or not name:
                raise ParameterError(f"PARAMETER_OVERRIDES: {word!r} is not Name=Value")
        values[name] = value
    return values


def validate(values: dict[str, str], declared: dict[str, dict[str, Any]],
             rules: dict[str, dict[str, Any]] | None = None) -> None:
    for name, value in values.items():
        if name not in declared:
            close = difflib.get_close_matches(name, declared, n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise ParameterError(f"{name}: the template declares no such parameter{hint}")
        problem = _problem(value, declared[name])
        if problem:
            raise ParameterError(f"{name}={value!r}: {problem}")
    try:
        check_rules({"Parameters": declared, "Rules": rules or {}}, values)
    except RuleError as exc:
        raise ParameterError(f"rule {exc}") from None


def _problem(value: str, spec: dict[str, Any]) -> str | None:
    if spec.get("Type") == "CommaDelimitedList":  # CloudFormation checks each item of the list
        item_spec = {k: v for k, v in spec.items() if k in ("AllowedValues", "AllowedPattern")}
        return next((f"{item!r}: {problem}" for item in value.split(",")
                     if (problem := _problem(item, item_spec))), None)
    allowed = spec.get("AllowedValues")
    if allowed is not None and value not in [str(a) for a in allowed]:
        return f"must be one of {', '.join(str(a) for a in allowed)}"
    if spec.get("Type") == "Number":
        if re.fullmatch(r"-?(\d+\.?\d*|\.\d+)", value) is None:  # float() would also take nan, inf, 1e3
            return "must be a number"
        number = float(value)
        if "MinValue" in spec and number < float(spec["MinValue"]):
            return f"must be at least {spec['MinValue']}"
        if "MaxValue" in spec and number > float(spec["MaxValue"]):
            return f"must be at most {spec['MaxValue']}"
        return None
    if "MinLength" in spec and len(value) < int(spec["MinLength"]):
        return f"must be at least {spec['MinLength']} characters long"
    if "MaxLength" in spec and len(value) > int(spec["MaxLength"]):
        return f"must be at most {spec['MaxLength']} characters long"
    pattern = spec.get("AllowedPattern")
    if pattern is not None and re.fullmatch(pattern, value) is None:  # CloudFormation matches the whole value
        return f"must match the pattern {pattern}"
    return None
