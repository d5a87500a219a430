"""The page as CloudFront serves it when deployed: web/ with the security headers of the template's response headers
policy, and a config.json pointing at the API (the site deployer writes that file when deployed)."""

from __future__ import annotations

import json
import mimetypes
from pathlib import Path
from urllib.parse import urlsplit

from local.apigw import HttpResponse

WEB = Path(__file__).resolve().parent.parent / "web"


def config_json(api_url: str) -> bytes:
    return json.dumps({"apiUrl": f"{api_url}/", "callsUrl": f"{api_url}/calls", "optionsUrl": f"{api_url}/options",
                       "tokenUrl": f"{api_url}/token"}).encode()


def content_security_policy(api_url: str) -> str:
    """The same policy CloudFront's response headers policy sets when deployed. The page talks to our API only:
    it never fetches from OpenAI (WebRTC media is not governed by connect-src)."""
    connect = " ".join(dict.fromkeys(["'self'", _origin(api_url)]))
    return ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; media-src 'self'; "
            f"connect-src {connect}; frame-ancestors 'none'; base-uri 'none'; form-action 'none'")


def is_page(path: str) -> bool:
    return path == "/config.json" or _file(path) is not None


def page_response(path: str, *, csp: str, config: bytes) -> HttpResponse:
    headers = [("content-security-policy", csp), ("x-content-type-options", "nosniff"),
               ("referrer-policy", "no-referrer"), ("permissions-policy", "microphone=(self)")]
    if path == "/config.json":  # generated, never read from disk
        return HttpResponse(200, [("content-type", "application/json"), ("cache-control", "no-cache"), *headers],
                            config)
    file = _file(path)
    if file is None:
        return HttpResponse(404, [("content-type", "text/plain"), *headers], b"not found")
    kind = "text/javascript" if file.suffix in (".js", ".mjs") else mimetypes.guess_type(file.name)[0]
    return HttpResponse(200, [("content-type", kind or "application/octet-stream"), ("cache-control", "no-cache"),
                              *headers], file.read_bytes())


def _file(path: str) -> Path | None:
    relative = "index.html" if path in ("/", "") else path.lstrip("/")
    candidate = (WEB / relative).resolve()
    if WEB.resolve() in candidate.parents and candidate.is_file() and not candidate.name.startswith("."):
        return candidate
    return None


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"
