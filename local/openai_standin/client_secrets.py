"""`POST /v1/realtime/client_secrets` as OpenAI answers it: the old token flow's ephemeral `ek_` tokens.

Checks the standard key, the content type and the body against our strict model of OpenAI's schema, and answers
`{"value": "ek_...", "expires_at", "session"}` with the effective session.
"""

from __future__ import annotations

from aiohttp import web

from local.openai_standin.auth import Credentials, mask_key, openai_error
from local.openai_standin.endpoint import Incoming, RecordedRequest, json_body
from local.openai_standin.faults import Fault, FaultPlan
from local.openai_standin.realtime_session import effective_session
from local.openai_standin.schema import validate_client_secret_request
from local.openai_standin.tokens import TokenRegistry

# Fault, FaultPlan, RecordedRequest and mask_key are imported from here by tests written before they moved.
__all__ = ["ClientSecrets", "Fault", "FaultPlan", "RecordedRequest", "mask_key", "openai_error"]

PATH = "/v1/realtime/client_secrets"
DEFAULT_TTL_SECONDS = 600


class ClientSecrets:
    def __init__(self, credentials: Credentials) -> None:
        self.credentials = credentials

    @property
    def registry(self) -> TokenRegistry:
        return self.credentials.tokens

    @property
    def api_key(self) -> str:
        """The standard key OpenAI accepts now, for every endpoint; tests set it to rotate or refuse the key."""
        return self.credentials.api_key

    @api_key.setter
    def api_key(self, value: str) -> None:
        self.credentials.api_key = value

    async def handle(self, incoming: Incoming) -> web.StreamResponse:
        self.credentials.require_standard(incoming.authorization)
        body = json_body(incoming, validate_client_secret_request)
        session_request = body.get("session") or {"type": "realtime"}
        ttl = body.get("expires_after", {}).get("seconds", DEFAULT_TTL_SECONDS)
        token = self.registry.issue(effective_session(session_request), ttl)
        return web.json_response({"value": token.value, "expires_at": token.expires_at, "session": token.session})
