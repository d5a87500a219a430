"""A local Cloudflare Turnstile, as strict as the real one, for `make run` and tests: nothing reaches Cloudflare.

- `POST /turnstile/v0/siteverify` (form-encoded or JSON): the secret it was started with, tokens it minted, each
  bound to the hostname of the page its widget ran on and to the widget's action, alive for 300 s and good for one
  verification (a repeat with the same `idempotency_key` gets the first answer again, as Cloudflare's does). Error
  codes and answer fields are Cloudflare's.
- `GET /turnstile/v0/api.js`: the widget script, `window.turnstile` with render/reset/remove/getResponse/isExpired,
  explicit or implicit (`.cf-turnstile`) rendering and `?onload=`. Like the real one, each widget is an iframe from
  this server's own origin (`GET /turnstile/v0/widget`): the iframe has its token minted here, bound to the parent
  page's hostname, and posts it to the parent page, whose widget then calls `callback(token)`. A sitekey it does not
  know gets the widget's error instead (Cloudflare's 110100).

Tests drive it in-process: `mint()` a token, inject the clock, and aim faults at the next verifications (a delay,
a 5xx, a body that is not JSON, a refusal).
"""

from __future__ import annotations

import json
import os
import re
import secrets
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from botocore.exceptions import ClientError

CLOUDFLARE_VERIFY_URL = "https://challenges.cloudflare.com/turnstile/v0/siteverify"
VERIFY_PATH = "/turnstile/v0/siteverify"
SCRIPT_PATH = "/turnstile/v0/api.js"
WIDGET_PATH = "/turnstile/v0/widget"
DEFAULT_SITE_KEY = "0x4AAAAAAAlocalstandin"
DEFAULT_SECRET = "0x4AAAAAAAlocal-standin-secret"  # noqa: S105 - not a real key: the stand-in's own, for local runs
TOKEN_LIFETIME_SECONDS = 300
MAX_TOKEN_CHARS = 2048
MAX_BODY_BYTES = 64 * 1024
INVALID_SITEKEY = "110100"  # Cloudflare's client-side error code for a sitekey it does not know
WIDGET_FAILED = "300030"  # a generic client-side challenge failure
# What Cloudflare takes as an action or cData; anything else is the widget's error, never a token.
_ACTION = re.compile(r"[A-Za-z0-9_-]{0,32}")
_CDATA = re.compile(r"[A-Za-z0-9_-]{0,255}")
_JS_NAME = re.compile(r"[A-Za-z_$][A-Za-z0-9_$]*")


@dataclass
class _Token:
    hostname: str
    action: str
    cdata: str
    issued_at: float
    spent_by: str | None = None  # the idempotency key of the verification that spent it ("" when none was sent)
    answer: dict[str, Any] | None = None  # what that verification was told


@dataclass(frozen=True)
class Verification:
    """One request to siteverify, as received, and what it was answered."""

    token: str
    remoteip: str
    idempotency_key: str
    content_type: str
    status: int
    answer: dict[str, Any] | None  # None: a fault answered with something that is not JSON


@dataclass(frozen=True)
class WidgetLoad:
    sitekey: str
    parent_origin: str
    action: str
    token: str | None  # None: the widget showed an error


@dataclass
class _Fault:
    delay_seconds: float = 0.0  # then answered normally: Cloudflare was slow but spent the token all the same
    status: int | None = None  # answer this status with Cloudflare's internal-error body instead
    garbled: bool = False  # answer 200 with a body that is not JSON
    codes: tuple[str, ...] = ()  # answer success false with these error codes


@dataclass
class _Faults:
    verify: deque[_Fault] = field(default_factory=deque)
    widget: deque[str] = field(default_factory=deque)  # error codes the next widget loads show


