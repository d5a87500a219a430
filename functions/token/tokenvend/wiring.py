"""Everything a function needs, built once per container from its settings: AWS clients, the OpenAI client, the
stores and the services its handler calls. Nothing here runs per request.

Snapshot-safe (SnapStart, see `tokenvend.snapshot`): building opens no connection and reads no secret, so a snapshot
of the built container holds nothing that is per container or goes stale.
"""

from __future__ import annotations

from typing import Any, NamedTuple
from urllib.parse import urlsplit

import boto3
from aws_lambda_powertools.utilities.parameters import SecretsProvider
from botocore.config import Config

from tokenvend import snapshot  # noqa: F401 - both handlers build here: its restore hooks register before a snapshot
from tokenvend.admission import Admission
from tokenvend.api_keys import ApiKeyLookup, ApiKeyStore
from tokenvend.backends import backend_for, hangups
from tokenvend.call_ending import CallEnder
from tokenvend.call_records import CallRecords
from tokenvend.call_timer import CallTimer
from tokenvend.calls import CallDesk
from tokenvend.human_check import HumanCheck
from tokenvend.limiter import Limiter, Spend
from tokenvend.openai_client import OpenAIClient
from tokenvend.options import PublicOptions
from tokenvend.policy import SessionPolicy
from tokenvend.secret_store import SecretIds, SecretStore
from tokenvend.settings import TURNSTILE_ACTION, LeashSettings, Settings, SettingsError
from tokenvend.vending import TokenVendor

# Fail fast and closed: a slow AWS service must not hold the caller past API Gateway's patience.
QUICK = Config(connect_timeout=2, read_timeout=3, retries={"mode": "standard", "max_attempts": 2})


class Services(NamedTuple):
    calls: CallDesk
    vendor: TokenVendor
    options: PublicOptions
    # The AWS clients the services share: exposed so a test or a benchmark can count or fail their calls.
    dynamodb: Any
    secretsmanager: Any
    stepfunctions: Any


class LeashServices(NamedTuple):
    ender: CallEnder
    dynamodb: Any
    secretsmanager: Any


def build(settings: Settings) -> Services:
    if not settings.state_machine_arn:
        raise SettingsError("STATE_MACHINE_ARN must be set: no call may start without its leash")
    # One boto3 session for every client: botocore's service index and endpoint data are loaded once.
    aws = boto3.session.Session()
    secretsmanager, dynamodb = aws.client("secretsmanager"), aws.client("dynamodb", config=QUICK)
    stepfunctions = aws.client("stepfunctions", config=QUICK)
    turnstile = settings.turnstile
    secrets = _secrets(secretsmanager, settings.openai_secret_id, settings.secret_cache_seconds,
                       settings.hash_salt_secret_id, turnstile.secret_id if turnstile else "")
    limiter = Limiter(dynamodb, settings.table_name, settings.limits,
                      ApiKeyLookup(ApiKeyStore(dynamodb, settings.table_name)))
    admission = Admission(secrets, limiter, allow_anonymous=settings.limits.allow_anonymous,
                          jwt_issuer=settings.jwt.issuer if settings.jwt else None)
    openai = OpenAIClient(settings.openai_base_url, settings.openai_timeout_seconds)
    policy = SessionPolicy(settings)
    backend = backend_for(settings.voice_backend, openai, policy)
    records = CallRecords(dynamodb, settings.table_name)
    ender = CallEnder(secrets, records, hangups(openai))
    human_check = HumanCheck(_turnstile(settings, secrets), limiter,
                             turnstile.challenge_after_percent if turnstile else 0)
    return Services(
        calls=CallDesk(policy, admission, limiter, secrets, backend, records,
                       CallTimer(stepfunctions, settings.state_machine_arn), ender, human_check,
                       max_call_seconds=settings.max_call_seconds, data_channel=settings.data_channel),
        vendor=TokenVendor(policy, admission, limiter, Spend.token(settings.limits), openai, settings.realtime_url),
        options=PublicOptions(settings),
        dynamodb=dynamodb,
        secretsmanager=secretsmanager,
        stepfunctions=stepfunctions,
    )


def build_leash(settings: LeashSettings) -> LeashServices:
    aws = boto3.session.Session()
    secretsmanager, dynamodb = aws.client("secretsmanager"), aws.client("dynamodb", config=QUICK)
    secrets = _secrets(secretsmanager, settings.openai_secret_id, settings.secret_cache_seconds)
    openai = OpenAIClient(settings.openai_base_url, settings.openai_timeout_seconds)
    records = CallRecords(dynamodb, settings.table_name)
    # Whichever backend a call was set up with, the leash can end it.
    return LeashServices(CallEnder(secrets, records, hangups(openai)), dynamodb, secretsmanager)


def _secrets(client: Any, openai_secret_id: str, cache_seconds: int, hash_salt_secret_id: str = "",
             turnstile_secret_id: str = "") -> SecretStore:
    return SecretStore(SecretIds(openai_secret_id, hash_salt_secret_id, turnstile_secret_id), cache_seconds,
                       SecretsProvider(boto3_client=client))


def _turnstile(settings: Settings, secrets: SecretStore) -> Any:
    """The human check's verifier, only where the owner set Turnstile up (its module is not loaded otherwise)."""
    if settings.turnstile is None:
        return None
    import httpx

    from tokenvend.turnstile import TurnstileCheck

    # The page's hosts: a token made on any other page that carries the site key is refused.
    hostnames = tuple(dict.fromkeys(urlsplit(origin).hostname or "" for origin in settings.allowed_origins))
    return TurnstileCheck(httpx.Client(), secrets.turnstile_secret, settings.turnstile.verify_url, hostnames,
                          TURNSTILE_ACTION)
