"""The offer policy on its own: what a browser's WebRTC offer looks like, and what the owner allows in it (audio
only on Realtime unless a data channel is allowed; one data channel at most, never video). Each refusal is a 400
naming `sdp`, raised before anything is charged (tests/unit/token/test_calls.py shows nothing is)."""

from __future__ import annotations

import pytest

from tokenvend.errors import ApiError
from tokenvend.offer_policy import MAX_MEDIA_SECTIONS, MAX_OFFER_BYTES, check_offer

SESSION = "v=0\r\no=- 46117 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0 1\r\n"
AUDIO = ("m=audio 9 UDP/TLS/RTP/SAVPF 111 0\r\nc=IN IP4 0.0.0.0\r\na=ice-ufrag:Qk7v\r\n"
         "a=ice-pwd:0123456789abcdefghijklmn\r\na=fingerprint:sha-256 AB:CD:EF\r\na=setup:actpass\r\na=mid:0\r\n"
         "a=sendrecv\r\na=rtpmap:111 opus/48000/2\r\na=candidate:1 1 udp 2122260223 192.0.2.1 54321 typ host\r\n")
CHANNEL = "m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\nc=IN IP4 0.0.0.0\r\na=mid:1\r\na=sctp-port:5000\r\n"
CREDENTIALS = ("a=ice-ufrag:Qk7v\r\na=ice-pwd:0123456789abcdefghijklmn\r\na=fingerprint:sha-256 AB\r\n"
               "a=setup:actpass\r\n")
VIDEO = "m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:2\r\n"


def refusal(sdp: str, *, data_channel: bool = False) -> str:
    with pytest.raises(ApiError) as caught:
        check_offer(sdp, data_channel=data_channel)
    assert caught.value.status == 400 and caught.value.message.startswith("sdp: ")
    return caught.value.message


def test_an_audio_only_offer_passes_either_way() -> None:
    check_offer(SESSION + AUDIO, data_channel=False)
    check_offer(SESSION + AUDIO, data_channel=True)


def test_lf_line_endings_pass_as_well_as_crlf() -> None:
    check_offer((SESSION + AUDIO).replace("\r\n", "\n"), data_channel=False)


def test_a_data_channel_passes_only_where_allowed() -> None:
    check_offer(SESSION + AUDIO + CHANNEL, data_channel=True)
    assert "no data channel" in refusal(SESSION + AUDIO + CHANNEL)


@pytest.mark.parametrize(("sdp", "data_channel", "words"), [
    pytest.param(SESSION + AUDIO + VIDEO, True, "nothing else", id="video beside the channel"),
    pytest.param(SESSION + AUDIO + VIDEO, False, "nothing else", id="video"),
    pytest.param(SESSION + AUDIO + CHANNEL + CHANNEL, True, "nothing else", id="two channels"),
    pytest.param(SESSION + AUDIO + AUDIO.replace("a=mid:0", "a=mid:3"), True, "exactly one", id="two audio"),
    pytest.param(SESSION + AUDIO + AUDIO.replace("m=audio 9", "m=audio 0"), True, "exactly one",
                 id="a second, inactive audio"),
    pytest.param(SESSION + AUDIO + AUDIO.replace("m=audio 9", "m=audio 0"), False, "nothing else",
                 id="a second, inactive audio, audio only"),
    pytest.param(SESSION + AUDIO.replace("m=audio 9", "m=audio 0"), False, "nothing else", id="audio turned off"),
    pytest.param(SESSION + CREDENTIALS + CHANNEL, True, "exactly one", id="a channel and no audio"),
    pytest.param(SESSION, False, "no audio section", id="no media"),
])
def test_media_sections_follow_the_policy(sdp: str, data_channel: bool, words: str) -> None:
    assert words in refusal(sdp, data_channel=data_channel)


@pytest.mark.parametrize(("sdp", "words"), [
    pytest.param("", "v=0", id="empty"),
    pytest.param("hello", "v=0", id="not SDP"),
    pytest.param("\r\n" + SESSION + AUDIO, "v=0", id="a blank line first"),
    pytest.param(" " + SESSION + AUDIO, "v=0", id="a space first"),
    pytest.param(SESSION.replace("v=0", "v=1") + AUDIO, "v=0", id="another version"),
    pytest.param(SESSION + AUDIO + "a=x:\u00e9\r\n", "printable ASCII", id="a non-ASCII letter"),
    pytest.param(SESSION + AUDIO + "a=x:\udcff\r\n", "printable ASCII", id="a lone surrogate"),
    pytest.param(SESSION + AUDIO + "a=x:\x00\r\n", "printable ASCII", id="a NUL"),
    pytest.param(SESSION + AUDIO + "a=x:\ty\r\n", "printable ASCII", id="a tab"),
    pytest.param(SESSION + AUDIO + "a=x\ry\r\n", "printable ASCII", id="a bare CR inside a line"),
    pytest.param(SESSION + "\r\n" + AUDIO, "printable ASCII", id="an empty line"),
    pytest.param(SESSION + AUDIO + "hello\r\n", "printable ASCII", id="a line that is not type=value"),
    pytest.param(SESSION + AUDIO + "A=x\r\n", "printable ASCII", id="an upper-case type"),
    pytest.param(SESSION + AUDIO.replace("m=audio 9 UDP/TLS/RTP/SAVPF 111 0", "m=audio 9"), "media line",
                 id="a media line without formats"),
    pytest.param(SESSION + AUDIO.replace("m=audio 9", "m=audio x"), "media line", id="a port that is no number"),
    pytest.param(SESSION + AUDIO + (VIDEO * MAX_MEDIA_SECTIONS), f"at most {MAX_MEDIA_SECTIONS}",
                 id="too many sections"),
    pytest.param(SESSION + AUDIO + "a=x:" + "y" * MAX_OFFER_BYTES + "\r\n", f"at most {MAX_OFFER_BYTES}",
                 id="too long"),
])
def test_what_no_browser_sends_is_refused(sdp: str, words: str) -> None:
    assert words in refusal(sdp, data_channel=True)


@pytest.mark.parametrize("attribute", ["ice-ufrag", "ice-pwd", "fingerprint", "setup"])
def test_each_webrtc_attribute_is_required(attribute: str) -> None:
    sdp = "".join(line + "\r\n" for line in (SESSION + AUDIO).splitlines() if not line.startswith(f"a={attribute}"))
    assert f"a={attribute}" in refusal(sdp)


def test_session_level_attributes_count_too() -> None:
    sdp = (SESSION + "a=fingerprint:sha-256 AB:CD\r\na=setup:actpass\r\n"
           + AUDIO.replace("a=fingerprint:sha-256 AB:CD:EF\r\n", "").replace("a=setup:actpass\r\n", ""))
    check_offer(sdp, data_channel=False)
