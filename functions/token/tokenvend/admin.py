"""The owner's admin command, run with the owner's own AWS credentials (never by the function):

    PYTHONPATH=functions/token python -m tokenvend.admin --table <name> create <name> [--burst N] [--rate-per-hour R]
    ... list | revoke <id-or-name> | pause [--hang-up-all --secret-id <arn>] | resume | status
    ... usage [--day YYYY-MM-DD] [--top N] [--json] | block CALLER [--note TEXT] | unblock CALLER | blocks

`create` prints the new key once; only its SHA-256 is stored. `pause` sets the kill switch every issuing
transaction checks, so it takes effect on the next request; with `--hang-up-all` it also ends every call still
running, the way the leash does (hung up at OpenAI with the key in `--secret-id`, the stack's OpenAISecretArn,
then marked ended). `--table` defaults to $TABLE_NAME, `--secret-id` to $OPENAI_SECRET_ARN.

`usage` shows a UTC day (default today): minutes held by lane, the top callers by minutes, calls by how they ended,
and how many callers are blocked. Callers appear only as their salted hashes (as in the function's logs), with the
/24 or /64 an address falls in. `block CALLER` refuses that caller's next request with `403 caller_blocked`, before
anything is charged; `unblock` lifts it, `blocks` lists them. CALLER is a hash from `usage` or the logs, an IP
address (IPv6: its /64), `key:<key id or name>` or `user:<sub>`; all but the hash need the hashing salt, read from
`--salt-secret-id` (default $HASH_SALT_SECRET_ARN).
Exit codes: 0 ok, 1 error (and `unblock` of a caller that was not blocked), 2 usage.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import ipaddress
import json
import os
import re
import sys
import time
from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import Any, NamedTuple, TextIO

from botocore.exceptions import BotoCoreError, ClientError

from tokenvend import table
from tokenvend.api_keys import ApiKeyRecord, ApiKeyStore
from tokenvend.call_ending import CallEnder
from tokenvend.caller import IPV6_PREFIX_LENGTH, address_identity, caller_hash, key_identity, network_of, user_identity
from tokenvend.errors import ApiError
from tokenvend.settings import DEFAULT_OPENAI_BASE_URL, LeashSettings
from tokenvend.usage import Block, CallerDay, DayUsage, UsageStore

EXIT_OK, EXIT_ERROR, EXIT_USAGE = 0, 1, 2
DEFAULT_TOP = 10
_HASH = re.compile(r"[0-9a-fA-F]{32}")
_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")


class CallerSpec(NamedTuple):
    """A caller as the owner named it: `given` is echoed back; `kind` says how to turn `value` into its hash."""

    given: str
    kind: str  # "hash", "address", "key" or "user"
    value: str  # the hash; the identity's network (address); the key id or name; the sub


def parse_caller(raw: str) -> CallerSpec:
    text = raw.strip()
    if _HASH.fullmatch(text):
        return CallerSpec(raw, "hash", text.lower())
    prefix, _, rest = text.partition(":")
    if prefix in ("key", "user"):
        if not rest.strip():
            raise argparse.ArgumentTypeError(f"{prefix}: needs a {'key id or name' if prefix == 'key' else 'sub'}")
        return CallerSpec(raw, prefix, rest.strip() if prefix == "key" else rest)
    try:
        return CallerSpec(raw, "address", network_of(text))
    except ValueError:
        pass
    try:
        network = ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not a caller: {raw!r} (give a 32-hex-digit hash, an IP address, key:<id or name> or user:<sub>)",
        ) from None
    # An IPv6 caller is its /64, so the owner may name it as `usage` shows it; an IPv4 caller is one address, and
    # the table has no way to block a whole /24 at once.
    if network.version == 6 and network.prefixlen == IPV6_PREFIX_LENGTH:
        return CallerSpec(raw, "address", str(network))
    raise argparse.ArgumentTypeError(f"{raw!r}: only one IPv4 address or an IPv6 /64 is one caller")


def _day(raw: str) -> str:
    try:
        if not _DAY.fullmatch(raw):
            raise ValueError(raw)
        return date.fromisoformat(raw).isoformat()
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a UTC day as YYYY-MM-DD, got {raw!r}") from None


def _positive_int(raw: str) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, got {raw!r}") from None
    if not 1 <= value <= 10_000:
        raise argparse.ArgumentTypeError(f"must be between 1 and 10000, got {value}")
    return value


def _positive_rate(raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {raw!r}") from None
    if not 0.001 <= value <= 1_000_000:  # also refuses nan and inf
        raise argparse.ArgumentTypeError(f"must be between 0.001 and 1000000, got {raw}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m tokenvend.admin",
                                     description="Manage API keys and the kill switch of the token API.")
    parser.add_argument("--table", default=os.environ.get("TABLE_NAME"),
                        help="the LimitsTable name (stack output); default $TABLE_NAME")
    commands = parser.add_subparsers(dest="command", required=True, metavar="command")
    create = commands.add_parser("create", help="create an API key and print it once")
    create.add_argument("name", help="a label for the key, e.g. the app or person using it")
    create.add_argument("--burst", type=_positive_int, help="this key's burst (default: the stack's ApiKeyBurst)")
    create.add_argument("--rate-per-hour", type=_positive_rate,
                        help="tokens per hour this key earns back (default: the stack's ApiKeyRatePerHour)")
    create.add_argument("--daily-minutes", type=_positive_rate,
                        help="call minutes this key may hold per UTC day, within the API keys' lane "
                             "(default: the stack's CallerDailyCallMinutes)")
    commands.add_parser("list", help="list keys (never the keys themselves)")
    revoke = commands.add_parser("revoke", help="revoke a key, effective on its next request")
    revoke.add_argument("key", metavar="id-or-name", help="the key id from `list`, or its name if unique")
    pause = commands.add_parser("pause", help="stop all new calls and tokens now (kill switch)")
    pause.add_argument("--hang-up-all", action="store_true",
                       help="also end every running call now, as the leash does")
    pause.add_argument("--secret-id", default=os.environ.get("OPENAI_SECRET_ARN"),
                       help="the OpenAISecretArn output (for --hang-up-all); default $OPENAI_SECRET_ARN")
    pause.add_argument("--openai-base-url", default=os.environ.get("OPENAI_BASE_URL") or DEFAULT_OPENAI_BASE_URL,
                       help="where OpenAI is (for --hang-up-all); default $OPENAI_BASE_URL or OpenAI's")
    commands.add_parser("resume", help="resume issuing tokens")
    commands.add_parser("status", help="today's issued count and whether issuing is paused")
    usage = commands.add_parser("usage", help="a day's minutes by lane, its top callers, calls by how they ended")
    usage.add_argument("--day", type=_day, help="the UTC day, YYYY-MM-DD (default: today)")
    usage.add_argument("--top", type=_positive_int, default=DEFAULT_TOP,
                       help=f"how many callers to list (default {DEFAULT_TOP})")
    usage.add_argument("--json", action="store_true", help="one JSON object, for scripts")
    salt_help = ("the hashing salt's secret (HashSaltSecretArn output), needed unless CALLER is a hash; "
                 "default $HASH_SALT_SECRET_ARN")
    caller_help = "a caller hash (from usage or the logs), an IP address, key:<key id or name> or user:<sub>"
    block = commands.add_parser("block", help="refuse a caller (403 caller_blocked) from its next request on")
    block.add_argument("caller", metavar="CALLER", type=parse_caller, help=caller_help)
    block.add_argument("--note", help="why, for `blocks` to show")
    block.add_argument("--salt-secret-id", default=os.environ.get("HASH_SALT_SECRET_ARN"), help=salt_help)
    unblock = commands.add_parser("unblock", help="lift a block")
    unblock.add_argument("caller", metavar="CALLER", type=parse_caller, help=caller_help)
    unblock.add_argument("--salt-secret-id", default=os.environ.get("HASH_SALT_SECRET_ARN"), help=salt_help)
    commands.add_parser("blocks", help="list the blocked callers")
    return parser


def main(argv: list[str] | None = None, *, client: Any = None, out: TextIO | None = None,
         err: TextIO | None = None, secrets_client: Any = None, clock: Callable[[], float] = time.time) -> int:
    """`client` (DynamoDB) and `secrets_client` default to boto3's; `clock` names today for `usage` and `status`."""
    out = out or sys.stdout
    err = err or sys.stderr
    parser = build_parser()
    try:
        # argparse writes its usage and errors to sys.stderr (and --help to sys.stdout): into the streams given.
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
            args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse has printed the usage
        return EXIT_OK if exc.code in (0, None) else EXIT_USAGE
    if not args.table:
        parser.print_usage(err)
        print("error: give --table <name> or set TABLE_NAME", file=err)
        return EXIT_USAGE
    if getattr(args, "hang_up_all", False) and not args.secret_id:
        parser.print_usage(err)
        print("error: --hang-up-all needs the key: give --secret-id <OpenAISecretArn> or set OPENAI_SECRET_ARN",
              file=err)
        return EXIT_USAGE
    caller = getattr(args, "caller", None)
    if caller is not None and caller.kind != "hash" and not args.salt_secret_id:
        parser.print_usage(err)
        print(f"error: {caller.given!r} is hashed with the stack's salt: give --salt-secret-id <HashSaltSecretArn> "
              "or set HASH_SALT_SECRET_ARN (or give the caller's hash)", file=err)
        return EXIT_USAGE
    if client is None:
        import boto3

        client = boto3.client("dynamodb")
    try:
        return _run(args, client, out, secrets_client=secrets_client, clock=clock)
    except (ClientError, BotoCoreError) as exc:
        print(f"error: {exc}", file=err)
    except ApiError as exc:  # the salt, read as the function reads it
        print(f"error: could not read the hashing salt from {args.salt_secret_id}: {exc.message}", file=err)
    except (LookupError, ValueError) as exc:
        print(f"error: {exc}", file=err)
    return EXIT_ERROR


