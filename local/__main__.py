"""`python -m local` (what `make run` runs): the whole system on this machine until a signal stops it.

PORT picks the port (default 8000), PARAMETER_OVERRIDES the stack parameters as for
`sam deploy --parameter-overrides` ("MaxCallSeconds=20 DailyCallMinutes=2"), OPENAI_API_KEY and OPENAI_BASE_URL
the real OpenAI instead of the stand-in.
Exit codes: 0 stopped, 1 the port is busy, 2 PORT or a stack parameter is refused (by the template's constraints,
or by a function that cannot start with it).
"""

from __future__ import annotations

import os
import sys
import threading
import time

from local.functions import FunctionStartError
from local.listener import PortBusy
from local.parameters import ParameterError, parse_overrides
from local.supervision import stop_on_signals
from local.system import AWS_ENV, LocalSystem


def main() -> int:
    stop_on_signals()  # first: a signal during start-up stops it as cleanly as one later
    key = os.environ.get("OPENAI_API_KEY") or None

    def log(line: str) -> None:
        print(line, flush=True)

    port = os.environ.get("PORT", "8000")
    if not port.isdigit():
        print(f"error: PORT={port!r} is not a port number", file=sys.stderr)
        return 2
    try:
        system = LocalSystem(port=int(port), openai_api_key=key, openai_base_url=os.environ.get("OPENAI_BASE_URL"),
                             request_log=log, parameters=parse_overrides(os.environ.get("PARAMETER_OVERRIDES", "")))
    except ParameterError as exc:
        print(f"error: stack parameter {exc}", file=sys.stderr)
        return 2
    print("Starting the local system ...", flush=True)
    started = time.perf_counter()
    try:
        system.start()
    except PortBusy as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except FunctionStartError as exc:  # start() has stopped what it had started
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # start() has stopped what it had started
        print("Stopped.", flush=True)
        return 0
    try:
        _banner(system, key, time.perf_counter() - started)
        threading.Event().wait()
    except KeyboardInterrupt:
        print("\nStopping ...", flush=True)
    finally:
        system.stop()
    print("Stopped.", flush=True)
    return 0


def _banner(system: LocalSystem, key: str | None, seconds: float) -> None:
    assert system.stack is not None
    standin_url = system.standin.base_url if system.standin else "?"
    openai = ("the real OpenAI (OPENAI_API_KEY is set)" if key
              else f"the local OpenAI stand-in (Realtime and GPT-Live) at {standin_url}")
    leash = ", ".join([f"state machine {logical}" for logical in system.stack.state_machines]
                      + [f"schedule {s.logical_id} {s.expression}" for s in system.stack.schedules.values()])
    print(f"""
  AWS (moto)       {system.moto_url}   table {system.stack.table_name}, secrets from template.yaml
  OpenAI           {openai}
  API              {system.api_url}   (POST /calls, GET /options, /health, /openapi.json)
  Leash            {leash or "none in the template"}{_optional_lines(system)}
  Function logs    {system.function_log}
  Started in {seconds:.1f} s.

  Open {system.page_url} and click Talk.   Ctrl-C stops everything.
""", flush=True)


def _optional_lines(system: LocalSystem) -> str:
    """The signed-in users' route and the human check, where the parameters switch them on."""
    lines = []
    if any(route.path == "/user/calls" for route in system.routes):
        lines.append("  Signed-in users  POST /user/calls behind the JWT authorizer (JwtIssuer, JwtAudience)")
    if system.turnstile is not None:
        lines.append(f"  Turnstile        Cloudflare's stand-in at {system.turnstile.url} (widget and siteverify)")
    salt = system.stack.physical_ids.get("HashSaltSecret") if system.stack else None
    if salt:
        names = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION")
        aws = " ".join(f"{name}={AWS_ENV[name]}" for name in names)
        lines.append(f"  Admin            {aws} AWS_ENDPOINT_URL={system.moto_url} "
                     f"TABLE_NAME={system.stack.table_name} HASH_SALT_SECRET_ARN={salt} "
                     "PYTHONPATH=functions/token .venv/bin/python -m tokenvend.admin usage")
    return "".join("\n" + line for line in lines)


if __name__ == "__main__":
    sys.exit(main())
