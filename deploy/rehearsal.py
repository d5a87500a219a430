"""The deploy, rehearsed offline: `sam package` of a build into moto's S3, the SAM transform, the stack created in
moto's CloudFormation (with deploy.providers for what moto cannot create), its wiring checked (deploy.checks), and
the stack deleted again.

What this proves: the template, translated as CloudFormation translates it, with these parameters, creates every
resource, every reference lands on the resource it means, and a delete leaves only what is meant to stay. What it
cannot: IAM policy evaluation, CloudFront serving the page, account quotas other than concurrency, updates and
rollbacks, and the functions running in Lambda.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config
from moto.server import ThreadedMotoServer

from deploy import checks, providers
from local.parameters import validate
from local.rules import check_rules
from local.template_stack import load_template, translate

PACKAGE_BUCKET = "rehearsal-packages"
CAPABILITIES = ["CAPABILITY_IAM", "CAPABILITY_AUTO_EXPAND"]


class RehearsalFailed(AssertionError):
    """The deploy would fail, or the stack is miswired; the message names the resource."""


@dataclass(frozen=True)
class Case:
    name: str
    parameters: dict[str, str] = field(default_factory=dict)


@dataclass
class Outcome:
    case: str
    resources: int
    checks: int
    seconds: float


@contextlib.contextmanager
def moto_account(concurrency_quota: int = 10) -> Iterator[str]:
    """A moto server standing in for a new AWS account, the providers installed; its endpoint."""
    logging.getLogger("werkzeug").setLevel(logging.CRITICAL)  # moto answers our mistakes with 500s; we report them
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    saved = dict(os.environ)
    # The site deployer's handler runs here and builds its own clients: they must reach moto too.
    os.environ.update({"AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "rehearsal",
                       "AWS_SECRET_ACCESS_KEY": "rehearsal", "AWS_DEFAULT_REGION": "us-east-1",
                       "AWS_REGION": "us-east-1"})
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN"):
        os.environ.pop(name, None)
    answers = providers.install(endpoint, concurrency_quota)
    try:
        yield endpoint
    finally:
        answers.shutdown()
        providers.uninstall()
        server.stop()
        os.environ.clear()
        os.environ.update(saved)


def package(template: Path, output: Path) -> Path:
    """`sam package` into the account's S3, as `sam deploy` does before it creates the stack."""
    providers.client("s3").create_bucket(Bucket=PACKAGE_BUCKET)
    sam = Path(sys.executable).parent / "sam"
    result = subprocess.run(  # noqa: S603 - our own venv's sam, our own paths
        [str(sam), "package", "--template-file", str(template), "--s3-bucket", PACKAGE_BUCKET,
         "--output-template-file", str(output)],
        env={**os.environ, "SAM_CLI_TELEMETRY": "0"}, capture_output=True, text=True, timeout=300, check=False)
    if result.returncode != 0:
        raise RehearsalFailed(f"sam package failed: {result.stderr[-2000:]}")
    return output


def rehearse(packaged: Path, case: Case) -> Outcome:
    """Create the stack, check it, delete it. Raises RehearsalFailed naming what is wrong."""
    started = time.monotonic()
    source = load_template(packaged)
    try:
        validate(case.parameters, source["Parameters"])
        check_rules(source, case.parameters)
    except ValueError as exc:
        raise RehearsalFailed(f"{case.name}: parameters refused before anything is created: {exc}") from None
    translated = translate(source, case.parameters)
    if cycle := circular_dependency(translated):
        raise RehearsalFailed(f"{case.name}: Circular dependency between resources: {cycle}")
    stack_name = f"rehearsal-{case.name}"
    cloudformation = boto3.client("cloudformation", config=Config(retries={"max_attempts": 1}))
    providers.ACCOUNT.failures.clear()
    providers.ACCOUNT.custom_resource_answers.clear()
    try:
        cloudformation.create_stack(
            StackName=stack_name, TemplateBody=json.dumps(translated), Capabilities=CAPABILITIES,
            Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in stack_parameters(source, case).items()])
    except Exception as exc:
        reason = providers.ACCOUNT.failures[0] if providers.ACCOUNT.failures else str(exc)
        raise RehearsalFailed(f"{case.name}: CREATE_FAILED {reason}") from None
    stack = cloudformation.describe_stacks(StackName=stack_name)["Stacks"][0]
    if stack["StackStatus"] != "CREATE_COMPLETE":
        raise RehearsalFailed(f"{case.name}: the stack is {stack['StackStatus']}")
    # moto lists the stack's parameters among its resources too: those have no logical id.
    created = {r["LogicalResourceId"]: r.get("PhysicalResourceId", "")
               for r in cloudformation.describe_stack_resources(StackName=stack_name)["StackResources"]
               if "LogicalResourceId" in r}
    wanted = expected_resources(translated, case.parameters)
    if missing := sorted(wanted - set(created)):
        raise RehearsalFailed(f"{case.name}: not created: {', '.join(missing)}")
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}
    wiring = checks.Stack(translated, case.parameters, created, outputs)
    try:
        wiring.check_all()
    except AssertionError as exc:
        raise RehearsalFailed(f"{case.name}: {exc}") from None
    try:
        cloudformation.delete_stack(StackName=stack_name)
    except Exception as exc:
        raise RehearsalFailed(f"{case.name}: DELETE_FAILED {str(exc)[-300:]}") from None
    try:
        wiring.check_deleted()
    except AssertionError as exc:
        raise RehearsalFailed(f"{case.name}: after the delete: {exc}") from None
    return Outcome(case.name, len(created), wiring.passed, round(time.monotonic() - started, 2))


