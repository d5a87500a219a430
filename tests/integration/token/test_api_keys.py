"""API keys end to end: created by the owner's admin command, used through the handler, revoked at once; the table
never holds a usable key."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.integration.harness import TokenApi, body_of, load_token_app
from tokenvend import admin
from tokenvend.api_keys import ApiKeyStore
from tokenvend.caller import hash_api_key

ROOT = Path(__file__).resolve().parents[3]
KEY = re.compile(r"rtv_[A-Za-z0-9_-]{43}")
STATUS = re.compile(r"issued today \((\d{4}-\d\d-\d\d) UTC\): (\d+)")


def bearer(key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}


def store_of(api: TokenApi) -> ApiKeyStore:
    return ApiKeyStore(api.dynamodb, api.stack.table_name)


def run_admin(api: TokenApi, *argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = admin.main(["--table", api.stack.table_name, *argv], out=out, err=err)
    return code, out.getvalue(), err.getvalue()


def all_items(api: TokenApi) -> list[dict]:
    return api.dynamodb.scan(TableName=api.stack.table_name, ConsistentRead=True)["Items"]


def issued_by_day(api: TokenApi) -> dict[str, int]:
    """The `issued` count of every `day#...` item: what the tokens were charged to, whatever the date."""
    return {item["pk"]["S"].removeprefix("day#"): int(item.get("issued", {}).get("N", "0"))
            for item in all_items(api) if item["pk"]["S"].startswith("day#")}


def utc_days(started: float, ended: float) -> set[str]:
    first, last = (datetime.fromtimestamp(t, UTC).date() for t in (started, ended))
    return {(first + timedelta(days=n)).isoformat() for n in range((last - first).days + 1)}


def admin_status(api: TokenApi, started: float) -> tuple[str, dict[str, int]]:
    """`admin status`, checked against the table: it names a UTC day of the test (its own clock's today) and that
    day's count. With the table's day items, for a test to add up across midnight UTC."""
    code, out, err = run_admin(api, "status")
    assert code == 0, err
    match = STATUS.search(out)
    assert match, out
    days = issued_by_day(api)
    assert match[1] in utc_days(started, time.time()), out
    assert int(match[2]) == days.get(match[1], 0), (out, days)
    return out, days


# --- the store ------------------------------------------------------------------------------------------------

def test_created_keys_are_random_and_stored_only_as_a_hash(token_api: TokenApi) -> None:
    store = store_of(token_api)
    key, record = store.create("  my app  ", burst=4, rate_per_hour=30)
    other, _ = store.create("my app 2")
    assert KEY.fullmatch(key) and KEY.fullmatch(other) and key != other
    assert record.name == "my app" and record.key_hash == hash_api_key(key) and record.key_id == record.key_hash[:12]
    assert (record.burst, record.rate_per_hour, record.revoked, record.last_used_at) == (4, 30.0, False, None)
    assert store.get(record.key_hash) == record
    dump = json.dumps(all_items(token_api))
    assert key not in dump and key.removeprefix("rtv_") not in dump and key[4:20] not in dump
    with pytest.raises(ValueError, match="name"):
        store.create("   ")


def test_revoking_needs_an_unambiguous_key(token_api: TokenApi) -> None:
    store = store_of(token_api)
    store.create("twin")
    store.create("twin")
    with pytest.raises(LookupError, match="2 keys"):
        store.revoke("twin")
    with pytest.raises(LookupError, match="0 keys"):
        store.revoke("nobody")


# --- through the handler ----------------------------------------------------------------------------------------

def test_key_lifecycle_through_the_handler(token_api: TokenApi) -> None:
    store = store_of(token_api)
    key, record = store.create("kiosk")
    before = int(time.time())
    response = token_api.call("POST", "/token", headers=bearer(key))
    assert response.status == 200, response.body
    assert response.header("ratelimit-limit") == "20"  # the stack's ApiKeyBurst, not the anonymous 3
    assert response.header("ratelimit-remaining") == "19"
    used = store.get(record.key_hash)
    assert used is not None and before <= (used.last_used_at or 0) <= int(time.time())

    # The same address, anonymous: its own bucket, untouched by the key's use.
    anonymous = [token_api.call("POST", "/token").header("ratelimit-remaining") for _ in range(3)]
    assert anonymous == ["2", "1", "0"]
    assert token_api.call("POST", "/token").status == 429
    assert token_api.call("POST", "/token", headers=bearer(key)).status == 200  # the key is not limited by that

    store.revoke(record.key_id)
    revoked = token_api.call("POST", "/token", headers=bearer(key))  # same warm container, cached key record
    assert revoked.status == 401
    assert body_of(revoked)["error"]["code"] == "invalid_api_key"
    assert len(token_api.standin.requests) == 5
    # Still refused on the next request (from the cache the 401 cleared), never served as anonymous.
    assert token_api.call("POST", "/token", headers=bearer(key), source_ip="198.51.100.99").status == 401

    dump = json.dumps(all_items(token_api))
    assert key not in dump and key[4:] not in dump, "the table holds no usable key"


def test_a_key_of_another_shape_or_a_deleted_item_is_refused(token_api: TokenApi) -> None:
    store = store_of(token_api)
    key, record = store.create("gone")
    assert token_api.call("POST", "/token", headers=bearer(key)).status == 200
    token_api.dynamodb.delete_item(TableName=token_api.stack.table_name, Key={"pk": {"S": f"key#{record.key_hash}"}})
    response = token_api.call("POST", "/token", headers=bearer(key))
    assert response.status == 401 and body_of(response)["error"]["code"] == "invalid_api_key"
    # The refused write did not bring the item back to life.
    assert store.get(record.key_hash) is None


def test_per_key_limits_are_honoured(stack, fresh_standin) -> None:
    api = load_token_app(stack, fresh_standin, API_KEY_BURST="5", API_KEY_RATE_PER_HOUR="0.001")
    api.put_key(fresh_standin.api_key)
    store = store_of(api)
    small, _ = store.create("small", burst=2, rate_per_hour=1)
    default, _ = store.create("default")
    results = [api.call("POST", "/token", headers=bearer(small)) for _ in range(3)]
    assert [r.status for r in results] == [200, 200, 429]
    assert [r.header("ratelimit-limit") for r in results] == ["2", "2", "2"]
    assert body_of(results[2])["error"]["code"] == "rate_limited"
    assert 3590 <= int(results[2].header("retry-after")) <= 3600  # this key's own rate: one an hour
    assert [api.call("POST", "/token", headers=bearer(default)).status for _ in range(6)] == [200] * 5 + [429]


def test_api_key_works_when_anonymous_access_is_off(stack, fresh_standin) -> None:
    api = load_token_app(stack, fresh_standin, ALLOW_ANONYMOUS="false")
    api.put_key(fresh_standin.api_key)
    key, _ = store_of(api).create("only keys")
    assert api.call("POST", "/token").status == 401
    assert api.call("POST", "/token", headers=bearer(key)).status == 200


# --- the admin command ---------------------------------------------------------------------------------------------

def test_admin_command_end_to_end(token_api: TokenApi) -> None:
    started = time.time()
    code, out, err = run_admin(token_api, "create", "ci-bot", "--burst", "2", "--rate-per-hour", "0.5")
    assert code == 0, err
    keys = KEY.findall(out)
    assert len(keys) == 1
    key = keys[0]
    key_id = re.search(r"id:\s+([0-9a-f]{12})", out)[1]
    assert key_id == hash_api_key(key)[:12]

    code, out, _ = run_admin(token_api, "list")
    assert code == 0 and key_id in out and "ci-bot" in out and "never" in out and "burst=2" in out
    assert key not in out and "rtv_" not in out, "list never shows a key"

    assert token_api.call("POST", "/token", headers=bearer(key)).header("ratelimit-limit") == "2"
    _, out, _ = run_admin(token_api, "list")
    assert re.search(r"ci-bot\s+\S+ \S+\s+\d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ\s+no", out), out  # last used is set
    out, days = admin_status(token_api, started)
    assert sum(days.values()) == 1 and "issuing: active" in out

    assert run_admin(token_api, "pause")[0] == 0
    _, out, _ = run_admin(token_api, "status")
    assert "issuing: paused" in out
    paused = token_api.call("POST", "/token", headers=bearer(key))
    assert paused.status == 503 and body_of(paused)["error"]["code"] == "issuing_paused"
    assert token_api.call("POST", "/token", source_ip="198.51.100.5").status == 503
    assert run_admin(token_api, "resume")[0] == 0
    assert token_api.call("POST", "/token", headers=bearer(key)).status == 200

    code, out, _ = run_admin(token_api, "revoke", "ci-bot")
    assert code == 0 and key_id in out
    assert token_api.call("POST", "/token", headers=bearer(key)).status == 401
    _, out, _ = run_admin(token_api, "list")
    assert re.search(rf"{key_id}\s+ci-bot\s.*\syes\s", out), out
    _, days = admin_status(token_api, started)
    assert sum(days.values()) == 2
    assert len(token_api.standin.requests) == 2


def test_admin_exit_codes(token_api: TokenApi, monkeypatch, capsys) -> None:
    assert run_admin(token_api, "revoke", "nobody")[0] == 1
    assert run_admin(token_api, "create", "x", "--burst", "zero")[0] == 2
    assert run_admin(token_api, "create", "x", "--rate-per-hour", "0")[0] == 2
    assert run_admin(token_api, "create", "x", "--rate-per-hour", "nan")[0] == 2
    assert run_admin(token_api, "frobnicate")[0] == 2
    assert run_admin(token_api)[0] == 2
    assert run_admin(token_api, "create", "   ")[0] == 1
    monkeypatch.delenv("TABLE_NAME", raising=False)
    assert admin.main(["list"], out=io.StringIO(), err=io.StringIO()) == 2
    assert admin.main(["--table", "no-such-table", "list"], out=io.StringIO(), err=io.StringIO()) == 1
    monkeypatch.setenv("TABLE_NAME", token_api.stack.table_name)
    assert admin.main(["status"], out=io.StringIO(), err=io.StringIO()) == 0
    assert admin.main(["--help"], out=io.StringIO(), err=io.StringIO()) == 0
    capsys.readouterr()
    assert "rtv_" not in json.dumps(all_items(token_api))


def test_admin_runs_as_a_module_from_the_repo_root(token_api: TokenApi) -> None:
    env = {**os.environ, "PYTHONPATH": "functions/token", "TABLE_NAME": token_api.stack.table_name}
    result = subprocess.run([sys.executable, "-m", "tokenvend.admin", "create", "from-shell"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    (key,) = KEY.findall(result.stdout)
    assert token_api.call("POST", "/token", headers=bearer(key)).status == 200
    usage = subprocess.run([sys.executable, "-m", "tokenvend.admin"], cwd=ROOT, env=env, capture_output=True,
                           text=True, timeout=60, check=False)
    assert usage.returncode == 2 and "usage" in usage.stderr
