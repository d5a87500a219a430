"""The deploy rehearsal (deploy/, `make deploy-check`) passes on the template, and fails naming the resource when a
reference is broken, a parameter combination would stop every cold start, or a new account refuses a setting.

`make deploy-check` runs the rehearsal over the parameter matrix on the real `sam build`; here the source template
is packaged as it is (no build: the functions are not run, except the site deployer, whose handler needs nothing
but boto3), which keeps this file to seconds.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from deploy.rehearsal import Case, RehearsalFailed, moto_account, package, rehearse
from local.template_stack import load_template

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def packaged(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    with moto_account(concurrency_quota=10):
        yield package(ROOT / "template.yaml", tmp_path_factory.mktemp("rehearsal") / "packaged.yaml")


def broken_copy(packaged: Path, tmp_path: Path, breaking: Callable[[dict[str, Any]], None]) -> Path:
    template = copy.deepcopy(load_template(packaged))
    breaking(template["Resources"])
    path = tmp_path / "broken.json"  # JSON is YAML: load_template reads it
    path.write_text(json.dumps(template))
    return path


def test_the_template_creates_checks_and_deletes_clean(packaged: Path) -> None:
    outcome = rehearse(packaged, Case("clean"))
    assert outcome.resources >= 35 and outcome.checks >= 60, outcome


USER_LANE = {"JwtIssuer": "https://cognito-idp.us-east-1.amazonaws.com/us-east-1_Example",
             "JwtAudience": "4example0client0id,second-app"}


def test_the_signed_in_lane_creates_its_authorizer_route_integration_and_permission(packaged: Path) -> None:
    """The authorizer (JWT, the issuer, both audiences), POST /user/calls behind it reaching the function's alias,
    the permission for that path and the function told the same issuer: deploy.checks.Stack.user_lane."""
    outcome = rehearse(packaged, Case("user-lane", USER_LANE))
    plain = rehearse(packaged, Case("no-user-lane"))
    assert outcome.resources == plain.resources + 4, (outcome, plain)  # authorizer, integration, route, permission
    assert outcome.checks >= plain.checks + 6, (outcome, plain)


def _user_route_left_open(resources: dict[str, Any]) -> None:
    resources["UserCallsRoute"]["Properties"]["AuthorizationType"] = "NONE"
    del resources["UserCallsRoute"]["Properties"]["AuthorizerId"]


def _authorizer_trusts_another_audience(resources: dict[str, Any]) -> None:
    resources["UserJwtAuthorizer"]["Properties"]["JwtConfiguration"]["Audience"] = ["someone-else"]


def _user_route_names_no_authorizer_of_the_api(resources: dict[str, Any]) -> None:
    resources["UserCallsRoute"]["Properties"]["AuthorizerId"] = "abc123"


def _calls_route_behind_the_authorizer(resources: dict[str, Any]) -> None:
    # The anonymous and API-key routes must stay open to API Gateway: a route declared as a resource for POST
    # /calls behind the JWT authorizer would lock them out.
    resources["UserCallsRoute"]["Properties"]["RouteKey"] = "POST /calls"


@pytest.mark.parametrize(("breaking", "named"), [
    (_user_route_left_open, "UserCallsRoute: POST /user/calls is authorized by NONE"),
    (_authorizer_trusts_another_audience, "UserJwtAuthorizer: checks .*someone-else"),
    (_user_route_names_no_authorizer_of_the_api, "CREATE_FAILED UserCallsRoute .*abc123 is not a JWT authorizer"),
    (_calls_route_behind_the_authorizer, "HttpApi: "),
])
def test_a_miswired_user_lane_fails_naming_the_resource(packaged: Path, tmp_path: Path,
                                                        breaking: Callable[[dict[str, Any]], None],
                                                        named: str) -> None:
    with pytest.raises(RehearsalFailed, match=named):
        rehearse(broken_copy(packaged, tmp_path, breaking), Case(f"lane-{breaking.__name__.strip('_')[:20]}",
                                                                 USER_LANE))


def _leash_reads_the_salt_as_its_table(resources: dict[str, Any]) -> None:
    resources["LeashFunction"]["Properties"]["Environment"]["Variables"]["TABLE_NAME"] = {"Ref": "HashSaltSecret"}


def _timer_runs_the_page_publisher(resources: dict[str, Any]) -> None:
    resources["LeashStateMachine"]["Properties"]["DefinitionSubstitutions"]["LeashFunctionArn"] = {
        "Fn::GetAtt": ["SiteDeployerFunction", "Arn"]}


def _timer_runs_the_api_function(resources: dict[str, Any]) -> None:
    # The API function names the state machine: naming it back is a cycle, which CloudFormation refuses.
    resources["LeashStateMachine"]["Properties"]["DefinitionSubstitutions"]["LeashFunctionArn"] = {
        "Fn::GetAtt": ["TokenFunction", "Arn"]}


def _page_publisher_targets_a_missing_bucket(resources: dict[str, Any]) -> None:
    resources["SiteDeployment"]["Properties"]["BucketName"] = "no-such-bucket"


@pytest.mark.parametrize(("breaking", "named"), [
    (_leash_reads_the_salt_as_its_table, "LeashFunction: TABLE_NAME is not the stack's table"),
    (_timer_runs_the_page_publisher, "LeashStateMachine: its HangUp invokes"),
    (_timer_runs_the_api_function, "Circular dependency between resources: .*LeashStateMachine"),
    (_page_publisher_targets_a_missing_bucket, "CREATE_FAILED SiteDeployment"),
])
def test_a_broken_reference_fails_naming_the_resource(packaged: Path, tmp_path: Path,
                                                      breaking: Callable[[dict[str, Any]], None], named: str) -> None:
    with pytest.raises(RehearsalFailed, match=named):
        rehearse(broken_copy(packaged, tmp_path, breaking), Case(f"broken-{breaking.__name__.strip('_')[:20]}"))


def test_a_default_preset_no_rule_can_check_fails_before_any_cold_start(packaged: Path) -> None:
    with pytest.raises(RehearsalFailed, match="TokenFunction: its environment would stop every cold start: "
                                              "DEFAULT_PRESET"):
        rehearse(packaged, Case("bad-preset", {"DefaultPreset": "missing"}))


def test_a_rule_refuses_a_default_voice_outside_the_allowed_before_anything_is_created(packaged: Path) -> None:
    with pytest.raises(RehearsalFailed, match="DefaultVoiceIsAllowed"):
        rehearse(packaged, Case("bad-voice", {"AllowedVoices": "marin,cedar", "DefaultVoice": "alloy"}))


def test_a_new_account_refuses_the_reservation_the_template_used_to_make(packaged: Path) -> None:
    with pytest.raises(RehearsalFailed, match=r"CREATE_FAILED TokenFunction .*UnreservedConcurrentExecution.*\[10\]"):
        rehearse(packaged, Case("reserved", {"ReservedConcurrency": "20"}))
