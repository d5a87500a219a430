"""Signed-in users: the owner's hook that gives a fresh JWT for each call set up on `/user/calls`.

A stack deployed with `JwtIssuer` and `JwtAudience` opens `POST /user/calls` behind API Gateway's JWT authorizer:
the caller is the token's `sub`, with the signed-in users' own minutes. The client never keeps a token: it asks the
hook once per call, so a token that expired since the last call is never sent.

    async def user_token() -> str:              # your code: your identity provider's SDK, a refresh, a cache
        return await my_auth.fresh_access_token()

    setup = CallSetup("https://<id>.execute-api.<region>.amazonaws.com", user_token=user_token)

`talk --user-token-command "<command>"` is the same hook for a shell: the command runs for each call and prints
the token on stdout.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

from realtime_client.errors import UserTokenFailed

UserToken = Callable[[], Awaitable[str]]

COMMAND_TIMEOUT = 30.0  # a command may open a browser sign-in; longer than that is a hung command


async def fresh_token(hook: UserToken) -> str:
    """The hook's token, checked to be one (a JWT is one line of base64url and dots)."""
    token = await hook()
    if not isinstance(token, str) or not token.strip() or any(c.isspace() for c in token.strip()):
        raise UserTokenFailed("the user_token hook returned no token (expected a JWT as a one-line string)")
    return token.strip()


def command_token(command: str, timeout: float = COMMAND_TIMEOUT) -> UserToken:
    """A hook running `command` in a shell for each token: its stdout is the token. The token is never printed,
    and its failure's message carries the command's stderr (its own words), never its stdout."""

    async def token() -> str:
        process = await asyncio.create_subprocess_shell(
            command, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE)
        try:
            out, err = await asyncio.wait_for(process.communicate(), timeout)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()
            raise UserTokenFailed(f"the user token command gave no token within {timeout:g} s") from None
        if process.returncode != 0:
            said = " ".join(err.decode(errors="replace").split())[:200]
            raise UserTokenFailed(f"the user token command exited {process.returncode}" + (f": {said}" if said else ""))
        value = out.decode(errors="replace").strip()
        if not value or any(c.isspace() for c in value):
            raise UserTokenFailed("the user token command printed no token (expected one line: the JWT)")
        return value

    return token
