"""The whole system on one machine, for `make run` and for tests.

- AWS: a moto server over HTTP, with the table, the secrets and the state machine created from template.yaml.
- The API: an HTTP server playing API Gateway (HTTP API): v2.0 events to the real `lambda_handler` (in its own
  processes), responses back, CORS from the template's CorsConfiguration (local.gateway, local.http_front).
- The leash: the state machine's executions and the sweeper's schedule carried out as AWS would, invoking the
  leash function in its own processes (local.leash).
- The page: web/ with a config.json pointing at the API, and the Content-Security-Policy header, on the API's
  port (make run) and, if asked, on a second port: a second origin, as when deployed (local.site).
- OpenAI: the local Realtime stand-in, unless an OpenAI key is given; then the real OpenAI.

Never half up: the ports are bound first (their numbers go into CORS and config.json) but accept connections only
once everything behind them is ready; until then a connection is refused, which clients retry.
"""

from __future__ import annotations

import json
import logging
import random
import secrets
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import boto3
from moto.server import ThreadedMotoServer

from local import site, turnstile_standin
from local.apigw import Cors, HttpResponse, Route, Throttles, routes_from_template
from local.atomic_moto import serialise_item_operations
from local.functions import FunctionPool
from local.gateway import Gateway, cors_of, throttles_of
from local.http_front import handler_class
from local.leash import LeashRunner
from local.listener import Listener
from local.openai_standin.server import StandIn
from local.parameters import validate
from local.states import LAMBDA_INVOKE
from local.template_stack import TEMPLATE, LocalStack, load_template, provision
from local.turnstile_standin import TurnstileStandIn

AWS_ENV = {"AWS_ACCESS_KEY_ID": "local", "AWS_SECRET_ACCESS_KEY": "local", "AWS_SESSION_TOKEN": "local",
           "AWS_DEFAULT_REGION": "us-east-1", "AWS_REGION": "us-east-1"}
LAMBDA_ENV = {"POWERTOOLS_TRACE_DISABLED": "true"}
API_FUNCTION = "TokenFunction"  # the function behind the HttpApi's routes
API_TIMEOUT_SECONDS = 30  # API Gateway's integration timeout


