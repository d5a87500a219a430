"""The Turnstile stand-in over HTTP: as strict as Cloudflare's siteverify, a widget that mints tokens bound to the
page's host, faults on demand, and the local system's use of it (start_for)."""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Iterator
from typing import Any

import boto3
import httpx
import pytest

from local.turnstile_standin import (
    CLOUDFLARE_TEST_SECRET,
    CLOUDFLARE_VERIFY_URL,
    DEFAULT_SECRET,
    INVALID_SITEKEY,
    PLACEHOLDER_SECRET_ARN,
    TurnstileStandIn,
    start_for,
    with_placeholder_secret,
)

SECRET = "0x4AAAAAAA-test-secret"
SITE_KEY = "0x4AAAAAAA-test-site"


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def standin(clock: Clock) -> Iterator[TurnstileStandIn]:
    with TurnstileStandIn(secret=SECRET, site_key=SITE_KEY, clock=clock) as running:
        yield running


def verify(standin: TurnstileStandIn, token: str, *, secret: str = SECRET, form: bool = False,
           **extra: str) -> httpx.Response:
    fields = {"secret": secret, "response": token, **extra}
    if form:
        return httpx.post(standin.verify_url, data=fields, timeout=5)
    return httpx.post(standin.verify_url, json=fields, timeout=5)


def codes(response: httpx.Response) -> list[str]:
    body = response.json()
    assert body["success"] is False, body
    return body["error-codes"]


class TestSiteverify:
    def test_a_minted_token_verifies_once_with_cloudflares_fields(self, standin: TurnstileStandIn) -> None:
        token = standin.mint("voice.example", "call", "abc")
        answer = verify(standin, token, remoteip="203.0.113.7", idempotency_key=str(uuid.uuid4()))
        assert answer.status_code == 200 and answer.headers["content-type"] == "application/json"
        body = answer.json()
        assert body["success"] is True and body["error-codes"] == []
        assert (body["hostname"], body["action"], body["cdata"]) == ("voice.example", "call", "abc")
        assert body["challenge_ts"] == "2023-11-14T22:13:20.000Z"
        [seen] = standin.verifications
        assert (seen.token, seen.remoteip) == (token, "203.0.113.7")
        assert codes(verify(standin, token)) == ["timeout-or-duplicate"]

    def test_a_form_is_taken_as_well_as_json(self, standin: TurnstileStandIn) -> None:
        answer = verify(standin, standin.mint("voice.example"), form=True)
        assert answer.json()["success"] is True
        assert standin.verifications[0].content_type == "application/x-www-form-urlencoded"

    def test_the_same_verification_sent_again_gets_the_same_answer(self, standin: TurnstileStandIn) -> None:
        token, key = standin.mint("voice.example"), str(uuid.uuid4())
        first = verify(standin, token, idempotency_key=key).json()
        assert first["success"] is True
        assert verify(standin, token, idempotency_key=key).json() == first
        assert codes(verify(standin, token, idempotency_key=str(uuid.uuid4()))) == ["timeout-or-duplicate"]

    def test_a_token_lives_300_seconds(self, standin: TurnstileStandIn, clock: Clock) -> None:
        fresh, stale = standin.mint("voice.example"), standin.mint("voice.example")
        clock.now += 300
        assert verify(standin, fresh).json()["success"] is True
        clock.now += 0.001
        assert codes(verify(standin, stale)) == ["timeout-or-duplicate"]
        assert codes(verify(standin, stale)) == ["timeout-or-duplicate"]

    @pytest.mark.parametrize(("fields", "code"), [
        ({"response": "t"}, "missing-input-secret"),
        ({"secret": "", "response": "t"}, "missing-input-secret"),
        ({"secret": "0x-someone-elses", "response": "t"}, "invalid-input-secret"),
        ({"secret": SECRET}, "missing-input-response"),
        ({"secret": SECRET, "response": "never-minted"}, "invalid-input-response"),
        ({"secret": SECRET, "response": "x" * 2049}, "invalid-input-response"),
        ({"secret": SECRET, "response": 12}, "invalid-input-response"),
    ])
    def test_refusals_carry_cloudflares_codes(self, standin: TurnstileStandIn, fields: dict[str, Any],
                                              code: str) -> None:
        answer = httpx.post(standin.verify_url, json=fields, timeout=5)
        assert answer.status_code == 200 and codes(answer) == [code]

    def test_a_wrong_secret_does_not_spend_the_token(self, standin: TurnstileStandIn) -> None:
        token = standin.mint("voice.example")
        assert codes(verify(standin, token, secret="0x-wrong")) == ["invalid-input-secret"]
        assert verify(standin, token).json()["success"] is True

    @pytest.mark.parametrize("body", [
        b"not json", b"[1, 2]",
        json.dumps({"secret": SECRET, "response": "t", "idempotency_key": "not-a-uuid"}).encode(),
    ])
    def test_a_malformed_request_is_a_bad_request(self, standin: TurnstileStandIn, body: bytes) -> None:
        answer = httpx.post(standin.verify_url, content=body, headers={"content-type": "application/json"}, timeout=5)
        assert answer.status_code == 400 and codes(answer) == ["bad-request"]

    def test_another_content_type_is_a_bad_request(self, standin: TurnstileStandIn) -> None:
        answer = httpx.post(standin.verify_url, content=b"secret=x", headers={"content-type": "text/plain"}, timeout=5)
        assert answer.status_code == 400 and codes(answer) == ["bad-request"]

    def test_only_post_verifies(self, standin: TurnstileStandIn) -> None:
        assert httpx.get(standin.verify_url, timeout=5).status_code == 405