class TurnstileStandIn:
    def __init__(self, *, secret: str = DEFAULT_SECRET, site_key: str = DEFAULT_SITE_KEY,
                 clock: Callable[[], float] = time.time, host: str = "127.0.0.1", port: int = 0) -> None:
        """`clock`: epoch seconds, for tokens' lifetimes and their challenge_ts."""
        self.secret = secret
        self.site_key = site_key
        self.clock = clock
        self.verifications: list[Verification] = []
        self.widget_loads: list[WidgetLoad] = []
        self._tokens: dict[str, _Token] = {}
        self._faults = _Faults()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._host, self._port = host, port
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # --- life cycle --------------------------------------------------------------------------------------------

    def start(self) -> TurnstileStandIn:
        self._stopping.clear()
        server = ThreadingHTTPServer((self._host, self._port), _handler(self))
        server.daemon_threads = True
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, args=(0.1,), name="turnstile-standin",
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()  # cuts a delayed answer short
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> TurnstileStandIn:
        return self.start()

    def __exit__(self, *_: Any) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """The origin: the page's CSP names it, as it names https://challenges.cloudflare.com when deployed."""
        assert self._server is not None, "not started"
        return f"http://{self._host}:{self._server.server_address[1]}"

    @property
    def verify_url(self) -> str:
        return self.url + VERIFY_PATH

    @property
    def script_url(self) -> str:
        return self.url + SCRIPT_PATH

    # --- what tests use ---------------------------------------------------------------------------------------

    def mint(self, hostname: str, action: str = "call", cdata: str = "") -> str:
        """A token as the widget gets it, solved now on a page at `hostname`."""
        token = f"0.standin.{secrets.token_urlsafe(96)}"
        with self._lock:
            self._tokens[token] = _Token(hostname, action, cdata, self.clock())
        return token

    def delay_next_verify(self, seconds: float, times: int = 1) -> None:
        self._add_faults(times, _Fault(delay_seconds=seconds))

    def fail_next_verify(self, status: int = 500, times: int = 1) -> None:
        self._add_faults(times, _Fault(status=status))

    def garble_next_verify(self, times: int = 1) -> None:
        self._add_faults(times, _Fault(garbled=True))

    def refuse_next_verify(self, *codes: str, times: int = 1) -> None:
        """Cloudflare saying no to the next verification(s), whatever the token, e.g. "invalid-input-response"."""
        self._add_faults(times, _Fault(codes=codes or ("invalid-input-response",)))

    def fail_next_widget(self, code: str = WIDGET_FAILED, times: int = 1) -> None:
        """The next widget load(s) show an error (the page's error-callback gets `code`), minting nothing."""
        with self._lock:
            self._faults.widget.extend([code] * times)

    def reset(self) -> None:
        with self._lock:
            self._faults = _Faults()
            self.verifications.clear()
            self.widget_loads.clear()
            self._tokens.clear()

    def _add_faults(self, times: int, fault: _Fault) -> None:
        with self._lock:
            self._faults.verify.extend([fault] * times)

    # --- siteverify --------------------------------------------------------------------------------------------

    def siteverify(self, content_type: str, body: bytes) -> tuple[int, bytes]:
        """The answer to one POST: status and body."""
        fields = _fields(content_type, body)
        with self._lock:
            fault = self._faults.verify.popleft() if self._faults.verify else None
        token = str(fields.get("response", "")) if fields else ""
        remoteip = str(fields.get("remoteip", "")) if fields else ""
        key = str(fields.get("idempotency_key", "")) if fields else ""
        if fault is not None and fault.delay_seconds and self._stopping.wait(fault.delay_seconds):
            return 503, b""
        if fault is not None and (fault.status or fault.garbled):
            status, raw = (fault.status, json.dumps(_refusal("internal-error")).encode()) if fault.status \
                else (200, b"<html><body>Bad gateway, or so</body></html>")
            self._record(Verification(token, remoteip, key, content_type, status, None))
            return status, raw
        if fault is not None and fault.codes:
            status, answer = 200, _refusal(*fault.codes)
        else:
            status, answer = self._answer(fields)
        self._record(Verification(token, remoteip, key, content_type, status, answer))
        return status, json.dumps(answer).encode()

    def _answer(self, fields: dict[str, Any] | None) -> tuple[int, dict[str, Any]]:
        if fields is None:
            return 400, _refusal("bad-request")
        secret, token, key = fields.get("secret"), fields.get("response"), fields.get("idempotency_key")
        if not secret:
            return 200, _refusal("missing-input-secret")
        if secret != self.secret:
            return 200, _refusal("invalid-input-secret")
        if not token:
            return 200, _refusal("missing-input-response")
        if key is not None and not _is_uuid(key):
            return 400, _refusal("bad-request")
        if not isinstance(token, str) or len(token) > MAX_TOKEN_CHARS:
            return 200, _refusal("invalid-input-response")
        with self._lock:
            minted = self._tokens.get(token)
            if minted is None:
                return 200, _refusal("invalid-input-response")
            if minted.spent_by is not None:
                # The same verification sent again (its idempotency key) is answered alike; any other is a replay.
                if key and minted.spent_by == key and minted.answer is not None:
                    return 200, minted.answer
                return 200, _refusal("timeout-or-duplicate")
            minted.spent_by = key or ""
            if self.clock() - minted.issued_at > TOKEN_LIFETIME_SECONDS:
                minted.answer = _refusal("timeout-or-duplicate")
            else:
                minted.answer = {"success": True, "error-codes": [], "challenge_ts": _iso(minted.issued_at),
                                 "hostname": minted.hostname, "action": minted.action, "cdata": minted.cdata,
                                 "metadata": {"ephemeral_id": f"x:{secrets.token_hex(10)}"}}
            return 200, minted.answer

    def _record(self, verification: Verification) -> None:
        with self._lock:
            self.verifications.append(verification)

    # --- the widget ----------------------------------------------------------------------------------------------

    def script(self, query: Mapping[str, list[str]]) -> tuple[int, bytes]:
        onload = (query.get("onload") or [""])[0]
        if onload and not _JS_NAME.fullmatch(onload):
            return 400, b"// onload must name a function"
        explicit = (query.get("render") or [""])[0] == "explicit"
        source = (_SCRIPT.replace("__ORIGIN__", _js(self.url)).replace("__ONLOAD__", _js(onload))
                  .replace("__EXPLICIT__", _js(explicit))
                  .replace("__LIFETIME_MS__", str(TOKEN_LIFETIME_SECONDS * 1000)))
        return 200, source.encode()

    def widget(self, query: Mapping[str, list[str]]) -> tuple[int, bytes]:
        def one(name: str) -> str:
            return (query.get(name) or [""])[0]

        sitekey, parent, action, cdata, widget_id = (one("sitekey"), one("parent_origin"), one("action"),
                                                     one("cdata"), one("widget"))
        parts = urlsplit(parent)
        if parts.scheme not in ("http", "https") or not parts.hostname or parent != f"{parts.scheme}://{parts.netloc}":
            return 400, b"parent_origin: the origin of the page the widget is on"
        with self._lock:
            fault = self._faults.widget.popleft() if self._faults.widget else None
        if sitekey != self.site_key:
            error: str | None = INVALID_SITEKEY
        elif not _ACTION.fullmatch(action) or not _CDATA.fullmatch(cdata):
            error = WIDGET_FAILED
        else:
            error = fault
        token = None if error else self.mint(parts.hostname, action, cdata)
        with self._lock:
            self.widget_loads.append(WidgetLoad(sitekey, parent, action, token))
        message = {"source": "turnstile-standin", "widget": widget_id,
                   **({"event": "error", "code": error} if error else {"event": "complete", "token": token})}
        shown = f"Error {error}" if error else "Success!"
        page = (_WIDGET.replace("__SHOWN__", shown).replace("__MESSAGE__", _js(message))
                .replace("__PARENT__", _js(parent)))
        return 200, page.encode()


