"""The deployed stack's resources, created in moto from template.yaml itself, so local schema cannot drift.

The SAM template is translated with samtranslator (as CloudFormation would), its intrinsic functions are resolved
with the parameter values, and then the resources moto can hold are created through the AWS API: the DynamoDB
table (key schema, billing mode, TTL as declared) and the Secrets Manager secrets (moto's CloudFormation skips
those). The function's environment variables come out of the same translated template.
"""

from __future__ import annotations

import copy
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

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "template.yaml"
ACCOUNT_ID = "123456789012"
REGION = "us-east-1"


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
    return yaml.load(path.read_text(), Loader=_CfnLoader)  # noqa: S506 - SafeLoader subclass


class _NoManagedPolicies:
    """SAM asks IAM for managed policy ARNs; offline, the ones SAM itself attaches are well known."""

    def load(self) -> dict[str, str]:
        return {
            "AWSLambdaBasicExecutionRole": "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole",
            "AWSXrayWriteOnlyAccess": "arn:aws:iam::aws:policy/AWSXrayWriteOnlyAccess",
            "AWSXRayDaemonWriteAccess": "arn:aws:iam::aws:policy/AWSXRayDaemonWriteAccess",
        }


def translate(template: dict[str, Any], parameters: dict[str, str]) -> dict[str, Any]:
    template = copy.deepcopy(template)
    for resource in template.get("Resources", {}).values():
        code_uri = resource.get("Properties", {}).get("CodeUri")
        if resource.get("Type") == "AWS::Serverless::Function" and isinstance(code_uri, str):
            # What `sam package` does: local folders become S3 locations; the transform accepts nothing else.
            resource["Properties"]["CodeUri"] = f"s3://local-package/{code_uri.strip('/')}.zip"
    os.environ.setdefault("AWS_DEFAULT_REGION", REGION)  # the transform asks boto3 for the region
    return transform(template, parameters, _NoManagedPolicies())


@dataclass
class LocalStack:
    """What was created, by logical id, and the function environments as the template sets them."""

    name: str
    parameters: dict[str, str]
    physical_ids: dict[str, str] = field(default_factory=dict)
    function_env: dict[str, dict[str, str]] = field(default_factory=dict)
    http_api_cors: dict[str, Any] = field(default_factory=dict)  # x-amazon-apigateway-cors, resolved
    resources: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def table_name(self) -> str:
        return self.physical_ids["LimitsTable"]


class _Resolver:
    def __init__(self, translated: dict[str, Any], parameters: dict[str, str], physical: dict[str, str],
                 stack_name: str) -> None:
        self.params = {**{k: str(v.get("Default", "")) for k, v in translated.get("Parameters", {}).items()},
                       **parameters}
        self.physical = physical
        self.pseudo = {"AWS::Region": REGION, "AWS::AccountId": ACCOUNT_ID, "AWS::StackName": stack_name,
                       "AWS::Partition": "aws", "AWS::URLSuffix": "amazonaws.com",
                       "AWS::StackId": f"arn:aws:cloudformation:{REGION}:{ACCOUNT_ID}:stack/{stack_name}/local"}
        self.conditions = translated.get("Conditions", {})

    def ref(self, name: str) -> str:
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
        return physical if physical.startswith("arn:") else f"arn:aws:local:{REGION}:{ACCOUNT_ID}:{physical}"


def provision(stack_name: str = "realtime-token-vend", parameters: dict[str, str] | None = None,
              *, session: boto3.Session | None = None, endpoint_url: str | None = None) -> LocalStack:
    """Create the template's table and secrets in moto: at `endpoint_url`, or wherever boto3 is pointed."""
    parameters = parameters or {}
    session = session or boto3.Session(region_name=REGION)
    translated = translate(load_template(), parameters)
    resources = translated["Resources"]
    stack = LocalStack(name=stack_name, parameters=parameters, resources=resources)
    physical: dict[str, str] = {}
    resolver = _Resolver(translated, parameters, physical, stack_name)
    dynamodb = session.client("dynamodb", endpoint_url=endpoint_url)
    secretsmanager = session.client("secretsmanager", endpoint_url=endpoint_url)

    for logical, resource in resources.items():
        if "Condition" in resource and not resolver.condition(resource["Condition"]):
            continue
        props = resolver.value(resource.get("Properties", {}))
        match resource["Type"]:
            case "AWS::DynamoDB::Table":
                physical[logical] = _create_table(dynamodb, f"{stack_name}-{logical}", props)
            case "AWS::SecretsManager::Secret":
                physical[logical] = _create_secret(secretsmanager, f"{stack_name}/{logical}", props)
    for logical, resource in resources.items():
        if resource["Type"] == "AWS::Lambda::Function":
            variables = resolver.value(resource["Properties"].get("Environment", {}).get("Variables", {}))
            stack.function_env[logical] = {k: str(v) for k, v in variables.items()}
        if resource["Type"] == "AWS::ApiGatewayV2::Api":
            stack.http_api_cors = resolver.value(resource["Properties"].get("Body", {}).get("x-amazon-apigateway-cors",
                                                                                         {}))
    stack.physical_ids = physical
    return stack


def _create_table(client: Any, name: str, props: dict[str, Any]) -> str:
    kwargs = {k: props[k] for k in ("AttributeDefinitions", "KeySchema", "BillingMode") if k in props}
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
        elif isinstance(value, str):
            env[name] = value
        else:
            env[name] = "https://example.test" if name == "ALLOWED_ORIGINS" else f"placeholder-{name.lower()}"
    return env
