"""`admin usage`, `block`, `unblock` and `blocks` without AWS: how a caller is named, what a malformed argument gets
(exit 2 before any request), what the report says and that it shows callers only as hashes and networks."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest

from tokenvend import admin, table
from tokenvend.caller import address_identity, caller_hash, key_identity, user_identity
from tokenvend.usage import Block, CallerDay, DayUsage, LaneUsage, UsageStore

SALT = "a-salt-of-at-least-sixteen-characters"
DAY = "2031-05-17"
NOON = 1_968_408_000.0  # 2032-05-17 12:00 UTC: any fixed instant; the report's default day is its UTC date
A, B, C = "a" * 32, "b" * 32, "c" * 32


class Unused:
    """A client no test of argument errors may reach."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"a request was made: {name}")


class FakeSecrets:
    def __init__(self, value: str) -> None:
        self.value = value
        self.asked: list[str] = []

    def get_secret_value(self, **kwargs: Any) -> dict[str, Any]:
        self.asked.append(kwargs["SecretId"])
        return {"SecretString": self.value, "ARN": kwargs["SecretId"], "Name": "salt"}


class FakeTable:
    """Just what the usage store asks of DynamoDB, over a dict of items; the scan applies the filter's intent (the
    prefixes and the day) in Python, in pages of two, so that paging is exercised."""

    def __init__(self, items: list[dict[str, Any]] | None = None) -> None:
        self.items = {item["pk"]["S"]: item for item in items or []}
        self.scans = 0

    def get_item(self, *, Key: dict[str, Any], **_: Any) -> dict[str, Any]:
        item = self.items.get(Key["pk"]["S"])
        return {"Item": item} if item else {}

    def put_item(self, *, Item: dict[str, Any], ConditionExpression: str | None = None,
                 **_: Any) -> dict[str, Any]:
        if ConditionExpression and Item["pk"]["S"] in self.items:
            from botocore.exceptions import ClientError

            raise ClientError({"Error": {"Code": "ConditionalCheckFailedException", "Message": "exists"}}, "PutItem")
        self.items[Item["pk"]["S"]] = Item
        return {}

    def delete_item(self, *, Key: dict[str, Any], **_: Any) -> dict[str, Any]:
        old = self.items.pop(Key["pk"]["S"], None)
        return {"Attributes": old} if old else {}

    def scan(self, *, ExpressionAttributeValues: dict[str, Any],
             ExclusiveStartKey: dict[str, Any] | None = None, **_: Any) -> dict[str, Any]:
        self.scans += 1
        values = {name: value["S"] for name, value in ExpressionAttributeValues.items()}
        wanted = []
        for pk, item in sorted(self.items.items()):
            if (pk.startswith(values.get(":spent", "\0")) or pk.startswith(values[":block"])
                    or (":call" in values and pk.startswith(values[":call"])
                        and item.get("day", {}).get("S") == values[":day"])):
                wanted.append(item)
        start = int(ExclusiveStartKey["n"]["N"]) if ExclusiveStartKey else 0
        page: dict[str, Any] = {"Items": wanted[start:start + 2]}
        if start + 2 < len(wanted):
            page["LastEvaluatedKey"] = {"n": {"N": str(start + 2)}}
        return page


def run(*argv: str, client: Any = None, secrets: Any = None) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = admin.main(["--table", "limits", *argv], client=client or Unused(), out=out, err=err,
                      secrets_client=secrets or Unused(), clock=lambda: NOON)
    return code, out.getvalue(), err.getvalue()


def spent(day: str, caller: str, kind: str, seconds: int, calls: int, network: str | None = None,
          issued: int = 0) -> dict[str, Any]:
    item = {"pk": {"S": table.spent_pk(day, caller)}, table.CALL_SECONDS: {"N": str(seconds)},
            table.SPENT_CALLS: {"N": str(calls)}, table.COUNT: {"N": str(issued)}, table.SPENT_KIND: {"S": kind}}
    if network:
        item[table.SPENT_NETWORK] = {"S": network}
    return item


