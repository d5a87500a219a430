"""The local page's policy with Turnstile: the widget's script URL resolved from the template as the deployed stack
resolves it, and its origin in the page's own policy only when the stack has Turnstile."""

from __future__ import annotations

import pytest

from local.site import content_security_policy, page_policy, page_response, turnstile_script_url

API = "http://127.0.0.1:8000"
STANDIN_VERIFY = "http://127.0.0.1:40123/turnstile/v0/siteverify"


@pytest.mark.parametrize(("parameters", "script_url"), [
    ({}, ""),
    ({"TurnstileVerifyUrl": STANDIN_VERIFY}, ""),  # no site key: no widget, whatever the verify URL
    ({"TurnstileSiteKey": "0x4AAA"}, "https://challenges.cloudflare.com/turnstile/v0/api.js"),
    ({"TurnstileSiteKey": "0x4AAA", "TurnstileVerifyUrl": STANDIN_VERIFY},
     "http://127.0.0.1:40123/turnstile/v0/api.js"),
])
def test_the_widget_script_is_the_verify_urls_origin_with_a_site_key_only(parameters: dict[str, str],
                                                                         script_url: str) -> None:
    assert turnstile_script_url(parameters) == script_url


def test_the_page_names_the_widgets_origin_for_scripts_and_frames_only_with_turnstile() -> None:
    script_url = turnstile_script_url({"TurnstileSiteKey": "0x4AAA", "TurnstileVerifyUrl": STANDIN_VERIFY})
    policy = page_policy(API, script_url)
    assert "script-src 'self' http://127.0.0.1:40123;" in policy and "frame-src http://127.0.0.1:40123;" in policy
    index = page_response("/", csp=content_security_policy(), config=b"{}", api_url=API,
                          turnstile_script_url=script_url)
    meta = index.body.split(b"<head>", 1)[1].split(b">", 1)[0].decode()
    assert policy in meta
    plain = page_response("/", csp=content_security_policy(), config=b"{}", api_url=API)
    assert b"40123" not in plain.body and b"frame-src" not in plain.body


def test_the_header_policy_resolves_for_any_parameters() -> None:
    # Whatever the template makes of the header with Turnstile on, it must come out as one policy string.
    for parameters in ({}, {"TurnstileSiteKey": "0x4AAA", "TurnstileVerifyUrl": STANDIN_VERIFY}):
        policy = content_security_policy(parameters)
        assert "frame-ancestors 'none'" in policy and "{" not in policy
