"""Give moto the one guarantee the limiter relies on and DynamoDB has: each write is atomic.

The moto server answers requests on many threads against an unlocked in-memory backend. Its TransactWriteItems
checks conditions and applies updates as separate steps, and undoes a cancelled transaction by restoring a copy of
the whole table taken when it began (a deep copy that fails outright if another thread writes meanwhile, and that
erases writes other transactions committed in between). Unserialised, the day counter was seen to end below the
number of transactions that succeeded, and callers got more than their burst. Serialising moto's item operations
(still over HTTP, still from separate processes) models DynamoDB, where this cannot happen.
"""

from __future__ import annotations

import threading
from typing import Any

from moto.dynamodb.models import DynamoDBBackend

OPERATIONS = ("transact_write_items", "update_item", "put_item", "delete_item", "get_item", "query", "scan")
_LOCK = threading.RLock()


def serialise_item_operations() -> None:
    """Process-wide and idempotent: every moto server in this process gets it."""
    for name in OPERATIONS:
        original = getattr(DynamoDBBackend, name)
        if getattr(original, "_serialised", False):
            continue

        def locked(self: Any, *args: Any, _original: Any = original, **kwargs: Any) -> Any:
            with _LOCK:
                return _original(self, *args, **kwargs)

        locked._serialised = True  # type: ignore[attr-defined]
        setattr(DynamoDBBackend, name, locked)
