"""The record of every call and Live session the stand-in answered, readable from any thread.

The peer connections themselves live on the stand-in's event loop; tests (in the same process or, over the control
API, in another) only need to see what happened: when a call began and ended, why, and what went over `oai-events`.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any, Literal

Kind = Literal["realtime", "live"]

# Why a call ended. "hangup": POST .../hangup; "client_close": an allowed Live `session.close` from the browser;
# "sideband_close": `session.close` on a Live session's sideband; "expired": the maximum duration;
# "connection_lost": the peer went away; "never_connected": ICE/DTLS never completed; "shutdown": the stand-in
# stopped.
EndReason = Literal["hangup", "client_close", "sideband_close", "expired", "connection_lost", "never_connected",
                    "shutdown"]


@dataclass
class CallRecord:
    call_id: str
    kind: Kind
    session: dict[str, Any]  # the effective session the call runs with
    server_side: bool  # set up with the standard key (multipart or Live), not with a browser's ek_ token
    created_at: float = field(default_factory=time.time)
    connected: bool = False
    ended_at: float | None = None
    end_reason: EndReason | None = None
    client_events: list[Any] = field(default_factory=list)  # as received on oai-events (parsed JSON, else text)
    # What a server sent on a Live session's sideband (parsed JSON, else text): tests compare clients' events.
    sideband_events: list[Any] = field(default_factory=list)
    server_event_types: list[str] = field(default_factory=list)  # what was actually sent, in order
    _ended: threading.Event = field(default_factory=threading.Event, repr=False)

    @property
    def ended(self) -> bool:
        return self._ended.is_set()

    def end(self, reason: EndReason) -> None:
        if not self._ended.is_set():
            self.ended_at = time.time()
            self.end_reason = reason
            self._ended.set()

    def wait_ended(self, timeout: float) -> bool:
        """Block (not on the stand-in's loop!) until the call has ended; False on timeout."""
        return self._ended.wait(timeout)

    def to_json(self) -> dict[str, Any]:
        return {
            "call_id": self.call_id,
            "kind": self.kind,
            "server_side": self.server_side,
            "created_at": self.created_at,
            "connected": self.connected,
            "ended": self.ended,
            "ended_at": self.ended_at,
            "end_reason": self.end_reason,
            "session": self.session,
            "client_events": self.client_events,
            "sideband_events": self.sideband_events,
            "server_event_types": self.server_event_types,
        }


class CallLog:
    def __init__(self) -> None:
        self._records: dict[str, CallRecord] = {}
        self._lock = threading.Lock()

    def add(self, record: CallRecord) -> None:
        with self._lock:
            self._records[record.call_id] = record

    def get(self, call_id: str) -> CallRecord | None:
        with self._lock:
            return self._records.get(call_id)

    def all(self) -> list[CallRecord]:
        with self._lock:
            return list(self._records.values())

    def active(self) -> list[CallRecord]:
        return [record for record in self.all() if not record.ended]

    def forget_ended(self) -> None:
        """Drop the records of calls that are over (a test's clean slate); running calls stay."""
        with self._lock:
            self._records = {k: r for k, r in self._records.items() if not r.ended}
