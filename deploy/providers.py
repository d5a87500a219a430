"""What moto's CloudFormation cannot create, created through moto's own APIs, so that a stack of the real template
reaches CREATE_COMPLETE with every reference resolved to a real resource.

moto 5.2.5 (requirements-dev.txt) skips, silently, Secrets Manager secrets, S3 bucket policies, the three CloudFront
types, the API Gateway v2 API, stage, authorizers, integrations and routes, Lambda aliases, Scheduler schedules, SNS
subscriptions and CloudWatch alarms (a Ref to any of them resolves to nothing), resolves a Lambda version's Ref to no
ARN, ignores a state machine's DefinitionSubstitutions, and runs a custom resource only in Docker. Each provider here
does for one type what CloudFormation does: one API call to moto, the Ref and GetAtt values CloudFormation
documents, and a delete. The custom resource runs its function's real handler, from the package in moto's Lambda,
in this process.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import re
import secrets
import string
import sys
import tempfile
import threading
import time
import uuid
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import boto3
from botocore.config import Config
from moto.awslambda.models import LambdaFunction
from moto.awslambda.utils import get_backend as lambda_backend
from moto.cloudformation import parsing
from moto.core.common_models import CloudFormationModel
from moto.s3.models import FakeBucket


class ProvisionError(RuntimeError):
    """A resource could not be created; the message starts with its logical id."""


@dataclass
class Account:
    """What the rehearsal's account is like, and what happened in it."""

    endpoint: str = ""
    concurrency_quota: int = 1000  # a new account's may be 10
    failures: list[str] = field(default_factory=list)
    response_headers_policies: dict[str, dict[str, Any]] = field(default_factory=dict)  # moto has no API for them
    bucket_policies: dict[str, dict[str, Any]] = field(default_factory=dict)  # as the template gave them
    distributions: dict[str, dict[str, Any]] = field(default_factory=dict)  # moto drops OAC and headers policy ids
    custom_resource_answers: list[dict[str, Any]] = field(default_factory=list)


ACCOUNT = Account()


def client(service: str) -> Any:
    # One attempt: a retried call would hide which request failed.
    return boto3.client(service, endpoint_url=ACCOUNT.endpoint, region_name="us-east-1",
                        config=Config(retries={"max_attempts": 1, "mode": "standard"}))


