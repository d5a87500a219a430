"""The warm measurements, run in their own process with the function's environment (as a Lambda container).

`python -m bench.warm_worker CONFIG.json RESULT.json`. Imports the handler, then, for a token vend and for a call
setup, alternates requests through `lambda_handler` with the floor: the same AWS and OpenAI requests made with
bare botocore and httpx, and nothing else. A vend's floor is the TransactWriteItems and
`POST /realtime/client_secrets`; a call setup's is the TransactWriteItems, `POST /realtime/calls` (the offer and
the session, multipart), the PutItem of the call's record and the StartExecution of its timer. A counting phase
(not timed) records what each request sends: AWS requests per service and operation (botocore `before-send` hooks
on every client), new TCP connections to AWS and to OpenAI, and OpenAI requests. Every call set up, by the handler
or the floor, is hung up at the stand-in right after it is timed, so the stand-in never carries more than one.
"""

from __future__ import annotations

import gc
import json
import resource
import sys
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


class Counters:
    """Counts what the function sends while `on`; installed before the handler is imported, so every client has it."""

    def __init__(self) -> None:
        self.on = False
        self.aws: Counter[str] = Counter()
        self.aws_connections = 0
        self.openai_connections = 0
        self.openai_requests = 0
        self.transactions: list[list[dict[str, Any]]] = []

    def install(self) -> None:
        import botocore.session
        import httpcore._backends.sync as httpcore_sync
        import httpx
        import urllib3.connection

        counters = self
        create_client = botocore.session.Session.create_client

        def counting_create_client(session: Any, *args: Any, **kwargs: Any) -> Any:
            client = create_client(session, *args, **kwargs)
            service = client.meta.service_model.service_name

            def before_send(request: Any, **_: Any) -> None:
                if counters.on:
                    target = request.headers.get("X-Amz-Target", b"")
                    target = target.decode() if isinstance(target, bytes) else str(target)
                    counters.aws[f"{service}:{target.rpartition('.')[2] or '?'}"] += 1

            def capture(params: dict[str, Any], **_: Any) -> None:
                if counters.on:
                    counters.transactions.append(params.get("TransactItems", []))

            client.meta.events.register("before-send", before_send)
            client.meta.events.register("provide-client-params.dynamodb.TransactWriteItems", capture)
            return client

        botocore.session.Session.create_client = counting_create_client  # type: ignore[method-assign]

        connect = urllib3.connection.HTTPConnection.connect

        def counting_connect(conn: Any) -> None:
            if counters.on:
                counters.aws_connections += 1
            connect(conn)

        urllib3.connection.HTTPConnection.connect = counting_connect  # type: ignore[method-assign]

        connect_tcp = httpcore_sync.SyncBackend.connect_tcp

        def counting_connect_tcp(backend: Any, *args: Any, **kwargs: Any) -> Any:
            if counters.on:
                counters.openai_connections += 1
            return connect_tcp(backend, *args, **kwargs)

        httpcore_sync.SyncBackend.connect_tcp = counting_connect_tcp  # type: ignore[method-assign]

        handle = httpx.HTTPTransport.handle_request

        def counting_handle(transport: Any, request: Any) -> Any:
            if counters.on:
                counters.openai_requests += 1
            return handle(transport, request)

        httpx.HTTPTransport.handle_request = counting_handle  # type: ignore[method-assign]


    def count(self, request: Callable[[], float], n: int, floor_items: list[dict[str, Any]]) -> dict[str, Any]:
        """What `n` requests send, per request; and whether the floor's transaction has the handler's shape."""
        self.aws.clear()
        self.transactions.clear()
        self.aws_connections = self.openai_connections = self.openai_requests = 0
        self.on = True
        for _ in range(n):
            request()
        self.on = False
        handler_shapes = {json.dumps(_shape(t)) for t in self.transactions}

        def per_request(*prefixes: str, exclude: tuple[str, ...] = ()) -> float:
            return sum(v for k, v in self.aws.items() if k.startswith(prefixes) and not k.startswith(exclude)) / n

        return {
            "vends": n,
            "aws_requests": dict(self.aws),
            "dynamodb_requests_per_vend": per_request("dynamodb:"),
            "secretsmanager_requests_per_vend": per_request("secretsmanager:"),
            "stepfunctions_requests_per_vend": per_request("states:", "stepfunctions:"),
            "other_aws_requests_per_vend": per_request("", exclude=("dynamodb:", "secretsmanager:", "states:",
                                                                    "stepfunctions:")),
            "new_aws_connections": self.aws_connections,
            "openai_requests_per_vend": self.openai_requests / n,
            "new_openai_connections": self.openai_connections,
            "floor_transaction_same_shape": handler_shapes == {json.dumps(_shape(floor_items))},
        }