def _handler(standin: TurnstileStandIn) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "turnstile-standin"
        timeout = 10  # an idle keep-alive connection lets its thread go

        def log_message(self, format: str, *args: Any) -> None:
            return

        def do_POST(self) -> None:
            path = self.path.partition("?")[0]
            length = int(self.headers.get("content-length") or 0)
            if length > MAX_BODY_BYTES:
                self.close_connection = True
                self._send(413, "application/json", json.dumps(_refusal("bad-request")).encode())
                return
            body = self.rfile.read(length) if length else b""
            if path != VERIFY_PATH:
                self._send(404, "text/plain", b"not found")
                return
            status, answer = standin.siteverify(self.headers.get("content-type") or "", body)
            self._send(status, "application/json" if answer[:1] == b"{" else "text/html", answer)

        def do_GET(self) -> None:
            path, _, raw_query = self.path.partition("?")
            query = parse_qs(raw_query)
            if path == SCRIPT_PATH:
                self._send(*_with_type(standin.script(query), "text/javascript; charset=utf-8"))
            elif path == WIDGET_PATH:
                status, page = standin.widget(query)
                self._send(status, "text/html; charset=utf-8" if status == 200 else "text/plain", page)
            elif path == VERIFY_PATH:
                self._send(405, "application/json", json.dumps(_refusal("bad-request")).encode())
            else:
                self._send(404, "text/plain", b"not found")

        def _send(self, status: int, content_type: str, body: bytes) -> None:
            try:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(body)
            except ConnectionError:  # the client gave up (a verify it timed out): nothing to tell it
                self.close_connection = True

    return Handler


def _with_type(answer: tuple[int, bytes], content_type: str) -> tuple[int, str, bytes]:
    return answer[0], content_type, answer[1]


def _fields(content_type: str, body: bytes) -> dict[str, Any] | None:
    """Cloudflare takes a form or JSON; None for anything else, or a body that is neither."""
    kind = content_type.split(";", 1)[0].strip().lower()
    try:
        if kind == "application/json":
            fields = json.loads(body)
            return fields if isinstance(fields, dict) else None
        if kind == "application/x-www-form-urlencoded":
            return {k: v[0] for k, v in parse_qs(body.decode(), keep_blank_values=True).items()}
    except (ValueError, UnicodeDecodeError):
        return None
    return None


