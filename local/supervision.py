"""Process supervision: the local system stops the same way whatever asks it to, and leaves nothing behind.

- `stop_on_signals()` (the main process): SIGINT, SIGTERM and SIGHUP all become the KeyboardInterrupt that Ctrl-C
  raises, whatever dispositions and mask the process inherited (`make run &` in a non-interactive shell starts
  with SIGINT ignored; a process manager may block signals). A second signal during the stop is ignored so that
  the stop, which joins every worker, runs to its end.
- `watch_parent(pid)` (each worker): exits the worker as soon as its parent is gone. Nothing else can: a parent
  killed with SIGKILL runs no cleanup, and a worker blocked on its task queue never notices on its own.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from types import FrameType

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
PARENT_POLL_SECONDS = 0.5


def stop_on_signals() -> None:
    def stop(signum: int, frame: FrameType | None) -> None:
        for each in STOP_SIGNALS:
            signal.signal(each, signal.SIG_IGN)
        raise KeyboardInterrupt(signal.Signals(signum).name)

    for each in STOP_SIGNALS:
        signal.signal(each, stop)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)


def watch_parent(parent_pid: int) -> None:
    def watch() -> None:
        # Once the parent is gone the worker is re-parented (to init or a subreaper): getppid() changes.
        while os.getppid() == parent_pid:
            time.sleep(PARENT_POLL_SECONDS)
        os._exit(0)  # no cleanup to run: the worker holds nothing that outlives it

    if os.getppid() != parent_pid:
        os._exit(0)
    threading.Thread(target=watch, name="watch-parent", daemon=True).start()
