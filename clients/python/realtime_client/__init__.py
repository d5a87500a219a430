"""Python client for this stack's API: have it set up a voice call (`/calls`) and talk over WebRTC.

The old path (an ephemeral token from `/token`, then the call straight to OpenAI) works too.
"""

from realtime_client.audio import AudioRecorder, MicrophoneTrack, load_wav
from realtime_client.calls import Call, CallSetup, HangupResult, create_call, hang_up_call
from realtime_client.endings import in_words
from realtime_client.endpoints import Endpoint, resolve_endpoint
from realtime_client.errors import (
    AuthError,
    CallRefused,
    ClientError,
    ConnectionFailed,
    EndpointError,
    EndpointNotFound,
    EndpointUnreachable,
    InvalidResponse,
    RateLimited,
    ServerError,
    SessionError,
    SignInRefused,
    TokenError,
    UserTokenFailed,
)
from realtime_client.http_answers import RateLimit
from realtime_client.options import Options, fetch_options, fetch_options_async
from realtime_client.session import RealtimeSession
from realtime_client.token import Token, fetch_token, fetch_token_async
from realtime_client.user_token import UserToken, command_token

__version__ = "0.2.0"

__all__ = [
    "AudioRecorder",
    "AuthError",
    "Call",
    "CallRefused",
    "CallSetup",
    "ClientError",
    "ConnectionFailed",
    "Endpoint",
    "EndpointError",
    "EndpointNotFound",
    "EndpointUnreachable",
    "HangupResult",
    "InvalidResponse",
    "MicrophoneTrack",
    "Options",
    "RateLimit",
    "RateLimited",
    "RealtimeSession",
    "ServerError",
    "SessionError",
    "SignInRefused",
    "Token",
    "TokenError",
    "UserToken",
    "UserTokenFailed",
    "command_token",
    "create_call",
    "fetch_options",
    "fetch_options_async",
    "fetch_token",
    "fetch_token_async",
    "hang_up_call",
    "in_words",
    "load_wav",
    "resolve_endpoint",
]
