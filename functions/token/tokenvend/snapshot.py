"""Lambda SnapStart (the template's `SnapStart` parameter): the init (imports, settings, clients) runs once when a
version is published, and every new container resumes from that one snapshot. So nothing made at init may be
unique to a container or tied to the moment it ran:

- no connection is opened at init (botocore and httpx connect on first use), so none is captured half-open;
- no secret is read at init (the key and the salt are fetched on the first request and cached from then on);
- `secrets`, `uuid4` and `os.urandom` read the kernel's entropy at each call, which a restored microVM re-seeds;
- the `random` module's generator, seeded once at import, is the one state every resumed container would share:
  it is re-seeded after each restore (its only use is retry jitter, which must differ between containers).

The hooks come from `snapshot_restore_py`, which Lambda's Python runtimes include; it is no dependency of the
package. Where it is absent (outside Lambda, on the local system, in tests) nothing is snapshotted and nothing
needs restoring, so registering is a no-op.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

try:
    from snapshot_restore_py import register_after_restore as _register_after_restore
except ImportError:  # not in Lambda's runtime: no snapshot will ever be restored
    _register_after_restore = None

AFTER_RESTORE: list[Callable[[], Any]] = []


def after_restore(hook: Callable[[], Any]) -> Callable[[], Any]:
    """Run `hook` in every container resumed from a snapshot, before its first request."""
    AFTER_RESTORE.append(hook)
    if _register_after_restore is not None:
        _register_after_restore(hook)
    return hook


@after_restore
def reseed_random() -> None:
    random.seed()
