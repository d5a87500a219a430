"""What is refused before routing, in one pass with one answer: a browser Origin outside the list and a body over
its route's size cap. A base64 body is decoded here so the rest only sees text; what the body says is `bodies`'.
"""

from __future__ import annotations

import base64
from typing import Any

from tokenvend import routes
from tokenvend.errors import ApiError, Code


def screen(event: dict[str, Any], allowed_origins: tuple[str, ...]) -> tuple[dict[str, Any], ApiError | None]:
    """The event to route (body as text), or the refusal to answer with instead."""
    headers = {k.lower(): v for k, v in (event.get("headers") or {}).items()}
    origin = headers.get("origin")
    if origin is not None and origin.rstrip("/") not in allowed_origins:
        # Not authentication (any non-browser client can send any Origin), but it stops other sites' pages.
        return event, ApiError(403, Code.ORIGIN_NOT_ALLOWED, "This origin may not use this API.")
    method = event.get("requestContext", {}).get("http", {}).get("method", "")
    route = routes.find(method, event.get("rawPath") or "")
    limit = route.max_body if route else routes.DEFAULT_MAX_BODY
    if _body_size(event) > limit:
        return event, ApiError(413, Code.PAYLOAD_TOO_LARGE, f"The body must be at most {limit} bytes.")
    return _as_text(event), None


def _body_size(event: dict[str, Any]) -> int:
    body = event.get("body") or ""
    if event.get("isBase64Encoded"):
        return len(body) * 3 // 4
    return len(body.encode("utf-8", "surrogatepass"))


def _as_text(event: dict[str, Any]) -> dict[str, Any]:
    """A body that is not UTF-8 can only be invalid JSON: say so in a 400 rather than fail while decoding it."""
    if not event.get("isBase64Encoded") or not event.get("body"):
        return event
    try:
        text = base64.b64decode(event["body"], validate=True).decode("utf-8")
    except (ValueError, UnicodeDecodeError):
        text = "\x00"  # not JSON: the body parser answers 400, not valid JSON
    return {**event, "body": text, "isBase64Encoded": False}