def call(call_id: str, day: str, state: str, ended_by: str | None = None) -> dict[str, Any]:
    item = {"pk": {"S": table.call_pk(call_id)}, table.CALL_DAY: {"S": day}, table.CALL_STATE: {"S": state},
            table.CALL_CALLER: {"S": A}}
    if ended_by:
        item[table.CALL_ENDED_BY] = {"S": ended_by}
    return item


REPORT = DayUsage(
    day=DAY, call_seconds=930, issued=2,
    lanes=(LaneUsage("anonymous", 750, 0), LaneUsage("api_key", 120, 2), LaneUsage("user", 0, 0)),
    callers=(CallerDay(A, "anonymous", "203.0.113.0/24", 600, 3, 0),
             CallerDay(C, "anonymous", "2001:db8:1:2::/64", 150, 2, 0),
             CallerDay(B, "api_key", None, 120, 1, 2)),
    ended_by={"caller": 3, "leash": 1}, active=2, calls_by_lane={}, blocks=(Block(A, 1_900_000_000, "drains it"),),
)


# --- naming a caller ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("given", "kind", "value"), [
    ("0123456789abcdef0123456789ABCDEF", "hash", "0123456789abcdef0123456789abcdef"),
    ("203.0.113.7", "address", "203.0.113.7"),
    (" 203.0.113.7 ", "address", "203.0.113.7"),
    ("2001:db8:1:2::99", "address", "2001:db8:1:2::/64"),
    ("2001:db8:1:2::/64", "address", "2001:db8:1:2::/64"),
    ("2001:db8:1:2::5/64", "address", "2001:db8:1:2::/64"),
    ("::ffff:198.51.100.7", "address", "198.51.100.7"),
    ("key:3f2a9c1b0d4e", "key", "3f2a9c1b0d4e"),
    ("key:my backend", "key", "my backend"),
    ("user:auth0|abc:def", "user", "auth0|abc:def"),
])
def test_callers_are_named_by_hash_address_key_or_user(given: str, kind: str, value: str) -> None:
    spec = admin.parse_caller(given)
    assert (spec.kind, spec.value, spec.given) == (kind, value, given)


@pytest.mark.parametrize("given", ["", "abc", "a" * 31, "a" * 33, "g" * 32, "203.0.113.0/24", "2001:db8::/48",
                                   "key:", "user:", "host.example", "999.1.1.1"])
def test_a_malformed_caller_is_a_usage_error_before_any_request(given: str) -> None:
    for command in ("block", "unblock"):
        code, out, err = run(command, given)
        assert code == admin.EXIT_USAGE and out == "" and "CALLER" in err, err


@pytest.mark.parametrize("day", ["2031-5-17", "2031-02-30", "17-05-2031", "20310517", "today", "2031-05-17T00"])
def test_usage_refuses_a_malformed_day(day: str) -> None:
    code, out, err = run("usage", "--day", day)
    assert code == admin.EXIT_USAGE and out == "" and "YYYY-MM-DD" in err


@pytest.mark.parametrize("top", ["0", "-1", "x", "10001"])
def test_usage_refuses_a_bad_top(top: str) -> None:
    assert run("usage", "--top", top)[0] == admin.EXIT_USAGE


def test_a_caller_other_than_a_hash_needs_the_salt(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HASH_SALT_SECRET_ARN", raising=False)
    for given in ("203.0.113.7", "key:abc", "user:someone"):
        code, out, err = run("block", given)
        assert out == ""
        assert code == admin.EXIT_USAGE and "--salt-secret-id" in err and "HASH_SALT_SECRET_ARN" in err


def test_the_salt_secret_defaults_to_the_functions_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HASH_SALT_SECRET_ARN", "arn:salt")
    assert admin.build_parser().parse_args(["block", "203.0.113.7"]).salt_secret_id == "arn:salt"


# --- blocking ---------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("given", "identity"), [
    ("203.0.113.7", address_identity("203.0.113.7")),
    ("2001:db8:1:2::99", address_identity("2001:db8:1:2::/64")),
    ("user:auth0|abc", user_identity("auth0|abc")),
])
def test_block_hashes_the_caller_as_the_function_does(given: str, identity: str) -> None:
    fake, secrets = FakeTable(), FakeSecrets(f"  {SALT}\n")  # the function strips the secret; so must we
    code, out, err = run("block", given, "--note", "drains it", "--salt-secret-id", "arn:salt", client=fake,
                         secrets=secrets)
    expected = caller_hash(SALT.encode(), identity)
    assert code == admin.EXIT_OK, err
    assert secrets.asked == ["arn:salt"]
    item = fake.items[table.block_pk(expected)]
    assert item[table.BLOCKED_AT] == {"N": str(int(NOON))} and item[table.BLOCK_NOTE] == {"S": "drains it"}
    assert set(item) == {"pk", table.BLOCKED_AT, table.BLOCK_NOTE}  # never the address, key or sub
    assert out.startswith(f"blocked {expected} (given as {given}") and "403 caller_blocked" in out