def _timed_run(handler: Callable[[], float], floor: Callable[[], float], n: int) -> dict[str, Any]:
    """Pairs, alternating which goes first, so drift in moto's speed hits both alike."""
    handler_ms: list[float] = []
    floor_ms: list[float] = []
    cpu = {"handler": 0.0, "floor": 0.0}
    gc.collect()
    for i in range(n):
        pair = (("handler", handler_ms, handler), ("floor", floor_ms, floor))
        for name, sink, fn in (pair if i % 2 == 0 else pair[::-1]):
            c0 = time.process_time()
            sink.append(fn())
            cpu[name] += time.process_time() - c0
    return {"handler_ms": handler_ms, "floor_ms": floor_ms, "handler_cpu_ms": cpu["handler"] * 1000 / n,
            "floor_cpu_ms": cpu["floor"] * 1000 / n}


def _offer() -> str:
    """A real WebRTC offer (aiortc, as a browser makes it), made once: every call setup sends it."""
    from tests.integration.offers import make_offer

    return make_offer()


CALLERS = 8  # a small pool: with the run's generous limits every vend is allowed, and the table stays small


def _ip(n: int) -> str:
    return f"10.0.0.{n % CALLERS + 1}"


def _shape(items: list[dict[str, Any]]) -> list[tuple[str, str, str, tuple[str, ...]]]:
    """What makes two transactions the same request: kinds, expressions and attribute names, not the values."""
    shape = []
    for item in items:
        (kind, body), = item.items()
        shape.append((kind, body.get("UpdateExpression", ""), body.get("ConditionExpression", ""),
                      tuple(sorted(body.get("ExpressionAttributeNames", {}).values()))))
    return shape


