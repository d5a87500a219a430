"""Python client for the token-vending endpoint: fetch an ephemeral token, then talk to OpenAI Realtime."""

from realtime_client.audio import AudioRecorder, MicrophoneTrack, load_wav
from realtime_client.errors import (
    AuthError,
    CallRefused,
    ClientError,
    ConnectionFailed,
    EndpointUnreachable,
    InvalidResponse,
    RateLimited,
    ServerError,
    SessionError,
    TokenError,
)
from realtime_client.session import RealtimeSession
from realtime_client.token import RateLimit, Token, fetch_token, fetch_token_async

__version__ = "0.1.0"

__all__ = [
    "AudioRecorder",
    "AuthError",
    "CallRefused",
    "ClientError",
    "ConnectionFailed",
    "EndpointUnreachable",
    "InvalidResponse",
    "MicrophoneTrack",
    "RateLimit",
    "RateLimited",
    "RealtimeSession",
    "ServerError",
    "SessionError",
    "Token",
    "TokenError",
    "fetch_token",
    "fetch_token_async",
    "load_wav",
]
