"""AWS cost per 1,000 vends from the measured durations and memory and the public price list (us-east-1).

Prices checked on 2026-11-24 against AWS's pricing pages and the "How AWS Pricing Works" whitepaper: HTTP API
$1.00 per million requests (first 300 million a month); Lambda arm64 $0.0000133334 per GB-s and $0.20 per million
requests; DynamoDB on-demand $0.625 per million write request units, a transactional write costing 2 WRU per item
(up to 1 KB); Secrets Manager $0.05 per 10,000 API calls; CloudWatch Logs ingestion $0.50 per GB. Free tiers are
ignored (they would make most of this $0).
"""

from __future__ import annotations

import math
from typing import Any

HTTP_API_PER_MILLION = 1.00
LAMBDA_GB_SECOND = 0.0000133334
LAMBDA_PER_MILLION = 0.20
DYNAMODB_WRU_PER_MILLION = 0.625
SECRETS_PER_10K = 0.05
LOGS_PER_GB = 0.50
TRANSACTION_ITEMS = 3  # caller bucket, day counter, kill-switch check: each under 1 KB
WRU_PER_TRANSACTIONAL_ITEM = 2
SECRETS_PER_FETCH = 2  # the OpenAI key and the hashing salt


def per_thousand(*, memory_mb: int, warm_ms: float, log_bytes_per_vend: float, upstream_ms: float = 0.0,
                 secret_fetches_per_vend: float = 0.0) -> dict[str, Any]:
    """Rows of (item, arithmetic, dollars per 1,000 vends). `upstream_ms` adds time spent waiting on the real
    OpenAI, which the local stand-in does not have."""
    billed_ms = math.ceil(warm_ms + upstream_ms)  # Lambda bills in whole milliseconds
    gb = memory_mb / 1024
    wru = TRANSACTION_ITEMS * WRU_PER_TRANSACTIONAL_ITEM
    rows = [
        ("HTTP API requests", f"1,000 x ${HTTP_API_PER_MILLION:.2f} / 1M", 1000 * HTTP_API_PER_MILLION / 1e6),
        ("Lambda requests", f"1,000 x ${LAMBDA_PER_MILLION:.2f} / 1M", 1000 * LAMBDA_PER_MILLION / 1e6),
        ("Lambda duration", f"1,000 x {billed_ms} ms x {gb:g} GB x ${LAMBDA_GB_SECOND}/GB-s",
         1000 * billed_ms / 1000 * gb * LAMBDA_GB_SECOND),
        ("DynamoDB writes", f"1,000 x {wru} WRU ({TRANSACTION_ITEMS} items x {WRU_PER_TRANSACTIONAL_ITEM}) "
         f"x ${DYNAMODB_WRU_PER_MILLION} / 1M", 1000 * wru * DYNAMODB_WRU_PER_MILLION / 1e6),
        ("Secrets Manager", f"1,000 x {secret_fetches_per_vend:g} calls x ${SECRETS_PER_10K} / 10k",
         1000 * secret_fetches_per_vend * SECRETS_PER_10K / 1e4),
        ("CloudWatch Logs", f"1,000 x {log_bytes_per_vend:,.0f} B x ${LOGS_PER_GB}/GB",
         1000 * log_bytes_per_vend / 1024**3 * LOGS_PER_GB),
    ]
    total = sum(r[2] for r in rows)
    return {"billed_ms": billed_ms, "memory_mb": memory_mb, "upstream_ms": upstream_ms,
            "rows": [{"item": i, "arithmetic": a, "usd": u} for i, a, u in rows], "total_usd": total}


def scenarios(*, memory_mb: int, warm_ms: float, log_bytes_per_vend: float, cache_seconds: int) -> list[dict[str, Any]]:
    """Busy (a warm container, secrets cached: ~0 calls per vend) on loopback and with OpenAI's latency, and sparse
    (one vend per container per cache period: both secrets fetched for every vend)."""
    del cache_seconds
    return [
        {"name": "measured here (loopback OpenAI), busy", **per_thousand(
            memory_mb=memory_mb, warm_ms=warm_ms, log_bytes_per_vend=log_bytes_per_vend)},
        {"name": "with 400 ms waiting on the real OpenAI (assumed), busy", **per_thousand(
            memory_mb=memory_mb, warm_ms=warm_ms, log_bytes_per_vend=log_bytes_per_vend, upstream_ms=400)},
        {"name": "with 400 ms OpenAI (assumed), sparse: secrets fetched on every vend", **per_thousand(
            memory_mb=memory_mb, warm_ms=warm_ms, log_bytes_per_vend=log_bytes_per_vend, upstream_ms=400,
            secret_fetches_per_vend=SECRETS_PER_FETCH)},
    ]
