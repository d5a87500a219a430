"""What the local page serves (config.json, the security headers, nothing outside web/) and how a schedule's
rate(...) becomes a period."""

from __future__ import annotations

import json

import pytest

from local.leash import rate_seconds
from local.site import WEB, config_json, content_security_policy, page_response

API = "http://127.0.0.1:8000"


def test_config_json_names_every_url_the_page_needs() -> None:
    assert json.loads(config_json(API)) == {"apiUrl": f"{API}/", "callsUrl": f"{API}/calls",
                                            "optionsUrl": f"{API}/options", "tokenUrl": f"{API}/token"}


def test_the_page_gets_the_deployed_security_headers_and_nothing_outside_web() -> None:
    csp = content_security_policy()
    assert "frame-ancestors 'none'" in csp and "script-src 'self'" in csp
    # No connect-src in the header: the page's own policy names the API's host (one host, not a region's).
    assert "connect-src" not in csp and "default-src" not in csp and "*" not in csp
    index = page_response("/", csp=csp, config=b"{}", api_url=API)
    assert index.status == 200 and index.header("content-security-policy") == csp
    assert index.header("content-type") == "text/html"
    head = index.body.split(b"<head>", 1)[1].lstrip()
    assert head.startswith(b'<meta http-equiv="Content-Security-Policy" content="default-src \'none\';'), head[:80]
    assert b"connect-src 'self' http://127.0.0.1:8000;" in head.split(b">", 1)[0], "our API only, never OpenAI"
    assert page_response("/config.json", csp=csp, config=b'{"a": 1}', api_url=API).body == b'{"a": 1}'
    assert page_response("/js/app.js", csp=csp, config=b"{}", api_url=API).body == (WEB / "js" / "app.js").read_bytes()
    for outside in ("/../README.md", "/../../etc/passwd", "/nothing-here.js"):
        assert page_response(outside, csp=csp, config=b"{}", api_url=API).status == 404


@pytest.mark.parametrize("expression, seconds", [("rate(1 minute)", 60), ("rate(5 minutes)", 300),
                                                 ("rate(2 hours)", 7200), ("rate(1 day)", 86400)])
def test_rate_expressions(expression: str, seconds: int) -> None:
    assert rate_seconds(expression) == seconds


@pytest.mark.parametrize("expression", ["cron(0 * * * ? *)", "at(2026-12-02T16:20:05)", "rate(1 second)"])
def test_other_schedule_expressions_are_refused_at_start_up(expression: str) -> None:
    with pytest.raises(ValueError, match="only rate"):
        rate_seconds(expression)
