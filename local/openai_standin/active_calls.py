"""The calls and Live sessions still running, by id: what a hangup finds, and what a shutdown closes."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from local.openai_standin.call_log import CallLog, CallRecord
from local.openai_standin.peer import Behaviour, Peer


class ActiveCalls:
    """Lives on the stand-in's event loop; other threads read the CallLog instead."""

    def __init__(self, log: CallLog) -> None:
        self.log = log
        self._peers: dict[str, Peer] = {}

    def get(self, call_id: str) -> Peer | None:
        return self._peers.get(call_id)

    def __len__(self) -> int:
        return len(self._peers)

    def __contains__(self, call_id: object) -> bool:
        return call_id in self._peers

    async def start(self, record: CallRecord, make_behaviour: Callable[[Peer], Behaviour], offer_sdp: str, *,
                    max_session_seconds: float) -> str:
        """Answer `offer_sdp` with a new peer; InvalidOffer if it cannot be answered (nothing is left running)."""
        peer = Peer(record, max_session_seconds=max_session_seconds,
                    on_closed=lambda ended: self._peers.pop(ended.call_id, None))
        peer.behaviour = make_behaviour(peer)
        self._peers[record.call_id] = peer
        try:
            answer = await peer.answer(offer_sdp)
        except BaseException:
            # A client that hangs up mid-answer cancels the request; the half-built call must not linger.
            await asyncio.shield(peer.end("never_connected"))
            raise
        # Only answered calls count: an offer refused with a 400 created nothing at OpenAI either.
        self.log.add(record)
        return answer

    async def close_all(self) -> None:
        await asyncio.gather(*(peer.close() for peer in list(self._peers.values())), return_exceptions=True)
