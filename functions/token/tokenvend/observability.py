"""Logger, Metrics and Tracer, created once and shared. Their names come from the POWERTOOLS_* variables that
template.yaml sets; metrics go out as CloudWatch embedded-metric-format lines, costing no API call.

The X-Ray SDK costs a cold start about 100 ms to import and patch, so it is loaded only when tracing is on (in
Lambda with `Tracing: Active`); locally and with POWERTOOLS_TRACE_DISABLED the tracer is a no-op. When on, it
patches only what this function calls (botocore and httpx), not every library X-Ray knows.

Nothing logged or measured carries the OpenAI key or a token; callers appear only as salted hashes.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit, single_metric

# Requests that count nothing (health checks, options) are normal here, not a mistake worth a warning per call.
warnings.filterwarnings("ignore", message="No application metrics to publish")

# The template sets POWERTOOLS_METRICS_NAMESPACE; the default keeps metrics valid wherever the code runs.
NAMESPACE = os.environ.get("POWERTOOLS_METRICS_NAMESPACE") or "RealtimeTokenVend"

logger = Logger()
metrics = Metrics(namespace=NAMESPACE)
TRACED_MODULES = ("botocore", "httpx")


class _NoTracer:
    """Stands in for Tracer when tracing is off, without importing the X-Ray SDK."""

    disabled = True

    def capture_lambda_handler(self, lambda_handler: Callable[..., Any] | None = None,
                               **_: Any) -> Callable[..., Any]:
        if lambda_handler is not None:
            return lambda_handler
        return lambda handler: handler

    def capture_method(self, method: Callable[..., Any] | None = None, **_: Any) -> Callable[..., Any]:
        if method is not None:
            return method
        return lambda function: function


# Powertools' own rule: off with POWERTOOLS_TRACE_DISABLED, outside Lambda, and under SAM local.
tracer: Tracer | _NoTracer = _NoTracer() if Tracer._is_tracer_disabled() else Tracer(patch_modules=TRACED_MODULES)


def count(name: str, **dimensions: str) -> None:
    """A one-off metric with its own dimensions (the shared `metrics` object carries only the service)."""
    with single_metric(name=name, unit=MetricUnit.Count, value=1, namespace=metrics.namespace) as metric:
        metric.add_dimension("service", str(metrics.service or "token-vend"))
        for key, value in dimensions.items():
            metric.add_dimension(key, value)


def latency(name: str, milliseconds: float) -> None:
    metrics.add_metric(name=name, unit=MetricUnit.Milliseconds, value=round(milliseconds, 1))
