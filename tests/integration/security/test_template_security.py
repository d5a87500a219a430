"""Static security checks of template.yaml: cfn-lint and checkov with zero failed checks, every skipped check with
its reason written in the template, and IAM scoped to this stack's own secret, table, bucket and distribution.

checkov runs offline twice: on the SAM template itself, and on the CloudFormation SAM translates it into (with
`local.template_stack.translate`, as CloudFormation would), which is where the generated IAM roles, Lambda
permissions and the API Gateway stage live. A generated resource inherits the checkov skips of the SAM resource it
came from (HttpApi -> HttpApiApiGatewayDefaultStage), so every skip's reason is still the one in template.yaml.
checkov lives in its own venv (.venv/checkov, `make venv`): it pins a boto3 that conflicts with ours.
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from local.template_stack import load_template, translate
from tests.integration.security.security_support import record_figures

ROOT = Path(__file__).resolve().parents[3]
VENV_BIN = Path(sys.executable).parent
CHECKOV_VENV = ROOT / ".venv" / "checkov"
CHECKOV = CHECKOV_VENV / "bin" / "checkov"
# The only IAM grants on "*", and why: both are AWS managed policies that SAM attaches.
STAR_EXCEPTIONS = {
    "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole":
        "CloudWatch Logs for the function's own log group; the group is named by Lambda at run time",
    "arn:aws:iam::aws:policy/AWSXrayWriteOnlyAccess":
        "X-Ray PutTraceSegments/PutTelemetryRecords, added by `Tracing: Active`; X-Ray has no resource-level ARNs",
}
FIGURES: dict[str, Any] = {}


def _checkov_binary() -> Path:
    if not CHECKOV.exists():  # `make venv` makes it; a bare pytest run makes it here, once
        subprocess.run([sys.executable, "-m", "venv", str(CHECKOV_VENV)], check=True)
        subprocess.run([str(CHECKOV_VENV / "bin" / "pip"), "install", "--quiet", "-r",
                        str(ROOT / "requirements-checkov.txt")], check=True, timeout=600)
    return CHECKOV


def _checkov(path: Path) -> dict[str, Any]:
    result = subprocess.run([str(_checkov_binary()), "-f", str(path), "--framework", "cloudformation", "-o", "json",
                             "--compact", "--skip-download"],
                            capture_output=True, text=True, timeout=240, cwd=path.parent)
    report = json.loads(result.stdout)
    reports = report if isinstance(report, list) else [report]
    assert len(reports) == 1 and reports[0]["check_type"] == "cloudformation", result.stderr[-2000:]
    return reports[0]


def _summarise(report: dict[str, Any]) -> dict[str, Any]:
    summary = report["summary"]
    failed = report["results"].get("failed_checks", [])
    skipped = report["results"].get("skipped_checks", [])
    return {
        "passed": summary["passed"], "failed": summary["failed"], "skipped": summary["skipped"],
        "parsing_errors": summary["parsing_errors"], "resources": summary["resource_count"],
        "checkov": summary["checkov_version"],
        "failed_checks": [f"{c['check_id']} {c['resource']}: {c['check_name']}" for c in failed],
        "skipped_checks": sorted({f"{c['check_id']} {c['resource']}" for c in skipped}),
        "skip_reasons_given": sum(1 for c in skipped if c["check_result"].get("suppress_comment", "").strip()),
    }


def _template_skips() -> dict[str, dict[str, str]]:
    """Every checkov skip declared in template.yaml: resource -> check id -> the reason given."""
    skips: dict[str, dict[str, str]] = {}
    for name, resource in load_template()["Resources"].items():
        for skip in resource.get("Metadata", {}).get("checkov", {}).get("skip", []):
            skips.setdefault(name, {})[skip["id"]] = str(skip.get("comment", "")).strip()
    return skips


@pytest.fixture(scope="module")
def translated() -> dict[str, Any]:
    return translate(load_template(), {})


@pytest.fixture(scope="module", autouse=True)
def _figures() -> Any:
    yield
    record_figures("template_security", **FIGURES)


def test_cfn_lint_finds_nothing() -> None:
    result = subprocess.run([str(VENV_BIN / "cfn-lint"), "template.yaml"], cwd=ROOT, capture_output=True, text=True,
                            timeout=120)
    FIGURES["cfn_lint_findings"] = len([line for line in result.stdout.splitlines() if line.strip()]) // 2
    assert result.returncode == 0 and result.stdout.strip() == "", result.stdout


def test_every_checkov_skip_in_the_template_gives_its_reason() -> None:
    skips = _template_skips()
    reasons = [reason for checks in skips.values() for reason in checks.values()]
    assert reasons and all(len(reason) >= 20 for reason in reasons), skips
    FIGURES["skips_declared"] = {name: sorted(checks) for name, checks in skips.items()}


def test_checkov_on_the_sam_template_has_no_failed_check() -> None:
    report = _checkov(ROOT / "template.yaml")
    figures = _summarise(report)
    FIGURES["checkov_sam_template"] = figures
    assert figures["parsing_errors"] == 0
    assert figures["failed"] == 0, figures["failed_checks"]
    skips = _template_skips()
    used = {(c["resource"].split(".", 1)[1], c["check_id"]) for c in report["results"].get("skipped_checks", [])}
    # Declared for checks this checkov version does not run on these resources (kept for newer versions).
    figures["declared_skips_not_triggered"] = sorted(f"{check} {name}" for name, checks in skips.items()
                                                     for check in checks if (name, check) not in used)
    for check in report["results"].get("skipped_checks", []):
        resource = check["resource"].split(".", 1)[1]
        assert skips.get(resource, {}).get(check["check_id"]), f"{check['check_id']} skipped without a reason"
        assert check["check_result"]["suppress_comment"].strip()


def test_checkov_on_the_translated_cloudformation_has_no_failed_check(translated: dict[str, Any],
                                                                      tmp_path: Path) -> None:
    template = copy.deepcopy(translated)
    sam_resources = load_template()["Resources"]
    skips = {name: resource["Metadata"] for name, resource in sam_resources.items()
             if "checkov" in resource.get("Metadata", {})}
    inherited = []
    for name, resource in template["Resources"].items():
        if name in sam_resources:
            continue  # declared in the template itself: its own Metadata (or none) stands
        origin = next((sam for sam in sorted(skips, key=len, reverse=True) if name.startswith(sam)), None)
        if origin and "checkov" not in resource.get("Metadata", {}):
            resource.setdefault("Metadata", {})["checkov"] = skips[origin]["checkov"]
            inherited.append(f"{name} <- {origin}")
    path = tmp_path / "translated.json"
    path.write_text(json.dumps(template))
    figures = _summarise(_checkov(path))
    FIGURES["checkov_translated_cloudformation"] = {**figures, "skips_inherited_from_sam_resource": inherited}
    assert figures["parsing_errors"] == 0
    assert figures["failed"] == 0, figures["failed_checks"]
    assert figures["skip_reasons_given"] == figures["skipped"]


PRINCIPALS = {"LeashStateMachineRole": "states.amazonaws.com", "LeashFunctionSweeperRole": "scheduler.amazonaws.com"}


def _resources_of(statement: dict[str, Any]) -> list[Any]:
    resources = statement.get("Resource", [])
    return resources if isinstance(resources, list) else [resources]


@pytest.mark.parametrize("existing_secret", ["", "arn:aws:secretsmanager:us-east-1:123456789012:secret:mine-AbCdEf"])
def test_iam_is_scoped_to_this_stacks_own_resources(existing_secret: str) -> None:
    template = translate(load_template(), {"ExistingSecretArn": existing_secret} if existing_secret else {})
    resources = template["Resources"]
    secret = {"Ref": "ExistingSecretArn"} if existing_secret else {"Ref": "OpenAIKeySecret"}
    key_secret = {"Fn::If": ["CreateSecret", {"Ref": "OpenAIKeySecret"}, {"Ref": "ExistingSecretArn"}]}
    leash_function = {"Fn::GetAtt": ["LeashFunction", "Arn"]}
    allowed = {
        "TokenFunctionRole": [
            key_secret, {"Ref": "HashSaltSecret"}, {"Fn::GetAtt": ["LimitsTable", "Arn"]},
            # The owner's Turnstile secret, named by its parameter, only where Turnstile is set up.
            {"Fn::If": ["HasTurnstile", {"Ref": "TurnstileSecretArn"}, {"Ref": "AWS::NoValue"}]},
            # its one state machine: start executions of it, stop executions of it
            {"Ref": "LeashStateMachine"},
            {"Fn::Sub": "arn:${AWS::Partition}:states:${AWS::Region}:${AWS::AccountId}:execution:"
                        "${LeashStateMachine.Name}:*"}],
        "LeashFunctionRole": [
            key_secret, {"Fn::GetAtt": ["LimitsTable", "Arn"]}, {"Fn::Sub": "${LimitsTable.Arn}/index/ActiveCalls"}],
        "LeashStateMachineRole": [leash_function],  # the timer may invoke the leash function and nothing else
        "LeashFunctionSweeperRole": [leash_function],  # so may the sweeper's schedule
        "SiteDeployerFunctionRole": [
            {"Fn::GetAtt": ["SiteBucket", "Arn"]}, {"Fn::Sub": "${SiteBucket.Arn}/*"},
            {"Fn::Sub": "arn:${AWS::Partition}:cloudfront::${AWS::AccountId}:distribution/${SiteDistribution}"}],
    }
    roles = {name: r for name, r in resources.items() if r["Type"] == "AWS::IAM::Role"}
    assert set(roles) == set(allowed), "a role this test does not know"
    statements = 0
    for name, role in roles.items():
        assert set(role["Properties"].get("ManagedPolicyArns", [])) <= set(STAR_EXCEPTIONS), name
        for policy in role["Properties"]["Policies"]:
            for statement in policy["PolicyDocument"]["Statement"]:
                statements += 1
                assert statement["Effect"] == "Allow"
                actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
                assert not any("*" in action for action in actions), (name, actions)
                for resource in _resources_of(statement):
                    assert resource != "*" and resource in allowed[name], (name, resource)
        principals = role["Properties"]["AssumeRolePolicyDocument"]["Statement"][0]["Principal"]
        assert principals == {"Service": [PRINCIPALS.get(name, "lambda.amazonaws.com")]}, name
    invokes = {name: [s["Action"] for p in role["Properties"]["Policies"] for s in p["PolicyDocument"]["Statement"]]
               for name, role in roles.items() if name in PRINCIPALS}
    assert invokes == {"LeashStateMachineRole": ["lambda:InvokeFunction"],
                       "LeashFunctionSweeperRole": ["lambda:InvokeFunction"]}
    # The key's secret is the one the stack made, or the one the owner named: nothing else.
    token_env = resources["TokenFunction"]["Properties"]["Environment"]["Variables"]
    assert token_env["OPENAI_SECRET_ARN"]["Fn::If"][1 if not existing_secret else 2] == secret
    # Who may invoke the token function: this API only.
    permissions = [r for r in resources.values() if r["Type"] == "AWS::Lambda::Permission"]
    for permission in permissions:
        assert permission["Properties"]["Principal"] == "apigateway.amazonaws.com"
        source = permission["Properties"]["SourceArn"]["Fn::Sub"]
        if isinstance(source, str):  # ours, for the signed-in users' route: that route of this API only
            assert source == ("arn:${AWS::Partition}:execute-api:${AWS::Region}:${AWS::AccountId}:${HttpApi}"
                              "/*/*/user/calls")
            continue
        assert source[0].startswith("arn:${AWS::Partition}:execute-api:${AWS::Region}:${AWS::AccountId}:${__ApiId__}/")
        assert source[1]["__ApiId__"] == {"Ref": "HttpApi"}
    # The bucket: CloudFront of this distribution may read, nobody may use plain HTTP.
    bucket_policy = resources["SiteBucketPolicy"]["Properties"]["PolicyDocument"]["Statement"]
    allows = [s for s in bucket_policy if s["Effect"] == "Allow"]
    assert len(allows) == 1 and allows[0]["Principal"] == {"Service": "cloudfront.amazonaws.com"}
    assert allows[0]["Action"] == "s3:GetObject" and "${SiteDistribution}" in json.dumps(allows[0]["Condition"])
    assert all(s["Effect"] == "Deny" for s in bucket_policy if s.get("Principal") == "*")
    # CORS never allows any origin.
    api = next(r for r in resources.values() if r["Type"] == "AWS::ApiGatewayV2::Api")
    assert "*" not in json.dumps(api["Properties"]["Body"].get("x-amazon-apigateway-cors", {}).get("allowOrigins"))
    FIGURES.setdefault("iam", {})["existing_secret" if existing_secret else "stack_secret"] = {
        "roles": len(roles), "inline_statements": statements, "statements_on_star": 0,
        "lambda_permissions": len(permissions), "managed_policies_on_star": STAR_EXCEPTIONS}