class TestFaults:
    def test_a_delayed_verify_still_spends_the_token(self, standin: TurnstileStandIn) -> None:
        token = standin.mint("voice.example")
        standin.delay_next_verify(2)
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(standin.verify_url, json={"secret": SECRET, "response": token}, timeout=0.3)
        deadline = time.monotonic() + 10
        while not standin.verifications:  # Cloudflare was slow, not idle: it answers after the caller gave up
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert standin.verifications[0].answer is not None and standin.verifications[0].answer["success"] is True
        assert codes(verify(standin, token)) == ["timeout-or-duplicate"]

    def test_a_server_error_then_normal_again(self, standin: TurnstileStandIn) -> None:
        token = standin.mint("voice.example")
        standin.fail_next_verify(502)
        failed = verify(standin, token)
        assert failed.status_code == 502 and codes(failed) == ["internal-error"]
        assert verify(standin, token).json()["success"] is True

    def test_a_body_that_is_not_json(self, standin: TurnstileStandIn) -> None:
        standin.garble_next_verify()
        answer = verify(standin, standin.mint("voice.example"))
        assert answer.status_code == 200
        with pytest.raises(ValueError):
            answer.json()

    def test_a_refusal_of_any_token(self, standin: TurnstileStandIn) -> None:
        standin.refuse_next_verify("invalid-input-response", times=2)
        tokens = [standin.mint("voice.example") for _ in range(3)]
        assert [v.json()["success"] for v in (verify(standin, t) for t in tokens)] == [False, False, True]

    def test_stop_cuts_a_delay_short(self, clock: Clock) -> None:
        standin = TurnstileStandIn(secret=SECRET, site_key=SITE_KEY, clock=clock).start()
        standin.delay_next_verify(60)
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(standin.verify_url, json={"secret": SECRET, "response": "t"}, timeout=0.3)
        started = time.monotonic()
        standin.stop()
        assert time.monotonic() - started < 30


class TestWidget:
    def widget(self, standin: TurnstileStandIn, **query: str) -> httpx.Response:
        params = {"sitekey": SITE_KEY, "action": "call", "cdata": "", "parent_origin": "http://localhost:8000",
                  "widget": "cf-chl-widget-1", **query}
        return httpx.get(f"{standin.url}/turnstile/v0/widget", params=params, timeout=5)

    def posted(self, page: httpx.Response) -> tuple[dict[str, Any], str]:
        match = re.search(r"parent\.postMessage\((.*), (\"[^\"]*\")\);", page.text)
        assert match, page.text
        return json.loads(match[1]), json.loads(match[2])

    def test_the_widget_mints_a_token_bound_to_the_parent_pages_host_and_posts_it_there(
        self, standin: TurnstileStandIn
    ) -> None:
        page = self.widget(standin)
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        message, target = self.posted(page)
        assert target == "http://localhost:8000"
        assert message["event"] == "complete" and message["widget"] == "cf-chl-widget-1"
        body = verify(standin, message["token"]).json()
        assert (body["success"], body["hostname"], body["action"]) == (True, "localhost", "call")
        assert standin.widget_loads[0].token == message["token"]

    def test_an_unknown_sitekey_gets_the_widgets_error_and_no_token(self, standin: TurnstileStandIn) -> None:
        message, _ = self.posted(self.widget(standin, sitekey="0x-someone-elses"))
        assert message == {"source": "turnstile-standin", "widget": "cf-chl-widget-1", "event": "error",
                           "code": INVALID_SITEKEY}
        assert standin.widget_loads[0].token is None

    def test_a_widget_fault_and_a_bad_action_mint_nothing(self, standin: TurnstileStandIn) -> None:
        standin.fail_next_widget("300010")
        assert self.posted(self.widget(standin))[0]["code"] == "300010"
        assert self.posted(self.widget(standin, action="no spaces allowed"))[0]["event"] == "error"
        assert self.posted(self.widget(standin))[0]["event"] == "complete"

    @pytest.mark.parametrize("parent", ["", "localhost", "javascript:alert(1)", "http://localhost:8000/path"])
    def test_the_parent_must_be_an_origin(self, standin: TurnstileStandIn, parent: str) -> None:
        assert self.widget(standin, parent_origin=parent).status_code == 400

    def test_nothing_from_the_query_reaches_the_page_as_markup(self, standin: TurnstileStandIn) -> None:
        page = self.widget(standin, widget="</script><script>alert(1)</script>")
        assert "<script>alert" not in page.text
        assert self.posted(page)[0]["widget"] == "</script><script>alert(1)</script>"

    def test_the_script_knows_its_origin_and_its_onload(self, standin: TurnstileStandIn) -> None:
        script = httpx.get(standin.script_url, params={"render": "explicit", "onload": "ready_1"}, timeout=5)
        assert script.status_code == 200 and script.headers["content-type"].startswith("text/javascript")
        assert f"const ORIGIN = {json.dumps(standin.url)};" in script.text
        assert 'const ONLOAD = "ready_1";' in script.text and "const EXPLICIT = true;" in script.text
        assert httpx.get(standin.script_url, params={"onload": "alert(1)"}, timeout=5).status_code == 400


