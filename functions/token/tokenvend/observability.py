"""Logger, Metrics and Tracer, created once and shared. Their names come from the POWERTOOLS_* variables that
template.yaml sets; metrics go out as CloudWatch embedded-metric-format lines, costing no API call.

Nothing logged or measured carries the OpenAI key or a token; callers appear only as salted hashes.
"""

from __future__ import annotations

import warnings

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit, single_metric

# Requests that count nothing (health checks, options) are normal here, not a mistake worth a warning per call.
warnings.filterwarnings("ignore", message="No application metrics to publish")

logger = Logger()
metrics = Metrics()
tracer = Tracer()


def count(name: str, **dimensions: str) -> None:
    """A one-off metric with its own dimensions (the shared `metrics` object carries only the service)."""
    with single_metric(name=name, unit=MetricUnit.Count, value=1, namespace=metrics.namespace) as metric:
        metric.add_dimension("service", str(metrics.service or "token-vend"))
        for key, value in dimensions.items():
            metric.add_dimension(key, value)


def latency(name: str, milliseconds: float) -> None:
    metrics.add_metric(name=name, unit=MetricUnit.Milliseconds, value=round(milliseconds, 1))
