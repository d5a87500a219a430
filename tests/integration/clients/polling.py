"""Waiting on a live call without sleeping a fixed time: poll a condition with a generous bound."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any


async def until(predicate: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)


def types(events: list[dict[str, Any]]) -> list[str]:
    return [event["type"] for event in events]