def main(config_path: str, result_path: str) -> None:
    config = json.loads(Path(config_path).read_text())
    counters = Counters()
    counters.install()
    # Lambda sends the function's stdout to CloudWatch; here to a file, so logging costs what it costs.
    sys.stdout = open(config["log_path"], "a", buffering=1)  # noqa: SIM115 - lives as long as the process
    sys.path[:0] = [config["function_dir"], str(ROOT)]

    started = time.perf_counter()
    import app
    import_ms = (time.perf_counter() - started) * 1000

    from local.apigw import LambdaContext, Route, http_api_event
    from tokenvend.calls import LEASH_SLACK_SECONDS

    route = Route("POST", "/token")
    body = json.dumps({"voice": "cedar"})
    serial = iter(range(1, 1 << 24))

    def event() -> dict[str, Any]:
        return http_api_event("POST", "/token", route=route, headers={"content-type": "application/json"},
                              body=body, source_ip=_ip(next(serial)))

    vends = [0]

    def vend() -> float:
        vends[0] += 1
        request, context = event(), LambdaContext()
        t0 = time.perf_counter()
        result = app.lambda_handler(request, context)
        elapsed = time.perf_counter() - t0
        if result["statusCode"] != 200:
            raise RuntimeError(f"vend failed: {result['statusCode']} {result['body']}")
        return elapsed * 1000

    first_vend_ms = vend()
    rss_after_first_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    offer = _offer()

    # --- the floor: the same two requests with bare botocore and httpx -------------------------------------
    import botocore.session
    import httpx
    from botocore.config import Config

    floor_dynamodb = botocore.session.get_session().create_client(
        "dynamodb", region_name=config["region"], endpoint_url=config["aws_endpoint"],
        config=Config(connect_timeout=2, read_timeout=3, retries={"mode": "standard", "max_attempts": 2}))
    floor_http = httpx.Client(timeout=httpx.Timeout(10.0, connect=3.0), follow_redirects=False)
    from tokenvend.policy import SessionPolicy

    policy = SessionPolicy(app.settings)
    openai_body = policy.client_secret_request(policy.choose("cedar", None))
    openai_url = f"{config['openai_base_url'].rstrip('/')}/realtime/client_secrets"
    openai_headers = {"Authorization": f"Bearer {config['openai_key']}", "OpenAI-Safety-Identifier": "f" * 64}
    table = config["table"]

    floor_clock = [0]

    def floor_items(n: int, counter: str = "issued", amount: int = 1,
                    limit: int = int(config["daily_limit"])) -> list[dict[str, Any]]:
        # Never behind the floor's last request, even if the wall clock steps back: its buckets' condition holds.
        now = floor_clock[0] = max(int(time.time() * 1000), floor_clock[0] + 5)
        day_start = datetime.fromtimestamp(now / 1000, UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        day_end = int((day_start + timedelta(days=1)).timestamp() * 1000)
        new_tat = now + 4  # one token's interval at the run's 1,000,000 per hour (3.6 ms, rounded up)
        return [
            {"Update": {
                "TableName": table, "Key": {"pk": {"S": f"bucket#floor-{n % CALLERS}"}},
                "UpdateExpression": "SET #tat = :new_tat, #ttl = :ttl",
                "ConditionExpression": "(attribute_not_exists(#tat) OR #tat <= :now)",
                "ExpressionAttributeNames": {"#tat": "tat", "#ttl": "ttl"},
                "ExpressionAttributeValues": {":new_tat": {"N": str(new_tat)}, ":now": {"N": str(now)},
                                              ":ttl": {"N": str(new_tat // 1000 + 3600)}},
                "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
            }},
            {"Update": {  # the day's total and the anonymous lane beside it
                "TableName": table, "Key": {"pk": {"S": f"day#{day_start:%Y-%m-%d}"}},
                "UpdateExpression": "ADD #count :amount, #lane :amount SET #ttl = :ttl",
                "ConditionExpression": "(attribute_not_exists(#count) OR #count <= :room) AND "
                                       "(attribute_not_exists(#lane) OR #lane <= :lane_room)",
                "ExpressionAttributeNames": {"#count": counter, "#ttl": "ttl", "#lane": f"{counter}_anonymous"},
                "ExpressionAttributeValues": {":amount": {"N": str(amount)}, ":room": {"N": str(limit - amount)},
                                              ":lane_room": {"N": str(limit - amount)},
                                              ":ttl": {"N": str(day_end // 1000 + 7 * 86_400)}},
                "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
            }},
            callers_day(n, counter, amount, day_start, day_end),
            {"ConditionCheck": {
                "TableName": table, "Key": {"pk": {"S": "control"}},
                "ConditionExpression": "attribute_not_exists(#paused) OR #paused = :false",
                "ExpressionAttributeNames": {"#paused": "paused"},
                "ExpressionAttributeValues": {":false": {"BOOL": False}},
            }},
            {"ConditionCheck": {  # the owner has not blocked the caller
                "TableName": table, "Key": {"pk": {"S": f"block#floor-{n % CALLERS}"}},
                "ConditionExpression": "attribute_not_exists(#pk)",
                "ExpressionAttributeNames": {"#pk": "pk"},
            }},
        ]

    def callers_day(n: int, counter: str, amount: int, day_start: datetime, day_end: int) -> dict[str, Any]:
        """The caller's own day: a call's seconds under its share (tokens have none), its kind and network."""
        call = counter == "call_seconds"
        names = {"#count": counter, "#ttl": "ttl", "#kind": "kind", "#network": "network"}
        values = {":amount": {"N": str(amount)}, ":kind": {"S": "anonymous"}, ":network": {"S": "10.0.0.0/24"},
                  ":ttl": {"N": str(day_end // 1000 + 7 * 86_400)}}
        update = "ADD #count :amount SET #ttl = :ttl, #kind = :kind, #network = :network"
        # One item per caller of the small pool, as the handler's callers have: the table must not grow with the run.
        key = {"pk": {"S": f"spent#{day_start:%Y-%m-%d}#floor-{n % CALLERS}"}}
        part: dict[str, Any] = {"TableName": table, "Key": key,
                                "ExpressionAttributeNames": names, "ExpressionAttributeValues": values}
        if call:
            names["#calls"] = "calls"
            values[":one"] = {"N": "1"}
            update = update.replace("ADD #count :amount", "ADD #count :amount, #calls :one")
            part["ConditionExpression"] = "attribute_not_exists(#count) OR #count <= :room"
            values[":room"] = {"N": str(int(app.settings.limits.caller_daily_call_seconds) - amount)}
        part["UpdateExpression"] = update
        return {"Update": part}

    def floor() -> float:
        n = next(serial)
        t0 = time.perf_counter()
        floor_dynamodb.transact_write_items(TransactItems=floor_items(n))
        response = floor_http.post(openai_url, json=openai_body, headers=openai_headers)
        value = response.json()["value"]
        elapsed = time.perf_counter() - t0
        if response.status_code != 200 or not value:
            raise RuntimeError(f"floor failed: {response.status_code}")
        return elapsed * 1000

    # --- the call setup: the same four requests with bare botocore and httpx -----------------------------------
    floor_stepfunctions = botocore.session.get_session().create_client(
        "stepfunctions", region_name=config["region"], endpoint_url=config["aws_endpoint"],
        config=Config(connect_timeout=2, read_timeout=3, retries={"mode": "standard", "max_attempts": 2}))
    call_session = json.dumps(policy.realtime_session(policy.choose("cedar", None)))
    calls_url = f"{config['openai_base_url'].rstrip('/')}/realtime/calls"
    reserved = app.settings.max_call_seconds + LEASH_SLACK_SECONDS
    call_body = json.dumps({"sdp": offer, "voice": "cedar"})

    executions = app.settings.state_machine_arn.replace(":stateMachine:", ":execution:")

    def hang_up(call_id: str) -> None:
        """Not timed and not counted: the benchmark's own requests. They end the call at the stand-in, its timer and
        its record, so neither the stand-in nor moto grows with the run (moto copies the whole table in every
        transaction)."""
        counting, counters.on = counters.on, False
        floor_http.post(f"{calls_url}/{call_id}/hangup", headers=openai_headers)
        floor_stepfunctions.stop_execution(executionArn=f"{executions}:{call_id}")
        floor_dynamodb.delete_item(TableName=table, Key={"pk": {"S": f"call#{call_id}"}})
        counters.on = counting

    def call() -> float:
        request = http_api_event("POST", "/calls", route=Route("POST", "/calls"),
                                 headers={"content-type": "application/json"}, body=call_body,
                                 source_ip=_ip(next(serial)))
        context = LambdaContext()
        t0 = time.perf_counter()
        result = app.lambda_handler(request, context)
        elapsed = time.perf_counter() - t0
        if result["statusCode"] != 201:
            raise RuntimeError(f"call setup failed: {result['statusCode']} {result['body']}")
        hang_up(json.loads(result["body"])["call_id"])
        return elapsed * 1000

    def floor_call() -> float:
        n = next(serial)
        now = time.time()
        t0 = time.perf_counter()
        floor_dynamodb.transact_write_items(TransactItems=floor_items(
            n, counter="call_seconds", amount=reserved, limit=app.settings.limits.daily_call_seconds))
        response = floor_http.post(calls_url, headers={**openai_headers, "Accept": "application/sdp"},
                                   files={"sdp": (None, offer, "application/sdp"),
                                          "session": (None, call_session, "application/json")})
        call_id = response.headers.get("location", "").rsplit("/", 1)[-1]
        ends_at = int(now) + app.settings.max_call_seconds
        floor_dynamodb.put_item(TableName=table, ConditionExpression="attribute_not_exists(pk)", Item={
            "pk": {"S": f"call#{call_id}"}, "caller": {"S": "f" * 64}, "backend": {"S": "realtime"},
            "started_at": {"N": str(int(now))}, "ends_at": {"N": str(ends_at)},
            "reserved_seconds": {"N": str(reserved)}, "day": {"S": time.strftime("%Y-%m-%d", time.gmtime(now))},
            "hangup_token_sha256": {"S": "0" * 64}, "state": {"S": "active"}, "active": {"S": "calls"},
            "ttl": {"N": str(ends_at + 86_400)}})
        floor_stepfunctions.start_execution(stateMachineArn=app.settings.state_machine_arn, name=call_id,
                                            input=json.dumps({"call_id": call_id, "hangup_at": time.strftime(
                                                "%Y-%m-%dT%H:%M:%SZ", time.gmtime(ends_at))}))
        elapsed = time.perf_counter() - t0
        if response.status_code != 201 or not call_id.startswith("rtc_"):
            raise RuntimeError(f"floor call failed: {response.status_code}")
        hang_up(call_id)
        return elapsed * 1000

    for _ in range(config["warmup"]):
        vend()
        floor()
    for _ in range(config["call_warmup"]):
        call()
        floor_call()

    # --- what one warm vend or call setup sends (counted, not timed) -----------------------------------------
    counts = counters.count(vend, config["count_vends"], floor_items(0))
    call_counts = counters.count(call, config["count_calls"], floor_items(
        0, counter="call_seconds", amount=reserved, limit=app.settings.limits.daily_call_seconds))

    runs = [_timed_run(vend, floor, config["vends"]) for _ in range(config["runs"])]
    call_runs = [_timed_run(call, floor_call, config["calls"]) for _ in range(config["runs"])]

    result = {
        "import_ms": import_ms,
        "first_vend_ms": first_vend_ms,
        "max_rss_mb_after_first_vend": rss_after_first_mb,
        "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "log_bytes_per_vend": Path(config["log_path"]).stat().st_size / vends[0],
        "counts": counts,
        "runs": runs,
        "call": {"counts": call_counts, "runs": call_runs},
    }
    Path(result_path).write_text(json.dumps(result))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