def test_block_by_key_id_or_name() -> None:
    key_hash = "f" * 64
    fake = FakeTable([{"pk": {"S": table.key_pk(key_hash)}, table.KEY_ID: {"S": key_hash[:12]},
                       table.KEY_NAME: {"S": "my backend"}, table.KEY_CREATED: {"N": "1"}}])
    fake.scan = lambda **_: {"Items": list(fake.items.values())}  # type: ignore[method-assign] - the key list
    expected = caller_hash(SALT.encode(), key_identity(key_hash))
    for given in (f"key:{key_hash[:12]}", "key:my backend"):
        code, out, err = run("block", given, "--salt-secret-id", "arn:salt", client=fake, secrets=FakeSecrets(SALT))
        assert code == admin.EXIT_OK, err
        assert expected in out and table.block_pk(expected) in fake.items
    code, _, err = run("block", "key:nobody", "--salt-secret-id", "arn:salt", client=fake, secrets=FakeSecrets(SALT))
    assert code == admin.EXIT_ERROR and "0 keys match" in err


def test_a_short_salt_is_refused_as_the_function_refuses_it() -> None:
    code, out, err = run("block", "203.0.113.7", "--salt-secret-id", "arn:salt", client=FakeTable(),
                         secrets=FakeSecrets("short"))
    assert code == admin.EXIT_ERROR and out == "" and "arn:salt" in err and "salt" in err


def test_block_twice_keeps_the_first_block_and_unblock_lifts_it() -> None:
    fake = FakeTable()
    assert run("block", A, "--note", "first", client=fake)[0] == admin.EXIT_OK
    code, out, _ = run("block", A, "--note", "second", client=fake)
    assert code == admin.EXIT_OK and out.startswith(f"already blocked {A}") and "(note: first)" in out
    assert fake.items[table.block_pk(A)][table.BLOCK_NOTE] == {"S": "first"}
    code, out, _ = run("unblock", A.upper(), client=fake)
    assert code == admin.EXIT_OK and out.startswith(f"unblocked {A}") and not fake.items
    code, out, _ = run("unblock", A, client=fake)
    assert code == admin.EXIT_ERROR and out.startswith(f"not blocked: {A}")


def test_blocks_lists_hashes_times_and_notes() -> None:
    fake = FakeTable()
    code, out, _ = run("blocks", client=fake)
    assert code == admin.EXIT_OK and "(no blocked callers)" in out
    UsageStore(fake, "limits").block(B, at=1_900_000_100)
    UsageStore(fake, "limits").block(A, at=1_900_000_000, note="drains it")
    code, out, _ = run("blocks", client=fake)
    rows = out.splitlines()[1:]
    assert code == admin.EXIT_OK and len(rows) == 2
    assert rows[0].split() == [A, "2030-03-17", "17:46:40Z", "drains", "it"]
    assert rows[1].split() == [B, "2030-03-17", "17:48:20Z"]


# --- the report -------------------------------------------------------------------------------------------------------

