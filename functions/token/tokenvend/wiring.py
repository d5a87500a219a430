"""Everything the function needs, built once per container from the settings: AWS clients, the OpenAI client, the
stores and the services the routes call. Nothing here runs per request.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import boto3
from aws_lambda_powertools.utilities.parameters import SecretsProvider
from botocore.config import Config

from tokenvend.admission import Admission
from tokenvend.api_keys import ApiKeyLookup, ApiKeyStore
from tokenvend.limiter import Limiter
from tokenvend.openai_client import OpenAIClient
from tokenvend.options import PublicOptions
from tokenvend.policy import SessionPolicy
from tokenvend.secret_store import SecretIds, SecretStore
from tokenvend.settings import Settings
from tokenvend.vending import TokenVendor

# Fail fast and closed: a slow DynamoDB must not hold the caller past API Gateway's patience.
DYNAMODB_CONFIG = Config(connect_timeout=2, read_timeout=3, retries={"mode": "standard", "max_attempts": 2})


@dataclass(frozen=True)
class Services:
    vendor: TokenVendor
    options: PublicOptions
    # The AWS clients the services share: exposed so a test or a benchmark can count or fail their calls.
    dynamodb: Any
    secretsmanager: Any


def build(settings: Settings) -> Services:
    # One boto3 session for every client: botocore's service index and endpoint data are loaded once.
    aws = boto3.session.Session()
    secretsmanager = aws.client("secretsmanager")
    secrets = SecretStore(SecretIds(settings.openai_secret_id, settings.hash_salt_secret_id),
                          settings.secret_cache_seconds, SecretsProvider(boto3_client=secretsmanager))
    dynamodb = aws.client("dynamodb", config=DYNAMODB_CONFIG)
    limiter = Limiter(dynamodb, settings.table_name, settings.limits,
                      ApiKeyLookup(ApiKeyStore(dynamodb, settings.table_name)))
    admission = Admission(secrets, limiter, allow_anonymous=settings.limits.allow_anonymous)
    openai = OpenAIClient(settings.openai_base_url, settings.openai_timeout_seconds)
    policy = SessionPolicy(settings)
    return Services(
        vendor=TokenVendor(policy, admission, secrets, limiter, openai, settings.realtime_url),
        options=PublicOptions(settings),
        dynamodb=dynamodb,
        secretsmanager=secretsmanager,
    )
