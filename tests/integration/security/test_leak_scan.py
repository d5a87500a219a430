"""The secret-leak scan, over everything the test session captured. Runs last (tests/security/conftest.py), so in a
full run it reads every answer, log line and metric of every test before it; run alone, its own scenario gives it
something to read.

- The OpenAI key (every key the suite put in a secret, among them this run's `sk-leakcanary-...`), the masked
  fragment OpenAI's 401 quotes of it, its distinctive tail, and the API keys (`rtv_...`) the tests created: zero
  occurrences in answers (bodies and headers), function log lines, metrics, the page's files with the config.json a
  deploy generates, and the rendered template with its resolved outputs.
- Issued tokens: only in the body of the one 200 `POST /token` answer that carries each; never in a header, a log
  line, a metric, the page or the template. Tokens a stand-in minted that no answer carried appear nowhere at all.
- Hangup tokens (a call's secret for ending it early): only in the body of the one 201 `POST /calls` answer that
  carries each; never in a header, another answer, a log line, a metric, the page or the template.
"""

from __future__ import annotations

import json
import re

import pytest

from deployer import build_config, config_body
from local.openai_standin.client_secrets import Fault
from local.openai_standin.server import StandIn
from local.template_stack import LocalStack, _Resolver, load_template, translate
from tests.integration.harness import CALL_ROUTES, EVIDENCE, CapturedResponse, load_token_app
from tests.integration.offers import make_offer
from tests.integration.security.security_support import (
    CANARY_KEY,
    FUNCTION_LOG_LINES,
    ROOT,
    STANDINS,
    masked_fragment,
    minted_tokens,
    record_figures,
)

TOKEN_PATTERN = re.compile(r"ek_[A-Za-z0-9_-]{8,}")


def _own_scenario(stack: LocalStack, standin: StandIn, monkeypatch: pytest.MonkeyPatch) -> None:
    """Tokens issued; a failed answer naming a token; a timeout; an OpenAI 401 quoting the canary's masked
    fragment."""
    monkeypatch.setenv("OPENAI_TIMEOUT_SECONDS", "0.3")
    standin.client_secrets.api_key = CANARY_KEY
    try:
        api = load_token_app(stack, standin)
        api.secrets.put_secret_value(SecretId=stack.physical_ids["OpenAIKeySecret"], SecretString=CANARY_KEY)
        for ip in ("192.0.2.10", "192.0.2.11", "192.0.2.12"):
            assert api.call("POST", "/token", {"voice": "cedar"}, source_ip=ip).status == 200
        standin.faults.add(Fault(status=200, body={"expires_at": 1, "leak": "ek_leakcanary_unused_token"}))
        assert api.call("POST", "/token", source_ip="192.0.2.13").status == 502
        standin.faults.add(Fault(status=200, delay_seconds=0.6))  # the handler gives up first (504)
        assert api.call("POST", "/token", source_ip="192.0.2.14").status == 504
        call = api.call("POST", "/calls", {"sdp": make_offer()}, source_ip="192.0.2.16")
        assert call.status == 201, call.body
        hangup = f"/calls/{json.loads(call.body)['call_id']}/hangup"
        guessed = "g" * 43  # the shape of a hangup token, not this call's
        assert api.call("POST", hangup, {"hangup_token": guessed}, source_ip="192.0.2.17").status == 403
        token = json.loads(call.body)["hangup_token"]
        assert api.call("POST", hangup, {"hangup_token": token}, source_ip="192.0.2.16").status == 200
        standin.client_secrets.api_key = "sk-fake-key-the-owner-never-stored"  # OpenAI refuses the canary
        assert api.call("POST", "/token", source_ip="192.0.2.15").status == 502
        assert [r.status for r in standin.requests[-2:]] == [401, 401], "refused, quoting the masked key"
        assert api.call("POST", "/calls", {"sdp": make_offer()}, source_ip="192.0.2.18").status == 502
    finally:
        standin.client_secrets.api_key = standin.api_key
        EVIDENCE.tokens.update(minted_tokens(standin))


def _secrets() -> list[str]:
    keys = {k.strip() for k in EVIDENCE.keys if len(k.strip()) >= 20 and not any(c.isspace() for c in k.strip())
            and not k.strip().startswith("{")}
    keys.add(CANARY_KEY)
    needles = set(keys)
    for key in keys:
        needles.add(masked_fragment(key))
        needles.add(key[-16:])
    return sorted(needles)


