"""A Lambda-like Python path on this machine: the `sam build` output of TokenFunction, the Powertools layer (if the
template attaches it; simulated with this venv's copies of what the layer ships) and the runtime's own boto3.

Shared by the cold-start benchmark and the template build test, so both see exactly what Lambda would import.
"""

from __future__ import annotations

import importlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

from bench.common import FUNCTION_DIR, ROOT

VENV_BIN = Path(sys.executable).parent
# What the python3.13 Lambda runtime already has: boto3 and what boto3 needs.
RUNTIME_MODULES = ["boto3", "botocore", "s3transfer", "jmespath", "dateutil", "urllib3", "six"]
# What the official Powertools layer (AWSLambdaPowertoolsPythonV3-python313-*) ships besides Powertools: its extras.
LAYER_MODULES = ["aws_lambda_powertools", "aws_xray_sdk", "wrapt", "pydantic", "pydantic_core", "annotated_types",
                 "typing_extensions", "typing_inspection", "jmespath"]
POWERTOOLS_LAYER_NAME = "AWSLambdaPowertoolsPythonV3"


def template_uses_powertools_layer(template_text: str | None = None) -> bool:
    text = template_text if template_text is not None else (ROOT / "template.yaml").read_text()
    return POWERTOOLS_LAYER_NAME in text


def link_modules(target: Path, modules: list[str]) -> Path:
    """Symlink each module (package folder or single file) of this venv into `target`."""
    target.mkdir(parents=True, exist_ok=True)
    for name in modules:
        module = importlib.import_module(name)
        source = Path(module.__file__ or "")
        source = source.parent if source.name == "__init__.py" else source
        link = target / source.name
        if not link.exists():
            link.symlink_to(source)
    return target


def sam_build(workdir: Path, *, arch: str = "arm64", function_dir: Path = FUNCTION_DIR, timeout: float = 300) -> Path:
    """`sam build` of the repository's template for `arch`, in `workdir`; returns the build folder."""
    workdir.mkdir(parents=True, exist_ok=True)
    text = (ROOT / "template.yaml").read_text()
    if arch != "arm64":
        text = text.replace("Architectures: [arm64]", f"Architectures: [{arch}]")
    (workdir / "template.yaml").write_text(text)
    for folder in ("functions", "web"):
        if not (workdir / folder).exists():
            shutil.copytree(ROOT / folder, workdir / folder, symlinks=True)
    if function_dir.resolve() != FUNCTION_DIR.resolve():  # measuring other code (before/after)
        shutil.rmtree(workdir / "functions" / "token")
        shutil.copytree(function_dir, workdir / "functions" / "token", symlinks=True)
    env = {**os.environ, "SAM_CLI_TELEMETRY": "0", "PATH": f"{VENV_BIN}:{os.environ['PATH']}",
           "__SAM_CLI_APP_DIR": str(workdir / ".sam-app-dir")}
    done = subprocess.run([str(VENV_BIN / "sam"), "build", "--template", "template.yaml", "--build-dir", "build",
                           "TokenFunction"], cwd=workdir, env=env, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise RuntimeError(f"sam build failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    return workdir / "build"


def lambda_path(build: Path, scratch: Path) -> list[str]:
    """sys.path as Lambda sets it: the function's code, then the layer (/opt/python), then the runtime."""
    path = [str(build / "TokenFunction")]
    if template_uses_powertools_layer():
        path.append(str(link_modules(scratch / "layer", LAYER_MODULES)))
    path.append(str(link_modules(scratch / "runtime", RUNTIME_MODULES)))
    return path
