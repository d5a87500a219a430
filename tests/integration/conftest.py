"""Shared fixtures: a real moto server over HTTP for AWS, the OpenAI stand-in over HTTP, and the token function
loaded the way Lambda loads it, configured from template.yaml.

Every log line and metric the function prints during the suite is kept, with every token it issued, and the
session ends by proving that neither the OpenAI key nor any token appears in them.
"""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from moto.server import ThreadedMotoServer

from local.openai_standin.server import StandIn
from local.template_stack import LocalStack, provision
from tests.integration.harness import EVIDENCE, TokenApi, load_token_app
from tests.jwt_issuer import Issuer

AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
    "POWERTOOLS_TRACE_DISABLED": "true",
    "POWERTOOLS_DEV": "false",
}


def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """With `-n 2 --dist loadgroup` (make test): a test file stays in one worker, and the security suite stays
    together in one, so that its leak scan, which runs last, reads the output of every security test.

    A scheduler of our own rather than `xdist_group` marks: pytest 9 names a node by `Node._id`, and xdist 3.8
    still appends the group to `_nodeid`, so the marks are silently ignored and the suite is split."""
    if config.getvalue("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class SecuritySuiteTogether(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            path = nodeid.split("::", 1)[0]
            return "security" if "/security/" in path else path

    return SecuritySuiteTogether(config, log)


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    saved = {k: os.environ.get(k) for k in [*AWS_ENV, "AWS_ENDPOINT_URL"]}
    os.environ.update(AWS_ENV, AWS_ENDPOINT_URL=endpoint)
    yield endpoint
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    server.stop()


@pytest.fixture(scope="session")
def standin() -> Iterator[StandIn]:
    with StandIn() as server:
        EVIDENCE.keys.add(server.api_key)
        yield server


@pytest.fixture
def fresh_standin(standin: StandIn) -> StandIn:
    standin.reset()  # no faults, no recorded requests, no calls left from another test
    return standin


@pytest.fixture
def stack(moto_endpoint: str) -> LocalStack:
    """A fresh copy of the template's resources (own table, secrets and state machine) for each test. The old token
    route is switched on: most tests of the limiter and of the handler's edges go through it."""
    del moto_endpoint
    return provision(stack_name=f"t-{uuid.uuid4().hex[:10]}",
                     parameters={"AllowedOrigins": "https://page.example", "EnableTokenRoute": "true"})


@pytest.fixture
def token_api(stack: LocalStack, fresh_standin: StandIn) -> TokenApi:
    api = load_token_app(stack, fresh_standin)
    api.put_key(fresh_standin.api_key)
    return api


@pytest.fixture(scope="session", autouse=True)
def no_secret_in_any_output() -> Iterator[None]:
    """Runs after the whole suite: the key, the issued tokens and the hangup tokens appear in no log line or
    metric."""
    yield
    text = "\n".join(EVIDENCE.lines)
    leaked_keys = [k for k in EVIDENCE.keys if len(k.strip()) >= 8 and k in text]  # not a test's blank "key"
    leaked_tokens = [t for t in EVIDENCE.tokens if t in text]
    leaked_hangup_tokens = [t for t in EVIDENCE.hangup_tokens if t in text]
    assert not leaked_keys, f"an OpenAI key appears in {len(leaked_keys)} captured output(s)"
    assert not leaked_tokens, f"{len(leaked_tokens)} issued token(s) appear in captured output"
    assert not leaked_hangup_tokens, f"{len(leaked_hangup_tokens)} hangup token(s) appear in captured output"


@pytest.fixture(scope="module")
def issuer() -> Iterator[Issuer]:
    """An OIDC issuer on loopback (discovery and JWKS over HTTP) that mints the signed-in users' tokens."""
    with Issuer() as running:
        yield running