def _run(args: argparse.Namespace, client: Any, out: TextIO, *, secrets_client: Any = None,
         clock: Callable[[], float] = time.time) -> int:
    store = ApiKeyStore(client, args.table)
    match args.command:
        case "create":
            key, record = store.create(args.name, burst=args.burst, rate_per_hour=args.rate_per_hour,
                                       daily_call_minutes=args.daily_minutes)
            print(f"id:   {record.key_id}", file=out)
            print(f"name: {record.name}", file=out)
            print(f"key:  {key}", file=out)
            print("Store the key now: it is shown only this once (the table keeps only its hash).", file=out)
        case "list":
            records = store.list()
            print(f"{'ID':<12}  {'NAME':<24}  {'CREATED':<20}  {'LAST USED':<20}  {'REVOKED':<7}  LIMITS", file=out)
            for record in records:
                print(_row(record), file=out)
            if not records:
                print("(no keys)", file=out)
        case "revoke":
            record = store.revoke(args.key)
            print(f"revoked {record.key_id} ({record.name})", file=out)
        case "pause" | "resume":
            paused = args.command == "pause"
            client.update_item(
                TableName=args.table,
                Key={table.PK: {"S": table.CONTROL_PK}},
                UpdateExpression="SET #paused = :paused, #changed = :now",
                ExpressionAttributeNames={"#paused": table.PAUSED, "#changed": "changed_at"},
                ExpressionAttributeValues={":paused": {"BOOL": paused}, ":now": {"N": str(int(time.time()))}},
            )
            print("issuing paused: no call or token is started until `resume`" if paused else "issuing resumed",
                  file=out)
            if paused and args.hang_up_all:
                ender = _ender(args.table, args.secret_id, args.openai_base_url)
                # The functions' metrics go to CloudWatch through Lambda's log; here they would only clutter stdout.
                with contextlib.redirect_stdout(io.StringIO()):
                    result = ender.end_all_active(by="owner")
                print(f"running calls ended: {result['due'] - result['failed']} of {result['due']}", file=out)
                if result["failed"]:
                    print(f"{result['failed']} could not be ended now; their leash still ends them. Run it again "
                          "to retry.", file=out)
                    return EXIT_ERROR
        case "status":
            day = _today(clock)
            day_item = client.get_item(TableName=args.table, Key={table.PK: {"S": table.day_pk(day)}},
                                       ConsistentRead=True).get("Item") or {}
            control = client.get_item(TableName=args.table, Key={table.PK: {"S": table.CONTROL_PK}},
                                      ConsistentRead=True).get("Item") or {}
            issued = int(day_item.get(table.COUNT, {}).get("N", "0"))
            paused = control.get(table.PAUSED, {}).get("BOOL", False)
            print(f"issued today ({day} UTC): {issued}", file=out)
            print(f"issuing: {'paused' if paused else 'active'}", file=out)
        case "usage":
            report = UsageStore(client, args.table).day(args.day or _today(clock))
            if args.json:
                print(json.dumps(usage_json(report, args.top), indent=2), file=out)
            else:
                out.write(usage_text(report, args.top))
        case "block":
            caller = _caller_hash(args.caller, store, args.salt_secret_id, secrets_client)
            block, new = UsageStore(client, args.table).block(caller, at=int(clock()), note=args.note)
            if new:
                print(f"blocked {caller} {_given(args.caller)}: its next request gets 403 caller_blocked", file=out)
            else:
                print(f"already blocked {caller} {_given(args.caller)} since {_when(block.blocked_at)}"
                      f"{_note(block)}", file=out)
        case "unblock":
            caller = _caller_hash(args.caller, store, args.salt_secret_id, secrets_client)
            lifted = UsageStore(client, args.table).unblock(caller)
            if lifted is None:
                print(f"not blocked: {caller} {_given(args.caller)}", file=out)
                return EXIT_ERROR  # most likely the wrong form of the caller: a script should hear of it
            print(f"unblocked {caller} {_given(args.caller)} (blocked since {_when(lifted.blocked_at)})", file=out)
        case "blocks":
            blocks = UsageStore(client, args.table).blocks()
            print(f"{'CALLER':<32}  {'BLOCKED AT':<20}  NOTE", file=out)
            for block in blocks:
                print(f"{block.caller:<32}  {_when(block.blocked_at):<20}  {block.note or ''}".rstrip(), file=out)
            if not blocks:
                print("(no blocked callers)", file=out)
    return EXIT_OK


