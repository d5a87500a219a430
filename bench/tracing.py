"""What Powertools' Tracer would cost the package and a cold start: the X-Ray SDK (and wrapt) installed as the build
installs packages, next to the built function, then `import app` followed by the Tracer the function used to create
(`Tracer(patch_modules=("botocore", "httpx"))`, inside Lambda with tracing on), against `import app` alone on the
same path. Probes alternate."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

from bench.cold import _env, _probe
from bench.common import Spread
from bench.package import zipped_size

# The versions `aws-lambda-powertools[tracer]==3.37.0` installed before the function dropped the extra.
XRAY_REQUIREMENTS = ("aws-xray-sdk==2.15.0", "wrapt==2.5.2")
TRACER = 'from aws_lambda_powertools import Tracer; Tracer(patch_modules=("botocore", "httpx"))'


def install_sdk(target: Path, platform: str) -> Path:
    """The SDK as functions/token/Makefile installs packages: wheels for the platform, botocore left to the runtime,
    bytecode compiled."""
    target.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-deps",
                    "--no-compile", "--target", str(target), "--implementation", "cp", "--python-version", "3.13",
                    "--only-binary=:all:", "--platform", platform, *XRAY_REQUIREMENTS], check=True, timeout=300)
    subprocess.run([sys.executable, "-m", "compileall", "-q", "-j", "0", "--invalidation-mode", "unchecked-hash",
                    str(target)], check=True, timeout=300)
    return target


def measure(path: list[str], sdk: Path, *, runs: int) -> dict[str, Any]:
    traced_path = [path[0], str(sdk), *path[1:]]
    env = _env(tracing=True, task_root=path[0])
    samples: dict[str, list[float]] = {"app": [], "app_tracer": []}
    _probe(traced_path, f"import app; {TRACER}", env)  # warm the file cache
    for _ in range(runs):
        samples["app"].append(_probe(traced_path, "import app", env))
        samples["app_tracer"].append(_probe(traced_path, f"import app; {TRACER}", env))
    zipped, unzipped, _ = zipped_size(sdk)
    added = [t - a for a, t in zip(samples["app"], samples["app_tracer"], strict=True)]
    return {
        "requirements": list(XRAY_REQUIREMENTS),
        "app_ms": Spread.of(samples["app"], "ms").as_dict(),
        "app_tracer_ms": Spread.of(samples["app_tracer"], "ms").as_dict(),
        "added_ms": Spread.of(added, "ms").as_dict(),
        "added_ratio": Spread.of([t / a for a, t in zip(samples["app"], samples["app_tracer"], strict=True)],
                                 "x").as_dict(),
        "zipped_bytes": zipped,
        "unzipped_bytes": unzipped,
    }
