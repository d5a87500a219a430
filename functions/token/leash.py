"""The leash function: ends calls at their time limit. Two callers, one job.

- The call's timer (a Step Functions execution that waited until the call's end) sends `{"call_id", "backend"}`:
  hang that call up at OpenAI, whatever its record says (a call hung up early gets OpenAI's 404, which is fine). A
  failure is raised, so the state machine retries with backoff for about four minutes.
- The sweeper (an EventBridge Scheduler schedule, every minute) sends `{"sweep": true}`: hang up every call past
  its end that is not marked ended, in case a timer failed for good.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from tokenvend import wiring
from tokenvend.metric_names import LEASH_FAILURES, tally
from tokenvend.observability import logger, metrics
from tokenvend.settings import LeashSettings

services = wiring.build_leash(LeashSettings.from_env())


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    if event.get("sweep") is True:
        result: dict[str, Any] = services.ender.sweep()
        logger.info("sweep", extra=result)
        return result
    call_id = event.get("call_id")
    if not isinstance(call_id, str) or not call_id:
        logger.error("leash event without a call_id", extra={"keys": sorted(event)})
        return {"outcome": "ignored"}
    logger.append_keys(call_id=call_id)
    backend = event.get("backend")
    try:
        ending = services.ender.end_by_id(call_id, by="leash", backend=backend if isinstance(backend, str) else None)
    except Exception:
        tally(LEASH_FAILURES, stage="timer")
        logger.exception("could not end the call; the timer will retry")
        raise
    logger.info("leash", extra={"outcome": ending.outcome})
    return {"call_id": call_id, "outcome": ending.outcome}
