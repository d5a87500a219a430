"""The benchmarks still work: `python -m bench --quick` (tiny iteration counts, no browser) runs every part and
writes a report with every section. Speed goals are not asserted here; `make bench` measures them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_quick_bench_produces_a_complete_report(tmp_path: Path) -> None:
    report, raw = tmp_path / "benchmarks.md", tmp_path / "bench.json"
    done = subprocess.run([sys.executable, "-m", "bench", "--quick", "--output", str(report), "--json", str(raw)],
                          cwd=ROOT, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    results = json.loads(raw.read_text())
    assert results["mode"] == "quick"
    assert {"cpu", "cores", "python", "date"} <= set(results["machine"])
    warm = results["warm"]
    for figure in ("handler_p50_ms", "floor_p50_ms", "ratio_p50"):
        assert {"min", "median", "max"} <= set(warm[figure])
        assert warm[figure]["min"] <= warm[figure]["median"] <= warm[figure]["max"]
    counts = warm["counts"]
    assert counts["vends"] > 0 and counts["floor_transaction_same_shape"] is True
    assert counts["openai_requests_per_vend"] == 1
    call = warm["call"]
    assert {"min", "median", "max"} <= set(call["ratio_p50"])
    assert call["counts"]["floor_transaction_same_shape"] is True
    assert call["counts"]["aws_requests"] == {  # counted, so a change in what a call setup sends shows here
        "dynamodb:TransactWriteItems": call["counts"]["vends"], "dynamodb:PutItem": call["counts"]["vends"],
        "stepfunctions:StartExecution": call["counts"]["vends"]}
    assert call["counts"]["openai_requests_per_vend"] == 1
    cold = results["cold"]
    assert cold["floor_ms"]["median"] > 0 and cold["app_ms"]["median"] > 0
    assert "app" in cold["import_groups"] and not {"pydantic", "aws_xray_sdk"} & set(cold["import_groups"])
    tracing = results["tracing"]
    assert tracing["zipped_bytes"] > 0 and tracing["app_tracer_ms"]["median"] > 0
    assert results["package"]["zipped_bytes"] > 0
    assert "skipped" in results["browser"]
    assert [row["item"] for row in results["cost"][0]["rows"]][:3] == [
        "HTTP API requests", "Lambda requests", "Lambda duration"]
    goals = {(g["part"], g["name"]) for part in ("warm", "cold", "package")
             for g in ({"part": part, "name": n} for n in results[part]["goals"])}
    assert ("warm", "ratio_p50") in goals and ("cold", "ratio") in goals and ("package", "zipped_size") in goals
    assert ("warm", "call_ratio_p50") in goals and ("warm", "dynamodb_requests_per_call") in goals

    text = report.read_text()
    for heading in ("# Benchmarks", "## Goals", "## Warm vend", "## Warm call setup", "## Cold start",
                    "## Package size", "## Tracing", "## SnapStart", "## Click to connected",
                    "## AWS cost per 1,000 vends"):
        assert heading in text
    assert results["machine"]["cpu"] in text
