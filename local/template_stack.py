"""The deployed stack's resources, created in moto from template.yaml itself, so local schema cannot drift.

The SAM template is translated with samtranslator (as CloudFormation would), its intrinsic functions are resolved
with the parameter values, and then the resources moto can hold are created through the AWS API: the DynamoDB
table (key schema, billing mode, TTL as declared), the Secrets Manager secrets (moto's CloudFormation skips
those) and the Step Functions state machines (definition with its substitutions made, as CloudFormation makes
them). What the local system runs comes out of the same translated template: each function's handler, code and
environment, each state machine's definition and each schedule's expression and input.
"""

from __future__ import annotations

import copy
import functools
import json
import logging
import os
import re
import secrets
import string
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import yaml
from samtranslator.translator.transform import transform

# The transform records usage metrics for AWS's own service and, with no publisher to give them to, warns about
# "unpublished metrics" when they are garbage-collected: noise on the console of `make run`, nothing of ours.
logging.getLogger("samtranslator.metrics.metrics").setLevel(logging.ERROR)

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "template.yaml"
ACCOUNT_ID = "123456789012"
REGION = "us-east-1"
# HTTP API parts declared as resources of their own (not in the Api's OpenAPI body): `provision` leaves them in
# `LocalStack.resources` as created, their conditions applied and their values resolved.
API_PARTS = ("AWS::ApiGatewayV2::Route", "AWS::ApiGatewayV2::Integration", "AWS::ApiGatewayV2::Authorizer")


class _CfnLoader(yaml.SafeLoader):
    """Reads `!Ref`, `!Sub`, ... as their long forms ({"Ref": ...}, {"Fn::Sub": ...})."""


