"""SnapStart safety: building a container's services opens no connection and reads no secret, and every container
resumed from a snapshot re-seeds `random` (hooks from Lambda's `snapshot_restore_py`, a no-op where it is absent)."""

from __future__ import annotations

import importlib
import random
import socket
import sys
import types
from collections.abc import Callable
from typing import Any

import pytest

from local.template_stack import template_function_env
from tokenvend import snapshot, wiring
from tokenvend.settings import LeashSettings, Settings

ENV = {**template_function_env(), "STATE_MACHINE_ARN": "arn:aws:states:us-east-1:123456789012:stateMachine:leash",
       "AWS_DEFAULT_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "snapshot", "AWS_SECRET_ACCESS_KEY": "snapshot"}


def test_building_the_services_opens_no_connection(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    opened: list[Any] = []

    def refuse(sock: socket.socket, address: Any) -> None:
        opened.append(address)
        raise AssertionError(f"init connected to {address}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", lambda address, *a, **k: refuse(None, address))  # type: ignore
    services = wiring.build(Settings.from_env(ENV))
    leash = wiring.build_leash(LeashSettings.from_env(ENV))
    assert services.calls is not None and leash.ender is not None
    assert opened == []


def test_a_restored_container_reseeds_random() -> None:
    assert snapshot.reseed_random in snapshot.AFTER_RESTORE
    random.seed(15)  # as if every container resumed with the snapshot's state
    shared = random.getstate()
    for hook in snapshot.AFTER_RESTORE:
        hook()
    assert random.getstate() != shared


def test_hooks_go_to_lambda_s_runtime_where_it_has_them(monkeypatch: pytest.MonkeyPatch) -> None:
    registered: list[Callable[[], Any]] = []
    runtime = types.ModuleType("snapshot_restore_py")
    runtime.register_after_restore = registered.append  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "snapshot_restore_py", runtime)
    try:
        reloaded = importlib.reload(snapshot)
        assert [hook.__name__ for hook in registered] == ["reseed_random"]
        assert registered == reloaded.AFTER_RESTORE
    finally:
        monkeypatch.delitem(sys.modules, "snapshot_restore_py")
        importlib.reload(snapshot)
    assert snapshot._register_after_restore is None  # not in this runtime: registering is a no-op