def _page_files() -> dict[str, bytes]:
    files = {str(p.relative_to(ROOT)): p.read_bytes() for p in sorted((ROOT / "web").rglob("*")) if p.is_file()}
    deployed = build_config({"ApiUrl": "https://abc123.execute-api.us-east-1.amazonaws.com"})
    files["config.json (as a deploy writes it)"] = config_body(deployed)
    return files


def _rendered_template(stack: LocalStack) -> str:
    translated = translate(load_template(), stack.parameters)
    resolver = _Resolver(translated, stack.parameters, dict(stack.physical_ids), stack.name)
    outputs = {name: resolver.value(output["Value"]) for name, output in translated.get("Outputs", {}).items()}
    return json.dumps(translated) + "\n" + json.dumps(outputs)


def test_no_key_anywhere_and_tokens_only_where_they_belong(stack: LocalStack, fresh_standin: StandIn,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    _own_scenario(stack, fresh_standin, monkeypatch)
    for standin in STANDINS:
        EVIDENCE.tokens.update(minted_tokens(standin))
    needles = _secrets()
    tokens = set(EVIDENCE.tokens)
    lines = EVIDENCE.lines
    files = _page_files()
    template = _rendered_template(stack)
    findings, carried = scan(needles, tokens, lines, EVIDENCE.responses, files, template)
    hangup_findings, hangups_carried = scan_hangup_tokens(EVIDENCE.hangup_tokens, lines, EVIDENCE.responses, files,
                                                          template)
    findings += hangup_findings
    never_delivered = tokens - set(carried)
    metric_lines = sum(1 for line in lines if '"_aws"' in line)

    figures = {
        "log_lines_scanned": len(lines), "metric_lines_scanned": metric_lines,
        "local_system_log_lines": FUNCTION_LOG_LINES["count"], "responses_scanned": len(EVIDENCE.responses),
        "response_bytes_scanned": sum(len(r.body) for r in EVIDENCE.responses),
        "tokens_tracked": len(tokens), "tokens_delivered_once_each": len(carried),
        "tokens_in_no_captured_answer": len(never_delivered), "secret_strings_searched": len(needles),
        "page_files_scanned": len(files), "template_bytes_scanned": len(template),
        "hangup_tokens_tracked": len(EVIDENCE.hangup_tokens), "hangup_tokens_delivered_once_each": len(hangups_carried),
        "findings": len(findings),
    }
    record_figures("leak_scan", **figures)
    print(f"\nleak scan: {figures}")
    assert not findings, findings[:20]
    assert len(lines) > 0 and len(EVIDENCE.responses) > 0 and len(carried) >= 3 and len(hangups_carried) >= 1


def scan(needles: list[str], tokens: set[str], lines: list[str], responses: list[CapturedResponse],
         files: dict[str, bytes], template: str) -> tuple[list[str], dict[str, int]]:
    """What leaked where, and how often each token was handed out."""
    findings: list[str] = []
    # 1. Every function log line and metric (EMF) line: no key, no token.
    log_text = "\n".join(lines)
    findings += [f"log: {n[:12]}..." for n in needles if n in log_text]
    findings += [f"log: token {t[:8]}..." for t in set(TOKEN_PATTERN.findall(log_text))]
    findings += [f"log: token {t[:8]}..." for t in tokens if t in log_text]
    # 2. Every answer: no key; a token only in the body of the 200 /token answer that carries it.
    carried: dict[str, int] = {}
    for response in responses:
        text = response.text()
        findings += [f"answer {response.method} {response.path} {response.status}: {n[:12]}..."
                     for n in needles if n in text]
        head = "\n".join(f"{k}: {v}" for k, v in response.headers)
        findings += [f"header of {response.path}: token" for _ in TOKEN_PATTERN.findall(head)]
        found = set(TOKEN_PATTERN.findall(response.body.decode("utf-8", "replace")))
        if response.status == 200 and response.path == "/token" and response.method == "POST":
            own = json.loads(response.body)["token"]
            findings += [f"answer carries a foreign token {t[:8]}..." for t in found - {own}]
            carried[own] = carried.get(own, 0) + 1
        else:
            findings += [f"{response.method} {response.path} {response.status} carries a token" for _ in found]
    findings += [f"token {t[:8]}... handed out {n} times" for t, n in carried.items() if n > 1]
    # 3. The page and the config.json a deploy writes; 4. the rendered template and its outputs.
    for name, content in files.items():
        text = content.decode("utf-8", "replace")
        findings += [f"{name}: {n[:12]}..." for n in needles if n in text]
        findings += [f"{name}: token" for t in tokens if t in text]
    findings += [f"template: {n[:12]}..." for n in needles if n in template]
    findings += [f"template: token {t[:8]}" for t in TOKEN_PATTERN.findall(template)]
    return findings, carried


def scan_hangup_tokens(hangup_tokens: set[str], lines: list[str], responses: list[CapturedResponse],
                       files: dict[str, bytes], template: str) -> tuple[list[str], dict[str, int]]:
    """Each hangup token only in the body of the 201 `POST /calls` answer that gave it, once."""
    findings: list[str] = []
    log_text = "\n".join(lines)
    findings += [f"log: hangup token {t[:6]}..." for t in hangup_tokens if t in log_text]
    carried: dict[str, int] = {}
    for response in responses:
        body, head = response.body.decode("utf-8", "replace"), "\n".join(f"{k}: {v}" for k, v in response.headers)
        findings += [f"header of {response.path}: hangup token" for t in hangup_tokens if t in head]
        own = None
        if response.status == 201 and response.path in CALL_ROUTES and response.method == "POST":
            own = json.loads(response.body)["hangup_token"]
            carried[own] = carried.get(own, 0) + 1
        findings += [f"{response.method} {response.path} {response.status} carries a hangup token"
                     for t in hangup_tokens if t != own and t in body]
    findings += [f"hangup token {t[:6]}... handed out {n} times" for t, n in carried.items() if n > 1]
    for name, content in files.items():
        findings += [f"{name}: hangup token" for t in hangup_tokens if t in content.decode("utf-8", "replace")]
    findings += ["template: hangup token" for t in hangup_tokens if t in template]
    return findings, carried


def test_the_scan_finds_what_is_planted() -> None:
    """The scanner itself: each kind of leak, planted once, is found."""
    key, token = "sk-fake-leakcanary-planted-0123456789abcdef", "ek_fedcba9876543210fedcba9876543210"
    needles = sorted({key, masked_fragment(key), key[-16:]})
    good = CapturedResponse("POST", "/token", 200, [("content-type", "application/json")],
                            json.dumps({"token": token}).encode())
    planted = {
        "log line": ([f'{{"upstream": "Incorrect API key provided: {masked_fragment(key)}"}}'], [], {}, ""),
        "token in a log": ([f"issued {token}"], [good], {}, ""),
        "key in a header": ([], [CapturedResponse("GET", "/health", 200, [("x-debug", key)], b"{}")], {}, ""),
        "token in an error": ([], [good, CapturedResponse("POST", "/token", 502, [], f'"{token}"'.encode())], {}, ""),
        "token twice": ([], [good, good], {}, ""),
        "key in the page": ([], [], {"web/config.json": key.encode()}, ""),
        "key in the template": ([], [], {}, json.dumps({"Outputs": {"Key": key}})),
    }
    for name, (lines, responses, files, template) in planted.items():
        findings, _ = scan(needles, {token}, lines, responses, files, template)
        assert findings, f"the scan missed: {name}"
    clean, carried = scan(needles, {token}, ["nothing here"], [good], {"web/index.html": b"<html>"}, "{}")
    assert clean == [] and carried == {token: 1}


def test_the_hangup_token_scan_finds_what_is_planted() -> None:
    secret = "hangup-secret-0123456789abcdefghijklmnopqrstuv"
    body = json.dumps({"call_id": "rtc_1", "hangup_token": secret}).encode()
    call = CapturedResponse("POST", "/calls", 201, [], body)
    planted = {
        "in a log": ([f"hangup {secret}"], [call]),
        "in a header": ([], [call, CapturedResponse("POST", "/calls/rtc_1/hangup", 200, [("x", secret)], b"{}")]),
        "in another answer": ([], [call, CapturedResponse("POST", "/calls/rtc_1/hangup", 403, [], secret.encode())]),
        "handed out twice": ([], [call, call]),
    }
    for name, (lines, responses) in planted.items():
        findings, _ = scan_hangup_tokens({secret}, lines, responses, {}, "")
        assert findings, f"the scan missed: {name}"
    assert scan_hangup_tokens({secret}, ["clean"], [call], {}, "") == ([], {secret: 1})