def _construct_tag(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> dict[str, Any]:
    name = "Ref" if suffix == "Ref" else f"Fn::{suffix}"
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
        if suffix == "GetAtt":
            value = value.split(".", 1)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    return {name: value}


_CfnLoader.add_multi_constructor("!", _construct_tag)


def load_template(path: Path = TEMPLATE) -> dict[str, Any]:
    # Parsed once per version of the file: the test suite provisions hundreds of stacks from it.
    return copy.deepcopy(_parse(path, path.stat().st_mtime_ns))


@functools.cache
def _parse(path: Path, _version: int) -> dict[str, Any]:
    return yaml.load(path.read_text(), Loader=_CfnLoader)  # noqa: S506 - SafeLoader subclass


class _NoManagedPolicies:
    """SAM asks IAM for managed policy ARNs; offline, the ones SAM itself attaches are well known."""

    def load(self) -> dict[str, str]:
        return {
            "AWSLambdaBasicExecutionRole": "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole",
            "AWSXrayWriteOnlyAccess": "arn:aws:iam::aws:policy/AWSXrayWriteOnlyAccess",
            "AWSXRayDaemonWriteAccess": "arn:aws:iam::aws:policy/AWSXRayDaemonWriteAccess",
        }


def code_dirs(template: dict[str, Any], template_path: Path = TEMPLATE) -> dict[str, Path]:
    """Each function's code folder (CodeUri), before translation turns it into an S3 location."""
    return {logical: (template_path.parent / resource["Properties"]["CodeUri"]).resolve()
            for logical, resource in template.get("Resources", {}).items()
            if resource.get("Type") == "AWS::Serverless::Function"
            and isinstance(resource.get("Properties", {}).get("CodeUri"), str)}


def translate(template: dict[str, Any], parameters: dict[str, str]) -> dict[str, Any]:
    """The template as CloudFormation sees it after the SAM transform (remembered per template and parameters)."""
    key = json.dumps([template, parameters], sort_keys=True, default=str)
    if key not in _TRANSLATED:
        _TRANSLATED[key] = _translate(template, parameters)
    return copy.deepcopy(_TRANSLATED[key])


_TRANSLATED: dict[str, dict[str, Any]] = {}


def _translate(template: dict[str, Any], parameters: dict[str, str]) -> dict[str, Any]:
    template = copy.deepcopy(template)
    for resource in template.get("Resources", {}).values():
        code_uri = resource.get("Properties", {}).get("CodeUri")
        if resource.get("Type") == "AWS::Serverless::Function" and isinstance(code_uri, str) \
                and not code_uri.startswith("s3://"):  # `sam package` output is already in S3
            # What `sam package` does: local folders become S3 locations; the transform accepts nothing else.
            resource["Properties"]["CodeUri"] = f"s3://local-package/{code_uri.strip('/')}.zip"
    os.environ.setdefault("AWS_DEFAULT_REGION", REGION)  # the transform asks boto3 for the region
    return transform(template, parameters, _NoManagedPolicies())


@dataclass(frozen=True)
class Function:
    """A Lambda function as the template declares it: what a local "container" needs to run it."""

    logical_id: str
    name: str
    arn: str
    handler: str  # module.attribute, as Lambda's Handler
    code_dir: Path
    memory_mb: int
    timeout_s: int
    env: dict[str, str]


@dataclass(frozen=True)
class StateMachine:
    logical_id: str
    arn: str  # moto's, as StartExecution needs it
    definition: dict[str, Any]  # the ASL, substitutions made


@dataclass(frozen=True)
class Schedule:
    """An EventBridge Scheduler schedule (what SAM makes of a ScheduleV2 event)."""

    logical_id: str
    expression: str  # rate(...)
    target_arn: str
    input: str | None


@dataclass
class LocalStack:
    """What was created, by logical id, and what the template says to run."""

    name: str
    parameters: dict[str, str]
    physical_ids: dict[str, str] = field(default_factory=dict)
    function_env: dict[str, dict[str, str]] = field(default_factory=dict)
    http_api_cors: dict[str, Any] = field(default_factory=dict)  # x-amazon-apigateway-cors, resolved
    http_api_stage: dict[str, Any] = field(default_factory=dict)  # the HttpApi's stage properties, resolved
    # The translated template's resources; those of API_PARTS only as created (conditions applied, values resolved).
    resources: dict[str, dict[str, Any]] = field(default_factory=dict)
    lambdas: dict[str, Function] = field(default_factory=dict)
    state_machines: dict[str, StateMachine] = field(default_factory=dict)
    schedules: dict[str, Schedule] = field(default_factory=dict)

    def lambda_for(self, name_or_arn: str) -> Function:
        """The function a FunctionName (name, ARN, or ARN with a version or alias) designates."""
        for function in self.lambdas.values():
            if name_or_arn in (function.name, function.arn) or name_or_arn.startswith(function.arn + ":"):
                return function
        raise KeyError(f"no function {name_or_arn} in the stack")

    @property
    def table_name(self) -> str:
        return self.physical_ids["LimitsTable"]


class _Resolver:
    def __init__(self, translated: dict[str, Any], parameters: dict[str, str], physical: dict[str, str],
                 stack_name: str) -> None:
        self.types = {logical: r["Type"] for logical, r in translated.get("Resources", {}).items()}
        self.params = {**{k: str(v.get("Default", "")) for k, v in translated.get("Parameters", {}).items()},
                       **parameters}
        # A CommaDelimitedList parameter's Ref is a list (the template joins it where it wants a string).
        self.lists = {k for k, v in translated.get("Parameters", {}).items() if v.get("Type") == "CommaDelimitedList"}
        self.physical = physical
        self.pseudo = {"AWS::Region": REGION, "AWS::AccountId": ACCOUNT_ID, "AWS::StackName": stack_name,
                       "AWS::Partition": "aws", "AWS::URLSuffix": "amazonaws.com",
                       "AWS::StackId": f"arn:aws:cloudformation:{REGION}:{ACCOUNT_ID}:stack/{stack_name}/local"}
        self.conditions = translated.get("Conditions", {})

    def ref(self, name: str) -> Any:
        if name in self.lists:
            return self.params[name].split(",")
        for table in (self.pseudo, self.params, self.physical):
            if name in table:
                return table[name]
        return f"{name}-local"

    def condition(self, name: str) -> bool:
        return bool(self.value(self.conditions[name]))

    def value(self, node: Any) -> Any:
        if isinstance(node, list):
            return [self.value(n) for n in node]
        if not isinstance(node, dict):
            return node
        if len(node) != 1:
            return {k: self.value(v) for k, v in node.items()}
        (fn, arg), = node.items()
        match fn:
            case "Ref":
                return self.ref(arg)
            case "Fn::If":
                return self.value(arg[1] if self.condition(arg[0]) else arg[2])
            case "Fn::Equals":
                return str(self.value(arg[0])) == str(self.value(arg[1]))
            case "Fn::Not":
                return not self.value(arg[0])
            case "Fn::And":
                return all(self.value(a) for a in arg)
            case "Fn::Or":
                return any(self.value(a) for a in arg)
            case "Condition":
                return self.condition(arg)
            case "Fn::Join":
                return str(self.value(arg[0])).join(str(self.value(a)) for a in self.value(arg[1]))
            case "Fn::Split":
                return str(self.value(arg[1])).split(self.value(arg[0]))
            case "Fn::Select":
                return self.value(arg[1])[int(self.value(arg[0]))]
            case "Fn::GetAtt":
                logical, attribute = arg if isinstance(arg, list) else arg.split(".", 1)
                if attribute == "Arn":
                    return self.arn(logical)
                if attribute.endswith("DomainName"):
                    return f"{logical.lower()}.local"
                if attribute == "Name" and self.ref(logical).startswith("arn:"):  # a state machine's name
                    return self.ref(logical).rsplit(":", 1)[-1]
                return f"{self.ref(logical)}.{attribute}"
            case "Fn::Sub":
                text, extra = (arg, {}) if isinstance(arg, str) else (arg[0], self.value(arg[1]))
                return re.sub(r"\$\{([^}!]+)\}", lambda m: str(extra.get(m[1]) or self._sub_ref(m[1])), text)
            case _:
                return {fn: self.value(arg)}

    def _sub_ref(self, name: str) -> str:
        if "." in name:
            return str(self.value({"Fn::GetAtt": name.split(".", 1)}))
        return self.ref(name)

    def arn(self, logical: str) -> str:
        physical = self.ref(logical)
        match self.types.get(logical):
            case _ if physical.startswith("arn:"):
                return physical
            case "AWS::Lambda::Function":  # what a state machine's Task and a schedule's Target name
                return f"arn:aws:lambda:{REGION}:{ACCOUNT_ID}:function:{physical}"
            case "AWS::IAM::Role":  # moto checks the role ARN of a state machine
                return f"arn:aws:iam::{ACCOUNT_ID}:role/{physical}"
        return f"arn:aws:local:{REGION}:{ACCOUNT_ID}:{physical}"


def provision(stack_name: str = "realtime-token-vend", parameters: dict[str, str] | None = None,
              *, session: boto3.Session | None = None, endpoint_url: str | None = None,
              template: Path = TEMPLATE) -> LocalStack:
    """Create the template's table, secrets and state machines in moto: at `endpoint_url`, or wherever boto3 is
    pointed."""
    parameters = parameters or {}
    session = session or boto3.Session(region_name=REGION)
    source = load_template(template)
    translated = translate(source, parameters)
    resources = translated["Resources"]
    stack = LocalStack(name=stack_name, parameters=parameters, resources=resources)
    # Functions are named as CloudFormation would (stack-logical): ARNs in definitions and targets resolve to them.
    physical: dict[str, str] = {logical: f"{stack_name}-{logical}" for logical, r in resources.items()
                                if r["Type"] in ("AWS::Lambda::Function", "AWS::IAM::Role")}
    # The API's parts declared as resources are known locally by their logical ids: a route's AuthorizerId and
    # Target then name the authorizer and the integration the gateway looks up.
    physical.update({logical: logical for logical, r in resources.items() if r["Type"] in API_PARTS})
    not_created: list[str] = []
    resolver = _Resolver(translated, parameters, physical, stack_name)
    dynamodb = session.client("dynamodb", endpoint_url=endpoint_url)
    secretsmanager = session.client("secretsmanager", endpoint_url=endpoint_url)
    stepfunctions = session.client("stepfunctions", endpoint_url=endpoint_url)

    for logical, resource in resources.items():
        if "Condition" in resource and not resolver.condition(resource["Condition"]):
            not_created.append(logical)
            continue
        props = resolver.value(resource.get("Properties", {}))
        match resource["Type"]:
            case "AWS::DynamoDB::Table":
                physical[logical] = _create_table(dynamodb, f"{stack_name}-{logical}", props)
            case "AWS::SecretsManager::Secret":
                physical[logical] = _create_secret(secretsmanager, f"{stack_name}/{logical}", props)
            case "AWS::StepFunctions::StateMachine":
                definition = _definition(props)
                arn = stepfunctions.create_state_machine(
                    name=f"{stack_name}-{logical}", definition=json.dumps(definition), roleArn=props["RoleArn"],
                    type=props.get("StateMachineType", "STANDARD"))["stateMachineArn"]
                physical[logical] = arn  # Ref of a state machine is its ARN
                stack.state_machines[logical] = StateMachine(logical, arn, definition)
            case "AWS::ApiGatewayV2::Stage":  # SAM's $default stage: where the route throttles are
                stack.http_api_stage = props
            case t if t in API_PARTS:  # read by the local gateway (local.apigw.routes_from_template) as created
                resource["Properties"] = props
            case "AWS::Scheduler::Schedule":
                target = props["Target"]
                stack.schedules[logical] = Schedule(logical, props["ScheduleExpression"], target["Arn"],
                                                    target.get("Input"))
    # Environments last: they may name what was just created (a state machine's ARN, a table's name).
    folders = code_dirs(source, template)
    for logical, resource in resources.items():
        if resource["Type"] == "AWS::Lambda::Function":
            props = resource["Properties"]
            variables = resolver.value(props.get("Environment", {}).get("Variables", {}))
            env = {k: str(v) for k, v in variables.items()}
            stack.function_env[logical] = env
            if logical in folders:
                stack.lambdas[logical] = Function(
                    logical, physical[logical], resolver.arn(logical), props["Handler"], folders[logical],
                    int(resolver.value(props.get("MemorySize", 128))), int(resolver.value(props.get("Timeout", 3))),
                    env)
        if resource["Type"] == "AWS::ApiGatewayV2::Api":
            stack.http_api_cors = resolver.value(resource["Properties"].get("Body", {}).get("x-amazon-apigateway-cors",
                                                                                         {}))
    for logical in not_created:  # CloudFormation never creates them: no route or authorizer of theirs exists
        if resources[logical]["Type"] in API_PARTS:
            del resources[logical]
    stack.physical_ids = physical
    return stack


def _definition(props: dict[str, Any]) -> dict[str, Any]:
    """The ASL as Step Functions receives it: CloudFormation puts each DefinitionSubstitutions value in for its
    ${name}."""
    text = props["DefinitionString"] if "DefinitionString" in props else json.dumps(props["Definition"])
    substitutions = props.get("DefinitionSubstitutions", {})
    text = re.sub(r"\$\{([^}]+)\}", lambda m: str(substitutions.get(m[1], m[0])), text)
    return json.loads(text)


def _create_table(client: Any, name: str, props: dict[str, Any]) -> str:
    kwargs = {k: props[k] for k in ("AttributeDefinitions", "KeySchema", "BillingMode", "GlobalSecondaryIndexes")
              if k in props}
    client.create_table(TableName=name, **kwargs)
    ttl = props.get("TimeToLiveSpecification")
    if ttl:
        client.update_time_to_live(TableName=name, TimeToLiveSpecification=ttl)
    return name


def _create_secret(client: Any, name: str, props: dict[str, Any]) -> str:
    if "SecretString" in props:
        value = props["SecretString"]
    else:
        spec = props.get("GenerateSecretString", {})
        alphabet = string.ascii_letters + string.digits
        if not spec.get("ExcludePunctuation"):
            alphabet += "!#$%&()*+,-.:;<=>?@[]^_{|}~"
        value = "".join(secrets.choice(alphabet) for _ in range(int(spec.get("PasswordLength", 32))))
    return client.create_secret(Name=name, Description=props.get("Description", ""), SecretString=value)["ARN"]


def template_function_env() -> dict[str, str]:
    """TokenFunction's environment with the template's defaults; ARNs and names are placeholders."""
    template = load_template()
    defaults = {name: str(p.get("Default", "")) for name, p in template["Parameters"].items()}
    env: dict[str, str] = {}
    for name, value in template["Resources"]["TokenFunction"]["Properties"]["Environment"]["Variables"].items():
        if isinstance(value, dict) and "Ref" in value and value["Ref"] in defaults:
            env[name] = defaults[value["Ref"]]
        elif isinstance(value, dict) and (joined := value.get("Fn::Join")) and isinstance(joined[1], dict) \
                and joined[1].get("Ref") in defaults:
            env[name] = defaults[joined[1]["Ref"]]  # a list parameter: its default is already comma-joined
        elif isinstance(value, str):
            env[name] = value
        else:
            env[name] = "https://example.test" if name == "ALLOWED_ORIGINS" else f"placeholder-{name.lower()}"
    return env
