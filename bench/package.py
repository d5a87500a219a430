"""Package size of the built TokenFunction: the `sam build` output zipped as `sam package` uploads it."""

from __future__ import annotations

import io
import zipfile
from collections import Counter
from pathlib import Path
from typing import Any

GOAL_BYTES = 2 * 1024 * 1024


def zipped_size(folder: Path) -> tuple[int, int, Counter[str]]:
    """(zipped bytes, unzipped bytes, unzipped bytes per top-level entry)."""
    buffer = io.BytesIO()
    unzipped = 0
    per_entry: Counter[str] = Counter()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for file in sorted(folder.rglob("*")):
            if file.is_file():
                archive.write(file, file.relative_to(folder).as_posix())
                size = file.stat().st_size
                unzipped += size
                per_entry[file.relative_to(folder).parts[0]] += size
    return len(buffer.getvalue()), unzipped, per_entry


def measure(build: Path, arch: str) -> dict[str, Any]:
    zipped, unzipped, per_entry = zipped_size(build / "TokenFunction")
    from bench.lambda_env import template_uses_powertools_layer

    return {
        "arch": arch,
        "zipped_bytes": zipped,
        "unzipped_bytes": unzipped,
        "largest": [(name, size) for name, size in per_entry.most_common(8)],
        "uses_powertools_layer": template_uses_powertools_layer(),
        "goals": {"zipped_size": {"goal": "< 2 MB", "value": zipped / 1024 / 1024, "met": zipped < GOAL_BYTES}},
    }
