"""The key and the salt from Secrets Manager, with botocore's Stubber in place of AWS: the cache, the forced
refresh, the accepted shapes of the secret, and which failures are the owner's (500) or passing (503)."""

from __future__ import annotations

import boto3
import pytest
from aws_lambda_powertools.utilities.parameters import SecretsProvider
from botocore.stub import Stubber

from tokenvend.errors import ApiError, Code
from tokenvend.secret_store import SecretIds, SecretStore, parse_openai_key

IDS = SecretIds("arn:aws:secretsmanager:us-east-1:123456789012:secret:key",
                "arn:aws:secretsmanager:us-east-1:123456789012:secret:salt")


@pytest.fixture
def aws() -> tuple[SecretStore, Stubber]:
    client = boto3.client("secretsmanager", region_name="us-east-1", aws_access_key_id="x",
                          aws_secret_access_key="x")
    stubber = Stubber(client)
    stubber.activate()
    yield SecretStore(IDS, cache_seconds=300, provider=SecretsProvider(boto3_client=client)), stubber
    stubber.deactivate()


def holds(stubber: Stubber, secret_id: str, value: str) -> None:
    stubber.add_response("get_secret_value", {"ARN": secret_id, "Name": "n", "SecretString": value},
                         {"SecretId": secret_id})


def test_the_key_is_read_once_then_cached(aws: tuple[SecretStore, Stubber]) -> None:
    store, stubber = aws
    holds(stubber, IDS.openai_key, '{"api_key": "sk-fake-one"}')
    assert store.openai_key() == "sk-fake-one"
    assert store.openai_key() == "sk-fake-one"  # no second response queued: a second read would fail
    stubber.assert_no_pending_responses()


def test_refresh_reads_again(aws: tuple[SecretStore, Stubber]) -> None:
    store, stubber = aws
    holds(stubber, IDS.openai_key, "sk-fake-old")
    holds(stubber, IDS.openai_key, "sk-fake-new")
    assert store.openai_key() == "sk-fake-old"
    assert store.refresh_openai_key() == "sk-fake-new"
    assert store.openai_key() == "sk-fake-new"


@pytest.mark.parametrize(("raw", "key"), [
    ("sk-fake-bare", "sk-fake-bare"), ("  sk-fake-bare\n", "sk-fake-bare"),
    ('{"api_key": "sk-fake-json"}', "sk-fake-json"), ('{"api_key": " sk-fake-json "}', "sk-fake-json"),
])
def test_accepted_shapes(raw: str, key: str) -> None:
    assert parse_openai_key(raw) == key


@pytest.mark.parametrize("raw", ["", "   ", '{"api_key": ""}', '{"key": "sk-x"}', "{not json", '{"api_key": 5}',
                                 "sk one"])
def test_missing_empty_or_malformed_is_not_configured(raw: str) -> None:
    with pytest.raises(ApiError) as caught:
        parse_openai_key(raw)
    assert (caught.value.status, caught.value.code) == (500, Code.NOT_CONFIGURED)


@pytest.mark.parametrize("aws_code", ["ResourceNotFoundException", "AccessDeniedException", "DecryptionFailure",
                                      "InvalidRequestException"])
def test_the_owners_setup_errors_are_500_not_configured(aws: tuple[SecretStore, Stubber], aws_code: str) -> None:
    store, stubber = aws
    stubber.add_client_error("get_secret_value", aws_code, http_status_code=400)
    with pytest.raises(ApiError) as caught:
        store.openai_key()
    assert (caught.value.status, caught.value.code) == (500, Code.NOT_CONFIGURED)
    assert "Retry-After" not in caught.value.headers


@pytest.mark.parametrize(("aws_code", "status"), [("ThrottlingException", 400), ("InternalServiceError", 500),
                                                  ("ServiceUnavailable", 503)])
def test_an_outage_is_503_secrets_unavailable_with_retry_after(aws: tuple[SecretStore, Stubber], aws_code: str,
                                                               status: int) -> None:
    store, stubber = aws
    stubber.add_client_error("get_secret_value", aws_code, http_status_code=status)
    with pytest.raises(ApiError) as caught:
        store.openai_key()
    assert (caught.value.status, caught.value.code) == (503, Code.SECRETS_UNAVAILABLE)
    assert int(caught.value.headers["Retry-After"]) > 0


def test_a_short_salt_is_not_configured(aws: tuple[SecretStore, Stubber]) -> None:
    store, stubber = aws
    holds(stubber, IDS.hash_salt, "short")
    with pytest.raises(ApiError) as caught:
        store.hash_salt()
    assert caught.value.code == Code.NOT_CONFIGURED



def test_the_salt_is_bytes_without_surrounding_space(aws: tuple[SecretStore, Stubber]) -> None:
    store, stubber = aws
    holds(stubber, IDS.hash_salt, " a-salt-long-enough-for-hmac-xxxxxxxx\n")
    assert store.hash_salt() == b"a-salt-long-enough-for-hmac-xxxxxxxx"