class Provided(CloudFormationModel):
    """One created resource: its physical id (what Ref gives), its attributes (what GetAtt gives), its delete."""

    TYPE: ClassVar[str] = ""

    def __init__(self, physical_id: str, attributes: dict[str, Any] | None = None,
                 delete: Callable[[], None] | None = None) -> None:
        self._physical_id = physical_id
        self.attributes = attributes or {}
        self._delete = delete

    @classmethod
    def cloudformation_type(cls) -> str:  # type: ignore[override]
        return cls.TYPE

    @staticmethod
    def cloudformation_name_type() -> str:
        return ""

    @classmethod
    def has_cfn_attr(cls, attr: str) -> bool:
        return True

    @property
    def physical_resource_id(self) -> str:
        return self._physical_id

    def get_cfn_attribute(self, attribute_name: str) -> Any:
        if attribute_name not in self.attributes:
            raise ProvisionError(f"{self.TYPE} has no attribute {attribute_name} here")
        return self.attributes[attribute_name]

    def is_created(self) -> bool:
        return True

    def delete(self, account_id: str, region_name: str) -> None:
        if self._delete:
            self._delete()

    @classmethod
    def create_from_cloudformation_json(cls, resource_name: str, cloudformation_json: dict[str, Any],  # type: ignore[override]
                                        account_id: str, region_name: str, **kwargs: Any) -> Any:
        logical = kwargs["LogicalId"]
        try:
            return cls.provide(logical, cloudformation_json.get("Properties", {}), resource_name)
        except Exception as exc:
            message = f"{logical} ({cls.TYPE}): {exc}"
            ACCOUNT.failures.append(message)
            raise ProvisionError(message) from exc

    @classmethod
    def provide(cls, logical: str, props: dict[str, Any], name: str) -> Any:
        raise NotImplementedError

    @classmethod
    def update_from_cloudformation_json(cls, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        raise ProvisionError("the rehearsal creates and deletes; it does not update")

    @classmethod
    def delete_from_cloudformation_json(cls, *args: Any, **kwargs: Any) -> None:  # type: ignore[override]
        return None


class Secret(Provided):
    TYPE = "AWS::SecretsManager::Secret"

    @classmethod
    def provide(cls, logical: str, props: dict[str, Any], name: str) -> Provided:
        if "SecretString" in props:
            value = props["SecretString"]
        else:
            spec = props.get("GenerateSecretString", {})
            alphabet = string.ascii_letters + string.digits + ("" if spec.get("ExcludePunctuation") else "!#$%&*+-.")
            value = "".join(secrets.choice(alphabet) for _ in range(int(spec.get("PasswordLength", 32))))
        sm = client("secretsmanager")
        arn = sm.create_secret(Name=props.get("Name") or name, SecretString=value,
                               Description=props.get("Description", ""))["ARN"]
        return cls(arn, {"Id": arn}, lambda: sm.delete_secret(SecretId=arn, ForceDeleteWithoutRecovery=True))


class BucketPolicy(Provided):
    TYPE = "AWS::S3::BucketPolicy"

    @classmethod
    def provide(cls, logical: str, props: dict[str, Any], name: str) -> Provided:
        s3, bucket, document = client("s3"), props["Bucket"], props["PolicyDocument"]
        s3.head_bucket(Bucket=bucket)
        ACCOUNT.bucket_policies[bucket] = document
        # moto evaluates a statement's Effect but not its Condition: a Deny on plain HTTP would deny everything.
        # Those statements are kept here, for the checks, and only the unconditional ones go to moto.
        plain = [s for s in document["Statement"] if "Condition" not in s]
        if plain:
            s3.put_bucket_policy(Bucket=bucket, Policy=json.dumps({**document, "Statement": plain}))
        return cls(bucket, {}, lambda: ACCOUNT.bucket_policies.pop(bucket, None))


class Bucket(Provided):
    """moto's own bucket, deleted as S3 deletes one: refused while it holds objects (moto would drop it silently,
    and moto deletes a stack's resources in no particular order, where CloudFormation follows the references)."""

    TYPE = "AWS::S3::Bucket"

    @classmethod
    def provide(cls, logical: str, props: dict[str, Any], name: str) -> Any:
        return FakeBucket.create_from_cloudformation_json(name, {"Properties": props}, "123456789012", "us-east-1")

    @classmethod
    def delete_from_cloudformation_json(cls, resource_name: str, *args: Any, **kwargs: Any) -> None:  # type: ignore[override]
        s3 = client("s3")
        if s3.list_object_versions(Bucket=resource_name).get("Versions"):
            raise ProvisionError(f"{resource_name}: BucketNotEmpty")
        s3.delete_bucket(Bucket=resource_name)


class OriginAccessControl(Provided):
    TYPE = "AWS::CloudFront::OriginAccessControl"

    @classmethod
    def provide(cls, logical: str, props: dict[str, Any], name: str) -> Provided:
        cloudfront = client("cloudfront")
        oac = cloudfront.create_origin_access_control(OriginAccessControlConfig=props["OriginAccessControlConfig"])
        oac_id = oac["OriginAccessControl"]["Id"]
        return cls(oac_id, {"Id": oac_id},
                   lambda: cloudfront.delete_origin_access_control(Id=oac_id, IfMatch=oac["ETag"]))


class ResponseHeadersPolicy(Provided):
    TYPE = "AWS::CloudFront::ResponseHeadersPolicy"

    @classmethod
    def provide(cls, logical: str, props: dict[str, Any], name: str) -> Provided:
        config = props["ResponseHeadersPolicyConfig"]
        if not config.get("Name"):
            raise ProvisionError("ResponseHeadersPolicyConfig.Name is required")
        policy_id = str(uuid.uuid4())
        ACCOUNT.response_headers_policies[policy_id] = config
        return cls(policy_id, {"Id": policy_id},
                   lambda: ACCOUNT.response_headers_policies.pop(policy_id, None))


class Distribution(Provided):
    TYPE = "AWS::CloudFront::Distribution"

    @classmethod
    def provide(cls, logical: str, props: dict[str, Any], name: str) -> Provided:
        config = props["DistributionConfig"]
        behaviour = config["DefaultCacheBehavior"]

        def listed(items: list[Any]) -> dict[str, Any]:
            return {"Quantity": len(items), "Items": items}

        origins = [{"Id": o["Id"], "DomainName": o["DomainName"], "OriginPath": "",
                    "OriginAccessControlId": o.get("OriginAccessControlId", ""),
                    "S3OriginConfig": {"OriginAccessIdentity": o.get("S3OriginConfig", {}).get(
                        "OriginAccessIdentity", "")}} for o in config["Origins"]]
        api_config = {
            "CallerReference": logical + secrets.token_hex(4), "Comment": config.get("Comment", ""),
            "Enabled": config["Enabled"] in (True, "true"), "Origins": listed(origins),
            "DefaultRootObject": config.get("DefaultRootObject", ""),
            "PriceClass": config.get("PriceClass", "PriceClass_All"), "HttpVersion": config.get("HttpVersion", "http2"),
            "IsIPV6Enabled": config.get("IPV6Enabled") in (True, "true"),
            "DefaultCacheBehavior": {
                "TargetOriginId": behaviour["TargetOriginId"],
                "ViewerProtocolPolicy": behaviour["ViewerProtocolPolicy"],
                "CachePolicyId": behaviour.get("CachePolicyId", ""),
                "ResponseHeadersPolicyId": behaviour.get("ResponseHeadersPolicyId", ""),
                "Compress": behaviour.get("Compress") in (True, "true"),
                "AllowedMethods": {**listed(behaviour.get("AllowedMethods", ["GET", "HEAD"])),
                                   "CachedMethods": listed(behaviour.get("CachedMethods", ["GET", "HEAD"]))},
            },
        }
        policy = api_config["DefaultCacheBehavior"]["ResponseHeadersPolicyId"]
        if policy and policy not in ACCOUNT.response_headers_policies:
            raise ProvisionError(f"no response headers policy {policy}")
        cloudfront = client("cloudfront")
        for origin in origins:
            if origin["OriginAccessControlId"]:
                cloudfront.get_origin_access_control(Id=origin["OriginAccessControlId"])
        made = cloudfront.create_distribution(DistributionConfig=api_config)
        dist = made["Distribution"]
        ACCOUNT.distributions[dist["Id"]] = config
        return cls(dist["Id"], {"Id": dist["Id"], "DomainName": dist["DomainName"]},
                   lambda: cloudfront.delete_distribution(Id=dist["Id"], IfMatch=made["ETag"]))


class HttpApi(Provided):
    TYPE = "AWS::ApiGatewayV2::Api"

    @classmethod
    def provide(cls, logical: str, props: dict[str, Any], name: str) -> Provided:
        apigw, body = client("apigatewayv2"), props["Body"]
        # moto's ImportApi is not served; creating the API and reimporting its body into it is.
        api = apigw.create_api(Name=str(body.get("info", {}).get("title", logical)), ProtocolType="HTTP")
        apigw.reimport_api(ApiId=api["ApiId"], Body=json.dumps(body), FailOnWarnings=True)
        return cls(api["ApiId"], {"ApiId": api["ApiId"], "ApiEndpoint": api["ApiEndpoint"]},
                   lambda: apigw.delete_api(ApiId=api["ApiId"]))


class Stage(Provided):
    TYPE = "AWS::ApiGatewayV2::Stage"

    @classmethod
    def provide(cls, logical: str, props: dict[str, Any], name: str) -> Provided:
        route = props.get("DefaultRouteSettings", {})
        settings = {"ThrottlingBurstLimit": int(route["ThrottlingBurstLimit"]),
                    "ThrottlingRateLimit": float(route["ThrottlingRateLimit"])} if route else {}
        apigw = client("apigatewayv2")
        apigw.create_stage(ApiId=props["ApiId"], StageName=props["StageName"],
                           AutoDeploy=props.get("AutoDeploy") in (True, "true"), DefaultRouteSettings=settings)
        # Gone with its API when that went first (moto deletes in no particular order).
        return cls(props["StageName"], {},
                   lambda: _quietly(lambda: apigw.delete_stage(ApiId=props["ApiId"], StageName=props["StageName"])))


class Authorizer(Provided):
    TYPE = "AWS::ApiGatewayV2::Authorizer"

    @classmethod
    def provide(cls, logical: str, props: dict[str, Any], name: str) -> Provided:
        apigw = client("apigatewayv2")
        kwargs = {k: props[k] for k in ("AuthorizerType", "IdentitySource", "JwtConfiguration", "Name",
                                        "AuthorizerUri", "AuthorizerPayloadFormatVersion") if k in props}
        made = apigw.create_authorizer(ApiId=props["ApiId"], **kwargs)
        return cls(made["AuthorizerId"], {"AuthorizerId": made["AuthorizerId"]}, lambda: _quietly(
            lambda: apigw.delete_authorizer(ApiId=props["ApiId"], AuthorizerId=made["AuthorizerId"])))


class Integration(Provided):
    TYPE = "AWS::ApiGatewayV2::Integration"

    @classmethod
    def provide(cls, logical: str, props: dict[str, Any], name: str) -> Provided:
        apigw = client("apigatewayv2")
        kwargs = {k: props[k] for k in ("IntegrationType", "IntegrationUri", "IntegrationMethod",
                                        "PayloadFormatVersion", "TimeoutInMillis") if k in props}
        if "TimeoutInMillis" in kwargs:
            kwargs["TimeoutInMillis"] = int(kwargs["TimeoutInMillis"])
        made = apigw.create_integration(ApiId=props["ApiId"], **kwargs)
        return cls(made["IntegrationId"], {"IntegrationId": made["IntegrationId"]}, lambda: _quietly(
            lambda: apigw.delete_integration(ApiId=props["ApiId"], IntegrationId=made["IntegrationId"])))


class Route(Provided):
    """API Gateway refuses a route whose authorizer or integration is not one of its API's: so does this."""

    TYPE = "AWS::ApiGatewayV2::Route"

    @classmethod
    def provide(cls, logical: str, props: dict[str, Any], name: str) -> Provided:
        apigw, api = client("apigatewayv2"), props["ApiId"]
        if props.get("AuthorizationType") == "JWT":
            try:  # moto serves no GetAuthorizers: the one named, or NotFound
                kind = apigw.get_authorizer(ApiId=api, AuthorizerId=str(props.get("AuthorizerId")))["AuthorizerType"]
            except apigw.exceptions.NotFoundException:
                kind = None
            if kind != "JWT":
                raise ProvisionError(f"AuthorizerId {props.get('AuthorizerId')} is not a JWT authorizer of {api}")
        target = str(props.get("Target", ""))
        integrations = {i["IntegrationId"] for i in apigw.get_integrations(ApiId=api)["Items"]}
        if target and target.removeprefix("integrations/") not in integrations:
            raise ProvisionError(f"Target {target} is not an integration of {api}")
        kwargs = {k: props[k] for k in ("RouteKey", "AuthorizationType", "AuthorizerId", "AuthorizationScopes",
                                        "Target") if k in props}
        made = apigw.create_route(ApiId=api, **kwargs)
        return cls(made["RouteId"], {"RouteId": made["RouteId"]}, lambda: _quietly(
            lambda: apigw.delete_route(ApiId=api, RouteId=made["RouteId"])))


class Version(Provided):
    TYPE = "AWS::Lambda::Version"

    @classmethod
    def provide(cls, logical: str, props: dict[str, Any], name: str) -> Provided:
        version = client("lambda").publish_version(FunctionName=props["FunctionName"])
        return cls(version["FunctionArn"], {"Version": version["Version"]})


class Alias(Provided):
    TYPE = "AWS::Lambda::Alias"

    @classmethod
    def provide(cls, logical: str, props: dict[str, Any], name: str) -> Provided:
        lam = client("lambda")
        alias = lam.create_alias(FunctionName=props["FunctionName"], Name=props["Name"],
                                 FunctionVersion=str(props["FunctionVersion"]))
        return cls(alias["AliasArn"], {"AliasArn": alias["AliasArn"]},
                   lambda: _quietly(lambda: lam.delete_alias(FunctionName=props["FunctionName"], Name=props["Name"])))


class Function(Provided):
    """moto's own function, behind the check CloudFormation meets on a new account: a reservation must leave the
    account its minimum of unreserved executions (100, or all of a quota below that)."""

    TYPE = "AWS::Lambda::Function"

    @classmethod
    def provide(cls, logical: str, props: dict[str, Any], name: str) -> Any:
        reserved = int(props.get("ReservedConcurrentExecutions", 0))
        minimum = min(100, ACCOUNT.concurrency_quota)
        if reserved and ACCOUNT.concurrency_quota - reserved < minimum:
            raise ProvisionError(
                f"Specified ReservedConcurrentExecutions for function decreases account's "
                f"UnreservedConcurrentExecution below its minimum value of [{minimum}] "
                f"(account quota {ACCOUNT.concurrency_quota}, reserving {reserved})")
        return LambdaFunction.create_from_cloudformation_json(name, {"Properties": props}, "123456789012",
                                                              "us-east-1")


class StateMachine(Provided):
    TYPE = "AWS::StepFunctions::StateMachine"

    @classmethod
    def provide(cls, logical: str, props: dict[str, Any], name: str) -> Provided:
        substitutions = props.get("DefinitionSubstitutions", {})
        definition = re.sub(r"\$\{([^}]+)\}", lambda m: str(substitutions.get(m[1], m[0])), props["DefinitionString"])
        if unresolved := re.findall(r"\$\{[^}]+\}", definition):
            raise ProvisionError(f"DefinitionString names {unresolved} and no DefinitionSubstitutions give them")
        sfn, name = client("stepfunctions"), props.get("StateMachineName") or name
        arn = sfn.create_state_machine(name=name, definition=definition, roleArn=props["RoleArn"],
                                       type=props.get("StateMachineType", "STANDARD"))["stateMachineArn"]
        return cls(arn, {"Arn": arn, "Name": name}, lambda: sfn.delete_state_machine(stateMachineArn=arn))


class Schedule(Provided):
    TYPE = "AWS::Scheduler::Schedule"

    @classmethod
    def provide(cls, logical: str, props: dict[str, Any], name: str) -> Provided:
        target = dict(props["Target"])
        if "RetryPolicy" in target:
            target["RetryPolicy"] = {k: int(v) for k, v in target["RetryPolicy"].items()}
        scheduler, name = client("scheduler"), props.get("Name") or name
        arn = scheduler.create_schedule(Name=name, ScheduleExpression=props["ScheduleExpression"], Target=target,
                                        FlexibleTimeWindow=props["FlexibleTimeWindow"],
                                        State=props.get("State", "ENABLED"))["ScheduleArn"]
        return cls(name, {"Arn": arn}, lambda: scheduler.delete_schedule(Name=name))


class Subscription(Provided):
    TYPE = "AWS::SNS::Subscription"

    @classmethod
    def provide(cls, logical: str, props: dict[str, Any], name: str) -> Provided:
        sns = client("sns")
        arn = sns.subscribe(TopicArn=props["TopicArn"], Protocol=props["Protocol"], Endpoint=props["Endpoint"],
                            ReturnSubscriptionArn=True)["SubscriptionArn"]
        return cls(arn, {}, lambda: _quietly(lambda: sns.unsubscribe(SubscriptionArn=arn)))


class Alarm(Provided):
    TYPE = "AWS::CloudWatch::Alarm"

    @classmethod
    def provide(cls, logical: str, props: dict[str, Any], name: str) -> Provided:
        metrics = []
        for query in props.get("Metrics", []):
            query = {**query, "ReturnData": query.get("ReturnData") in (True, "true")}
            if "MetricStat" in query:
                query["MetricStat"] = {**query["MetricStat"], "Period": int(query["MetricStat"]["Period"])}
            metrics.append(query)
        cloudwatch, name = client("cloudwatch"), props.get("AlarmName") or name
        cloudwatch.put_metric_alarm(
            AlarmName=name, AlarmDescription=props.get("AlarmDescription", ""), Metrics=metrics,
            ComparisonOperator=props["ComparisonOperator"], Threshold=float(props["Threshold"]),
            EvaluationPeriods=int(props["EvaluationPeriods"]),
            TreatMissingData=props.get("TreatMissingData", "missing"),
            AlarmActions=props.get("AlarmActions", []))
        arn = f"arn:aws:cloudwatch:us-east-1:123456789012:alarm:{name}"
        return cls(name, {"Arn": arn}, lambda: cloudwatch.delete_alarms(AlarmNames=[name]))


# --- the custom resource: its function's real handler, in this process -------------------------------------------


class _Answers(BaseHTTPRequestHandler):
    """CloudFormation's pre-signed ResponseURL: where a custom resource's handler PUTs its answer."""

    def do_PUT(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        ACCOUNT.custom_resource_answers.append(json.loads(body))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


class _Context:
    log_stream_name = "rehearsal"

    def __init__(self, timeout_s: int) -> None:
        self._deadline = time.monotonic() + timeout_s

    def get_remaining_time_in_millis(self) -> int:
        return int((self._deadline - time.monotonic()) * 1000)


class CustomResource(Provided):
    TYPE = "Custom::*"
    answers_url = ""

    @classmethod
    def provide(cls, logical: str, props: dict[str, Any], name: str) -> Provided:
        function = lambda_backend("123456789012", "us-east-1").get_function(props["ServiceToken"])
        handler = _load_handler(function)
        request = {"ServiceToken": props["ServiceToken"], "StackId": f"rehearsal/{logical}",
                   "LogicalResourceId": logical, "ResourceType": "Custom", "ResourceProperties": props}
        data = _invoke(handler, function, {**request, "RequestType": "Create"})

        def delete() -> None:
            _invoke(handler, function, {**request, "RequestType": "Delete", "PhysicalResourceId": data["id"]})

        return cls(data["id"], data["Data"], delete)


def _invoke(handler: Callable[..., Any], function: LambdaFunction, event: dict[str, Any]) -> dict[str, Any]:
    request_id = str(uuid.uuid4())
    handler({**event, "RequestId": request_id, "ResponseURL": f"{CustomResource.answers_url}/{request_id}"},
            _Context(int(function.timeout)))
    answer = next((a for a in ACCOUNT.custom_resource_answers if a.get("RequestId") == request_id), None)
    if answer is None:
        raise ProvisionError(f"{event['RequestType']}: the handler sent no answer to the ResponseURL")
    if answer["Status"] != "SUCCESS":
        raise ProvisionError(f"{event['RequestType']} failed: {answer.get('Reason')}")
    return {"id": answer["PhysicalResourceId"], "Data": answer.get("Data", {})}


_UNPACKED: dict[str, Path] = {}


def _load_handler(function: LambdaFunction) -> Callable[..., Any]:
    """The handler from the function's package as moto holds it (what `sam package` uploaded)."""
    key = function.code_sha_256
    if key not in _UNPACKED:
        folder = Path(tempfile.mkdtemp(prefix="rehearsal-code-"))
        zipfile.ZipFile(io.BytesIO(function.code_bytes)).extractall(folder)
        _UNPACKED[key] = folder
    module_name, attribute = function.handler.rsplit(".", 1)
    spec = importlib.util.spec_from_file_location(f"rehearsal_{key[:12]}_{module_name}",
                                                  _UNPACKED[key] / f"{module_name}.py")
    if spec is None or spec.loader is None:
        raise ProvisionError(f"handler {function.handler} is not in the package")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return getattr(module, attribute)


def _quietly(action: Callable[[], Any]) -> None:
    with contextlib.suppress(Exception):  # already gone is what a delete wants
        action()


PROVIDERS: dict[str, type[Provided]] = {p.TYPE: p for p in (
    Secret, Bucket, BucketPolicy, OriginAccessControl, ResponseHeadersPolicy, Distribution, HttpApi, Stage, Authorizer,
    Integration, Route, Version, Alias, Function, StateMachine, Schedule, Subscription, Alarm)}


def install(endpoint: str, concurrency_quota: int) -> ThreadingHTTPServer:
    """Put the providers in front of moto's own models; answers to custom resources go to the returned server."""
    ACCOUNT.endpoint, ACCOUNT.concurrency_quota = endpoint, concurrency_quota
    answers = ThreadingHTTPServer(("127.0.0.1", 0), _Answers)
    threading.Thread(target=answers.serve_forever, daemon=True).start()
    CustomResource.answers_url = f"http://127.0.0.1:{answers.server_address[1]}"
    original = getattr(parsing.resource_class_from_type, "__wrapped__", parsing.resource_class_from_type)

    def resource_class_from_type(resource_type: str) -> Any:
        if resource_type.startswith("Custom::"):
            return CustomResource
        return PROVIDERS.get(resource_type) or original(resource_type)

    resource_class_from_type.__wrapped__ = original  # type: ignore[attr-defined]
    parsing.resource_class_from_type = resource_class_from_type
    return answers


def uninstall() -> None:
    parsing.resource_class_from_type = getattr(parsing.resource_class_from_type, "__wrapped__",
                                               parsing.resource_class_from_type)
