"""`admin usage`, `block`, `unblock` and `blocks` against a real moto server over HTTP: the report of a day whose
items are written as the limiter writes them (the layout in `table`), blocks by every form of caller under the
stack's own salt, and the hash blocked being the one the function files the caller under."""

from __future__ import annotations

import io
import json
from typing import Any

import boto3
import pytest

from local.template_stack import LocalStack
from tests.integration.harness import TokenApi, body_of
from tests.integration.offers import make_offer
from tokenvend import admin, table
from tokenvend.api_keys import ApiKeyStore
from tokenvend.caller import address_identity, caller_hash, key_identity, user_identity

DAY = "2031-05-17"
OTHER_DAY = "2031-05-16"
NOON = 1_968_408_000.0  # 2032-05-17 12:00 UTC; only `blocked_at` and the default day come from it
BLOCKED_AT = 1_900_000_000


def run(stack: LocalStack, *argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = admin.main(["--table", stack.table_name, *argv], client=boto3.client("dynamodb"), out=out, err=err,
                      secrets_client=boto3.client("secretsmanager"), clock=lambda: NOON)
    return code, out.getvalue(), err.getvalue()


def salt_of(stack: LocalStack) -> bytes:
    return boto3.client("secretsmanager").get_secret_value(
        SecretId=stack.physical_ids["HashSaltSecret"])["SecretString"].strip().encode()


def put(stack: LocalStack, pk: str, **attributes: Any) -> None:
    item: dict[str, Any] = {table.PK: {"S": pk}}
    for name, value in attributes.items():
        item[name] = {"N": str(value)} if isinstance(value, int) else {"S": value}
    boto3.client("dynamodb").put_item(TableName=stack.table_name, Item=item)


def hex32(n: int) -> str:
    return f"{n:032x}"


def write_day(stack: LocalStack) -> dict[str, Any]:
    """A day as the limiter leaves it: counters in total and per lane, 30 callers' days, call records of the day in
    every state, and the day before's items, which the report must not count."""
    put(stack, table.day_pk(DAY), call_seconds=5_000, issued=3,
        **{table.lane_attribute(table.CALL_SECONDS, "anonymous"): 3_800,
           table.lane_attribute(table.CALL_SECONDS, "api_key"): 900,
           table.lane_attribute(table.CALL_SECONDS, "user"): 300,
           table.lane_attribute(table.COUNT, "api_key"): 3})
    put(stack, table.day_pk(OTHER_DAY), call_seconds=99_999)
    callers = []
    for n in range(30):
        caller, kind = hex32(n + 1), table.LANES[n % 3]
        network = "198.51.100.0/24" if kind == "anonymous" and n % 2 else "2001:db8:0:1::/64"
        extra = {table.SPENT_NETWORK: network} if kind == "anonymous" else {}
        put(stack, table.spent_pk(DAY, caller), call_seconds=10 * n, calls=n % 4 + 1, issued=0,
            **{table.SPENT_KIND: kind}, **extra)
        callers.append(caller)
    put(stack, table.spent_pk(OTHER_DAY, hex32(999)), call_seconds=99_999, calls=1, **{table.SPENT_KIND: "user"})
    endings = ["caller"] * 4 + ["leash"] * 2 + ["sweeper", "setup", "owner"]
    for n, by in enumerate(endings):
        put(stack, table.call_pk(f"ended-{n}"), day=DAY, state="ended", ended_by=by, caller=callers[n],
            **({table.CALL_LANE: "anonymous"} if n < 3 else {}))
    for n in range(2):
        put(stack, table.call_pk(f"active-{n}"), day=DAY, state="active", caller=callers[n], active="calls",
            ends_at=int(NOON) + 60)
    put(stack, table.call_pk("yesterday"), day=OTHER_DAY, state="ended", ended_by="caller", caller=callers[0])
    put(stack, table.block_pk(callers[29]), blocked_at=BLOCKED_AT, note="drains it")
    put(stack, table.block_pk(hex32(12345)), blocked_at=BLOCKED_AT + 1)
    return {"callers": callers}


def test_usage_reports_the_day_as_the_table_holds_it(stack: LocalStack) -> None:
    callers = write_day(stack)["callers"]
    code, out, err = run(stack, "usage", "--day", DAY, "--json", "--top", "5")
    assert code == admin.EXIT_OK, err
    report = json.loads(out)
    assert report["day"] == DAY and report["call_seconds"] == 5_000 and report["issued"] == 3
    assert report["lanes"] == {
        "anonymous": {"call_seconds": 3_800, "call_minutes": 63.33, "issued": 0},
        "api_key": {"call_seconds": 900, "call_minutes": 15.0, "issued": 3},
        "user": {"call_seconds": 300, "call_minutes": 5.0, "issued": 0},
    }
    assert report["unattributed_call_seconds"] == 0
    assert report["callers"] == 30
    assert [c["caller"] for c in report["top_callers"]] == callers[29:24:-1]
    top = report["top_callers"][0]
    assert top == {"caller": callers[29], "kind": "user", "network": None, "call_seconds": 290,
                   "call_minutes": 4.83, "calls": 2, "issued": 0, "blocked": True}
    anonymous = next(c for c in report["top_callers"] if c["kind"] == "anonymous")
    assert anonymous["network"] == "198.51.100.0/24" and not anonymous["blocked"]
    assert report["calls"] == {"set_up": 11, "active": 2,
                               "ended_by": {"caller": 4, "leash": 2, "sweeper": 1, "setup": 1, "owner": 1},
                               "by_lane": {"anonymous": 3}}
    assert report["blocked_callers"] == 2

    code, text, _ = run(stack, "usage", "--day", DAY)
    assert code == admin.EXIT_OK
    lines = text.splitlines()
    assert lines[0] == f"Usage on {DAY} (UTC)"
    assert [line.split() for line in lines[4:8]] == [
        ["anonymous", "63.3", "3800", "0"], ["api_key", "15.0", "900", "3"], ["user", "5.0", "300", "0"],
        ["total", "83.3", "5000", "3"]]
    assert "Top callers by minutes (10 of 30):" in lines
    assert any(line.split()[:1] == [callers[29]] and line.endswith("blocked") for line in lines)
    assert "Calls set up: 11, still active: 2" in lines and "  ended by caller: 4" in lines
    assert "Blocked callers: 2 (see `blocks`)" in lines

    code, out, _ = run(stack, "usage", "--json")  # the clock's day: nothing written for it
    assert code == admin.EXIT_OK
    empty = json.loads(out)
    assert empty["day"] == "2032-05-17" and empty["call_seconds"] == 0 and empty["top_callers"] == []
    assert empty["calls"]["set_up"] == 0 and empty["blocked_callers"] == 2  # blocks hold whatever the day


def test_block_by_every_form_and_unblock(stack: LocalStack) -> None:
    salt, secret = salt_of(stack), stack.physical_ids["HashSaltSecret"]
    key, record = ApiKeyStore(boto3.client("dynamodb"), stack.table_name).create("my backend")
    key_hash = record.key_hash
    forms = {
        "198.51.100.7": address_identity("198.51.100.7"),
        "2001:db8:5:6::1": address_identity("2001:db8:5:6::/64"),
        "key:my backend": key_identity(key_hash),
        "user:auth0|someone": user_identity("auth0|someone"),
    }
    for n, (given, identity) in enumerate(forms.items()):
        expected = caller_hash(salt, identity)
        code, out, err = run(stack, "block", given, "--salt-secret-id", secret, "--note", f"note {n}")
        assert code == admin.EXIT_OK, err
        assert out.startswith(f"blocked {expected} (given as {given}")
        item = boto3.client("dynamodb").get_item(TableName=stack.table_name,
                                                 Key={table.PK: {"S": table.block_pk(expected)}})["Item"]
        assert item[table.BLOCKED_AT] == {"N": str(int(NOON))} and item[table.BLOCK_NOTE] == {"S": f"note {n}"}
    by_hash = caller_hash(salt, user_identity("by hash"))
    assert run(stack, "block", by_hash)[0] == admin.EXIT_OK  # no salt needed

    code, listing, _ = run(stack, "blocks")
    assert code == admin.EXIT_OK and len(listing.splitlines()) == 1 + len(forms) + 1
    for secret_form in ("198.51.100.7", "2001:db8:5:6", key, "auth0|someone"):
        assert secret_form not in listing  # hashes only, and the notes the owner wrote
    assert all(f"note {n}" in listing for n in range(len(forms)))

    code, out, _ = run(stack, "unblock", "198.51.100.7", "--salt-secret-id", secret)
    assert code == admin.EXIT_OK and out.startswith(f"unblocked {caller_hash(salt, forms['198.51.100.7'])}")
    code, out, _ = run(stack, "unblock", "198.51.100.7", "--salt-secret-id", secret)
    assert code == admin.EXIT_ERROR and out.startswith("not blocked:")
    assert len(run(stack, "blocks")[1].splitlines()) == 1 + len(forms)


def test_a_salt_secret_that_does_not_exist_is_an_error(stack: LocalStack) -> None:
    code, out, err = run(stack, "block", "198.51.100.7", "--salt-secret-id", "no-such-secret")
    assert code == admin.EXIT_ERROR and out == "" and "no-such-secret" in err
    assert run(stack, "blocks")[1].splitlines()[1:] == ["(no blocked callers)"]


@pytest.mark.parametrize("source_ip", ["203.0.113.7", "2001:db8:7:8::42"])
def test_the_hash_blocked_is_the_one_the_function_files_the_caller_under(token_api: TokenApi, source_ip: str) -> None:
    """A call made through the handler records its caller's hash; `block` with the address (another in the /64 for
    IPv6) names the same hash, read from the same secret the same way."""
    answer = token_api.call("POST", "/calls", {"sdp": make_offer()}, source_ip=source_ip,
                            headers={"origin": "https://page.example"})
    assert answer.status == 201, answer.body
    call_id = body_of(answer)["call_id"]
    record = token_api.dynamodb.get_item(TableName=token_api.stack.table_name,
                                         Key={table.PK: {"S": table.call_pk(call_id)}})["Item"]
    given = source_ip if ":" not in source_ip else source_ip.replace("::42", "::1")
    code, out, err = run(token_api.stack, "block", given, "--salt-secret-id",
                         token_api.stack.physical_ids["HashSaltSecret"])
    assert code == admin.EXIT_OK, err
    assert out.split()[1] == record[table.CALL_CALLER]["S"]


def test_a_blocked_address_is_refused_before_any_charge_and_its_neighbours_are_not(token_api: TokenApi) -> None:
    """IPv4 callers are single addresses: blocking one leaves the rest of its /24 alone (and an IPv6 block takes its
    whole /64, tested by the hash above). The refusal writes nothing."""
    stack, offer = token_api.stack, make_offer()
    code, _, err = run(stack, "block", "203.0.113.7", "--salt-secret-id", stack.physical_ids["HashSaltSecret"])
    assert code == admin.EXIT_OK, err
    before = token_api.dynamodb.scan(TableName=stack.table_name, ConsistentRead=True)["Items"]
    refused = token_api.call("POST", "/calls", {"sdp": offer}, source_ip="203.0.113.7",
                             headers={"origin": "https://page.example"})
    assert refused.status == 403 and body_of(refused)["error"]["code"] == "caller_blocked"
    assert token_api.dynamodb.scan(TableName=stack.table_name, ConsistentRead=True)["Items"] == before
    neighbour = token_api.call("POST", "/calls", {"sdp": offer}, source_ip="203.0.113.8",
                               headers={"origin": "https://page.example"})
    assert neighbour.status == 201, neighbour.body
