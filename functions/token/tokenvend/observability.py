"""Logger and Metrics, created once and shared. Their names come from the POWERTOOLS_* variables that
template.yaml sets; metrics go out as CloudWatch embedded-metric-format lines, costing no API call.

No Tracer: the X-Ray SDK (and wrapt) cost the package about 1.7 MB and a traced cold start 100 ms or more
(docs/benchmarks.md), past the cold-start and size budgets. Lambda's active tracing still records every
invocation (its Initialization, Invocation and Overhead) without the SDK; what is lost is the subsegments for the
DynamoDB, Secrets Manager, Step Functions and OpenAI calls inside it, and their annotations.

Nothing logged or measured carries the OpenAI key or a token; callers appear only as salted hashes.
"""

from __future__ import annotations

import os
import warnings

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit, single_metric

# Requests that count nothing (health checks, options) are normal here, not a mistake worth a warning per call.
warnings.filterwarnings("ignore", message="No application metrics to publish")

# The API's function is "token-vend" in "RealtimeTokenVend" by default: its environment has no room to say so (Lambda
# allows 4 KB, which the owner's parameters fill); the leash function's sets POWERTOOLS_SERVICE_NAME to "leash".
NAMESPACE = os.environ.get("POWERTOOLS_METRICS_NAMESPACE") or "RealtimeTokenVend"
SERVICE = os.environ.get("POWERTOOLS_SERVICE_NAME") or "token-vend"

logger = Logger(service=SERVICE)
metrics = Metrics(namespace=NAMESPACE, service=SERVICE)


def count(name: str, **dimensions: str) -> None:
    """A one-off metric with its own dimensions (the shared `metrics` object carries only the service)."""
    measure(name, 1, MetricUnit.Count, **dimensions)


def measure(name: str, value: float, unit: MetricUnit, **dimensions: str) -> None:
    with single_metric(name=name, unit=unit, value=value, namespace=metrics.namespace) as metric:
        metric.add_dimension("service", str(metrics.service or "token-vend"))
        for key, value in dimensions.items():
            metric.add_dimension(key, value)


def latency(name: str, milliseconds: float) -> None:
    metrics.add_metric(name=name, unit=MetricUnit.Milliseconds, value=round(milliseconds, 1))
