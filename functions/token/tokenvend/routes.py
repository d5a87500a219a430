"""The HTTP API's routes, declared once: the handler registers them, the pre-routing screen reads their body
limits, a 405 names their methods, and a test checks them against the template's HttpApi events.
"""

from __future__ import annotations

import re
from typing import NamedTuple

DEFAULT_MAX_BODY = 4096
CALLS_MAX_BODY = 16 * 1024  # an SDP offer with its ICE candidates is a few KB


class Route(NamedTuple):
    method: str
    path: str  # as API Gateway writes it: /calls/{call_id}/hangup
    max_body: int = DEFAULT_MAX_BODY

    @property
    def handler_path(self) -> str:
        """As Powertools' resolver writes it: /calls/<call_id>/hangup."""
        return re.sub(r"\{(\w+)\}", r"<\1>", self.path)

    def matches(self, path: str) -> bool:
        pattern = re.sub(r"\\\{\w+\\\}", "[^/]+", re.escape(self.path))
        return re.fullmatch(pattern, path) is not None


CALLS = Route("POST", "/calls", max_body=CALLS_MAX_BODY)
# Signed-in users' calls: the route API Gateway's JWT authorizer guards (with JwtIssuer; else it answers 404).
USER_CALLS = Route("POST", "/user/calls", max_body=CALLS_MAX_BODY)
HANGUP = Route("POST", "/calls/{call_id}/hangup")
TOKEN = Route("POST", "/token")
OPTIONS = Route("GET", "/options")
HEALTH = Route("GET", "/health")
OPENAPI = Route("GET", "/openapi.json")
ROUTES = (CALLS, USER_CALLS, HANGUP, TOKEN, OPTIONS, HEALTH, OPENAPI)


def find(method: str, path: str) -> Route | None:
    return next((r for r in ROUTES if r.method == method and r.matches(path)), None)


def methods_for(path: str) -> list[str]:
    return [r.method for r in ROUTES if r.matches(path)]