def _today(clock: Callable[[], float]) -> str:
    return datetime.fromtimestamp(clock(), UTC).strftime("%Y-%m-%d")


def _caller_hash(spec: CallerSpec, store: ApiKeyStore, salt_secret_id: str | None, secrets_client: Any) -> str:
    """The hash the function files this caller under: the same identities and the same salt."""
    if spec.kind == "hash":
        return spec.value
    if spec.kind == "key":
        matches = [r for r in store.list() if spec.value in (r.key_id, r.name)]
        if len(matches) != 1:
            raise LookupError(f"{len(matches)} keys match {spec.value!r}; give the key id from `list`")
        identity = key_identity(matches[0].key_hash)
    elif spec.kind == "user":
        identity = user_identity(spec.value)
    else:
        identity = address_identity(spec.value)
    if not salt_secret_id:  # main() refuses this before any request; kept for other callers of this function
        raise ValueError(f"{spec.given!r} needs the hashing salt: give --salt-secret-id")
    return caller_hash(read_salt(salt_secret_id, secrets_client), identity)


def read_salt(secret_id: str, secrets_client: Any = None) -> bytes:
    """The salt as the function derives it (`SecretStore.hash_salt`), so the hashes match its own."""
    from aws_lambda_powertools.utilities.parameters import SecretsProvider

    from tokenvend.secret_store import SecretIds, SecretStore

    if secrets_client is None:
        import boto3

        secrets_client = boto3.client("secretsmanager")
    provider = SecretsProvider(boto3_client=secrets_client)
    return SecretStore(SecretIds(openai_key="", hash_salt=secret_id), 0, provider).hash_salt()