def test_the_store_reads_a_day_over_pages() -> None:
    items = [
        {"pk": {"S": table.day_pk(DAY)}, table.CALL_SECONDS: {"N": "930"}, table.COUNT: {"N": "2"},
         "call_seconds_anonymous": {"N": "750"}, "call_seconds_api_key": {"N": "120"}, "issued_api_key": {"N": "2"}},
        spent(DAY, A, "anonymous", 600, 3, "203.0.113.0/24"), spent(DAY, B, "api_key", 120, 1, issued=2),
        spent(DAY, C, "anonymous", 150, 2, "2001:db8:1:2::/64"), spent("2031-05-16", C, "anonymous", 999, 9),
        *(call(str(n), DAY, "ended", "caller") for n in range(3)), call("3", DAY, "ended", "leash"),
        call("4", DAY, "active"), call("5", DAY, "active"), call("6", "2031-05-16", "ended", "sweeper"),
        {"pk": {"S": table.block_pk(A)}, table.BLOCKED_AT: {"N": "1900000000"}, table.BLOCK_NOTE: {"S": "drains it"}},
    ]
    fake = FakeTable(items)
    report = UsageStore(fake, "limits").day(DAY)
    assert fake.scans > 1  # paged
    assert report == REPORT


def test_usage_text_by_lane_callers_and_endings() -> None:
    text = admin.usage_text(REPORT, 2)
    lines = text.splitlines()
    assert lines[0] == f"Usage on {DAY} (UTC)"
    assert [line.split() for line in lines[3:8]] == [
        ["LANE", "MINUTES", "SECONDS", "TOKENS"], ["anonymous", "12.5", "750", "0"], ["api_key", "2.0", "120", "2"],
        ["user", "0.0", "0", "0"], ["(no", "lane)", "1.0", "60"]]
    assert lines[8].split() == ["total", "15.5", "930", "2"]
    assert "Top callers by minutes (2 of 3):" in lines
    top = lines[lines.index("Top callers by minutes (2 of 3):") + 2:][:2]
    assert top[0].split() == [A, "anonymous", "203.0.113.0/24", "10.0", "600", "3", "blocked"]
    assert top[1].split() == [C, "anonymous", "2001:db8:1:2::/64", "2.5", "150", "2"]
    assert B not in text  # beyond --top
    assert "Calls set up: 6, still active: 2" in lines
    assert "  ended by caller: 3" in lines and "  ended by leash: 1" in lines
    assert lines[-1] == "Blocked callers: 1 (see `blocks`)"


def test_usage_text_of_an_empty_day() -> None:
    empty = DayUsage(day=DAY, call_seconds=0, issued=0, lanes=tuple(LaneUsage(lane, 0, 0) for lane in table.LANES),
                     callers=(), ended_by={}, active=0, calls_by_lane={}, blocks=())
    text = admin.usage_text(empty, 10)
    assert "(no lane)" not in text and "Top callers by minutes (0 of 0):\n  (none)" in text
    assert "Calls set up: 0, still active: 0" in text and text.endswith("Blocked callers: 0\n")


def test_usage_json_for_scripts() -> None:
    data = admin.usage_json(REPORT, 10)
    assert data["day"] == DAY and data["call_seconds"] == 930 and data["call_minutes"] == 15.5
    assert data["lanes"]["anonymous"] == {"call_seconds": 750, "call_minutes": 12.5, "issued": 0}
    assert data["unattributed_call_seconds"] == 60 and data["callers"] == 3
    assert [c["caller"] for c in data["top_callers"]] == [A, C, B]
    assert data["top_callers"][0] == {"caller": A, "kind": "anonymous", "network": "203.0.113.0/24",
                                      "call_seconds": 600, "call_minutes": 10.0, "calls": 3, "issued": 0,
                                      "blocked": True}
    assert data["calls"] == {"set_up": 6, "active": 2, "ended_by": {"caller": 3, "leash": 1}, "by_lane": {}}
    assert data["blocked_callers"] == 1
    json.dumps(data)


def test_usage_defaults_to_the_clocks_utc_day() -> None:
    fake = FakeTable([spent("2032-05-17", A, "anonymous", 60, 1, "203.0.113.0/24"),
                      spent(DAY, B, "anonymous", 60, 1, "198.51.100.0/24")])
    code, out, _ = run("usage", "--json", client=fake)
    data = json.loads(out)
    assert code == admin.EXIT_OK and data["day"] == "2032-05-17" and [c["caller"] for c in data["top_callers"]] == [A]
    code, out, _ = run("usage", "--day", DAY, client=fake)
    assert code == admin.EXIT_OK and out.startswith(f"Usage on {DAY} (UTC)") and B in out and A not in out
