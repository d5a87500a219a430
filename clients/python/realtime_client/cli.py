"""`talk`: have our API set up a voice call (or fetch a token for the old path), say something, record the answer.

Progress goes to stderr, transcripts (or, with --events, every server event as JSON) to stdout.
Exit codes are part of the interface; see `ExitCode`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from collections.abc import Sequence
from enum import IntEnum
from pathlib import Path
from typing import Any

from realtime_client.audio import SAMPLE_RATE, MicrophoneTrack
from realtime_client.calls import CallSetup
from realtime_client.endings import in_words
from realtime_client.endpoints import Endpoint, resolve_endpoint
from realtime_client.errors import (
    AuthError,
    CallRefused,
    EndpointError,
    EndpointUnreachable,
    RateLimited,
    ServerError,
    SessionError,
    SignInRefused,
    UserTokenFailed,
)
from realtime_client.options import fetch_options_async
from realtime_client.session import RealtimeSession
from realtime_client.token import DEFAULT_TIMEOUT, fetch_token_async
from realtime_client.transcripts import TranscriptPrinter
from realtime_client.turns import TurnTracker
from realtime_client.user_token import command_token

API_KEY_ENV = "TALK_API_KEY"
READY_TIMEOUT = 10.0


class ExitCode(IntEnum):
    OK = 0
    USAGE = 2  # bad arguments, unreadable --wav, or --say on the live backend or on audio-only calls
    AUTH = 3  # 401 from our API (check --api-key / TALK_API_KEY), or the sign-in token refused or not given
    RATE_LIMITED = 4  # 429: the retry delay is printed
    SETUP_FAILED = 5  # any other failure of our API: 4xx, 5xx, unreachable, malformed answer
    TOKEN_ERROR = 5  # the old name of SETUP_FAILED
    CALL_REFUSED = 6  # OpenAI refused the SDP offer of the token path (expired or unknown token)
    NO_CONNECTION = 7  # WebRTC never came up, or no audio came back
    INTERRUPTED = 130


EPILOG = """exit codes:
  0  the assistant answered and its audio was received (also when the server then ended the call at its limit)
  2  usage error (bad arguments, unreadable --wav, --say on the live backend or on audio-only calls)
  3  our API refused the API key (401); or, with --user-token-command, API Gateway refused the token (401)
     or the command gave none
  4  rate limited or today's budget is spent (429); "(retry after N s)" is printed
  5  any other failure of our API (4xx such as a wrong URL, 5xx, unreachable, timeout, malformed answer)
  6  OpenAI refused the call of the --token-route path (e.g. the token expired)
  7  the WebRTC connection failed, or no audio came back
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="talk",
        description="Talk to OpenAI (Realtime or GPT-Live) through this stack's API.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--endpoint",
        required=True,
        help="the stack's ApiUrl (https://<id>.execute-api.<region>.amazonaws.com) or its /calls or /token URL",
    )
    parser.add_argument(
        "--token-route",
        action="store_true",
        help="fetch an ephemeral token from /token and call OpenAI with it (needs EnableTokenRoute=true); "
        "implied by a --endpoint ending in /token",
    )
    parser.add_argument("--api-key", help=f"API key of this stack's API (default: ${API_KEY_ENV})")
    parser.add_argument(
        "--user-token-command",
        metavar="COMMAND",
        help="call as a signed-in user (a stack deployed with JwtIssuer): COMMAND runs in a shell for each call "
        "and prints a fresh JWT, sent to /user/calls instead of an API key",
    )
    parser.add_argument("--voice", help="voice to ask for (see GET /options)")
    parser.add_argument("--preset", help="preset to ask for (see GET /options)")
    source = parser.add_mutually_exclusive_group()
    source.add_argument(
        "--say",
        metavar="TEXT",
        help="send TEXT as a user message (Realtime with its data channel only; the microphone stays silent)",
    )
    source.add_argument("--wav", type=Path, help="play this audio file as the microphone (any rate, channels)")
    parser.add_argument("--out", type=Path, help="write the assistant's audio here (WAV, 48 kHz mono 16-bit)")
    parser.add_argument("--seconds", type=float, default=30.0, help="hang up after this long at most (default 30)")
    parser.add_argument("--events", action="store_true", help="print every server event as a JSON line on stdout")
    parser.add_argument(
        "--timeout", type=float, default=DEFAULT_TIMEOUT, help=f"API request timeout (default {DEFAULT_TIMEOUT:g})"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits for --help (0) and bad usage (2); return it instead
        return int(exc.code or 0)
    problem = _check(args)
    if problem:
        parser.print_usage(sys.stderr)
        _progress(f"error: {problem}")
        return ExitCode.USAGE
    try:
        microphone = MicrophoneTrack.from_wav(args.wav) if args.wav else None
    except ValueError as exc:
        _progress(f"error: {exc}")
        return ExitCode.USAGE
    try:
        return asyncio.run(_talk(args, microphone))
    except KeyboardInterrupt:
        _progress("interrupted")
        return ExitCode.INTERRUPTED


def _check(args: argparse.Namespace) -> str | None:
    try:
        resolve_endpoint(args.endpoint)
    except ValueError:
        return "--endpoint must be an http(s) URL"
    if args.seconds <= 0:
        return "--seconds must be positive"
    if args.timeout <= 0:
        return "--timeout must be positive"
    if args.out is not None and not args.out.parent.is_dir():
        return f"--out: no such directory {args.out.parent}"
    if args.say is not None and not args.say.strip():
        return "--say needs some text"
    if args.user_token_command is not None:
        if not args.user_token_command.strip():
            return "--user-token-command needs a command"
        if args.token_route or resolve_endpoint(args.endpoint).route == "token":
            return "--user-token-command sets calls up on /user/calls; /token takes no sign-in token"
        if args.api_key:
            return "--user-token-command and --api-key: a signed-in user's call carries the JWT, not an API key"
    return None


async def _talk(args: argparse.Namespace, microphone: MicrophoneTrack | None) -> int:
    api_key = args.api_key or os.environ.get(API_KEY_ENV) or None
    endpoint = resolve_endpoint(args.endpoint)
    if args.token_route or endpoint.route == "token":
        return await _talk_with_token(args, endpoint, api_key, microphone)
    try:
        options = await fetch_options_async(endpoint.api_url, timeout=args.timeout)
    except EndpointError as exc:
        return _setup_failure(exc)
    if options.backend == "live" and args.say is not None:
        _progress(
            "error: this stack runs the live backend, which takes no text from a client (its allow-list lets a "
            "client only speak): use --wav instead of --say"
        )
        return ExitCode.USAGE
    if not options.data_channel and args.say is not None:
        _progress(
            "error: this stack's calls are audio only (no data channel, so no text can be sent): "
            "use --wav instead of --say"
        )
        return ExitCode.USAGE
    user = args.user_token_command
    setup = CallSetup(
        endpoint.api_url,
        api_key=None if user else api_key,
        user_token=command_token(user) if user else None,
        voice=args.voice,
        preset=args.preset,
        backend=options.backend,
        timeout=args.timeout,
        data_channel=options.data_channel,
    )
    audio_only = "" if options.data_channel else ", audio only"
    where = f"{endpoint.user_calls_url} as a signed-in user" if user else endpoint.calls_url
    _progress(f"setting up a call at {where} (backend {options.backend}{audio_only})")
    return await _call(args, RealtimeSession(setup, **_session_kwargs(args, microphone)))


async def _talk_with_token(
    args: argparse.Namespace, endpoint: Endpoint, api_key: str | None, microphone: MicrophoneTrack | None
) -> int:
    _progress(f"fetching token from {endpoint.token_url}")
    try:
        token = await fetch_token_async(
            endpoint.token_url, api_key=api_key, voice=args.voice, preset=args.preset, timeout=args.timeout
        )
    except EndpointError as exc:
        return _setup_failure(exc)
    _progress(
        f"token ok (model {token.model or '?'}, voice {token.voice or '?'}, preset {token.preset or '?'}, "
        f"expires in {max(0, round(token.expires_in()))} s)"
    )
    _progress(f"connecting to {token.realtime_url}")
    return await _call(args, RealtimeSession(token, **_session_kwargs(args, microphone)))


def _setup_failure(exc: EndpointError) -> int:
    if isinstance(exc, SignInRefused | UserTokenFailed):
        _progress(exc.message)
        return ExitCode.AUTH
    if isinstance(exc, AuthError):
        _progress(f"the API refused the API key: {exc.code}: {exc.message}")
        return ExitCode.AUTH
    if isinstance(exc, RateLimited):
        _progress(f"rate limited ({exc.code}): {exc.message} (retry after {exc.retry_after} s)")
        return ExitCode.RATE_LIMITED
    if isinstance(exc, EndpointUnreachable):
        _progress(f"the API is unreachable ({exc.code}): {exc.message}")
        return ExitCode.SETUP_FAILED
    retry = f" (retry after {exc.retry_after} s)" if isinstance(exc, ServerError) and exc.retry_after else ""
    _progress(f"the API request failed: HTTP {exc.status} {exc.code}: {exc.message}{retry}")
    return ExitCode.SETUP_FAILED


def _session_kwargs(args: argparse.Namespace, microphone: MicrophoneTrack | None) -> dict[str, Any]:
    return {"microphone": microphone, "record_to": args.out}


async def _call(args: argparse.Namespace, session: RealtimeSession) -> int:
    tracker = TurnTracker()
    printer = TranscriptPrinter(sys.stdout, stream=sys.stdout.isatty())

    def on_event(event: dict[str, Any]) -> None:
        tracker.feed(event)
        if args.events:
            sys.stdout.write(json.dumps(event, ensure_ascii=False) + "\n")
            sys.stdout.flush()
        else:
            printer.feed(event)
        if event.get("type") == "error":
            error = event.get("error") if isinstance(event.get("error"), dict) else {}
            _progress(f"server error: {error.get('code') or error.get('type')}: {error.get('message')}")

    session.on_event(on_event)
    try:
        await session.connect()
        _progress(f"connected (call {session.call_id or '?'})")
        if session.max_seconds is not None:
            _progress(f"call limit: {session.max_seconds} s")
        tracker.live = session.backend == "live"
        tracker.events = bool(session.data_channel)
        if not tracker.events:
            _progress("no transcripts or events: the call has no data channel")
        await _converse(args, session, tracker)
    except EndpointError as exc:
        return _setup_failure(exc)
    except CallRefused as exc:
        _progress(f"call refused: HTTP {exc.status}: {exc.message}")
        return ExitCode.CALL_REFUSED
    except SessionError as exc:
        _progress(f"connection failed: {exc}")
        return ExitCode.NO_CONNECTION
    finally:
        await session.close()
        printer.close()
    if session.usage_seconds is not None:
        _progress(f"GPT-Live usage: {session.usage_seconds:.1f} s ({session.usage_seconds / 60:.2f} min)")
    if session.hangup is not None and session.hangup.credited_seconds:
        _progress(f"hung up; {session.hangup.credited_seconds} s of the call limit given back")
    return _summary(args, session)


async def _converse(args: argparse.Namespace, session: RealtimeSession, tracker: TurnTracker) -> None:
    deadline = time.monotonic() + args.seconds
    try:
        # Realtime's first event comes before it accepts ours; GPT-Live and audio-only calls are ready once connected.
        await session.wait_ready(timeout=min(READY_TIMEOUT, args.seconds))
    except TimeoutError:
        _progress("no session.created yet; carrying on")
    if args.say is not None:
        session.send_text(args.say)
        _progress("sent text")
    elif args.wav is not None:
        _progress(f"playing {args.wav} ({session.microphone.duration:.1f} s)")
    audio_announced = False
    has_input = args.say is not None or args.wav is not None
    while time.monotonic() < deadline:
        recorder = session.recorder
        if not audio_announced and recorder.audible:
            _progress("receiving audio")
            audio_announced = True
        # With no input at all there is nothing to answer: run until --seconds.
        tracker.input_finished = has_input and session.microphone.finished.is_set()
        heard = recorder.audible or not tracker.needs_audio
        if tracker.done and heard and recorder.quiet_for() >= tracker.quiet_seconds:
            return
        if session.ended.is_set() or not session.connected:
            # Whether that is a failure depends on whether the answer already came: `_summary` decides.
            _progress(f"the call ended: {in_words(session.end_reason or 'connection_lost')}")
            return
        await asyncio.sleep(0.05)
    _progress(f"{args.seconds:g} s elapsed")


def _summary(args: argparse.Namespace, session: RealtimeSession) -> int:
    recorder = session.recorder
    if not recorder.audible:
        _progress("done, but no audio came back")
        return ExitCode.NO_CONNECTION
    where = f" written to {args.out}" if args.out else ""
    _progress(f"done ({recorder.seconds_written:.1f} s of audio{where}, {SAMPLE_RATE} Hz mono 16-bit)")
    return ExitCode.OK


def _progress(message: str) -> None:
    print(f"talk: {message}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(main())
