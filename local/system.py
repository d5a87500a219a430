"""The whole system on one machine, for `make run` and for tests.

- AWS: a moto server over HTTP, with the table and the secrets created from template.yaml.
- The API: an HTTP server playing API Gateway (HTTP API): v2.0 events to the real `lambda_handler` (in its own
  processes), responses back, CORS from the template's CorsConfiguration.
- The page: web/ with a config.json pointing at the API, and the Content-Security-Policy header, on the API's
  port (make run) and, if asked, on a second port: a second origin, as when deployed.
- OpenAI: the local Realtime stand-in, unless an OpenAI key is given; then the real OpenAI.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import mimetypes
import os
import secrets
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import boto3
from moto.server import ThreadedMotoServer

from local.apigw import Cors, HttpResponse, http_api_event, match_route, routes_from_template, to_http_response
from local.functions import FunctionPool
from local.openai_standin.server import StandIn
from local.template_stack import LocalStack, provision

ROOT = Path(__file__).resolve().parent.parent
WEB = ROOT / "web"
AWS_ENV = {"AWS_ACCESS_KEY_ID": "local", "AWS_SECRET_ACCESS_KEY": "local", "AWS_SESSION_TOKEN": "local",
           "AWS_DEFAULT_REGION": "us-east-1", "AWS_REGION": "us-east-1"}
MAX_PAYLOAD_BYTES = 10 * 1024 * 1024  # API Gateway HTTP APIs refuse larger request bodies
LAMBDA_ENV = {"POWERTOOLS_TRACE_DISABLED": "true", "AWS_LAMBDA_FUNCTION_NAME": "TokenFunction",
              "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "256"}


class PortBusy(RuntimeError):
    pass


def _serve(host: str, port: int, handler: type[BaseHTTPRequestHandler]) -> ThreadingHTTPServer:
    try:
        server = ThreadingHTTPServer((host, port), handler)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise PortBusy(f"port {port} is busy: stop what uses it, or choose another with PORT=<n>") from None
        raise
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name=f"http-{port}", daemon=True).start()
    return server


class LocalSystem:
    def __init__(self, *, port: int = 0, page_port: int | None = None, host: str = "127.0.0.1",
                 openai_api_key: str | None = None, openai_base_url: str | None = None,
                 parameters: dict[str, str] | None = None, env_overrides: dict[str, str] | None = None,
                 containers: int = 2, standin_max_session_seconds: float = 3600,
                 request_log: Callable[[str], None] | None = None) -> None:
        self._host = host
        self._port, self._page_port = port, page_port
        self._openai_api_key = openai_api_key
        self._openai_base_url = openai_base_url
        self._parameters = dict(parameters or {})
        self._env_overrides = dict(env_overrides or {})
        self._containers = containers
        self._standin_max_session = standin_max_session_seconds
        self.request_log = request_log
        # How long the gateway waits on a silent client connection (idle keep-alive or a stalled body).
        self.client_timeout_seconds: float = 30
        self.workdir = Path(tempfile.mkdtemp(prefix="local-system-"))
        self.moto: ThreadedMotoServer | None = None
        self.standin: StandIn | None = None
        self.stack: LocalStack | None = None
        self.functions: FunctionPool | None = None
        self._servers: list[ThreadingHTTPServer] = []
        self.api_url = self.page_url = ""
        self.moto_url = ""
        self.cors: Cors | None = None

    # --- life cycle -------------------------------------------------------------------------------------------

    def start(self) -> LocalSystem:
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        api_server = _serve(self._host, self._port, self._handler_class(serve_api=True))
        self._servers.append(api_server)
        api_port = api_server.server_address[1]
        self.api_url = f"http://{self._host}:{api_port}"
        page_origins = [f"http://{h}:{api_port}" for h in ("127.0.0.1", "localhost")]
        if self._page_port is not None:
            page_server = _serve(self._host, self._page_port, self._handler_class(serve_api=False))
            self._servers.append(page_server)
            page_port = page_server.server_address[1]
            self.page_url = f"http://localhost:{page_port}/"  # another host name too: a distinct origin
            page_origins += [f"http://{h}:{page_port}" for h in ("127.0.0.1", "localhost")]
        else:
            self.page_url = f"http://localhost:{api_port}/"

        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        self.moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self.moto.start()
        moto_host, moto_port = self.moto.get_host_and_port()
        self.moto_url = f"http://{moto_host}:{moto_port}"
        # Explicit endpoint and credentials: whoever hosts the system (a test run) keeps its own environment.
        self.aws = boto3.Session(aws_access_key_id=AWS_ENV["AWS_ACCESS_KEY_ID"],
                                 aws_secret_access_key=AWS_ENV["AWS_SECRET_ACCESS_KEY"],
                                 aws_session_token=AWS_ENV["AWS_SESSION_TOKEN"], region_name=AWS_ENV["AWS_REGION"])

        extra = self._parameters.pop("AllowedOrigins", "none")
        origins = ",".join(page_origins + [o for o in extra.split(",") if o and o != "none"])
        # moto keeps its state per process, not per server: a unique name keeps two systems in one process apart.
        self.stack = provision(f"realtime-token-vend-{secrets.token_hex(3)}",
                               parameters={"AllowedOrigins": origins, **self._parameters}, session=self.aws,
                               endpoint_url=self.moto_url)
        self.cors = _cors_of(self.stack)

        if self._openai_api_key:
            base_url = self._openai_base_url or "https://api.openai.com/v1"
            key = self._openai_api_key
        else:
            self.standin = StandIn(max_session_seconds=self._standin_max_session).start()
            base_url = self._openai_base_url or self.standin.base_url
            key = self.standin.api_key
        self.client("secretsmanager").put_secret_value(
            SecretId=self.stack.physical_ids["OpenAIKeySecret"], SecretString=json.dumps({"api_key": key}))
        self.realtime_url = f"{base_url}/realtime/calls"
        env = {**AWS_ENV, **LAMBDA_ENV, "AWS_ENDPOINT_URL": self.moto_url,
               **self.stack.function_env["TokenFunction"], "OPENAI_BASE_URL": base_url, **self._env_overrides}
        self.function_env = env
        self.functions = FunctionPool(env, containers=self._containers, log_path=self.workdir / "function.log")
        self.functions.warm()
        self.routes = routes_from_template(self.stack.resources, "TokenFunction")

    def stop(self) -> None:
        for server in self._servers:
            server.shutdown()
            server.server_close()
        self._servers.clear()
        if self.functions:
            self.functions.close()
            self.functions = None
        if self.standin:
            self.standin.stop()
            self.standin = None
        if self.moto:
            self.moto.stop()
            self.moto = None

    def __enter__(self) -> LocalSystem:
        return self.start()

    def __exit__(self, *_: Any) -> None:
        self.stop()

    def client(self, service: str) -> Any:
        """A boto3 client for this system's moto, e.g. to create API keys or flip the kill switch in a test."""
        return self.aws.client(service, endpoint_url=self.moto_url)

    @property
    def token_url(self) -> str:
        return f"{self.api_url}/token"

    @property
    def function_log(self) -> Path:
        return self.workdir / "function.log"

    # --- what the page needs -------------------------------------------------------------------------------

    def config_json(self) -> bytes:
        return json.dumps({"tokenUrl": self.token_url, "optionsUrl": f"{self.api_url}/options"}).encode()

    def content_security_policy(self) -> str:
        """The same policy CloudFront's response headers policy sets when deployed."""
        connect = " ".join(dict.fromkeys(["'self'", _origin(self.api_url), _origin(self.realtime_url)]))
        return ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; media-src 'self'; "
                f"connect-src {connect}; frame-ancestors 'none'; base-uri 'none'; form-action 'none'")

    # --- the gateway -----------------------------------------------------------------------------------------

    def handle_api(self, method: str, path: str, query: str, headers: list[tuple[str, str]], body: bytes,
                   source_ip: str) -> HttpResponse:
        assert self.cors and self.functions
        origin = next((v for k, v in headers if k.lower() == "origin"), None)
        if method == "OPTIONS" and origin is not None:
            lookup = {k.lower(): v for k, v in headers}
            return self.cors.preflight(origin, lookup.get("access-control-request-method"),
                                       lookup.get("access-control-request-headers"))
        route, params = match_route(self.routes, method, path)
        if route is None:
            return HttpResponse(404, [("content-type", "application/json")], b'{"message":"Not Found"}')
        event = http_api_event(method, path, route=route, path_parameters=params, query=query, headers=headers,
                               body=body or None, source_ip=source_ip, domain=urlsplit(self.api_url).netloc)
        try:
            result = self.functions.invoke(event)
        except Exception:  # what API Gateway says when the integration fails
            return HttpResponse(500, [("content-type", "application/json")], b'{"message":"Internal Server Error"}')
        return self.cors.decorate(origin, to_http_response(result))

    def _handler_class(self, *, serve_api: bool) -> type[BaseHTTPRequestHandler]:
        system = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body are two writes: without this, each answer waits ~40 ms
            server_version = "local-gateway"

            def log_message(self, format: str, *args: Any) -> None:
                return

            def setup(self) -> None:
                self.timeout = system.client_timeout_seconds  # a stalled client loses its connection, not a thread
                super().setup()

            def _handle(self) -> None:
                started = time.perf_counter()
                path, _, query = self.path.partition("?")
                try:
                    length = int(self.headers.get("content-length") or 0)
                    if length < 0:
                        raise ValueError(length)
                except ValueError:
                    self.close_connection = True
                    self._send(HttpResponse(400, [("content-type", "application/json")], b'{"message":"Bad Request"}'))
                    return
                if length > MAX_PAYLOAD_BYTES:  # API Gateway's own cap, before reading (or allocating) anything
                    self.close_connection = True
                    self._send(HttpResponse(413, [("content-type", "application/json")],
                                            b'{"message":"Request Entity Too Large"}'))
                    return
                try:
                    body = self.rfile.read(length) if length else b""
                except (TimeoutError, ConnectionError):
                    body = b""
                if len(body) < length:
                    # The client went away or stalled mid-body: like API Gateway, never invoke with a partial body.
                    self.close_connection = True
                    return
                static = _static_file(path) if self.command in ("GET", "HEAD") else None
                if static is not None or (not serve_api and self.command in ("GET", "HEAD")):
                    response = system._static(path, static)
                elif serve_api:
                    response = system.handle_api(self.command, path, query, list(self.headers.items()), body,
                                                 self.client_address[0])
                else:
                    response = HttpResponse(405, [("content-type", "text/plain")], b"method not allowed")
                self._send(response)
                if serve_api and static is None:
                    system._log(self.command, path, response, _caller_label(self.headers, self.client_address[0]),
                                (time.perf_counter() - started) * 1000)

            def _send(self, response: HttpResponse) -> None:
                self.send_response(response.status)
                for name, value in response.headers:
                    if name.lower() not in ("content-length", "connection", "transfer-encoding"):
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(response.body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(response.body)

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_HEAD = _handle

        return Handler

    def _static(self, path: str, file: Path | None) -> HttpResponse:
        headers = [("content-security-policy", self.content_security_policy()), ("x-content-type-options", "nosniff"),
                   ("referrer-policy", "no-referrer"), ("permissions-policy", "microphone=(self)")]
        if path == "/config.json":
            return HttpResponse(200, [("content-type", "application/json"), ("cache-control", "no-cache"), *headers],
                                self.config_json())
        if file is None:
            return HttpResponse(404, [("content-type", "text/plain"), *headers], b"not found")
        kind = "text/javascript" if file.suffix in (".js", ".mjs") else mimetypes.guess_type(file.name)[0]
        return HttpResponse(200, [("content-type", kind or "application/octet-stream"),
                                  ("cache-control", "no-cache"), *headers], file.read_bytes())

    def _log(self, method: str, path: str, response: HttpResponse, caller: str, ms: float) -> None:
        if self.request_log:
            self.request_log(f"{method:6} {path:14} {response.status}  {caller:24} {ms:7.1f} ms")


def _static_file(path: str) -> Path | None:
    if path == "/config.json":
        return WEB / "config.json"  # served generated, never from disk
    relative = "index.html" if path in ("/", "") else path.lstrip("/")
    candidate = (WEB / relative).resolve()
    if WEB.resolve() in candidate.parents and candidate.is_file() and not candidate.name.startswith("."):
        return candidate
    return None


def _caller_label(headers: Any, ip: str) -> str:
    authorization = headers.get("authorization") or ""
    if authorization:
        digest = hashlib.sha256(authorization.encode()).hexdigest()[:8]
        return f"key#{digest}"
    return f"anon {ip}"


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def _cors_of(stack: LocalStack) -> Cors:
    """The HttpApi's CORS configuration as API Gateway receives it from the translated template."""
    config = stack.http_api_cors
    return Cors(allow_origins=list(config.get("allowOrigins", [])),
                allow_methods=list(config.get("allowMethods", [])),
                allow_headers=list(config.get("allowHeaders", [])),
                expose_headers=list(config.get("exposeHeaders", [])),
                max_age=config.get("maxAge"))


def main() -> int:
    port = int(os.environ.get("PORT", "8000"))
    key = os.environ.get("OPENAI_API_KEY") or None

    def log(line: str) -> None:
        print(line, flush=True)

    print("Starting the local system ...", flush=True)
    started = time.perf_counter()
    try:
        system = LocalSystem(port=port, openai_api_key=key, openai_base_url=os.environ.get("OPENAI_BASE_URL"),
                             request_log=log).start()
    except PortBusy as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    assert system.stack is not None
    openai = ("the real OpenAI (OPENAI_API_KEY is set)" if key
              else f"the local OpenAI Realtime stand-in at {system.standin.base_url if system.standin else '?'}")
    print(f"""
  AWS (moto)       {system.moto_url}   table {system.stack.table_name}, secrets from template.yaml
  OpenAI           {openai}
  Token API        {system.api_url}   (POST /token, GET /options, /health, /openapi.json)
  Function logs    {system.function_log}
  Started in {time.perf_counter() - started:.1f} s.

  Open {system.page_url} and click Talk.   Ctrl-C stops everything.
""", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        print("\nStopping ...", flush=True)
    finally:
        system.stop()
    print("Stopped.", flush=True)
    return 0