class LocalSystem:
    def __init__(self, *, port: int = 0, page_port: int | None = None, host: str = "127.0.0.1",
                 openai_api_key: str | None = None, openai_base_url: str | None = None,
                 parameters: dict[str, str] | None = None, env_overrides: dict[str, str] | None = None,
                 containers: int = 2, standin_max_session_seconds: float = 3600,
                 request_log: Callable[[str], None] | None = None, sweeper_period_seconds: float | None = None,
                 template: Path = TEMPLATE, retry_jitter: Callable[[], float] = random.random,
                 clock: Callable[[], float] = time.monotonic) -> None:
        """`parameters` are checked against the template's constraints here (ParameterError), before anything
        starts. `sweeper_period_seconds` replaces the schedules' rate(...) (a minute is long for a test);
        `template` lets a test run another template (a function that fails on purpose); `retry_jitter` is the
        chance the state machines' FULL-jitter retries draw from (uniform in [0, 1)), and `clock` the gateway's
        throttles' (seconds), for tests that fix them."""
        # A Turnstile site key alone gets a placeholder secret (the rules want both): the stand-in fills it in.
        self._parameters = turnstile_standin.with_placeholder_secret(parameters or {})
        declared = load_template(template)
        validate(self._parameters, declared.get("Parameters", {}), declared.get("Rules", {}))
        self._host = host
        self._port, self._page_port = port, page_port
        self._openai_api_key = openai_api_key
        self._openai_base_url = openai_base_url
        self._env_overrides = dict(env_overrides or {})
        self._containers = containers
        self._standin_max_session = standin_max_session_seconds
        self._sweeper_period = sweeper_period_seconds
        self._template = template
        self._retry_jitter, self._clock = retry_jitter, clock
        self.request_log = request_log
        # How long the gateway waits on a silent client connection (idle keep-alive or a stalled body).
        self.client_timeout_seconds: float = 30
        self.workdir = Path(tempfile.mkdtemp(prefix="local-system-"))
        self.moto: ThreadedMotoServer | None = None
        # Explicit endpoint and credentials: whoever hosts the system (a test run) keeps its own environment.
        self.aws = boto3.Session(aws_access_key_id=AWS_ENV["AWS_ACCESS_KEY_ID"],
                                 aws_secret_access_key=AWS_ENV["AWS_SECRET_ACCESS_KEY"],
                                 aws_session_token=AWS_ENV["AWS_SESSION_TOKEN"], region_name=AWS_ENV["AWS_REGION"])
        self.standin: StandIn | None = None
        self.turnstile: TurnstileStandIn | None = None  # Cloudflare Turnstile's stand-in, with a TurnstileSiteKey
        self.stack: LocalStack | None = None
        self.pools: dict[str, FunctionPool] = {}  # logical id -> the function's containers
        self.function_envs: dict[str, dict[str, str]] = {}
        self.leash: LeashRunner | None = None
        self._listeners: list[Listener] = []
        self.api_url = self.page_url = self.moto_url = self.realtime_url = ""
        self.cors: Cors | None = None
        self.routes: list[Route] = []
        self.throttles: Throttles | None = None

    # --- life cycle -------------------------------------------------------------------------------------------

    def start(self) -> LocalSystem:
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        page_origins = self._bind()
        self._start_moto()
        self._parameters, self.turnstile = turnstile_standin.start_for(self._parameters, self.client("secretsmanager"))
        extra = self._parameters.get("AllowedOrigins", "none")
        origins = ",".join(page_origins + [o for o in extra.split(",") if o and o != "none"])
        # moto keeps its state per process, not per server: a unique name keeps two systems in one process apart.
        self.stack = provision(f"realtime-token-vend-{secrets.token_hex(3)}",
                               parameters={**self._parameters, "AllowedOrigins": origins}, session=self.aws,
                               endpoint_url=self.moto_url, template=self._template)
        self.cors = cors_of(self.stack)
        self.routes = routes_from_template(self.stack.resources, API_FUNCTION)
        base_url = self._start_openai()
        self._start_functions(base_url)
        self.leash = LeashRunner(self.client("stepfunctions"), list(self.stack.state_machines.values()),
                                 list(self.stack.schedules.values()), self._invoke_function,
                                 sweeper_period_seconds=self._sweeper_period, log=self._log,
                                 jitter=self._retry_jitter)
        self.leash.start()
        self.throttles = throttles_of(self.stack, self._clock)
        gateway = Gateway(self.routes, self.cors, self._invoke_api, domain=urlsplit(self.api_url).netloc,
                          throttles=self.throttles)
        api, *page = self._listeners
        # Now, and only now, connections are accepted.
        api.open(handler_class(api=gateway.handle, page=self._page, log=self._log,
                               client_timeout=lambda: self.client_timeout_seconds))
        for listener in page:
            listener.open(handler_class(api=None, page=self._page, log=self._log,
                                        client_timeout=lambda: self.client_timeout_seconds))

    def _bind(self) -> list[str]:
        """Take the ports (PortBusy at once if taken) and name the origins the page is served from."""
        api = Listener(self._host, self._port)
        self._listeners.append(api)
        self.api_url = f"http://{self._host}:{api.port}"
        origins = [f"http://{h}:{api.port}" for h in ("127.0.0.1", "localhost")]
        if self._page_port is None:
            self.page_url = f"http://localhost:{api.port}/"
            return origins
        page = Listener(self._host, self._page_port)
        self._listeners.append(page)
        self.page_url = f"http://localhost:{page.port}/"  # another host name too: a distinct origin
        return origins + [f"http://{h}:{page.port}" for h in ("127.0.0.1", "localhost")]

    def _start_moto(self) -> None:
        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        serialise_item_operations()  # DynamoDB's per-item atomicity, which moto alone lacks under concurrency
        self.moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self.moto.start()
        moto_host, moto_port = self.moto.get_host_and_port()
        self.moto_url = f"http://{moto_host}:{moto_port}"

    def _start_openai(self) -> str:
        """The stand-in (or the real OpenAI with a key given), its key in the stack's secret; its base URL."""
        assert self.stack is not None
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
        return base_url

    def _start_functions(self, openai_base_url: str) -> None:
        """Containers for each function something invokes: the API's, and the targets of state machines and
        schedules. All cold starts happen here, at once, not on a first request."""
        assert self.stack is not None
        for logical in _invoked_functions(self.stack):
            function = self.stack.lambdas[logical]
            env = {**AWS_ENV, **LAMBDA_ENV, "AWS_ENDPOINT_URL": self.moto_url, **function.env,
                   "OPENAI_BASE_URL": openai_base_url, **self._env_overrides}
            self.function_envs[logical] = env
            self.pools[logical] = FunctionPool(env, containers=self._containers, log_path=self.function_log,
                                               handler=function.handler, code_dir=function.code_dir, name=logical,
                                               memory_mb=function.memory_mb, timeout_s=function.timeout_s)
        cancelled = threading.Event()
        with ThreadPoolExecutor(max_workers=len(self.pools) or 1) as warming:
            try:
                list(warming.map(lambda pool: pool.warm(cancelled=cancelled), self.pools.values()))
            except BaseException:  # a signal, or a function that cannot start: no warm-up may hold the stop
                cancelled.set()
                raise

    def stop(self) -> None:
        for listener in self._listeners:
            listener.close()
        self._listeners.clear()
        if self.leash:
            self.leash.stop()
            self.leash = None
        with ThreadPoolExecutor(max_workers=len(self.pools) or 1) as closing:  # each close waits for its exits
            list(closing.map(FunctionPool.close, self.pools.values()))
        self.pools.clear()
        if self.standin:
            self.standin.stop()
            self.standin = None
        if self.turnstile:
            self.turnstile.stop()
            self.turnstile = None
        if self.moto:
            self.moto.stop()
            self.moto = None

    def __enter__(self) -> LocalSystem:
        return self.start()

    def __exit__(self, *_: Any) -> None:
        self.stop()

    # --- what tests and `make run` use ---------------------------------------------------------------------------

    def client(self, service: str) -> Any:
        """A boto3 client for this system's moto, e.g. to create API keys or flip the kill switch in a test."""
        return self.aws.client(service, endpoint_url=self.moto_url)

    @property
    def token_url(self) -> str:
        return f"{self.api_url}/token"

    @property
    def calls_url(self) -> str:
        return f"{self.api_url}/calls"

    @property
    def function_log(self) -> Path:
        """Every function's log lines (JSON), as CloudWatch would hold them."""
        return self.workdir / "function.log"

    @property
    def functions(self) -> FunctionPool | None:
        """The API function's containers."""
        return self.pools.get(API_FUNCTION)

    @property
    def function_env(self) -> dict[str, str]:
        """The API function's environment, as its containers have it."""
        return self.function_envs.get(API_FUNCTION, {})

    def config_json(self) -> bytes:
        return site.config_json(self.api_url)

    def content_security_policy(self) -> str:
        return site.content_security_policy(self._parameters)

    # --- wiring ---------------------------------------------------------------------------------------------------

    def _invoke_api(self, event: dict[str, Any]) -> Any:
        return self.pools[API_FUNCTION].invoke(event, timeout=API_TIMEOUT_SECONDS)

    def _invoke_function(self, name_or_arn: str, payload: Any) -> Any:
        assert self.stack is not None
        function = self.stack.lambda_for(name_or_arn)
        return self.pools[function.logical_id].invoke(payload, timeout=function.timeout_s)

    def _page(self, path: str) -> HttpResponse:
        return site.page_response(path, csp=self.content_security_policy(), config=self.config_json(),
                                  api_url=self.api_url,
                                  turnstile_script_url=site.turnstile_script_url(self._parameters))

    def _log(self, line: str) -> None:
        if self.request_log:
            self.request_log(line)


def _invoked_functions(stack: LocalStack) -> list[str]:
    """The API's function and every function a state machine task or a schedule invokes, in that order."""
    targets = [schedule.target_arn for schedule in stack.schedules.values()]
    for machine in stack.state_machines.values():
        targets += [state["Parameters"]["FunctionName"] for state in machine.definition["States"].values()
                    if state.get("Resource") == LAMBDA_INVOKE]
    logical = [API_FUNCTION] + [stack.lambda_for(target).logical_id for target in targets]
    return list(dict.fromkeys(logical))
