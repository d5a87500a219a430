"""The page as CloudFront serves it when deployed: web/ with the security headers of the template's response headers
policy, each HTML page with the Content-Security-Policy the site deployer writes into it (naming the API's own host,
and with Turnstile the widget's origin: the local stand-in's), and a config.json pointing at the API (the site
deployer writes that file when deployed).

What depends on the stack's parameters (the widget's script URL, a header policy the template may make conditional)
is resolved from template.yaml as the deployed stack resolves it, so the local page cannot drift from it."""

from __future__ import annotations

import importlib.util
import json
import mimetypes
import sys
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any

from local.apigw import HttpResponse
from local.template_stack import _Resolver, load_template

ROOT = Path(__file__).resolve().parent.parent
WEB = ROOT / "web"


def config_json(api_url: str) -> bytes:
    return json.dumps({"apiUrl": f"{api_url}/", "callsUrl": f"{api_url}/calls", "optionsUrl": f"{api_url}/options",
                       "tokenUrl": f"{api_url}/token"}).encode()


def content_security_policy(parameters: Mapping[str, str] | None = None) -> str:
    """The header policy, as the template's response headers policy has it for these parameters."""
    template = load_template()
    config = template["Resources"]["SiteSecurityHeaders"]["Properties"]["ResponseHeadersPolicyConfig"]
    policy = _resolved(template, parameters, config["SecurityHeadersConfig"]["ContentSecurityPolicy"]
                       ["ContentSecurityPolicy"])
    return " ".join(str(policy).split())


def turnstile_script_url(parameters: Mapping[str, str]) -> str:
    """The widget script the page may load (empty without Turnstile): the site deployer's TurnstileScriptUrl
    property, resolved as CloudFormation resolves it."""
    template = load_template()
    node = template["Resources"]["SiteDeployment"]["Properties"].get("TurnstileScriptUrl", "")
    return str(_resolved(template, parameters, node) or "")


def _resolved(template: dict[str, Any], parameters: Mapping[str, str] | None, node: Any) -> Any:
    if isinstance(node, str):
        return node
    return _Resolver(template, dict(parameters or {}), {}, "local").value(node)


@cache
def _deployer() -> ModuleType:
    """The site deployer's own module: the page gets its policy from the same code when deployed and here."""
    spec = importlib.util.spec_from_file_location("site_deployer", ROOT / "functions" / "site_deployer" / "deployer.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look themselves up there
    spec.loader.exec_module(module)
    return module


def page_policy(api_url: str, turnstile_script_url: str = "") -> str:
    return str(_deployer().page_policy(api_url, turnstile_script_url))


def is_page(path: str) -> bool:
    return path == "/config.json" or _file(path) is not None


def page_response(path: str, *, csp: str, config: bytes, api_url: str, turnstile_script_url: str = "") -> HttpResponse:
    headers = [("content-security-policy", csp), ("x-content-type-options", "nosniff"),
               ("referrer-policy", "no-referrer"), ("permissions-policy", "microphone=(self)")]
    if path == "/config.json":  # generated, never read from disk
        return HttpResponse(200, [("content-type", "application/json"), ("cache-control", "no-cache"), *headers],
                            config)
    file = _file(path)
    if file is None:
        return HttpResponse(404, [("content-type", "text/plain"), *headers], b"not found")
    kind = "text/javascript" if file.suffix in (".js", ".mjs") else mimetypes.guess_type(file.name)[0]
    body = file.read_bytes()
    if file.suffix in (".html", ".htm"):
        body = _deployer().with_page_policy(body, api_url, turnstile_script_url)
    return HttpResponse(200, [("content-type", kind or "application/octet-stream"), ("cache-control", "no-cache"),
                              *headers], body)


def _file(path: str) -> Path | None:
    relative = "index.html" if path in ("/", "") else path.lstrip("/")
    candidate = (WEB / relative).resolve()
    if WEB.resolve() in candidate.parents and candidate.is_file() and not candidate.name.startswith("."):
        return candidate
    return None
