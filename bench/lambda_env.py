"""A Lambda-like Python path on this machine: the `sam build` output of TokenFunction and the runtime's own boto3;
and, to compare, the official Powertools layer simulated with this venv's copies of what it ships."""

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


def _source(name: str) -> Path:
    source = Path(importlib.import_module(name).__file__ or "")
    return source.parent if source.name == "__init__.py" else source


def link_modules(target: Path, modules: list[str]) -> Path:
    """Symlink each module (package folder or single file) of this venv into `target`."""
    target.mkdir(parents=True, exist_ok=True)
    for name in modules:
        source = _source(name)
        link = target / source.name
        if not link.exists():
            link.symlink_to(source)
    return target


def simulated_layer(target: Path) -> Path:
    """What the official Powertools layer ships, as it ships it: without bytecode (its build deletes __pycache__),
    which Lambda cannot write into the read-only /opt either."""
    target.mkdir(parents=True, exist_ok=True)
    for name in LAYER_MODULES:
        source = _source(name)
        if (target / source.name).exists():
            continue
        if source.is_dir():
            shutil.copytree(source, target / source.name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(source, target / source.name)
    return target


def without_layer_packages(package: Path, target: Path) -> Path:
    """The built package minus what the Powertools layer would provide: the package if the layer were attached."""
    provided = {_source(name).name for name in LAYER_MODULES}
    provided_dists = ("aws_lambda_powertools", "aws_xray_sdk", "wrapt", "pydantic", "annotated_types",
                      "typing_extensions", "typing_inspection")

    def ignore(folder: str, names: list[str]) -> list[str]:
        if Path(folder) != package:
            return []
        return [n for n in names if n in provided or n.startswith(provided_dists) or n == "__pycache__"]

    shutil.copytree(package, target, ignore=ignore)
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
    makefile = workdir / "functions" / "token" / "Makefile"
    if arch != "arm64" and makefile.exists():  # the Makefile's wheels follow the architecture, like the template's
        makefile.write_text(makefile.read_text().replace("manylinux2014_aarch64", f"manylinux2014_{arch}"))
    env = {**os.environ, "SAM_CLI_TELEMETRY": "0", "PATH": f"{VENV_BIN}:{os.environ['PATH']}",
           "__SAM_CLI_APP_DIR": str(workdir / ".sam-app-dir")}
    done = subprocess.run([str(VENV_BIN / "sam"), "build", "--template", "template.yaml", "--build-dir", "build",
                           "TokenFunction"], cwd=workdir, env=env, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise RuntimeError(f"sam build failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    return workdir / "build"


def lambda_path(build: Path, scratch: Path) -> list[str]:
    """sys.path as Lambda sets it: the function's code, then a layer if attached (/opt/python), then the runtime."""
    path = [str(build / "TokenFunction")]
    if template_uses_powertools_layer():
        path.append(str(simulated_layer(scratch / "layer")))
    path.append(str(link_modules(scratch / "runtime", RUNTIME_MODULES)))
    return path


def layer_variant_path(build: Path, scratch: Path) -> list[str]:
    """The same function as if it used the official Powertools layer instead of packaging Powertools."""
    package = without_layer_packages(build / "TokenFunction", scratch / "with-layer" / "TokenFunction")
    return [str(package), str(simulated_layer(scratch / "layer")), str(link_modules(scratch / "runtime",
                                                                                     RUNTIME_MODULES))]
