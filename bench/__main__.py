"""`python -m bench` runs every benchmark and rewrites docs/benchmarks.md; `--quick` only proves they still work."""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

from bench import cold, cost, package, report, tracing, warm
from bench.common import FUNCTION_DIR, ROOT, machine
from bench.lambda_env import lambda_path, layer_variant_path, sam_build

PARTS = ("warm", "cold", "package", "tracing", "browser")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="tiny iteration counts: proves the benchmarks work")
    parser.add_argument("--runs", type=int, help="runs per benchmark (default 5; quick 2)")
    parser.add_argument("--output", type=Path, help="markdown report (default docs/benchmarks.md; quick: none)")
    parser.add_argument("--json", type=Path, help="also write the raw results as JSON")
    parser.add_argument("--baseline", type=Path, help="JSON of an earlier run (--json) to compare against")
    parser.add_argument("--skip", default="", help=f"comma-separated parts to skip: {','.join(PARTS)}")
    parser.add_argument("--function-dir", type=Path, default=FUNCTION_DIR,
                        help="the token function's code to measure (default functions/token; for before/after)")
    args = parser.parse_args(argv)
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    unknown = skip - set(PARTS)
    if unknown:
        parser.error(f"unknown parts to skip: {', '.join(sorted(unknown))}")
    quick = args.quick
    runs = args.runs or (2 if quick else 5)
    output = args.output or (None if quick else ROOT / "docs" / "benchmarks.md")
    started = time.perf_counter()
    results: dict[str, Any] = {
        "mode": "quick" if quick else "full",
        "command": "python -m bench " + shlex.join(argv if argv is not None else sys.argv[1:]),
        "machine": machine(),
        "runs": runs,
    }

    def part(name: str, fn: Any) -> None:
        if name in skip:
            results[name] = {"skipped": "--skip"}
            return
        print(f"[bench] {name} ...", flush=True)
        t0 = time.perf_counter()
        try:
            results[name] = fn()
        except Exception as exc:  # a broken part is reported, and fails the run at the end
            traceback.print_exc()
            results[name] = {"error": f"{type(exc).__name__}: {exc}"}
        print(f"[bench] {name} done in {time.perf_counter() - t0:.1f} s", flush=True)

    part("warm", lambda: warm.measure(function_dir=args.function_dir, runs=runs, vends=20 if quick else 300,
                                      warmup=5 if quick else 50, count_vends=5 if quick else 50,
                                      calls=6 if quick else 60, call_warmup=2 if quick else 10,
                                      count_calls=3 if quick else 20))
    with tempfile.TemporaryDirectory(prefix="bench-build-") as tmp:
        scratch = Path(tmp)
        builds: dict[str, Path] = {}

        def build(arch: str) -> Path:
            if arch not in builds:
                builds[arch] = sam_build(scratch / arch, arch=arch, function_dir=args.function_dir)
            return builds[arch]

        # Cold start imports the package here, so it needs this machine's architecture; size is measured on what
        # is deployed (arm64), except in quick mode where one build serves both.
        part("cold", lambda: {**cold.measure(lambda_path(build("x86_64"), scratch), runs=3 if quick else 15,
                                             layer_path=layer_variant_path(build("x86_64"), scratch)),
                              "top_imports": cold.importtime_top(lambda_path(build("x86_64"), scratch)),
                              "import_groups": cold.importtime_groups(lambda_path(build("x86_64"), scratch),
                                                                      runs=1 if quick else 5)})
        part("package", lambda: package.measure(build("x86_64" if quick else "arm64"), "x86_64" if quick else "arm64"))
        part("tracing", lambda: tracing.measure(
            lambda_path(build("x86_64"), scratch),
            tracing.install_sdk(scratch / "xray-sdk", "manylinux2014_x86_64"), runs=3 if quick else 15))
    if quick:
        results["browser"] = {"skipped": "quick mode (the browser comparison takes minutes)"}
    else:
        from bench import browser

        part("browser", lambda: browser.measure(runs=max(3 * runs, 15)))
    w = results.get("warm", {})
    if "handler_p50_ms" in w:
        results["cost"] = cost.scenarios(memory_mb=256, warm_ms=w["handler_p50_ms"]["median"],
                                         log_bytes_per_vend=w["log_bytes_per_vend"], cache_seconds=300)
    results["seconds"] = round(time.perf_counter() - started, 1)
    results["load_average_end"] = " / ".join(f"{x:.1f}" for x in os.getloadavg())
    if args.baseline:
        results["baseline"] = json.loads(args.baseline.read_text())
    text = report.markdown(results)
    if output:
        output.write_text(text)
        print(f"[bench] wrote {output}")
    else:
        print(text)
    if args.json:
        args.json.write_text(json.dumps({k: v for k, v in results.items() if k != "baseline"}, indent=1, default=str))
    failed = [name for name in PARTS if isinstance(results.get(name), dict) and "error" in results[name]]
    if failed:
        print(f"[bench] failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
