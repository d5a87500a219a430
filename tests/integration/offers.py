"""Real WebRTC SDP offers, made by aiortc as a browser makes them: an audio transceiver and, unless audio only, the
`oai-events` data channel; ICE candidates gathered."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

from aiortc import RTCConfiguration, RTCPeerConnection


async def make_offer_async(*, data_channel: bool = True) -> str:
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    try:
        pc.addTransceiver("audio", direction="sendrecv")
        if data_channel:
            pc.createDataChannel("oai-events")
        await pc.setLocalDescription(await pc.createOffer())
        return pc.localDescription.sdp
    finally:
        await pc.close()


def make_offer(*, data_channel: bool = True) -> str:
    """From sync code, even when the calling thread already runs an event loop (a thread of its own runs this one)."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, make_offer_async(data_channel=data_channel)).result(timeout=30)
