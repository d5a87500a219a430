"""The route table the handler, the screen and the template share; the timer's execution names and timestamps."""

from __future__ import annotations

import re

import pytest

from tokenvend import routes
from tokenvend.call_timer import execution_name, hangup_at


@pytest.mark.parametrize(("method", "path", "route"), [
    ("POST", "/calls", routes.CALLS), ("POST", "/calls/rtc_abc/hangup", routes.HANGUP),
    ("POST", "/token", routes.TOKEN), ("GET", "/options", routes.OPTIONS), ("GET", "/openapi.json", routes.OPENAPI),
    ("GET", "/calls", None), ("POST", "/calls/a/b/hangup", None), ("POST", "/calls//hangup", None),
    ("POST", "/openapi.jsonx", None),
])
def test_find(method: str, path: str, route: routes.Route | None) -> None:
    assert routes.find(method, path) == route


def test_methods_and_handler_paths() -> None:
    assert routes.methods_for("/calls") == ["POST"] and routes.methods_for("/nope") == []
    assert routes.HANGUP.handler_path == "/calls/<call_id>/hangup"
    assert routes.CALLS.max_body == 16 * 1024 and routes.TOKEN.max_body == 4096


def test_execution_names_are_the_call_id_or_a_stable_digest() -> None:
    assert execution_name("rtc_u1_9c6574da") == "rtc_u1_9c6574da"
    long = "live_" + "a" * 120
    assert execution_name(long) == execution_name(long) != execution_name(long + "b")
    for name in (execution_name(long), execution_name("rtc_with space")):
        assert re.fullmatch(r"[A-Za-z0-9_-]{1,80}", name)


def test_hangup_at_is_utc_iso_to_the_second() -> None:
    assert hangup_at(1_900_000_000) == "2030-03-17T17:46:40Z"
