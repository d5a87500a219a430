"""The template's `Rules`, evaluated as CloudFormation does before it creates anything: a broken assertion fails
the deploy with its AssertDescription. moto ignores Rules, so the local system and the deploy rehearsal evaluate
them here."""

from __future__ import annotations

from typing import Any


class RuleError(ValueError):
    pass


def check_rules(template: dict[str, Any], overrides: dict[str, str]) -> None:
    """Raise RuleError naming the first rule whose assertion fails for these parameter values."""
    values = parameter_values(template, overrides)
    for name, rule in template.get("Rules", {}).items():
        if "RuleCondition" in rule and not _evaluate(rule["RuleCondition"], values):
            continue
        for assertion in rule.get("Assertions", []):
            if not _evaluate(assertion["Assert"], values):
                raise RuleError(f"{name}: {assertion.get('AssertDescription', 'assertion failed')}")


def parameter_values(template: dict[str, Any], overrides: dict[str, str]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for name, spec in template.get("Parameters", {}).items():
        value = str(overrides.get(name, spec.get("Default", "")))
        values[name] = value.split(",") if spec.get("Type") == "CommaDelimitedList" else value
    return values


def _evaluate(node: Any, values: dict[str, Any]) -> Any:
    if not isinstance(node, dict):
        return node
    (function, argument), = node.items()
    args = [_evaluate(a, values) for a in argument] if isinstance(argument, list) else argument
    match function:
        case "Ref":
            return values[argument]
        case "Fn::Equals":
            return str(args[0]) == str(args[1])
        case "Fn::Not":
            return not args[0]
        case "Fn::And":
            return all(args)
        case "Fn::Or":
            return any(args)
        case "Fn::Contains":
            return args[1] in args[0]
        case "Fn::EachMemberEquals":
            return all(member == args[1] for member in args[0])
        case "Fn::EachMemberIn":
            return all(member in args[1] for member in args[0])
    raise RuleError(f"rule function {function} is not one the local check evaluates")
