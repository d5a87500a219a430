"""docs/benchmarks.md from the results: the machine, each goal met or not and by how much, every figure."""

from __future__ import annotations

from typing import Any


def _s(spread: dict[str, Any] | None, digits: int = 2) -> str:
    if not spread:
        return "n/a"
    unit = spread["unit"]
    return f"{spread['min']:.{digits}f} / **{spread['median']:.{digits}f}** / {spread['max']:.{digits}f} {unit}"


def _mb(n: float) -> str:
    return f"{n / 1024 / 1024:.2f} MB"


def _status(part: dict[str, Any]) -> str | None:
    if "skipped" in part:
        return f"_Skipped: {part['skipped']}._"
    if "error" in part:
        return f"_Failed: {part['error']}._"
    return None


def goals(results: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for part in ("warm", "cold", "package", "browser"):
        for name, goal in (results.get(part, {}).get("goals") or {}).items():
            rows.append({"part": part, "name": name, **goal})
    return rows


def _verdict(goal: dict[str, Any]) -> str:
    value, target, met = goal["value"], goal["goal"], goal["met"]
    shown = f"{value:.2f}" if isinstance(value, float) else str(value)
    margin = ""
    limit = _limit(target)
    if limit and isinstance(value, (int, float)) and limit > 0:
        margin = f" ({(value / limit - 1) * 100:+.0f}% vs the goal)"
    return f"{'met' if met else '**not met**'}: {shown}{margin}"


def _limit(target: str) -> float | None:
    digits = "".join(c for c in target if c.isdigit() or c == ".")
    try:
        return float(digits) if digits and ("<" in target) else None
    except ValueError:
        return None


def markdown(results: dict[str, Any]) -> str:
    m = results["machine"]
    out = [
        "# Benchmarks",
        "",
        "What a token vend, a call setup, a cold start and a click cost, each against a floor measured in the same "
        "run (the same work with nothing but the bare libraries). Every figure is min / **median** / max over "
        "several runs. "
        "Produced by `make bench` (`python -m bench`); CI runs `python -m bench --quick` only to prove the "
        "benchmarks still work, never to judge speed.",
        "",
        f"- Command: `{results['command']}` ({results['mode']} mode, {results['runs']} runs, "
        f"{results.get('seconds', '?')} s)",
        f"- Machine: {m['cpu']}, {m['cores']} cores, Python {m['python']}, {m['platform']}",
        f"- Date: {m['date']}, commit {m['commit']} (plus the working tree)",
        f"- Load average (1/5/15 min) at the start: {m.get('load_average', '?')}; at the end: "
        f"{results.get('load_average_end', '?')}. Other work on the machine makes every figure noisier; the "
        "ratios compare figures measured side by side, so they suffer less than the absolute numbers.",
        "",
        "## Goals",
        "",
        "| Part | Goal | Target | Result |",
        "|---|---|---|---|",
    ]
    for g in goals(results):
        out.append(f"| {g['part']} | {g['name']} | {g['goal']} | {_verdict(g)} |")
    if results.get("baseline"):
        out += ["", *_compare(results, results["baseline"])]
    out += ["", *_warm(results.get("warm", {})), "", *_call(results.get("warm", {})), "",
            *_cold(results.get("cold", {})), "", *_package(results.get("package", {})), "",
            *_tracing(results.get("tracing", {})), "", *_snapstart(results), "",
            *_browser(results.get("browser", {})), "", *_cost(results.get("cost") or []), ""]
    return "\n".join(out)


def _warm(w: dict[str, Any]) -> list[str]:
    out = ["## Warm vend", "",
           "`POST /token` through `lambda_handler` in its own process (as a Lambda container, tracing off as "
           "locally), with DynamoDB a moto server over HTTP and OpenAI the local stand-in, both on loopback. The "
           "floor makes the same TransactWriteItems with bare botocore and the same `POST /realtime/client_secrets` "
           "with bare httpx, nothing else. Vends and floor requests alternate one by one, so "
           "drift in moto's speed hits both alike. Callers come from a small pool under generous limits (burst "
           "10,000, 1,000,000 per hour), so every vend is allowed and the table stays small (moto copies the whole "
           "table in every transaction)."]
    status = _status(w)
    if status:
        return [*out, "", status]
    c = w["counts"]
    out += [
        "",
        f"Per run: {w['vends_per_run']} vends and as many floor requests.",
        "",
        "| Figure | min / **median** / max |",
        "|---|---|",
        f"| Handler p50 | {_s(w['handler_p50_ms'])} |",
        f"| Floor p50 | {_s(w['floor_p50_ms'])} |",
        f"| **Ratio p50** (goal <= 1.25x) | {_s(w['ratio_p50'])} |",
        f"| Overhead p50 (handler - floor) | {_s(w['overhead_p50_ms'])} |",
        f"| Handler p90 | {_s(w['handler_p90_ms'])} |",
        f"| Floor p90 | {_s(w['floor_p90_ms'])} |",
        f"| Ratio p90 | {_s(w['ratio_p90'])} |",
        f"| Handler CPU per vend (this process) | {_s(w['handler_cpu_ms'])} |",
        f"| Floor CPU per request pair | {_s(w['floor_cpu_ms'])} |",
        f"| CPU ratio | {_s(w['ratio_cpu'])} |",
        "",
        "Wall time is dominated by moto (a Python server doing the transaction), so the CPU figures show the "
        "handler's own cost better: the CPU the function's process spends per vend, against the floor's.",
        "",
        f"In the same process: `import app` took {w['import_ms']:.0f} ms and the first vend "
        f"{w['first_vend_ms']:.0f} ms (it reads both secrets and opens the connections); peak RSS "
        f"{w['max_rss_mb_after_first_vend']:.0f} MB after the first vend, {w['max_rss_mb']:.0f} MB at the end (with "
        f"the floor's clients). The function logged {w['log_bytes_per_vend']:.0f} bytes per vend.",
        "",
        f"### Requests per warm vend (counted over {c['vends']} vends, not timed)",
        "",
        "| What | Per vend | Goal |",
        "|---|---|---|",
        f"| DynamoDB requests | {c['dynamodb_requests_per_vend']:g} ({_ops(c['aws_requests'], 'dynamodb')}) | 1 |",
        f"| Secrets Manager requests | {c['secretsmanager_requests_per_vend']:g} | 0 |",
        f"| Other AWS requests | {c['other_aws_requests_per_vend']:g} | 0 |",
        f"| OpenAI requests | {c['openai_requests_per_vend']:g} | 1 |",
        f"| New TCP connections to OpenAI | {c['new_openai_connections']} in {c['vends']} vends | 0 (one reused) |",
        f"| New TCP connections to AWS | {c['new_aws_connections']} in {c['vends']} vends | see below |",
        f"| Floor's TransactWriteItems has the handler's shape | {c['floor_transaction_same_shape']} | True |",
        "",
        "AWS requests are counted with botocore `before-send` hooks on every client the function creates; "
        "connections by counting `connect` in urllib3 (AWS) and httpcore (OpenAI). A new AWS connection per vend is "
        "moto's doing (its server closes each connection after answering; the floor's client sees the same); "
        "botocore keeps connections alive against DynamoDB.",
    ]
    return out


def _call(w: dict[str, Any]) -> list[str]:
    out = ["## Warm call setup", "",
           "`POST /calls` (a real aiortc offer, voice chosen) through `lambda_handler` in the same process as the "
           "vends, against a floor making the same four requests with bare botocore and httpx: the call's "
           "TransactWriteItems (the caller's bucket, the day's call seconds, the kill switch), the multipart "
           "`POST /realtime/calls` with the offer and the session, the PutItem of the call's record and the "
           "StartExecution of its timer (moto's Step Functions). The stand-in answers each offer with a real WebRTC "
           "peer, so its answer dominates both sides; every call is hung up at the stand-in right after it is "
           "timed (not timed, not counted)."]
    status = _status(w)
    c = w.get("call")
    if status or not c:
        return [*out, "", status or "_Not measured._"]
    n = c["counts"]
    out += [
        "",
        f"Per run: {c['vends_per_run']} call setups and as many floor requests.",
        "",
        "| Figure | min / **median** / max |",
        "|---|---|",
        f"| Handler p50 | {_s(c['handler_p50_ms'])} |",
        f"| Floor p50 | {_s(c['floor_p50_ms'])} |",
        f"| **Ratio p50** (goal <= 1.25x) | {_s(c['ratio_p50'])} |",
        f"| Overhead p50 (handler - floor) | {_s(c['overhead_p50_ms'])} |",
        f"| Handler p90 | {_s(c['handler_p90_ms'])} |",
        f"| Floor p90 | {_s(c['floor_p90_ms'])} |",
        f"| Handler CPU per call setup (this process) | {_s(c['handler_cpu_ms'])} |",
        f"| Floor CPU per call setup | {_s(c['floor_cpu_ms'])} |",
        f"| CPU ratio | {_s(c['ratio_cpu'])} |",
        "",
        f"### Requests per warm call setup (counted over {n['vends']} call setups, not timed)",
        "",
        "| What | Per call setup | Expected |",
        "|---|---|---|",
        f"| DynamoDB requests | {n['dynamodb_requests_per_vend']:g} ({_ops(n['aws_requests'], 'dynamodb')}) | "
        "2: the metered transaction and the call's record |",
        f"| Step Functions requests | {n.get('stepfunctions_requests_per_vend', 0):g} "
        f"({_ops(n['aws_requests'], 'stepfunctions')}) | 1: the call's timer |",
        f"| Secrets Manager requests | {n['secretsmanager_requests_per_vend']:g} | 0 |",
        f"| Other AWS requests | {n['other_aws_requests_per_vend']:g} | 0 |",
        f"| OpenAI requests | {n['openai_requests_per_vend']:g} | 1 |",
        f"| New TCP connections to OpenAI | {n['new_openai_connections']} in {n['vends']} call setups | 0 |",
        f"| Floor's TransactWriteItems has the handler's shape | {n['floor_transaction_same_shape']} | True |",
    ]
    return out


def _ops(counts: dict[str, int], service: str) -> str:
    return ", ".join(f"{k.split(':', 1)[1]} x{v}" for k, v in counts.items() if k.startswith(service)) or "none"


def _cold(c: dict[str, Any]) -> list[str]:
    out = ["## Cold start", "",
           "`import app` in a fresh interpreter with the template's environment, against `import boto3, httpx` in a "
           "fresh interpreter. Both run bare (`python -I -S`) on a Lambda-like path: the `sam build` output of "
           "TokenFunction (built for this machine), the Powertools layer if the template attaches it (simulated with "
           "this venv's copies of what the layer ships), and the runtime's boto3. Probes alternate. Lambda's "
           "/var/task and /opt are read-only, so bytecode not shipped is compiled again on every cold start: the "
           "package ships it (functions/token/Makefile); the rows without bytecode show what that saves, and the "
           "layer alternative (whose build deletes bytecode) what it would cost."]
    status = _status(c)
    if status:
        return [*out, "", status]
    out += [
        "",
        "| Figure | min / **median** / max |",
        "|---|---|",
        f"| Floor: `import boto3, httpx` | {_s(c['floor_ms'], 0)} |",
        f"| `import app`, tracing off (as locally) | {_s(c['app_ms'], 0)} |",
        f"| **Ratio** (goal <= 1.3x) | {_s(c['ratio'])} |",
        f"| `import app`, tracing on (as deployed: Tracing: Active) | {_s(c['app_traced_ms'], 0)} |",
        f"| Ratio, tracing on | {_s(c['ratio_traced'])} |",
        f"| Floor plus the clients the function builds at init (DynamoDB, Secrets Manager and Step Functions "
        f"clients, one httpx.Client) | "
        f"{_s(c['floor_clients_ms'], 0)} |",
        f"| `import app` (tracing off) / that floor | {_s(c['ratio_to_floor_clients'])} |",
        f"| Floor plus the OpenAI client alone (one httpx.Client) | {_s(c.get('floor_openai_ms'), 0)} |",
        f"| Floor plus the Powertools modules the function imports (event handler, logging, metrics, parameters), "
        f"nothing of ours | {_s(c.get('floor_framework_ms'), 0)} |",
        f"| That / the floor: the framework's own share of the ratio | {_s(c.get('ratio_framework'))} |",
        f"| Floor, package without bytecode (as /var/task is read-only) | {_s(c.get('floor_no_pyc_ms'), 0)} |",
        f"| `import app`, package without bytecode | {_s(c.get('app_no_pyc_ms'), 0)} |",
        f"| Ratio without bytecode | {_s(c.get('ratio_no_pyc'))} |",
        f"| Alternative: Powertools from the official layer (no bytecode) | "
        f"{_s(c.get('app_layer_ms'), 0)} |",
        f"| Ratio with the layer | {_s(c.get('ratio_layer'))} |",
        "",
        *_cold_goal(c),
        f"Path: {', '.join(c['path'])}. Most expensive imports (tracing off, one `-X importtime` run, cumulative):",
        "",
        "| Module | ms |",
        "|---|---|",
    ]
    out += [f"| {name} | {ms:.0f} |" for name, ms in c.get("top_imports", [])]
    groups = c.get("import_groups") or {}
    if groups:
        out += ["", "Where the import time goes, by package (self time of each module under `import app`, summed; "
                "`-X importtime`, tracing off, median of several runs; `app` is the module's own work, chiefly "
                "building the AWS and OpenAI clients):", "", "| Package | ms |", "|---|---|"]
        out += [f"| {name} | {ms:.1f} |" for name, ms in list(groups.items())[:20]]
    return out


def _cold_goal(c: dict[str, Any]) -> list[str]:
    """Why the ratio is what it is, and the nearest goal that can be met: what the floor leaves out."""
    floor, clients, app = c["floor_ms"]["median"], c["floor_clients_ms"]["median"], c["app_ms"]["median"]
    out = [f"What the ratio is made of (medians): building the clients the function needs on every metered request "
           f"costs {clients - floor:.0f} ms on top of the floor ({clients / floor:.2f}x the floor by itself); "
           f"everything else `import app` does (Powertools' Logger, Metrics, event handler and Parameters, our "
           f"code, the settings) costs {app - clients:.0f} ms ({app / clients:.2f}x the floor with the clients)."]
    openai = (c.get("floor_openai_ms") or {}).get("median")
    if openai:
        out[0] += (f" Of the clients, the OpenAI one (an httpx.Client, chiefly certifi's trust store loaded into its "
                   f"SSL context) is {openai - floor:.0f} ms; the AWS ones are the rest (botocore lists every "
                   "service it knows and parses the models and endpoint rules).")
    framework = (c.get("floor_framework_ms") or {}).get("median")
    if framework:
        out[0] += (f" Importing Powertools alone, the project's framework, takes {framework - floor:.0f} ms "
                   f"({framework / floor:.2f}x the floor): with it, a goal of 1.3x of `import boto3, httpx` leaves "
                   f"{max(0.0, 1.3 * floor - framework):.0f} ms for building the clients and for our own code.")
    out += ["", "So the issue's goal (1.3x of `import boto3, httpx`) cannot be met while Powertools' event handler is "
            "the framework and the clients are built at init; the Goals table holds it as not met, beside the "
            "nearest goal that can be met, 1.3x of the floor that builds the same clients. Building the clients on "
            "first use would shrink `import app` without saving anything: the work would move into the first "
            "request, which is the click the visitor waits on, and run slower there. AWS's guide for on-demand "
            "functions says the init phase runs on a full, unthrottled vCPU (for at most 10 s), while an "
            "invocation gets CPU in proportion to memory (256 MB here: about a seventh of a vCPU); the page asks "
            "`GET /options` when it loads, so a cold container is usually initialised before the click; and "
            "SnapStart snapshots the init, not the first request. Source: serverlessland.com, AWS Lambda guides, "
            "\"Effectively running Java on Serverless: Utilize initialization phase\"."]
    return [*out, ""]


def _package(p: dict[str, Any]) -> list[str]:
    out = ["## Package size", "", "The `sam build` output of TokenFunction, zipped (deflate) as `sam package` "
           "uploads it. functions/token/Makefile builds it: the requirements without what the runtime already has "
           "(boto3, botocore and their dependencies), plus bytecode."]
    status = _status(p)
    if status:
        return [*out, "", status]
    out += [
        "",
        f"- Zipped: **{_mb(p['zipped_bytes'])}** (goal < 2 MB); unzipped {_mb(p['unzipped_bytes'])}; "
        f"built for {p['arch']}; Powertools layer attached: {p['uses_powertools_layer']}.",
        "- Largest parts (unzipped): " + ", ".join(f"{n} {_mb(s)}" for n, s in p["largest"]),
    ]
    if not p["uses_powertools_layer"]:
        out += ["", "No pydantic (request bodies are parsed by `tokenvend.bodies`; the OpenAPI document is a "
                "shipped file) and no X-Ray SDK (see Tracing). The build also drops what the function never "
                "imports: Powertools utilities other than parameters, data_classes, typing and jmespath_utils, its "
                "Swagger UI, and anyio/sniffio (httpcore imports them only if present, for async clients). "
                "tests/integration/template/test_template_build.py serves every route from the built package "
                "alone. The Powertools layer is not used: it ships no bytecode, and /opt is read-only, so every "
                "cold start would compile it (the layer row under Cold start)."]
    return out


def _tracing(t: dict[str, Any]) -> list[str]:
    out = ["## Tracing", "",
           "What Powertools' Tracer would add: the X-Ray SDK and wrapt installed next to the built function as the "
           "build installs packages (with bytecode), then `import app` followed by the Tracer the function used "
           "to create (`Tracer(patch_modules=(\"botocore\", \"httpx\"))`, inside Lambda with tracing on), against "
           "`import app` alone on the same path."]
    status = _status(t)
    if status:
        return [*out, "", status]
    out += [
        "",
        "| Figure | min / **median** / max |",
        "|---|---|",
        f"| `import app` | {_s(t['app_ms'], 0)} |",
        f"| `import app` + Tracer | {_s(t['app_tracer_ms'], 0)} |",
        f"| Added by the Tracer | {_s(t['added_ms'], 0)} |",
        f"| Ratio | {_s(t['added_ratio'])} |",
        "",
        f"- Package: {', '.join(t['requirements'])} add **{_mb(t['zipped_bytes'])}** zipped "
        f"({_mb(t['unzipped_bytes'])} unzipped; built for this machine).",
        "",
        "Decision: the function has no Tracer. With it, neither the cold-start nor the size budget holds (the "
        "package would pass 2 MB, and the cold start grows by the figure above). The function keeps `Tracing: "
        "Active`, so Lambda still records each invocation in X-Ray (Initialization, Invocation, Overhead) and the "
        "service map shows the function. What is lost: the subsegments inside an invocation (DynamoDB, Secrets "
        "Manager, Step Functions and OpenAI calls, each with its time and errors), the annotations (cold start, "
        "service) and the handler's own subsegment. The function's logs and metrics still carry each request's "
        "outcome and latency, and `UpstreamLatency` still measures OpenAI's answer time.",
    ]
    return out


SNAPSTART_CACHE_GB_SECOND = 0.0000015046
SNAPSTART_RESTORE_GB = 0.0001397998
MEMORY_GB = 0.25  # template.yaml: MemorySize 256


def _snapstart(results: dict[str, Any]) -> list[str]:
    cold = results.get("cold") or {}
    warm = results.get("warm") or {}
    month = 30 * 86_400
    cache = MEMORY_GB * month * SNAPSTART_CACHE_GB_SECOND
    restore = 1000 * MEMORY_GB * SNAPSTART_RESTORE_GB
    init = (cold.get("app_ms") or {}).get("median")
    first = warm.get("first_vend_ms")
    out = ["## SnapStart (optional, off by default)", "",
           "With the template's `SnapStart` parameter on, Lambda runs the init (imports, settings, clients) when a "
           "version is published and resumes every new container from that snapshot. The init is snapshot-safe "
           "(`tokenvend/snapshot.py`, tests/unit/token/test_snapshot.py): it opens no connection and reads no "
           "secret, and the only state every resumed container would share, the `random` module's generator "
           "(retry jitter), is re-seeded after each restore through Lambda's `snapshot_restore_py` hooks.", "",
           f"**Price** (us-east-1 list prices as AWS's Lambda pricing page gives them: caching "
           f"${SNAPSTART_CACHE_GB_SECOND}/GB-s while a version is cached, at least 3 hours; restoring "
           f"${SNAPSTART_RESTORE_GB}/GB restored), at 256 MB, per function with SnapStart on:", "",
           "| Item | Arithmetic | $ |", "|---|---|---|",
           f"| Cached snapshot, per published version, per 30 days | {MEMORY_GB} GB x {month:,} s x "
           f"${SNAPSTART_CACHE_GB_SECOND} | {cache:.3f} |",
           f"| Restores, per 1,000 new containers | 1,000 x {MEMORY_GB} GB x ${SNAPSTART_RESTORE_GB} | "
           f"{restore:.4f} |", "",
           "Every deploy publishes a version (the live alias), and a version stays cached until it is deleted or "
           "goes 14 days without an invocation, so old versions add to the caching line until then."]
    if init:
        out += ["", f"**What it would save: an estimate, not a measurement.** A cold start without SnapStart runs "
                f"the init: `import app` as deployed took {init:.0f} ms (median) on this machine (Lambda reports it "
                "as Init Duration; on-demand init runs on a full vCPU, as the Cold start section says, and "
                "Lambda's vCPU is not this machine's core). "
                "With SnapStart that is replaced by the restore (Restore Duration in the REPORT line; AWS publishes "
                "no figure for Python, and none can be measured here) plus the after-restore hook (re-seeding "
                "`random`: microseconds). So the estimate is: up to the init time per cold start, less the restore. "
                "It does not save the first request's own work: TLS connections to DynamoDB, Secrets Manager and "
                "OpenAI and reading the two secrets" + (f" ({first:.0f} ms here for the first vend, on loopback "
                                                        "without TLS: a lower bound)" if first else "") + "."]
    return out


def _browser(b: dict[str, Any]) -> list[str]:
    out = ["## Click to connected", "",
           "Headless Chromium (fake microphone), from the click on Talk to the data channel (`oai-events`) being open, "
           "which is when our page says Connected, "
           "against the local peer (the OpenAI stand-in) through the local API. The bare flow is OpenAI's sample "
           "order on the same peer and API: token fetch, then getUserMedia, then the offer, then the SDP POST. "
           "Our page fetches no token: it posts its offer to `POST /calls` while the microphone is asked for, and "
           "the function makes the SDP exchange with the peer. On loopback that exchange is an extra hop the bare "
           "flow does not make (its SDP POST goes straight to the peer), so the goal, set when the page used "
           "tokens, is harder to meet than it was."]
    status = _status(b)
    if status:
        return [*out, "", status]
    out += [
        "",
        "| Figure | min / **median** / max |",
        "|---|---|",
        f"| Our page | {_s(b['page_ms'], 0)} |",
        f"| Bare flow | {_s(b['bare_ms'], 0)} |",
        f"| **Ratio** (goal < 1x) | {_s(b['ratio'])} |",
        "",
        "Where the time goes (medians, ms after the click; resource timing of the two requests):",
        "",
        "| Flow | token request starts | token answered | SDP POST starts | SDP answered | connected |",
        "|---|---|---|---|---|---|",
    ]
    for name, label, total in (("page", "Our page", b["page_ms"]), ("bare", "Bare flow", b["bare_ms"])):
        p = b.get("phases_median_ms", {}).get(name)
        if p:
            cells = [_ms_or_dash(p.get(key)) for key in ("tokenStart", "tokenEnd", "sdpStart", "sdpEnd")]
            out.append(f"| {label} | {' | '.join(cells)} | {total['median']:.0f} |")
    return out


def _ms_or_dash(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def _cost(scenarios: list[dict[str, Any]]) -> list[str]:
    out = ["## AWS cost per 1,000 vends", "",
           "From the measured warm duration (handler p50, median run) and the configured memory (256 MB; billing uses "
           "the configured size, not the RSS), with us-east-1 list prices checked on 2026-11-24: HTTP API $1.00/M "
           "requests; Lambda arm64 $0.0000133334/GB-s and $0.20/M requests; DynamoDB on-demand $0.625/M write request "
           "units (a transactional write is 2 WRU per item up to 1 KB: 3 items = 6 WRU); Secrets Manager $0.05 per "
           "10,000 calls; CloudWatch Logs $0.50/GB ingested. Free tiers ignored. OpenAI's own charges are not "
           "included. The stand-in answers in about a millisecond; the real OpenAI takes longer (assumed 400 ms "
           "below), and Lambda bills that wait."]
    if not scenarios:
        return [*out, "", "_No warm measurement, so no cost._"]
    for s in scenarios:
        out += ["", f"**{s['name']}**: billed {s['billed_ms']} ms at {s['memory_mb']} MB", "",
                "| Item | Arithmetic | $ per 1,000 vends |", "|---|---|---|"]
        out += [f"| {r['item']} | {r['arithmetic']} | {r['usd']:.6f} |" for r in s["rows"]]
        out.append(f"| **Total** | | **{s['total_usd']:.6f}** |")
    out += ["", "Fixed monthly costs (not per vend): two secrets at $0.40 each, the DynamoDB table's storage "
            "(a few KB), CloudFront and S3 for the page."]
    return out


_COMPARED = [
    ("Warm: handler p50", "warm", "handler_p50_ms", "ms"),
    ("Warm: ratio p50 to the floor", "warm", "ratio_p50", "x"),
    ("Warm: handler CPU per vend", "warm", "handler_cpu_ms", "ms"),
    ("Cold: `import app` (tracing off)", "cold", "app_ms", "ms"),
    ("Cold: ratio to `import boto3, httpx`", "cold", "ratio", "x"),
    ("Cold: `import app` (tracing on)", "cold", "app_traced_ms", "ms"),
    ("Cold: `import app`, package without bytecode", "cold", "app_no_pyc_ms", "ms"),
    ("Cold: ratio to `import boto3, httpx` and the function's clients", "cold", "ratio_to_floor_clients", "x"),
]
_COMPARED_CALL = [
    ("Warm call setup: handler p50", "handler_p50_ms", "ms"),
    ("Warm call setup: ratio p50 to the floor", "ratio_p50", "x"),
    ("Warm call setup: handler CPU", "handler_cpu_ms", "ms"),
]


def _compare(results: dict[str, Any], base: dict[str, Any]) -> list[str]:
    """Medians now against an earlier run (`--baseline`), e.g. the code before a speed change."""
    m = base.get("machine", {})
    out = ["## Before and after", "",
           f"Medians of this run against an earlier run (`--baseline`): `{base.get('command', '?')}` on "
           f"{m.get('date', '?')}, commit {m.get('commit', '?')}, same machine (load average then: "
           f"{m.get('load_average', '?')}). The runs were minutes apart on a shared machine, so absolute times move "
           "with its load; the ratios to each run's own floor are the fairer comparison.", "",
           "| Figure | Before | After | Change |", "|---|---|---|---|"]
    for label, part, key, unit in _COMPARED:
        before = (base.get(part) or {}).get(key)
        after = (results.get(part) or {}).get(key)
        if not before or not after:
            continue
        b, a = before["median"], after["median"]
        out.append(f"| {label} | {b:.2f} {unit} | {a:.2f} {unit} | {(a / b - 1) * 100:+.0f}% |")
    for label, key, unit in _COMPARED_CALL:
        before = ((base.get("warm") or {}).get("call") or {}).get(key)
        after = ((results.get("warm") or {}).get("call") or {}).get(key)
        if before and after:
            b, a = before["median"], after["median"]
            out.append(f"| {label} | {b:.2f} {unit} | {a:.2f} {unit} | {(a / b - 1) * 100:+.0f}% |")
    bp, ap = base.get("package") or {}, results.get("package") or {}
    if bp.get("zipped_bytes") and ap.get("zipped_bytes"):
        b, a = bp["zipped_bytes"], ap["zipped_bytes"]
        out.append(f"| Package, zipped | {_mb(b)} | {_mb(a)} | {(a / b - 1) * 100:+.0f}% |")
    out += _importtime_compare((base.get("cold") or {}).get("import_groups") or {},
                               (results.get("cold") or {}).get("import_groups") or {})
    return out


def _importtime_compare(before: dict[str, float], after: dict[str, float]) -> list[str]:
    """`-X importtime` self time per package, before and after, the largest of either first."""
    if not before or not after:
        return []
    names = sorted(set(before) | set(after), key=lambda n: -max(before.get(n, 0.0), after.get(n, 0.0)))[:20]
    out = ["", "`-X importtime` under `import app`, self time per package (ms, median of several runs; tracing off; "
           "`app` is the module's own work, chiefly building the clients):", "",
           "| Package | Before | After |", "|---|---|---|"]
    out += [f"| {n} | {before.get(n, 0.0):.1f} | {after.get(n, 0.0):.1f} |" for n in names]
    out.append(f"| **All** | {sum(before.values()):.1f} | {sum(after.values()):.1f} |")
    return out
