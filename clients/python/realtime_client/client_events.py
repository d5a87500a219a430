"""Client events we send on `oai-events`, shaped as the GA schema wants them."""

from __future__ import annotations

from typing import Any


def user_text_message(text: str) -> dict[str, Any]:
    """`conversation.item.create` with a user message holding one `input_text` part."""
    return {
        "type": "conversation.item.create",
        "item": {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]},
    }


def response_create() -> dict[str, Any]:
    """`response.create` with no overrides: the session's settings (voice, instructions) apply."""
    return {"type": "response.create"}