def _given(spec: CallerSpec) -> str:
    """What the owner typed, echoed (the only place a raw address, key name or sub is shown), and for an IPv6
    address the /64 it stands for."""
    if spec.kind == "hash":
        return "(the hash given)"
    if spec.kind == "address" and spec.value.endswith(f"/{IPV6_PREFIX_LENGTH}") and spec.value != spec.given.strip():
        return f"(given as {spec.given.strip()}: its /64 {spec.value})"
    return f"(given as {spec.given.strip()})"


def _note(block: Block) -> str:
    return f" (note: {block.note})" if block.note else ""


# --- the usage report ---------------------------------------------------------------------------------------------

def _minutes(seconds: int) -> str:
    return f"{seconds / 60:.1f}"


def usage_json(report: DayUsage, top: int) -> dict[str, Any]:
    blocked = report.blocked

    def caller(c: CallerDay) -> dict[str, Any]:
        return {"caller": c.caller, "kind": c.kind, "network": c.network, "call_seconds": c.call_seconds,
                "call_minutes": round(c.call_seconds / 60, 2), "calls": c.calls, "issued": c.issued,
                "blocked": c.caller in blocked}

    return {
        "day": report.day,
        "call_seconds": report.call_seconds,
        "call_minutes": round(report.call_seconds / 60, 2),
        "issued": report.issued,
        "lanes": {lane.lane: {"call_seconds": lane.call_seconds, "call_minutes": round(lane.call_seconds / 60, 2),
                              "issued": lane.issued} for lane in report.lanes},
        "unattributed_call_seconds": report.unattributed_seconds,
        "callers": len(report.callers),
        "top_callers": [caller(c) for c in report.callers[:top]],
        "calls": {"set_up": sum(report.ended_by.values()) + report.active, "active": report.active,
                  "ended_by": report.ended_by, "by_lane": report.calls_by_lane},
        "blocked_callers": len(report.blocks),
    }


