"""How the rehearsed stack is wired, read back from moto's own APIs: every failed check names the resource.

Each check compares what a resource points at with what the stack actually created (physical ids and ARNs), so a
template reference that lands on the wrong resource fails here even though CloudFormation would create it happily.
"""

from __future__ import annotations

import ast
import json
from typing import Any

from deploy.providers import ACCOUNT, client
from local.template_stack import ACCOUNT_ID, REGION
from tokenvend import metric_names, routes
from tokenvend.errors import Code
from tokenvend.settings import LANES, LeashSettings, Settings

RETAINED = ("LimitsTable", "OpenAIKeySecret")  # DeletionPolicy: Retain


class Stack:
    def __init__(self, translated: dict[str, Any], parameters: dict[str, str], created: dict[str, str],
                 outputs: dict[str, str]) -> None:
        self.template, self.parameters, self.ids, self.outputs = translated, parameters, created, outputs
        self.passed = 0
        self.lam, self.iam = client("lambda"), client("iam")

    def check(self, resource: str, ok: bool, what: str) -> None:
        if not ok:
            raise AssertionError(f"{resource}: {what}")
        self.passed += 1

    def check_all(self) -> None:
        for step in (self.routes, self.functions, self.iam_policies, self.leash, self.site, self.alarms,
                     self.outputs_resolve):
            step()

    # --- what the pieces point at ---------------------------------------------------------------------------

    def arn(self, logical: str) -> str:
        physical = self.ids[logical]
        if physical.startswith("arn:"):
            return physical
        kind = self.template["Resources"][logical]["Type"]
        return {"AWS::Lambda::Function": f"arn:aws:lambda:{REGION}:{ACCOUNT_ID}:function:{physical}",
                "AWS::DynamoDB::Table": f"arn:aws:dynamodb:{REGION}:{ACCOUNT_ID}:table/{physical}",
                "AWS::S3::Bucket": f"arn:aws:s3:::{physical}"}[kind]

    def env(self, logical: str) -> dict[str, str]:
        config = self.lam.get_function_configuration(FunctionName=self.ids[logical])
        # moto keeps a Number parameter's value as a number; Lambda's environment is strings.
        return {k: str(v) for k, v in config.get("Environment", {}).get("Variables", {}).items()}

    def key_secret(self) -> str:
        return self.parameters.get("ExistingSecretArn") or self.ids["OpenAIKeySecret"]

    def routes(self) -> None:
        apigw = client("apigatewayv2")
        api = self.ids["HttpApi"]
        integrations = {i["IntegrationId"]: i for i in apigw.get_integrations(ApiId=api)["Items"]}
        found, made = {}, {}
        for route in apigw.get_routes(ApiId=api)["Items"]:
            method, path = route["RouteKey"].split(" ", 1)
            method = "ANY" if method == "X-AMAZON-APIGATEWAY-ANY-METHOD" else method  # how moto reads the OpenAPI
            found[f"{method} {path}"] = integrations[route["Target"].removeprefix("integrations/")]["IntegrationUri"]
            made[f"{method} {path}"] = route
        user_lane = bool(self.param("JwtIssuer"))
        declared = {f"{r.method} {r.path}" for r in routes.ROUTES if user_lane or r != routes.USER_CALLS}
        declared |= {"ANY /{proxy+}"}
        self.check("HttpApi", set(found) == declared, f"routes {sorted(found)}, the function's {sorted(declared)}")
        alias = self.ids["TokenFunctionAliaslive"]
        for key, uri in found.items():
            # The OpenAPI body's integrations name the invocation path; one declared as a resource, the alias itself.
            self.check("HttpApi", f"/functions/{alias}/invocations" in uri or uri == alias,
                       f"{key} does not reach TokenFunction:live")
        self.check("TokenFunctionAliaslive", alias.startswith(self.arn("TokenFunction") + ":"),
                   "the alias is not TokenFunction's")
        stage = apigw.get_stage(ApiId=api, StageName="$default")
        throttle = stage.get("DefaultRouteSettings", {})
        self.check("HttpApiApiGatewayDefaultStage",
                   throttle.get("ThrottlingBurstLimit") == int(self.param("ThrottleBurstLimit")),
                   f"throttle {throttle} is not ThrottleBurstLimit")
        self.user_lane(apigw, api, made, integrations)

    def user_lane(self, apigw: Any, api: str, made: dict[str, dict[str, Any]],
                  integrations: dict[str, dict[str, Any]]) -> None:
        """With JwtIssuer: POST /user/calls behind the JWT authorizer with the parameters' issuer and audiences,
        integrated with the function, allowed to invoke it, and the function told the same issuer and audience.
        Every other route stays open to API Gateway (the function identifies those callers)."""
        key = f"{routes.USER_CALLS.method} {routes.USER_CALLS.path}"
        for other, route in made.items():
            if other != key:
                self.check("HttpApi", route.get("AuthorizationType", "NONE") == "NONE",
                           f"{other} asks API Gateway for {route.get('AuthorizationType')}")
        issuer = self.param("JwtIssuer")
        if not issuer:
            self.check("UserJwtAuthorizer", "UserJwtAuthorizer" not in self.ids and not any(
                "AuthorizerId" in route for route in made.values()), "an authorizer without JwtIssuer")
            return
        route = made[key]
        self.check("UserCallsRoute", route.get("AuthorizationType") == "JWT"
                   and route.get("AuthorizerId") == self.ids["UserJwtAuthorizer"],
                   f"{key} is authorized by {route.get('AuthorizationType')} {route.get('AuthorizerId')}, "
                   "not the stack's JWT authorizer")
        authorizer = apigw.get_authorizer(ApiId=api, AuthorizerId=self.ids["UserJwtAuthorizer"])
        config = authorizer.get("JwtConfiguration", {})
        audiences = self.param("JwtAudience").split(",")
        self.check("UserJwtAuthorizer", authorizer.get("AuthorizerType") == "JWT"
                   and authorizer.get("IdentitySource") == ["$request.header.Authorization"],
                   f"is {authorizer.get('AuthorizerType')} on {authorizer.get('IdentitySource')}")
        self.check("UserJwtAuthorizer", config.get("Issuer") == issuer and config.get("Audience") == audiences,
                   f"checks {config}, not JwtIssuer {issuer} and JwtAudience {audiences}")
        integration = integrations.get(route["Target"].removeprefix("integrations/"), {})
        self.check("UserCallsIntegration", route["Target"] == f"integrations/{self.ids['UserCallsIntegration']}"
                   and integration.get("IntegrationType") == "AWS_PROXY"
                   and integration.get("PayloadFormatVersion") == "2.0",
                   f"{key} reaches {integration}, not a payload 2.0 proxy to the function")
        statements = json.loads(self.lam.get_policy(FunctionName=self.ids["TokenFunctionAliaslive"])["Policy"])
        arn = f"arn:aws:execute-api:{REGION}:{ACCOUNT_ID}:{api}/*/*/user/calls"
        self.check("UserCallsPermission", any(
            s.get("Principal", {}).get("Service") == "apigateway.amazonaws.com"
            and s.get("Condition", {}).get("ArnLike", {}).get("AWS:SourceArn") == arn
            for s in statements["Statement"]), f"API Gateway may not invoke the function for {arn}")
        env = self.env("TokenFunction")
        self.check("TokenFunction", env.get("JWT_ISSUER") == issuer, "JWT_ISSUER is not the authorizer's issuer")

    def param(self, name: str) -> str:
        return self.parameters.get(name, str(self.template["Parameters"][name].get("Default", "")))

    def functions(self) -> None:
        token, leash = self.env("TokenFunction"), self.env("LeashFunction")
        for logical, env in (("TokenFunction", token), ("LeashFunction", leash)):
            self.check(logical, env.get("TABLE_NAME") == self.ids["LimitsTable"], "TABLE_NAME is not the stack's table")
            client("dynamodb").describe_table(TableName=env["TABLE_NAME"])
            self.check(logical, env.get("OPENAI_SECRET_ARN") == self.key_secret(), "OPENAI_SECRET_ARN is not the key's")
        self.check("TokenFunction", token.get("HASH_SALT_SECRET_ARN") == self.ids["HashSaltSecret"],
                   "HASH_SALT_SECRET_ARN is not the salt's secret")
        self.check("TokenFunction", token.get("STATE_MACHINE_ARN") == self.ids["LeashStateMachine"],
                   "STATE_MACHINE_ARN is not the leash's state machine")
        site = self.outputs["SiteUrl"].rstrip("/")
        self.check("TokenFunction", token.get("ALLOWED_ORIGINS", "").startswith(site + ","),
                   "ALLOWED_ORIGINS does not start with the site's own origin")
        sm = client("secretsmanager")
        own = [self.ids["HashSaltSecret"]] + ([] if "ExistingSecretArn" in self.parameters else [self.key_secret()])
        for arn in own:
            sm.describe_secret(SecretId=arn)
        # As a cold start reads them: every rule of the function's settings, including those no Rule can state.
        for logical, parse in (("TokenFunction", Settings.from_env), ("LeashFunction", LeashSettings.from_env)):
            try:
                parse(self.env(logical))
            except ValueError as exc:
                self.check(logical, False, f"its environment would stop every cold start: {exc}")
            self.passed += 1
        reserved = self.lam.get_function_concurrency(FunctionName=self.ids["TokenFunction"])
        want = int(self.param("ReservedConcurrency")) or None
        self.check("TokenFunction", (reserved.get("ReservedConcurrentExecutions") or None) == want,
                   f"reserved concurrency {reserved.get('ReservedConcurrentExecutions')}, ReservedConcurrency {want}")
        groups = {g["logGroupName"]: g for g in client("logs").describe_log_groups()["logGroups"]}
        for function in ("TokenFunction", "LeashFunction", "SiteDeployerFunction"):
            group = groups.get(self.ids[f"{function}Logs"], {})
            self.check(f"{function}Logs", group.get("retentionInDays") == 30, "no log group with a 30-day retention")

    def policy_resources(self, role_logical: str) -> set[str]:
        role = self.ids[role_logical]
        resources: set[str] = set()
        for name in self.iam.list_role_policies(RoleName=role)["PolicyNames"]:
            document = self.iam.get_role_policy(RoleName=role, PolicyName=name)["PolicyDocument"]
            if isinstance(document, str):  # moto keeps a role's inline policy from CloudFormation as a dict's repr
                document = json.loads(document) if document.startswith('{"') else ast.literal_eval(document)
            self.check(role_logical, document.get("Version") == "2012-10-17", f"policy {name} has no Version")
            for statement in document["Statement"]:
                listed = statement["Resource"]
                # moto leaves an `!If [..., !Ref AWS::NoValue]` list element as None; CloudFormation drops it.
                resources |= {r for r in (listed if isinstance(listed, list) else [listed]) if r is not None}
        return resources

    def iam_policies(self) -> None:
        machine = self.ids["LeashStateMachine"]
        table, bucket = self.arn("LimitsTable"), self.arn("SiteBucket")
        distribution = f"arn:aws:cloudfront::{ACCOUNT_ID}:distribution/{self.ids['SiteDistribution']}"
        expected = {
            # No StopExecution: a call's timer is never stopped.
            "TokenFunctionRole": {self.key_secret(), self.ids["HashSaltSecret"], table, machine} | (
                {self.param("TurnstileSecretArn")} if self.param("TurnstileSiteKey") else set()),
            "LeashFunctionRole": {self.key_secret(), table, f"{table}/index/ActiveCalls"},
            "LeashStateMachineRole": {self.arn("LeashFunction")},
            "LeashFunctionSweeperRole": {self.arn("LeashFunction")},
            "SiteDeployerFunctionRole": {bucket, f"{bucket}/*", distribution},
        }
        for role, resources in expected.items():
            got = self.policy_resources(role)
            self.check(role, got == resources, f"grants on {sorted(got)}, not exactly {sorted(resources)}")
        for function in ("TokenFunction", "LeashFunction", "SiteDeployerFunction"):
            role = self.lam.get_function_configuration(FunctionName=self.ids[function])["Role"]
            self.check(function, role.endswith("/" + self.ids[f"{function}Role"]), "runs with another role")

    def leash(self) -> None:
        machine = client("stepfunctions").describe_state_machine(stateMachineArn=self.ids["LeashStateMachine"])
        parameters = json.loads(machine["definition"])["States"]["HangUp"]["Parameters"]
        task = parameters["FunctionName"]
        self.check("LeashStateMachine", task == self.arn("LeashFunction"), f"its HangUp invokes {task}")
        self.check("LeashStateMachine", parameters.get("Payload.$") == "$",
                   "its HangUp does not pass the timer's whole input (the call's backend) to the leash")
        self.check("LeashStateMachine", machine["roleArn"].endswith("/" + self.ids["LeashStateMachineRole"]),
                   "runs with another role")
        schedule = client("scheduler").get_schedule(Name=self.ids["LeashFunctionSweeper"])
        target = schedule["Target"]
        self.check("LeashFunctionSweeper", target["Arn"] == self.arn("LeashFunction"), f"targets {target['Arn']}")
        self.check("LeashFunctionSweeper", json.loads(target.get("Input", "{}")) == {"sweep": True}
                   and schedule["ScheduleExpression"] == "rate(1 minute)", "is not a sweep every minute")
        self.check("LeashFunctionSweeper", target["RoleArn"].endswith("/" + self.ids["LeashFunctionSweeperRole"]),
                   "runs with another role")

    def site(self) -> None:
        bucket, distribution_id = self.ids["SiteBucket"], self.ids["SiteDistribution"]
        s3, cloudfront = client("s3"), client("cloudfront")
        config = json.loads(s3.get_object(Bucket=bucket, Key="config.json")["Body"].read())
        self.check("SiteDeployment", config.get("apiUrl") == self.outputs["ApiUrl"]
                   and self.outputs["ApiUrl"].startswith(f"https://{self.ids['HttpApi']}.execute-api."),
                   f"config.json names {config.get('apiUrl')}, not this stack's API")
        keys = {o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])}
        self.check("SiteDeployment", {"index.html", "config.json"} <= keys, f"the page is not in the bucket: {keys}")
        invalidations = cloudfront.list_invalidations(DistributionId=distribution_id)["InvalidationList"]
        self.check("SiteDeployment", invalidations.get("Quantity", 0) >= 1, "no invalidation of the distribution")
        config = cloudfront.get_distribution(Id=distribution_id)["Distribution"]["DistributionConfig"]
        origin = config["Origins"]["Items"][0]
        self.check("SiteDistribution", origin["DomainName"].startswith(bucket + "."), "its origin is another bucket")
        asked = ACCOUNT.distributions[distribution_id]  # moto keeps neither id below
        self.check("SiteDistribution", asked["Origins"][0].get("OriginAccessControlId") ==
                   self.ids["SiteOriginAccessControl"], "reads the bucket without the stack's origin access control")
        headers = asked["DefaultCacheBehavior"].get("ResponseHeadersPolicyId")
        self.check("SiteDistribution", headers == self.ids["SiteSecurityHeaders"], "serves without security headers")
        policy = ACCOUNT.bucket_policies.get(bucket, {})
        allows = [s for s in policy.get("Statement", []) if s["Effect"] == "Allow"]
        self.check("SiteBucketPolicy", len(allows) == 1 and json.dumps(allows[0]["Condition"]).endswith(
            f'distribution/{distribution_id}"}}}}'), "lets something other than this distribution read")

    def alarms(self) -> None:
        alarms = client("cloudwatch").describe_alarms()["MetricAlarms"]
        names = {self.ids[logical] for logical, r in self.template["Resources"].items()
                 if r["Type"] == "AWS::CloudWatch::Alarm" and logical in self.ids}
        topic = self.ids.get("AlertTopic")
        for alarm in (a for a in alarms if a["AlarmName"] in names):
            for query in alarm.get("Metrics", []):
                if "MetricStat" in query:
                    metric = query["MetricStat"]["Metric"]
                    self.check(alarm["AlarmName"], emitted(metric), f"watches {metric}, which no function emits")
            self.check(alarm["AlarmName"], alarm.get("AlarmActions") == [topic], "does not notify the alert topic")
        self.check("Alarms", len(names) == sum(1 for a in alarms if a["AlarmName"] in names), "an alarm is missing")
        if topic:
            subscriptions = client("sns").list_subscriptions_by_topic(TopicArn=topic)["Subscriptions"]
            self.check("AlertSubscription", [s["Endpoint"] for s in subscriptions] == [self.param("AlertEmail")],
                       "AlertEmail is not subscribed")

    def outputs_resolve(self) -> None:
        for key, value in self.outputs.items():
            self.check(f"Output {key}", bool(value) and "${" not in value and "None" not in value, f"is {value!r}")
        self.check("Output OpenAISecretArn", self.outputs["OpenAISecretArn"] == self.key_secret(), "not the key's")
        self.check("Output LimitsTableName", self.outputs["LimitsTableName"] == self.ids["LimitsTable"], "not it")

    # --- after `delete-stack` ------------------------------------------------------------------------------

    def check_deleted(self) -> None:
        buckets = {b["Name"] for b in client("s3").list_buckets()["Buckets"]}
        self.check("SiteBucket", self.ids["SiteBucket"] not in buckets, "still there after the delete")
        emptied = [a for a in ACCOUNT.custom_resource_answers if a.get("Data", {}).get("ObjectsDeleted")]
        self.check("SiteDeployment", bool(emptied), "the delete did not empty the bucket first")
        client("dynamodb").describe_table(TableName=self.ids["LimitsTable"])  # kept: DeletionPolicy Retain
        self.passed += 1
        if "OpenAIKeySecret" in self.ids:
            client("secretsmanager").describe_secret(SecretId=self.ids["OpenAIKeySecret"])
            self.passed += 1
        functions = {f["FunctionName"] for f in self.lam.list_functions()["Functions"]}
        self.check("TokenFunction", self.ids["TokenFunction"] not in functions, "still there after the delete")


