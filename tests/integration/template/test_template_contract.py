"""What template.yaml promises a first deploy on a new account, read from the template and its SAM translation:
nothing reserved by default, a retention on every function's logs, what `sam delete` keeps, Lambda's 4 KB of
environment at every parameter's maximum, a Version on every policy, alarms and a dashboard on metrics the functions
emit, the routes the function serves, and `sam deploy --guided` with nothing to refuse."""

from __future__ import annotations

import copy
import json
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
from samcli.commands.deploy.auth_utils import auth_per_resource
from samcli.lib.providers.sam_stack_provider import SamLocalStackProvider

from deploy.checks import emitted
from deploy.rehearsal import holds
from local.template_stack import load_template, translate
from tokenvend import metric_names, observability, routes

ROOT = Path(__file__).resolve().parents[3]
SOURCE = load_template()
DEFAULTS = translate(SOURCE, {})
ALERTS = translate(SOURCE, {"AlertEmail": "owner@example.com", "EnableTokenRoute": "true"})
FUNCTIONS = ("TokenFunction", "LeashFunction", "SiteDeployerFunction")
# Worst cases of what CloudFormation and AWS fill in: a 128-character stack name, the longest partition and region.
STACK, PARTITION, REGION = "s" * 128, "aws-us-gov", "ap-southeast-5"
GENERATED_SECRET_ARN = f"arn:{PARTITION}:secretsmanager:{REGION}:123456789012:secret:{STACK}-OpenAIKeySecret-" \
                       f"{'X' * 12}-abcdef"
WORST_CASE = {
    "TABLE_NAME": "t" * 255,  # DynamoDB's longest table name
    "HASH_SALT_SECRET_ARN": GENERATED_SECRET_ARN,
    "STATE_MACHINE_ARN": f"arn:{PARTITION}:states:{REGION}:123456789012:stateMachine:" + "m" * 80,
    "SITE": "https://d" + "x" * 13 + ".cloudfront.net",
}


def _resolved(condition: str, template: dict[str, Any], parameters: dict[str, str]) -> bool:
    return bool(holds(template, parameters, {"Condition": condition}))


def test_no_concurrency_is_reserved_with_the_default_parameters() -> None:
    prop = DEFAULTS["Resources"]["TokenFunction"]["Properties"]["ReservedConcurrentExecutions"]
    assert prop["Fn::If"][2] == {"Ref": "AWS::NoValue"}
    assert not _resolved(prop["Fn::If"][0], DEFAULTS, {})
    assert _resolved(prop["Fn::If"][0], DEFAULTS, {"ReservedConcurrency": "5"})
    assert not any("ReservedConcurrentExecutions" in r.get("Properties", {}) for name, r in
                   DEFAULTS["Resources"].items() if name != "TokenFunction")


def test_snapstart_only_when_asked_and_the_api_calls_a_published_version() -> None:
    function = DEFAULTS["Resources"]["TokenFunction"]["Properties"]
    assert function["SnapStart"]["Fn::If"][1] == {"ApplyOn": "PublishedVersions"}
    assert not _resolved(function["SnapStart"]["Fn::If"][0], DEFAULTS, {})
    assert _resolved(function["SnapStart"]["Fn::If"][0], DEFAULTS, {"SnapStart": "true"})
    api = DEFAULTS["Resources"]["HttpApi"]["Properties"]["Body"]["paths"]
    uris = {json.dumps(op["x-amazon-apigateway-integration"]["uri"]) for path in api.values() for op in path.values()}
    assert uris and all("TokenFunctionAliaslive" in uri for uri in uris)


def test_every_function_logs_to_a_group_with_a_retention() -> None:
    resources = DEFAULTS["Resources"]
    functions = [name for name, r in resources.items() if r["Type"] == "AWS::Lambda::Function"]
    assert sorted(functions) == sorted(FUNCTIONS)
    for name in functions:
        group = resources[name]["Properties"]["LoggingConfig"]["LogGroup"]["Ref"]
        assert resources[group]["Type"] == "AWS::Logs::LogGroup"
        assert resources[group]["Properties"]["RetentionInDays"] == 30