def usage_text(report: DayUsage, top: int) -> str:
    lines = [f"Usage on {report.day} (UTC)", "",
             "Call minutes held (reserved at setup, less what was given back), and tokens:",
             f"  {'LANE':<10}  {'MINUTES':>8}  {'SECONDS':>8}  {'TOKENS':>7}"]
    for lane in report.lanes:
        lines.append(f"  {lane.lane:<10}  {_minutes(lane.call_seconds):>8}  {lane.call_seconds:>8}  {lane.issued:>7}")
    if report.unattributed_seconds:
        lines.append(f"  {'(no lane)':<10}  {_minutes(report.unattributed_seconds):>8}  "
                     f"{report.unattributed_seconds:>8}  {'':>7}")
    lines.append(f"  {'total':<10}  {_minutes(report.call_seconds):>8}  {report.call_seconds:>8}  {report.issued:>7}")
    lines += ["", f"Top callers by minutes ({min(top, len(report.callers))} of {len(report.callers)}):"]
    if report.callers:
        blocked = report.blocked
        lines.append(f"  {'CALLER':<32}  {'KIND':<9}  {'NETWORK':<22}  {'MINUTES':>8}  {'SECONDS':>8}  {'CALLS':>5}")
        for c in report.callers[:top]:
            lines.append((f"  {c.caller:<32}  {c.kind:<9}  {c.network or '-':<22}  {_minutes(c.call_seconds):>8}  "
                          f"{c.call_seconds:>8}  {c.calls:>5}  {'blocked' if c.caller in blocked else ''}").rstrip())
    else:
        lines.append("  (none)")
    set_up = sum(report.ended_by.values()) + report.active
    lines += ["", f"Calls set up: {set_up}, still active: {report.active}"]
    lines += [f"  ended by {by}: {count}" for by, count in report.ended_by.items()]
    if report.calls_by_lane:
        lines.append("  by lane: " + ", ".join(f"{lane} {n}" for lane, n in sorted(report.calls_by_lane.items())))
    lines += ["", f"Blocked callers: {len(report.blocks)}" + (" (see `blocks`)" if report.blocks else "")]
    return "\n".join(lines) + "\n"


def _ender(table_name: str, secret_id: str, openai_base_url: str) -> CallEnder:
    """The leash function's own ender, built from the owner's credentials."""
    from tokenvend.wiring import build_leash

    return build_leash(LeashSettings(openai_base_url=openai_base_url.rstrip("/"), openai_timeout_seconds=10,
                                     openai_secret_id=secret_id, table_name=table_name, secret_cache_seconds=0)).ender


def _row(record: ApiKeyRecord) -> str:
    limits = "default"
    if record.burst or record.rate_per_hour:
        limits = f"burst={record.burst or 'default'} rate/h={record.rate_per_hour or 'default'}"
    return (f"{record.key_id:<12}  {record.name:<24}  {_when(record.created_at):<20}  "
            f"{_when(record.last_used_at):<20}  {'yes' if record.revoked else 'no':<7}  {limits}")


def _when(epoch: int | None) -> str:
    if not epoch:
        return "never"
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


if __name__ == "__main__":
    sys.exit(main())