def _refusal(*codes: str) -> dict[str, Any]:
    return {"success": False, "error-codes": list(codes), "messages": []}


def _is_uuid(value: Any) -> bool:
    try:
        uuid.UUID(str(value))
    except ValueError:
        return False
    return True


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _js(value: Any) -> str:
    """A JSON literal safe inside a <script> element."""
    return json.dumps(value).replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


# The widget as the parent page sees it. Sizes through the CSSOM and attributes, never a style attribute: the page's
# CSP (style-src 'self') would refuse one, as it would the real widget's.
_SCRIPT = """\
(() => {
  'use strict';
  if (window.turnstile) return;
  const ORIGIN = __ORIGIN__;
  const ONLOAD = __ONLOAD__;
  const EXPLICIT = __EXPLICIT__;
  const LIFETIME_MS = __LIFETIME_MS__;
  const widgets = new Map();
  let count = 0;
  let loads = 0;

  function call(fn, ...args) {
    const f = typeof fn === 'string' ? window[fn] : fn;
    if (typeof f === 'function') f(...args);
    return typeof f === 'function';
  }

  function element(container) {
    const found = typeof container === 'string' ? document.querySelector(container) : container;
    if (!(found instanceof Element)) {
      throw new Error('[Cloudflare Turnstile] Invalid or missing type for parameter "container".');
    }
    return found;
  }

  function load(widget) {
    clearTimeout(widget.timer);
    widget.token = undefined;
    widget.expired = false;
    const url = new URL('/turnstile/v0/widget', ORIGIN);
    url.searchParams.set('sitekey', widget.options.sitekey);
    url.searchParams.set('action', widget.options.action ?? '');
    url.searchParams.set('cdata', widget.options.cData ?? '');
    url.searchParams.set('parent_origin', location.origin);
    url.searchParams.set('widget', widget.id);
    url.searchParams.set('load', String(++loads));
    widget.iframe.src = url.href;
  }

  function find(id) {
    if (id === undefined) return widgets.values().next().value;
    if (id instanceof Element) return [...widgets.values()].find((w) => id.contains(w.iframe));
    if (widgets.has(id)) return widgets.get(id);
    try {
      return [...widgets.values()].find((w) => w.container.matches(id));
    } catch {
      return undefined; // neither a widget id nor a selector
    }
  }

  function render(container, options = {}) {
    const into = element(container);
    if (typeof options.sitekey !== 'string' || !options.sitekey) {
      throw new Error('[Cloudflare Turnstile] Invalid or missing type for parameter "sitekey".');
    }
    const id = `cf-chl-widget-${(++count).toString(36)}`;
    const iframe = document.createElement('iframe');
    iframe.id = id;
    iframe.title = 'Widget containing a Cloudflare security challenge';
    iframe.width = options.size === 'compact' ? '150' : '300';
    iframe.height = options.size === 'compact' ? '140' : '65';
    iframe.style.border = 'none';
    iframe.style.overflow = 'hidden';
    const widget = { id, iframe, container: into, options, token: undefined, expired: false, timer: 0 };
    widgets.set(id, widget);
    load(widget);
    into.appendChild(iframe);
    return id;
  }

  window.addEventListener('message', (event) => {
    if (event.origin !== ORIGIN || event.data?.source !== 'turnstile-standin') return;
    const widget = widgets.get(event.data.widget);
    if (!widget || event.source !== widget.iframe.contentWindow) return;
    if (event.data.event === 'complete') {
      widget.token = event.data.token;
      widget.timer = setTimeout(() => {
        widget.token = undefined;
        widget.expired = true;
        call(widget.options['expired-callback'], event.data.token);
        if (widget.options['refresh-expired'] !== 'manual') load(widget);
      }, LIFETIME_MS);
      call(widget.options.callback, event.data.token);
    } else if (event.data.event === 'error') {
      if (!call(widget.options['error-callback'], event.data.code)) {
        throw new Error(`[Cloudflare Turnstile] Error: ${event.data.code}.`);
      }
    }
  });

  window.turnstile = {
    render,
    reset(id) {
      const widget = find(id);
      if (widget) load(widget);
    },
    remove(id) {
      const widget = find(id);
      if (!widget) return;
      clearTimeout(widget.timer);
      widget.iframe.remove();
      widgets.delete(widget.id);
    },
    getResponse(id) {
      return find(id)?.token;
    },
    isExpired(id) {
      return Boolean(find(id)?.expired);
    },
    ready(callback) {
      callback();
    },
  };

  function start() {
    if (!EXPLICIT) {
      for (const el of document.querySelectorAll('.cf-turnstile')) {
        render(el, { sitekey: el.dataset.sitekey, action: el.dataset.action, cData: el.dataset.cdata,
          callback: el.dataset.callback, 'error-callback': el.dataset.errorCallback,
          'expired-callback': el.dataset.expiredCallback });
      }
    }
    if (ONLOAD && !call(ONLOAD)) throw new Error(`[Cloudflare Turnstile] Unable to find onload callback '${ONLOAD}'.`);
  }

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', start);
  else setTimeout(start, 0);
})();
"""