@pytest.mark.parametrize(("resource", "policy"), [
    ("LimitsTable", "Retain"), ("OpenAIKeySecret", "Retain"), ("HashSaltSecret", "Delete"), ("SiteBucket", "Delete"),
    ("TokenFunctionLogs", "Delete"), ("LeashFunctionLogs", "Delete"), ("SiteDeployerFunctionLogs", "Delete"),
])
def test_what_sam_delete_keeps_is_stated(resource: str, policy: str) -> None:
    stated = SOURCE["Resources"][resource]
    assert (stated["DeletionPolicy"], stated["UpdateReplacePolicy"]) == (policy, policy)


@pytest.mark.parametrize("template", [DEFAULTS, ALERTS], ids=["defaults", "alerts"])
def test_every_iam_policy_has_a_version(template: dict[str, Any]) -> None:
    documents = [policy["PolicyDocument"] for r in template["Resources"].values() if r["Type"] == "AWS::IAM::Role"
                 for policy in r["Properties"].get("Policies", [])]
    documents += [r["Properties"]["AssumeRolePolicyDocument"] for r in template["Resources"].values()
                  if r["Type"] == "AWS::IAM::Role"]
    documents += [r["Properties"]["PolicyDocument"] for r in template["Resources"].values()
                  if r["Type"] == "AWS::S3::BucketPolicy"]
    assert len(documents) >= 11 and all(d.get("Version") == "2012-10-17" for d in documents)


def _longest(name: str) -> str:
    spec = SOURCE["Parameters"][name]
    if spec.get("Type") == "CommaDelimitedList":
        return ",".join(spec["AllowedValues"])
    if "AllowedValues" in spec:
        return max((str(v) for v in spec["AllowedValues"]), key=len)
    if spec.get("Type") == "Number":
        return str(spec["MaxValue"])
    assert "MaxLength" in spec, f"{name}: free text without a MaxLength"
    return "x" * int(spec["MaxLength"])


@pytest.mark.parametrize("function", ["TokenFunction", "LeashFunction"])
def test_the_environment_fits_lambdas_4_kb_at_every_parameters_maximum(function: str) -> None:
    variables = SOURCE["Resources"][function]["Properties"]["Environment"]["Variables"]
    worst = {}
    for name, value in variables.items():
        if isinstance(value, str):
            worst[name] = value
        elif name == "ALLOWED_ORIGINS":
            worst[name] = f"{WORST_CASE['SITE']},{_longest('AllowedOrigins')}"
        elif name == "OPENAI_SECRET_ARN":
            worst[name] = max(GENERATED_SECRET_ARN, _longest("ExistingSecretArn"), key=len)
        elif name in WORST_CASE:
            worst[name] = WORST_CASE[name]
        else:
            reference = value.get("Ref") or value["Fn::Join"][1]["Ref"]
            worst[name] = _longest(reference)
    size = len(json.dumps(worst).encode())
    assert size <= 4096, f"{function}: {size} bytes of environment at the parameters' maximum"


def test_every_free_text_parameter_has_a_max_length() -> None:
    for name, spec in SOURCE["Parameters"].items():
        if spec.get("Type") == "String" and "AllowedValues" not in spec:
            assert "MaxLength" in spec, name


def _alarm_metrics(template: dict[str, Any]) -> list[dict[str, Any]]:
    return [query["MetricStat"]["Metric"] for r in template["Resources"].values()
            if r["Type"] == "AWS::CloudWatch::Alarm" for query in r["Properties"]["Metrics"] if "MetricStat" in query]


def test_every_alarm_watches_a_metric_the_functions_emit() -> None:
    metrics = _alarm_metrics(ALERTS)
    assert len(metrics) >= 9
    for metric in metrics:
        assert emitted(metric), metric
    watched = {m["MetricName"] for m in metrics}
    assert watched >= {metric_names.CALL_SECONDS_RESERVED, metric_names.DENIED, metric_names.UPSTREAM_ERRORS,
                       metric_names.LEASH_FAILURES, metric_names.TOKENS_ISSUED, metric_names.OFFERS_REJECTED,
                       metric_names.CLIENT_ERRORS, "4xx"}
    reasons = {d["Value"] for m in metrics for d in m["Dimensions"] if d["Name"] == "reason"}
    assert reasons == set(metric_names.DENIAL_REASONS_ALARMED)


