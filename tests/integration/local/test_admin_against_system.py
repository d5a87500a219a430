"""The owner sees who drains it, and can stop them (issue 22): calls made over HTTP to the local system show up in
`admin usage` under their callers' hashes (an address with its /24) and lanes, and `admin block` with the caller's
address refuses its next call with `403 caller_blocked`, charging nothing, until `admin unblock`; other callers go
on."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from local.system import LocalSystem
from tests.integration.offers import make_offer
from tokenvend import admin, table
from tokenvend.api_keys import ApiKeyStore
from tokenvend.caller import address_identity, caller_hash, hash_api_key, key_identity

DRAINER = "127.0.0.1"  # where the test's requests come from, as the local gateway sees them
BURST = 3  # the template's AnonymousBurst, spelled out: the test counts on it


@pytest.fixture(scope="module")
def system() -> Iterator[LocalSystem]:
    # A caller's own day (three calls by default) raised, so that the burst alone decides the last call below.
    with LocalSystem(port=0, parameters={"AnonymousBurst": str(BURST), "CallerDailyCallMinutes": "30"}) as running:
        yield running


@pytest.fixture(scope="module")
def offer() -> str:
    return make_offer()


def post_call(system: LocalSystem, offer: str, key: str | None = None) -> httpx.Response:
    """`POST /calls` from this machine: anonymous, or with an API key when given."""
    headers = {"authorization": f"Bearer {key}"} if key else {}
    return httpx.post(system.calls_url, json={"sdp": offer}, headers=headers, timeout=30)


def run_admin(system: LocalSystem, *argv: str) -> tuple[int, str, str]:
    assert system.stack is not None
    out, err = io.StringIO(), io.StringIO()
    code = admin.main(["--table", system.stack.table_name, *argv], client=system.client("dynamodb"), out=out,
                      err=err, secrets_client=system.client("secretsmanager"))
    return code, out.getvalue(), err.getvalue()


def usage(system: LocalSystem, day: str) -> dict[str, Any]:
    code, out, err = run_admin(system, "usage", "--day", day, "--json", "--top", "50")
    assert code == admin.EXIT_OK, err
    return json.loads(out)


def charged_day(system: LocalSystem, call_id: str) -> str:
    """The UTC day whose budget paid for the call, as its record says: never the test's own idea of today."""
    assert system.stack is not None
    item = system.client("dynamodb").get_item(TableName=system.stack.table_name,
                                               Key={table.PK: {"S": table.call_pk(call_id)}})["Item"]
    return item[table.CALL_DAY]["S"]


def test_usage_shows_who_drains_it_and_block_stops_them(system: LocalSystem, offer: str) -> None:
    assert system.stack is not None
    salt_secret = system.stack.physical_ids["HashSaltSecret"]
    salt = system.client("secretsmanager").get_secret_value(SecretId=salt_secret)["SecretString"].strip().encode()
    key, _ = ApiKeyStore(system.client("dynamodb"), system.stack.table_name).create("neighbour")
    drainer = caller_hash(salt, address_identity(DRAINER))
    neighbour = caller_hash(salt, key_identity(hash_api_key(key)))

    calls = [post_call(system, offer), post_call(system, offer), post_call(system, offer, key)]
    assert [c.status_code for c in calls] == [201, 201, 201], [c.text for c in calls]
    first = calls[0].json()
    hangup = httpx.post(f"{system.calls_url}/{first['call_id']}/hangup", json={"hangup_token": first["hangup_token"]},
                        timeout=30)
    assert hangup.status_code == 200, hangup.text
    days = {charged_day(system, c.json()["call_id"]) for c in calls}

    reports = [usage(system, day) for day in sorted(days)]  # two only if the calls straddled midnight UTC
    callers: dict[str, dict[str, Any]] = {}
    for report in reports:
        for row in report["top_callers"]:
            entry = callers.setdefault(row["caller"], {**row, "call_seconds": 0, "calls": 0})
            entry["call_seconds"] += row["call_seconds"]
            entry["calls"] += row["calls"]
    assert set(callers) == {drainer, neighbour}
    assert (callers[drainer]["kind"], callers[drainer]["network"]) == ("anonymous", "127.0.0.0/24")
    assert (callers[neighbour]["kind"], callers[neighbour]["network"]) == ("api_key", None)
    assert (callers[drainer]["calls"], callers[neighbour]["calls"]) == (2, 1)
    # Each call holds its limit plus 5 s until it ends; the hung-up one gave back all but the seconds it lasted.
    held = {c: callers[c]["call_seconds"] for c in (drainer, neighbour)}
    limit = calls[2].json()["max_seconds"] + 5
    assert held[neighbour] == limit and limit < held[drainer] < 2 * limit
    lanes = {lane: sum(r["lanes"][lane]["call_seconds"] for r in reports) for lane in table.LANES}
    assert lanes == {"anonymous": held[drainer], "api_key": held[neighbour], "user": 0}
    assert sum(r["call_seconds"] for r in reports) == held[drainer] + held[neighbour]
    assert sum(r["calls"]["ended_by"].get("caller", 0) for r in reports) == 1
    assert sum(r["calls"]["active"] for r in reports) == 2
    assert all(r["blocked_callers"] == 0 for r in reports)
    code, text, _ = run_admin(system, "usage", "--day", min(days))
    assert code == admin.EXIT_OK and drainer in text and "127.0.0.0/24" in text
    assert DRAINER not in text and key not in text  # callers as hashes and networks, never addresses or keys

    code, out, err = run_admin(system, "block", DRAINER, "--note", "drains it", "--salt-secret-id", salt_secret)
    assert code == admin.EXIT_OK, err
    assert out.startswith(f"blocked {drainer} (given as {DRAINER})")
    before = [usage(system, day) for day in sorted(days)]
    refused = post_call(system, offer)
    assert refused.status_code == 403, refused.text
    assert refused.json()["error"]["code"] == "caller_blocked"
    assert post_call(system, offer, key).status_code == 201  # that caller is blocked, nobody else
    after = [usage(system, day) for day in sorted(days)]
    spent = {d["day"]: {c["caller"]: (c["call_seconds"], c["calls"]) for c in d["top_callers"]} for d in after}
    assert all(spent[b["day"]].get(drainer) == next(((c["call_seconds"], c["calls"]) for c in b["top_callers"]
                                                     if c["caller"] == drainer), None) for b in before)
    assert all(d["blocked_callers"] == 1 for d in after)
    code, listing, _ = run_admin(system, "blocks")
    assert code == admin.EXIT_OK and drainer in listing and "drains it" in listing and DRAINER not in listing

    code, out, err = run_admin(system, "unblock", DRAINER, "--salt-secret-id", salt_secret)
    assert code == admin.EXIT_OK, err
    assert out.startswith(f"unblocked {drainer}")
    # Its third call of a burst of three: the refused request took nothing from its allowance either.
    again = post_call(system, offer)
    assert again.status_code == 201, again.text
    over = post_call(system, offer)
    assert over.status_code == 429 and over.json()["error"]["code"] == "rate_limited"  # and no more than that
