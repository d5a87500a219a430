"""Ending a call for good: hang it up at OpenAI with the owner's key, then mark it ended. Used by the leash (the
per-call timer and the sweeper), by an early hangup, by a call that could not be leashed, and by the owner's
`pause --hang-up-all`.

OpenAI is always asked, whatever the call's record says: a record can be wrong (an earlier hangup whose answer was
wrong, a write that failed), OpenAI's answer cannot. Its 404 means the call had already ended: that is success. On
GPT-Live the end is confirmed through the sideband (`backends.LiveHangup`). Any other failure is raised, so the
timer's retries, and after them the sweeper, try again: a call is marked ended only once OpenAI has let it go.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import NamedTuple

from tokenvend.backends import CallHangup
from tokenvend.call_records import CallRecord, CallRecords, CallState
from tokenvend.metric_names import CALLS_ENDED, LEASH_FAILURES, tally
from tokenvend.observability import logger
from tokenvend.openai_client import UpstreamFailure
from tokenvend.secret_store import SecretStore
from tokenvend.upstream import as_api_error, with_key_refresh

# The sweeper leaves a call this long past its end to its own timer before it steps in. The two may still hang up
# the same call twice, which is harmless: the second gets a 404.
SWEEP_GRACE_SECONDS = 10


class Ending(NamedTuple):
    outcome: str  # "hung_up" (it was still going at OpenAI), "already_gone" (it was not), "unknown" (no such call)
    marked: bool  # whether this ending is the one that marked the record ended (it alone may credit seconds)


class CallEnder:
    def __init__(self, secrets: SecretStore, records: CallRecords, hangups: Mapping[str, CallHangup],
                 clock: Callable[[], float] = time.time) -> None:
        self._secrets = secrets
        self._records = records
        self._hangups = hangups
        self._clock = clock

    def hang_up(self, backend: str, call_id: str) -> bool:
        """Hang the call up at OpenAI; True if it was still going there. ApiError if OpenAI could not be told or
        (GPT-Live) did not confirm the end."""
        hangup = self._hangups[backend]
        try:
            timed = with_key_refresh(self._secrets, self._secrets.openai_key(),
                                     lambda key: hangup.hang_up(key, call_id))
        except UpstreamFailure as failure:
            raise as_api_error(failure) from None
        return timed.value

    def end(self, record: CallRecord, *, by: str) -> Ending:
        """Hang up at OpenAI (always), then mark the record ended unless it already is."""
        live = self.hang_up(record.backend, record.call_id)
        marked = record.state is CallState.ACTIVE and self._records.end(record.call_id, by=by, at=int(self._clock()))
        if marked:
            tally(CALLS_ENDED, by=by)
        return Ending("hung_up" if live else "already_gone", marked)

    def end_by_id(self, call_id: str, *, by: str, backend: str | None = None) -> Ending:
        """The leash's ending: by the call's id, with the backend its timer carries in case there is no record."""
        record = self._records.get(call_id)
        if record is not None:
            return self.end(record, by=by)
        if backend not in self._hangups:
            logger.warning("asked to end an unknown call", extra={"call_id": call_id, "by": by})
            return Ending("unknown", False)
        logger.warning("ending a call that has no record", extra={"call_id": call_id, "by": by})
        return Ending("hung_up" if self.hang_up(backend, call_id) else "already_gone", False)

    def sweep(self) -> dict[str, int]:
        """Every active call past its end (and the grace), ended; a failure is counted and left for the next sweep."""
        return self._end_all(self._records.due(int(self._clock()) - SWEEP_GRACE_SECONDS), by="sweeper")

    def end_all_active(self, *, by: str) -> dict[str, int]:
        """Every call still active, whatever its end: the owner's `pause --hang-up-all`."""
        return self._end_all(self._records.active(), by=by)

    def _end_all(self, records: list[CallRecord], *, by: str) -> dict[str, int]:
        failed = 0
        for record in records:
            try:
                self.end(record, by=by)
            except Exception:  # one call that cannot be ended must not keep the others from it
                failed += 1
                tally(LEASH_FAILURES, stage=by)
                logger.exception("could not end a call", extra={"call_id": record.call_id, "by": by})
        return {"due": len(records), "failed": failed}
