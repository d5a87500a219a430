"""Warm vend and warm call setup: overhead and requests per request, the handler in its own process against a moto
server over HTTP and the OpenAI stand-in on loopback, against a floor making the same requests with bare botocore
and httpx (bench/warm_worker.py says which)."""

from __future__ import annotations

import json
import logging
import os
import secrets
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import boto3
from moto.server import ThreadedMotoServer

from bench.common import AWS_ENV, FUNCTION_DIR, LAMBDA_ENV, PYTHON, ROOT, Spread, percentile
from local.openai_standin.server import StandIn
from local.template_stack import provision

DAILY_LIMIT = "10000000"  # generous: every vend in the run is allowed
# Generous per-caller limits for a small pool of callers: every vend is allowed, and the table stays small. (moto
# deep-copies the whole table in every TransactWriteItems, so a new caller per vend would slow it down as it grows.)
# The call setup measured is a Realtime call with its channel: the floor's request is POST /realtime/calls.
LIMITS = {"GlobalDailyLimit": DAILY_LIMIT, "AnonymousBurst": "10000", "AnonymousRatePerHour": "1000000",
          "EnableTokenRoute": "true", "DailyCallMinutes": "1000000",
          "CallerDailyCallMinutes": "1000000", "VoiceBackend": "realtime",
          "RealtimeDataChannel": "true"}
RATIO_GOAL = 1.25


def _clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "POWERTOOLS_", "OPENAI_"))}


def measure(*, function_dir: Path = FUNCTION_DIR, runs: int, vends: int, warmup: int,
            count_vends: int, calls: int, call_warmup: int, count_calls: int) -> dict[str, Any]:
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    moto.start()
    standin = StandIn().start()
    try:
        host, port = moto.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        session = boto3.Session(aws_access_key_id=AWS_ENV["AWS_ACCESS_KEY_ID"],
                                aws_secret_access_key=AWS_ENV["AWS_SECRET_ACCESS_KEY"],
                                aws_session_token=AWS_ENV["AWS_SESSION_TOKEN"], region_name=AWS_ENV["AWS_REGION"])
        stack = provision(f"bench-{secrets.token_hex(3)}", parameters=LIMITS,
                          session=session, endpoint_url=endpoint)
        session.client("secretsmanager", endpoint_url=endpoint).put_secret_value(
            SecretId=stack.physical_ids["OpenAIKeySecret"], SecretString=json.dumps({"api_key": standin.api_key}))
        with tempfile.TemporaryDirectory(prefix="bench-warm-") as tmp:
            config = {
                "function_dir": str(function_dir), "log_path": str(Path(tmp) / "function.log"),
                "region": "us-east-1", "aws_endpoint": endpoint, "openai_base_url": standin.base_url,
                "openai_key": standin.api_key, "table": stack.table_name, "daily_limit": DAILY_LIMIT,
                "runs": runs, "vends": vends, "warmup": warmup, "count_vends": count_vends,
                "calls": calls, "call_warmup": call_warmup, "count_calls": count_calls,
            }
            config_path, result_path = Path(tmp) / "config.json", Path(tmp) / "result.json"
            config_path.write_text(json.dumps(config))
            env = {**_clean_env(), **AWS_ENV, **LAMBDA_ENV, "AWS_ENDPOINT_URL": endpoint,
                   **stack.function_env["TokenFunction"], "OPENAI_BASE_URL": standin.base_url}
            done = subprocess.run([PYTHON, "-m", "bench.warm_worker", str(config_path), str(result_path)],
                                  cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
            if done.returncode != 0:
                raise RuntimeError(f"warm worker failed:\n{done.stderr[-3000:]}")
            raw = json.loads(result_path.read_text())
    finally:
        standin.stop()
        moto.stop()
    return summarise(raw)


def summarise(raw: dict[str, Any]) -> dict[str, Any]:
    vend = _pairs(raw["runs"], raw["counts"])
    call = _pairs(raw["call"]["runs"], raw["call"]["counts"])
    counts, call_counts = raw["counts"], raw["call"]["counts"]
    return {
        **vend,
        "import_ms": raw["import_ms"],
        "first_vend_ms": raw["first_vend_ms"],
        "max_rss_mb_after_first_vend": raw["max_rss_mb_after_first_vend"],
        "max_rss_mb": raw["max_rss_mb"],
        "log_bytes_per_vend": raw["log_bytes_per_vend"],
        "call": call,
        "goals": {
            "ratio_p50": _ratio_goal(vend),
            "dynamodb_requests_per_vend": {"goal": "1", "value": counts["dynamodb_requests_per_vend"],
                                           "met": counts["dynamodb_requests_per_vend"] == 1},
            "secretsmanager_requests_per_vend": {"goal": "0", "value": counts["secretsmanager_requests_per_vend"],
                                                 "met": counts["secretsmanager_requests_per_vend"] == 0},
            "new_openai_connections": {"goal": "0 (one reused connection)", "value": counts["new_openai_connections"],
                                       "met": counts["new_openai_connections"] == 0},
            "call_ratio_p50": _ratio_goal(call),
            # A call setup: the metered transaction and the call's record (DynamoDB), and its timer (Step Functions).
            "dynamodb_requests_per_call": {"goal": "2", "value": call_counts["dynamodb_requests_per_vend"],
                                           "met": call_counts["dynamodb_requests_per_vend"] == 2},
        },
    }


def _ratio_goal(part: dict[str, Any]) -> dict[str, Any]:
    median = part["ratio_p50"]["median"]
    return {"goal": f"<= {RATIO_GOAL}x", "value": median, "met": median <= RATIO_GOAL}


def _pairs(runs: list[dict[str, Any]], counts: dict[str, Any]) -> dict[str, Any]:
    """Handler against floor over timed runs: p50 and p90 per run, their ratios, CPU per request."""
    handler50 = [percentile(r["handler_ms"], 50) for r in runs]
    floor50 = [percentile(r["floor_ms"], 50) for r in runs]
    handler90 = [percentile(r["handler_ms"], 90) for r in runs]
    floor90 = [percentile(r["floor_ms"], 90) for r in runs]
    ratio50 = [h / f for h, f in zip(handler50, floor50, strict=True)]
    ratio90 = [h / f for h, f in zip(handler90, floor90, strict=True)]
    overhead = [h - f for h, f in zip(handler50, floor50, strict=True)]
    handler_cpu = [r["handler_cpu_ms"] for r in runs]
    floor_cpu = [r["floor_cpu_ms"] for r in runs]
    cpu_ratio = [h / f for h, f in zip(handler_cpu, floor_cpu, strict=True)]
    return {
        "vends_per_run": len(runs[0]["handler_ms"]),
        "handler_p50_ms": Spread.of(handler50, "ms").as_dict(),
        "floor_p50_ms": Spread.of(floor50, "ms").as_dict(),
        "ratio_p50": Spread.of(ratio50, "x").as_dict(),
        "overhead_p50_ms": Spread.of(overhead, "ms").as_dict(),
        "handler_p90_ms": Spread.of(handler90, "ms").as_dict(),
        "floor_p90_ms": Spread.of(floor90, "ms").as_dict(),
        "ratio_p90": Spread.of(ratio90, "x").as_dict(),
        "handler_cpu_ms": Spread.of(handler_cpu, "ms").as_dict(),
        "floor_cpu_ms": Spread.of(floor_cpu, "ms").as_dict(),
        "ratio_cpu": Spread.of(cpu_ratio, "x").as_dict(),
        "counts": counts,
    }