class TestStartFor:
    @pytest.fixture
    def secretsmanager(self, moto_endpoint: str) -> Any:
        return boto3.client("secretsmanager", endpoint_url=moto_endpoint, region_name="us-east-1")

    def test_without_a_site_key_or_with_a_verify_url_of_ones_own_nothing_starts(self, secretsmanager: Any) -> None:
        for parameters in ({}, {"TurnstileSiteKey": ""}):
            assert start_for(parameters, secretsmanager) == (parameters, None)
        # A verify URL of one's own: no stand-in, but a secret it can know where none was named.
        own = {"TurnstileSiteKey": "k", "TurnstileVerifyUrl": "https://mine.example/siteverify",
               "TurnstileSecretArn": PLACEHOLDER_SECRET_ARN}
        parameters, standin = start_for(own, secretsmanager)
        assert standin is None and parameters["TurnstileVerifyUrl"] == own["TurnstileVerifyUrl"]
        stored = secretsmanager.get_secret_value(SecretId=parameters["TurnstileSecretArn"])["SecretString"]
        assert stored == CLOUDFLARE_TEST_SECRET
        # One that exists is kept as it is.
        assert start_for({**own, "TurnstileSecretArn": parameters["TurnstileSecretArn"]}, secretsmanager)[0] == \
            {**own, "TurnstileSecretArn": parameters["TurnstileSecretArn"]}

    @pytest.mark.parametrize("arn", ["", PLACEHOLDER_SECRET_ARN])
    def test_a_site_key_starts_a_stand_in_and_a_secret_holding_its_secret(self, secretsmanager: Any,
                                                                          arn: str) -> None:
        given = {"TurnstileSiteKey": SITE_KEY, "TurnstileSecretArn": arn, "MaxCallSeconds": "20"}
        parameters, standin = start_for(given, secretsmanager)
        assert standin is not None
        try:
            assert parameters["TurnstileVerifyUrl"] == standin.verify_url
            assert parameters["MaxCallSeconds"] == "20" and standin.site_key == SITE_KEY
            stored = secretsmanager.get_secret_value(SecretId=parameters["TurnstileSecretArn"])["SecretString"]
            assert stored == standin.secret == DEFAULT_SECRET
            assert parameters["TurnstileSecretArn"] != PLACEHOLDER_SECRET_ARN
            token = standin.mint("localhost")
            assert verify(standin, token, secret=stored).json()["success"] is True
        finally:
            standin.stop()
        assert given["TurnstileSecretArn"] == arn  # the caller's dict is left as it was

    def test_an_existing_secret_is_the_stand_ins_secret(self, secretsmanager: Any) -> None:
        arn = secretsmanager.create_secret(Name=f"owner-turnstile-{uuid.uuid4().hex[:6]}",
                                           SecretString="0x-the-owners-secret")["ARN"]
        parameters, standin = start_for({"TurnstileSiteKey": SITE_KEY, "TurnstileSecretArn": arn,
                                         "TurnstileVerifyUrl": CLOUDFLARE_VERIFY_URL}, secretsmanager)
        assert standin is not None
        try:
            assert parameters["TurnstileSecretArn"] == arn and standin.secret == "0x-the-owners-secret"
        finally:
            standin.stop()

    def test_placeholder_for_the_templates_rule(self) -> None:
        assert with_placeholder_secret({"TurnstileSiteKey": "k"})["TurnstileSecretArn"] == PLACEHOLDER_SECRET_ARN
        assert with_placeholder_secret({"TurnstileSiteKey": "k", "TurnstileSecretArn": "arn:x"}) == {
            "TurnstileSiteKey": "k", "TurnstileSecretArn": "arn:x"}
        assert with_placeholder_secret({}) == {}