def emitted(metric: dict[str, Any]) -> bool:
    """Whether some function emits a datapoint with exactly this namespace, name and dimensions, or API Gateway
    does for an HTTP API (its own metrics, by the API's id)."""
    dimensions = {d["Name"]: d["Value"] for d in metric.get("Dimensions", [])}
    if metric["Namespace"] == "AWS/ApiGateway":
        return metric["MetricName"] in HTTP_API_METRICS and set(dimensions) == {"ApiId"}
    name, service = metric["MetricName"], dimensions.pop("service", None)
    if metric["Namespace"] != metric_names.NAMESPACE or service not in metric_names.EMITTED_BY.get(name, ()):
        return False
    if not dimensions:  # service alone: an alarmed count's second datapoint, seconds, or latency
        return name in metric_names.ALARMED_COUNTS or name in SERVICE_ONLY
    if name in metric_names.BY_LANE:
        return set(dimensions) == {"lane"} and dimensions["lane"] in LANES
    return name == metric_names.DENIED and set(dimensions) == {"reason"} and dimensions["reason"] in DENIAL_CODES


HTTP_API_METRICS = ("4xx", "5xx", "Count", "Latency", "IntegrationLatency", "DataProcessed")
SERVICE_ONLY = (metric_names.CALL_SECONDS_RESERVED, metric_names.CALL_SECONDS_CREDITED, metric_names.UPSTREAM_LATENCY)
DENIAL_CODES = {str(code) for code in Code}