_WIDGET = """\
<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>Turnstile stand-in</title></head>
<body>
<p>__SHOWN__ <small>(local Turnstile stand-in)</small></p>
<script>parent.postMessage(__MESSAGE__, __PARENT__);</script>
</body>
</html>
"""


# --- the local system -------------------------------------------------------------------------------------------

# Cloudflare's documented dummy secret key that always passes: what a verify service of one's own likely knows.
CLOUDFLARE_TEST_SECRET = "1x0000000000000000000000000000000AA"  # noqa: S105 - public test value, no real key
# Satisfies the template's rule that a site key comes with a secret before the stand-in has made one (start_for
# replaces it with the secret it makes).
PLACEHOLDER_SECRET_ARN = "arn:aws:secretsmanager:us-east-1:123456789012:secret:turnstile-standin"  # noqa: S105


def plays_cloudflare(parameters: Mapping[str, str]) -> bool:
    """Whether the local system runs a stand-in for these parameters: a site key, and Cloudflare's verify URL."""
    return bool((parameters.get("TurnstileSiteKey") or "").strip()) \
        and (parameters.get("TurnstileVerifyUrl") or CLOUDFLARE_VERIFY_URL) == CLOUDFLARE_VERIFY_URL


def with_placeholder_secret(parameters: Mapping[str, str]) -> dict[str, str]:
    """`parameters` as the template's rules take them before anything runs: a site key alone gets a placeholder
    secret ARN, which start_for then replaces."""
    if (parameters.get("TurnstileSiteKey") or "").strip() and not parameters.get("TurnstileSecretArn"):
        return {**parameters, "TurnstileSecretArn": PLACEHOLDER_SECRET_ARN}
    return dict(parameters)


def start_for(parameters: dict[str, str], secretsmanager_client: Any) -> tuple[dict[str, str], TurnstileStandIn | None]:
    """With a site key and Cloudflare's verify URL: a stand-in started for that site key, and the parameters pointing
    the function at it. Its secret is the value of the secret TurnstileSecretArn names when that exists (in the moto
    the client points at); otherwise a new secret holds the stand-in's own. Without a site key, or with a verify URL
    of one's own: no stand-in, and a secret where TurnstileSecretArn names none in this moto (`TURNSTILE_SECRET` from
    the environment, else Cloudflare's documented test secret that always passes), so that a verify service of one's
    own is asked with a secret it can know."""
    if not plays_cloudflare(parameters):
        if not (parameters.get("TurnstileSiteKey") or "").strip():
            return dict(parameters), None
        arn = parameters.get("TurnstileSecretArn") or ""
        if _secret_value(secretsmanager_client, arn) is None:
            value = os.environ.get("TURNSTILE_SECRET") or CLOUDFLARE_TEST_SECRET
            arn = secretsmanager_client.create_secret(Name=f"turnstile-secret-{secrets.token_hex(4)}",
                                                      SecretString=value)["ARN"]
        return {**parameters, "TurnstileSecretArn": arn}, None
    arn = parameters.get("TurnstileSecretArn") or ""
    existing = _secret_value(secretsmanager_client, arn) if arn else None
    standin = TurnstileStandIn(site_key=parameters["TurnstileSiteKey"].strip(),
                               secret=existing if existing is not None else DEFAULT_SECRET).start()
    try:
        if existing is None:
            arn = secretsmanager_client.create_secret(Name=f"turnstile-standin-{secrets.token_hex(4)}",
                                                      SecretString=standin.secret)["ARN"]
    except BaseException:
        standin.stop()
        raise
    return {**parameters, "TurnstileVerifyUrl": standin.verify_url, "TurnstileSecretArn": arn}, standin


def _secret_value(client: Any, arn: str) -> str | None:
    try:
        value = client.get_secret_value(SecretId=arn)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == "ResourceNotFoundException":
            return None
        raise
    return str(value.get("SecretString") or "")
