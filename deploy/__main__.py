"""`make deploy-check`: the deploy rehearsed on a new account (concurrency quota 10) over a small parameter matrix,
and the reserved concurrency that such an account refuses. Prints one line per case; exit 1 on any failure.

    python -m deploy [BUILT_TEMPLATE] [Name=Value ...]   # default .aws-sam/build/template.yaml; your own case too
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

from deploy import providers
from deploy.rehearsal import Case, RehearsalFailed, moto_account, package, rehearse
from local.parameters import ParameterError, parse_overrides

NEW_ACCOUNT_QUOTA = 10


def matrix(existing_secret: str) -> list[Case]:
    return [
        Case("defaults"),
        Case("existing-secret", {"ExistingSecretArn": existing_secret,
                                 "AllowedOrigins": "https://app.example,http://localhost:8080"}),
        Case("alerts", {"AlertEmail": "owner@example.com", "EnableTokenRoute": "true", "SnapStart": "true",
                        "VoiceBackend": "live", "DailyCallMinutes": "30"}),
        Case("signed-in-users", {"JwtIssuer": "https://cognito-idp.us-east-1.amazonaws.com/us-east-1_Example",
                                 "JwtAudience": "4example0client0id"}),
    ]


def main(argv: list[str]) -> int:
    template = Path(argv[0]) if argv and "=" not in argv[0] else Path(".aws-sam/build/template.yaml")
    try:
        own = parse_overrides(" ".join(a for a in argv if "=" in a))
    except ParameterError as exc:
        print(exc, file=sys.stderr)
        return 2
    if not template.is_file():
        print(f"{template}: no built template (run `sam build` or `make build` first)", file=sys.stderr)
        return 2
    started, failures = time.monotonic(), 0
    with moto_account(NEW_ACCOUNT_QUOTA), tempfile.TemporaryDirectory() as work:
        packaged = package(template, Path(work) / "packaged.yaml")
        print(f"sam package: {time.monotonic() - started:.1f} s")
        secret = providers.client("secretsmanager").create_secret(Name="owners-key", SecretString="sk-x")["ARN"]
        cases = matrix(secret) + ([Case("yours", own)] if own else [])
        for case in cases:
            try:
                outcome = rehearse(packaged, case)
                print(f"PASS {case.name}: {outcome.resources} resources, {outcome.checks} checks, {outcome.seconds} s")
            except RehearsalFailed as exc:
                failures += 1
                print(f"FAIL {exc}")
        # A new account refuses what the template reserved until now: the rehearsal must see that too.
        try:
            rehearse(packaged, Case("reserved-20", {"ReservedConcurrency": "20"}))
            failures += 1
            print(f"FAIL reserved-20: a quota of {NEW_ACCOUNT_QUOTA} took a reservation of 20")
        except RehearsalFailed as exc:
            ok = "TokenFunction" in str(exc) and "UnreservedConcurrentExecution" in str(exc)
            failures += not ok
            print(f"{'PASS' if ok else 'FAIL'} reserved-20 refused on a new account: {exc}")
    print(f"deploy rehearsal: {len(cases) + 1 - failures} of {len(cases) + 1} cases as expected, "
          f"{time.monotonic() - started:.1f} s")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
