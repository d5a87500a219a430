"""Checking an SDP offer before aiortc sees it.

aiortc accepts an empty or garbage offer and answers it with zero media sections, and lets a missing DTLS
fingerprint through; OpenAI answers such a body with a 400, so the stand-in checks what a usable offer needs.
"""

from __future__ import annotations

from aiortc.sdp import MediaDescription, SessionDescription

_USABLE_KINDS = ("audio", "application")


class InvalidOffer(ValueError):
    pass


def check_offer(text: str) -> list[MediaDescription]:
    """The offer's media sections, or InvalidOffer saying what is wrong."""
    if not text.strip():
        raise InvalidOffer("The request body is empty; expected an SDP offer.")
    if not text.lstrip().startswith("v=0"):
        raise InvalidOffer("The request body is not an SDP offer (it must start with 'v=0').")
    try:
        parsed = SessionDescription.parse(text)
    except Exception as exc:  # aiortc's parser raises bare asserts, ValueError, KeyError... for bad lines
        raise InvalidOffer(f"The SDP offer could not be parsed ({type(exc).__name__}: {exc}).") from exc
    if not any(media.kind in _USABLE_KINDS for media in parsed.media):
        raise InvalidOffer("The SDP offer has no audio or data channel (m=application) section.")
    for index, media in enumerate(parsed.media):
        if media.ice is None or not media.ice.usernameFragment or not media.ice.password:
            raise InvalidOffer(f"Media section {index} of the SDP offer lacks a=ice-ufrag or a=ice-pwd.")
        if media.dtls is None or not media.dtls.fingerprints:
            raise InvalidOffer(f"Media section {index} of the SDP offer lacks a=fingerprint.")
    return parsed.media
