"""What every benchmark shares: paths, the function's environment from the template, and min/median/max."""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
import sys
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
FUNCTION_DIR = ROOT / "functions" / "token"
PYTHON = sys.executable
AWS_ENV = {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench", "AWS_SESSION_TOKEN": "bench",
           "AWS_DEFAULT_REGION": "us-east-1", "AWS_REGION": "us-east-1"}
# As the local system runs the function: outside Lambda, Powertools Tracer is off anyway.
LAMBDA_ENV = {"POWERTOOLS_TRACE_DISABLED": "true", "AWS_LAMBDA_FUNCTION_NAME": "TokenFunction",
              "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "256"}


@dataclass(frozen=True)
class Spread:
    """min / median / max of several runs, in the unit given."""

    min: float
    median: float
    max: float
    unit: str
    runs: int

    @classmethod
    def of(cls, values: list[float], unit: str) -> Spread:
        return cls(min(values), statistics.median(values), max(values), unit, len(values))

    def fmt(self, digits: int = 2) -> str:
        return f"{self.min:.{digits}f} / {self.median:.{digits}f} / {self.max:.{digits}f} {self.unit}"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)




def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def machine() -> dict[str, str]:
    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                                timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    return {
        "cpu": cpu,
        "cores": str(os.cpu_count() or 0),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": commit or "unknown",
        "load_average": " / ".join(f"{x:.1f}" for x in os.getloadavg()),
    }
