"""The owner's admin command, run with the owner's own AWS credentials (never by the function):

    PYTHONPATH=functions/token python -m tokenvend.admin --table <name> create <name> [--burst N] [--rate-per-hour R]
    ... list | revoke <id-or-name> | pause [--hang-up-all --secret-id <arn>] | resume | status

`create` prints the new key once; only its SHA-256 is stored. `pause` sets the kill switch every issuing
transaction checks, so it takes effect on the next request; with `--hang-up-all` it also ends every call still
running, the way the leash does (hung up at OpenAI with the key in `--secret-id`, the stack's OpenAISecretArn,
then marked ended). `--table` defaults to $TABLE_NAME, `--secret-id` to $OPENAI_SECRET_ARN.
Exit codes: 0 ok, 1 error, 2 usage.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import sys
import time
from datetime import UTC, datetime
from typing import Any, TextIO

from botocore.exceptions import BotoCoreError, ClientError

from tokenvend import table
from tokenvend.api_keys import ApiKeyRecord, ApiKeyStore
from tokenvend.call_ending import CallEnder
from tokenvend.settings import DEFAULT_OPENAI_BASE_URL, LeashSettings

EXIT_OK, EXIT_ERROR, EXIT_USAGE = 0, 1, 2


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
    return parser


def main(argv: list[str] | None = None, *, client: Any = None, out: TextIO | None = None,
         err: TextIO | None = None) -> int:
    out = out or sys.stdout
    err = err or sys.stderr
    parser = build_parser()
    try:
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
    if client is None:
        import boto3

        client = boto3.client("dynamodb")
    try:
        return _run(args, client, out)
    except (ClientError, BotoCoreError) as exc:
        print(f"error: {exc}", file=err)
    except (LookupError, ValueError) as exc:
        print(f"error: {exc}", file=err)
    return EXIT_ERROR


def _run(args: argparse.Namespace, client: Any, out: TextIO) -> int:
    store = ApiKeyStore(client, args.table)
    match args.command:
        case "create":
            key, record = store.create(args.name, burst=args.burst, rate_per_hour=args.rate_per_hour)
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
            day = datetime.now(UTC).strftime("%Y-%m-%d")
            day_item = client.get_item(TableName=args.table, Key={table.PK: {"S": table.day_pk(day)}},
                                       ConsistentRead=True).get("Item") or {}
            control = client.get_item(TableName=args.table, Key={table.PK: {"S": table.CONTROL_PK}},
                                      ConsistentRead=True).get("Item") or {}
            issued = int(day_item.get(table.COUNT, {}).get("N", "0"))
            paused = control.get(table.PAUSED, {}).get("BOOL", False)
            print(f"issued today ({day} UTC): {issued}", file=out)
            print(f"issuing: {'paused' if paused else 'active'}", file=out)
    return EXIT_OK


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
