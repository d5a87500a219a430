"""Ending a call for good: hang it up at OpenAI with the owner's key, then mark it ended. Used by the leash (the
per-call timer and the sweeper) and by an early hangup.

OpenAI answering 404 means the call had already ended: that is success. Any other failure is raised, so the timer's
retries, and after them the sweeper, try again: a call is marked ended only once OpenAI has let it go.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping

from tokenvend.backends import CallHangup
from tokenvend.call_records import CallRecord, CallRecords, CallState
from tokenvend.metric_names import CALLS_ENDED, LEASH_FAILURES, UPSTREAM_LATENCY, tally
from tokenvend.observability import latency, logger
from tokenvend.secret_store import SecretStore
from tokenvend.upstream import with_key_refresh

# The sweeper leaves a call this long past its end to its own timer (whose retries take 1 + 2 + 4 s) before it
# steps in, so the two rarely hang up the same call twice (which would be harmless: the second gets a 404).
SWEEP_GRACE_SECONDS = 10


class CallEnder:
    def __init__(self, secrets: SecretStore, records: CallRecords, hangups: Mapping[str, CallHangup],
                 clock: Callable[[], float] = time.time) -> None:
        self._secrets = secrets
        self._records = records
        self._hangups = hangups
        self._clock = clock

    def hang_up(self, record: CallRecord) -> bool:
        """Hang the call up at OpenAI; True if it was still going there. Raises if OpenAI could not be told."""
        hangup = self._hangups[record.backend]
        timed = with_key_refresh(self._secrets, self._secrets.openai_key(),
                                 lambda key: hangup.hang_up(key, record.call_id))
        latency(UPSTREAM_LATENCY, timed.latency_ms)
        return timed.value

    def end(self, call_id: str, *, by: str) -> str:
        """Hang up and mark ended, unless it already is. The outcome, for the log and the caller."""
        record = self._records.get(call_id)
        if record is None:
            logger.warning("asked to end an unknown call", extra={"call_id": call_id, "by": by})
            return "unknown"
        if record.state is CallState.ENDED:
            return "already_ended"
        live = self.hang_up(record)
        self._records.end(call_id, by=by, at=int(self._clock()))
        tally(CALLS_ENDED, by=by)
        return "hung_up" if live else "already_gone"

    def sweep(self) -> dict[str, int]:
        """Every active call past its end (and the grace), ended; a failure is counted and left for the next sweep."""
        due = self._records.due(int(self._clock()) - SWEEP_GRACE_SECONDS)
        failed = 0
        for record in due:
            try:
                self.end(record.call_id, by="sweeper")
            except Exception:
                failed += 1
                tally(LEASH_FAILURES, stage="sweeper")
                logger.exception("the sweeper could not end a call", extra={"call_id": record.call_id})
        return {"due": len(due), "failed": failed}