def test_alarms_exist_only_with_an_alert_email_and_notify_it() -> None:
    assert not _alarm_metrics(DEFAULTS) or all(
        not _resolved(r["Condition"], DEFAULTS, {}) for r in DEFAULTS["Resources"].values()
        if r["Type"] == "AWS::CloudWatch::Alarm")
    alarms = [r for r in ALERTS["Resources"].values() if r["Type"] == "AWS::CloudWatch::Alarm"]
    params = {"AlertEmail": "owner@example.com", "EnableTokenRoute": "true"}
    assert len(alarms) == 9 and all(_resolved(a["Condition"], ALERTS, params) for a in alarms)
    assert all(a["Properties"]["AlarmActions"] == [{"Ref": "AlertTopic"}] for a in alarms)


def test_the_dashboard_shows_metrics_the_functions_emit() -> None:
    body, variables = DEFAULTS["Resources"]["Dashboard"]["Properties"]["DashboardBody"]["Fn::Sub"]
    text = body.replace("${Ns}", variables["Ns"]).replace("${AWS::Region}", "us-east-1")
    widgets = json.loads(text)["widgets"]
    shown = [line for w in widgets for line in w["properties"]["metrics"]]
    assert len(shown) >= 12
    for line in shown:
        fields = [f for f in line if isinstance(f, str)]
        metric = {"Namespace": fields[0], "MetricName": fields[1],
                  "Dimensions": [{"Name": n, "Value": v} for n, v in zip(fields[2::2], fields[3::2], strict=True)]}
        assert emitted(metric), line


def test_metric_names_namespace_and_services_are_the_templates() -> None:
    for function, service in (("TokenFunction", metric_names.SERVICE_API),
                              ("LeashFunction", metric_names.SERVICE_LEASH)):
        env = SOURCE["Resources"][function]["Properties"]["Environment"]["Variables"]
        # The API's function has no room in its environment for them: its service and namespace are the code's.
        assert env.get("POWERTOOLS_METRICS_NAMESPACE", observability.NAMESPACE) == metric_names.NAMESPACE
        assert env.get("POWERTOOLS_SERVICE_NAME", observability.SERVICE) == service


def test_the_routes_the_function_declares_are_the_templates_events() -> None:
    events = SOURCE["Resources"]["TokenFunction"]["Properties"]["Events"].values()
    declared = {(e["Properties"]["Method"].upper(), e["Properties"]["Path"]) for e in events}
    # The signed-in users' route is no SAM event: a route of its own behind the JWT authorizer (UserCallsRoute).
    assert declared - {("ANY", "/{proxy+}")} == {(r.method, r.path) for r in routes.ROUTES} - {("POST", "/user/calls")}
    user_route = SOURCE["Resources"]["UserCallsRoute"]["Properties"]
    assert (user_route["RouteKey"], user_route["AuthorizationType"]) == ("POST /user/calls", "JWT")
    assert ("ANY", "/{proxy+}") in declared


def test_sam_deploy_asks_nothing_that_aborts_and_the_auth_statement_changes_nothing() -> None:
    stacks, _ = SamLocalStackProvider.get_stacks(str(ROOT / "template.yaml"))
    answers = auth_per_resource(stacks)
    assert answers and all(ok for _, ok in answers)
    without = copy.deepcopy(SOURCE)
    del without["Resources"]["HttpApi"]["Properties"]["Auth"]
    assert translate(without, {}) == DEFAULTS
    config = tomllib.loads((ROOT / "samconfig.toml").read_text())["default"]
    deploy = config["deploy"]["parameters"]
    assert deploy["confirm_changeset"] is False and deploy["resolve_s3"] is True
    assert set(deploy["capabilities"].split()) == {"CAPABILITY_IAM", "CAPABILITY_AUTO_EXPAND"}
    assert re.fullmatch(r"[A-Za-z][A-Za-z0-9-]{0,127}", config["global"]["parameters"]["stack_name"])
