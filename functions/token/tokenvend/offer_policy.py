"""The caller's SDP offer, checked before anything is charged or sent to OpenAI: shaped as a browser's WebRTC offer
is, and asking only for what the owner allows.

The shape: printable ASCII lines (CRLF or LF), `v=0` first, a bounded number of media sections, the ICE credentials,
a DTLS fingerprint and setup role, and a size cap. Anything else would cost a charge and an OpenAI request for an
offer no browser makes (and a line OpenAI cannot read is one our request builder may choke on after the charge).

The policy: on Realtime, a data channel (`m=application`) lets whoever holds it rewrite the session and ask for
responses at will, so unless the owner allows it the offer must be exactly one active `m=audio` section and nothing
else (OpenAI's own server-controlled example makes the same check its security boundary). With a channel allowed
(GPT-Live's is allow-listed by the session; Realtime's when the owner says so), one active audio section and at most
one data channel, still nothing else.
"""

from __future__ import annotations

import re

from tokenvend.errors import invalid_request

MAX_OFFER_BYTES = 12 * 1024  # a browser's offer with its ICE candidates is 1-6 KB
MAX_MEDIA_SECTIONS = 4
_LINE = re.compile(r"[a-z]=[\x20-\x7e]*")
_MEDIA = re.compile(r"m=(\w+) (\d+) (\S+)( \S+)+")
# Present at session level or in a media section: what any WebRTC offer carries and OpenAI needs to connect.
REQUIRED_ATTRIBUTES = ("ice-ufrag", "ice-pwd", "fingerprint", "setup")
AUDIO_ONLY = "the offer must have exactly one audio section and nothing else (no data channel)"


def check_offer(sdp: str, *, data_channel: bool) -> None:
    """400 naming `sdp` for anything but a WebRTC offer this service may send to OpenAI."""
    if len(sdp.encode("utf-8", "surrogatepass")) > MAX_OFFER_BYTES:
        raise invalid_request(f"sdp: the offer must be at most {MAX_OFFER_BYTES} bytes")
    lines = sdp.split("\n")
    if lines[-1] == "":
        lines.pop()  # the line ending after the last line
    lines = [line.removesuffix("\r") for line in lines]
    if not lines or lines[0] != "v=0":
        raise invalid_request("sdp: not an SDP offer (it must start with v=0)")
    if not all(_LINE.fullmatch(line) for line in lines):
        raise invalid_request("sdp: every line must be type=value in printable ASCII (CRLF or LF line endings)")
    media = [line for line in lines if line.startswith("m=")]
    if not media:
        raise invalid_request("sdp: the offer has no audio section (m=audio)")
    if len(media) > MAX_MEDIA_SECTIONS:
        raise invalid_request(f"sdp: at most {MAX_MEDIA_SECTIONS} media sections")
    attributes = {line[2:].split(":", 1)[0] for line in lines if line.startswith("a=")}
    missing = [name for name in REQUIRED_ATTRIBUTES if name not in attributes]
    if missing:
        raise invalid_request(f"sdp: not a WebRTC offer (no a={', a='.join(missing)})")
    _check_media(media, data_channel=data_channel)


def _check_media(media: list[str], *, data_channel: bool) -> None:
    kinds = []
    for line in media:
        match = _MEDIA.fullmatch(line)
        if match is None:
            raise invalid_request("sdp: a media line must read m=<media> <port> <proto> <formats>")
        kinds.append((match[1], match[2] != "0"))  # port 0: a section the offerer has turned off
    active_audio = sum(1 for kind, active in kinds if kind == "audio" and active)
    others = [kind for kind, _ in kinds if kind != "audio"]
    if not data_channel:
        if kinds != [("audio", True)]:
            raise invalid_request(f"sdp: {AUDIO_ONLY}")
        return
    if active_audio != 1 or len(kinds) - len(others) != 1:
        raise invalid_request("sdp: the offer must have exactly one active audio section (m=audio)")
    if others and (others != ["application"]):
        raise invalid_request("sdp: besides its audio the offer may have one data channel (m=application), "
                              "nothing else")
