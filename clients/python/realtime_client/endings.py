"""Why a call ended, in the words of GPT-Live's `session.closed.reason`, and in plain words for people.

A client of this stack is told no reason: Realtime has no terminal event, GPT-Live's `session.closed` is kept from
the client (it carries the owner's instructions), and an audio-only call has no events at all. The peer connection
just closes, and the reason is inferred from how (closed cleanly or failed) and when (at the call's limit or
before it); a hangup of the client's own is `close_requested`.
"""

from __future__ import annotations

EXPIRED = "expired"
CLOSE_REQUESTED = "close_requested"
CONNECTION_LOST = "connection_lost"
REMOTE_HANGUP = "remote_hangup"
CONTENT = "content"

_WORDS = {
    EXPIRED: "the time limit was reached",
    CLOSE_REQUESTED: "hung up",
    CONNECTION_LOST: "the connection was lost",
    REMOTE_HANGUP: "the other side hung up",
    CONTENT: "OpenAI's content filter ended it",
}
# The server hangs up at the limit, give or take its scheduling; a close this near the limit is the limit.
LIMIT_SLACK_SECONDS = 2.0


def in_words(reason: str) -> str:
    return _WORDS.get(reason, f"ended ({reason})")


def at_limit(elapsed: float, max_seconds: int | None) -> bool:
    return max_seconds is not None and elapsed >= max_seconds - LIMIT_SLACK_SECONDS


def live_reason(reason: str, *, elapsed: float, max_seconds: int | None) -> str:
    """GPT-Live's own reason, except that our server's hangup at the call's limit is the limit.

    The leash ends a Live session with a hangup, which Live reports as `close_requested`; for the person on the
    call that was the time limit, not someone hanging up.
    """
    if reason == CLOSE_REQUESTED and at_limit(elapsed, max_seconds):
        return EXPIRED
    return reason


def infer_reason(*, connection_state: str, elapsed: float, max_seconds: int | None) -> str:
    """The `session.closed.reason` the server would have given, for a peer connection it (or the network) ended.

    `elapsed` runs from the moment the call was set up, on the client's monotonic clock, so a skewed wall
    clock cannot turn a limit into a hangup.
    """
    if connection_state == "failed":
        return CONNECTION_LOST
    if at_limit(elapsed, max_seconds):
        return EXPIRED
    return REMOTE_HANGUP