def stack_parameters(template: dict[str, Any], case: Case) -> dict[str, str]:
    """The case's parameters, and every list parameter's default too: moto splits a CommaDelimitedList only when it
    is given, so a default one would reach !Join as a string (CloudFormation splits both)."""
    lists = {name: str(spec["Default"]) for name, spec in template["Parameters"].items()
             if spec.get("Type") == "CommaDelimitedList" and "Default" in spec}
    return {**lists, **case.parameters}


def expected_resources(translated: dict[str, Any], parameters: dict[str, str]) -> set[str]:
    """The logical ids CloudFormation would create with these parameters (their conditions true)."""
    return {logical for logical, resource in translated["Resources"].items()
            if "Condition" not in resource or holds(translated, parameters, {"Condition": resource["Condition"]})}


def holds(template: dict[str, Any], parameters: dict[str, str], node: Any) -> Any:
    """A condition's value (or a Ref's) for these parameter values."""
    if not isinstance(node, dict):
        return node
    (function, argument), = node.items()
    match function:
        case "Ref":
            return parameters.get(argument, str(template["Parameters"].get(argument, {}).get("Default", argument)))
        case "Condition":
            return holds(template, parameters, template["Conditions"][argument])
        case "Fn::Equals":
            return str(holds(template, parameters, argument[0])) == str(holds(template, parameters, argument[1]))
        case "Fn::Not":
            return not holds(template, parameters, argument[0])
        case "Fn::And":
            return all(holds(template, parameters, a) for a in argument)
        case "Fn::Or":
            return any(holds(template, parameters, a) for a in argument)
    raise RehearsalFailed(f"condition function {function} is not one the rehearsal evaluates")


def circular_dependency(translated: dict[str, Any]) -> list[str]:
    """A cycle of references (Ref, GetAtt, ${} in Sub, DependsOn) among the resources, which CloudFormation
    refuses before creating anything (moto would recurse until it fails); empty if none."""
    resources = translated["Resources"]

    def references(node: Any) -> set[str]:
        if isinstance(node, list):
            return set().union(*(references(n) for n in node)) if node else set()
        if not isinstance(node, dict):
            return set()
        found: set[str] = set()
        for key, value in node.items():
            if key == "Ref" and value in resources:
                found.add(value)
            elif key == "Fn::GetAtt":
                found.add(value[0] if isinstance(value, list) else value.split(".")[0])
            elif key == "Fn::Sub":
                text = value if isinstance(value, str) else value[0]
                found |= {name.split(".")[0] for name in re.findall(r"\$\{([^}!]+)\}", text)} & set(resources)
                found |= references(value[1]) if isinstance(value, list) else set()
            else:
                found |= references(value)
        return found

    graph = {logical: references(r.get("Properties", {})) | set(
        [r["DependsOn"]] if isinstance(r.get("DependsOn"), str) else r.get("DependsOn", [])) for logical, r in
        resources.items()}
    visiting: list[str] = []
    done: set[str] = set()

    def visit(logical: str) -> list[str]:
        if logical in visiting:
            return [*visiting[visiting.index(logical):], logical]
        if logical in done:
            return []
        visiting.append(logical)
        for target in sorted(graph.get(logical, ())):
            if cycle := visit(target):
                return cycle
        visiting.pop()
        done.add(logical)
        return []

    return next((cycle for logical in sorted(graph) if (cycle := visit(logical))), [])
