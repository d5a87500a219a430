"""template.yaml: lint-clean, buildable, and the built function imports with only what it packages.

The import check runs in a bare interpreter (`-I -S`: no site-packages, no PYTHONPATH) that sees the build output
and the libraries the Lambda runtime provides (boto3 and its dependencies), so a package missing from the
function's requirements.txt (or one the Makefile wrongly drops) fails here, not in AWS.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import boto3
import botocore
import dateutil
import jmespath
import pytest
import s3transfer
import urllib3

from local.template_stack import template_function_env

ROOT = Path(__file__).resolve().parents[3]
VENV_BIN = Path(sys.executable).parent
SAM = str(VENV_BIN / "sam")
ENV = {**os.environ, "SAM_CLI_TELEMETRY": "0", "PATH": f"{VENV_BIN}:{os.environ['PATH']}"}
# What the python3.13 Lambda runtime already has: boto3 and what boto3 needs.
RUNTIME_PACKAGES = [boto3, botocore, s3transfer, jmespath, dateutil, urllib3]


def run(*args: str, cwd: Path = ROOT, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=cwd, env={**ENV, "__SAM_CLI_APP_DIR": str(cwd / ".sam-app-dir")},
                          capture_output=True, text=True, timeout=timeout)


def test_cfn_lint_has_zero_findings() -> None:
    result = run(str(VENV_BIN / "cfn-lint"), "template.yaml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == ""


def test_sam_validate_lint_is_clean(tmp_path: Path) -> None:
    result = run(SAM, "validate", "--lint", "--template", str(ROOT / "template.yaml"), cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "is a valid SAM Template" in result.stdout + result.stderr


@pytest.fixture(scope="module")
def x86_build(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The stack built for this machine's architecture, so its binaries can be imported here."""
    workdir = tmp_path_factory.mktemp("sam-x86")
    text = (ROOT / "template.yaml").read_text().replace("Architectures: [arm64]", "Architectures: [x86_64]")
    (workdir / "template.yaml").write_text(text)
    for folder in ("functions", "web"):
        shutil.copytree(ROOT / folder, workdir / folder, symlinks=True)
    makefile = workdir / "functions" / "token" / "Makefile"  # its wheels follow the architecture too
    makefile.write_text(makefile.read_text().replace("manylinux2014_aarch64", "manylinux2014_x86_64"))
    result = run(SAM, "build", "--template", "template.yaml", "--build-dir", "build", cwd=workdir)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return workdir / "build"


def test_sam_build_for_arm64_packages_arm64_binaries(tmp_path: Path) -> None:
    for folder in ("functions", "web"):
        shutil.copytree(ROOT / folder, tmp_path / folder, symlinks=True)
    shutil.copy(ROOT / "template.yaml", tmp_path / "template.yaml")
    result = run(SAM, "build", "--template", "template.yaml", "--build-dir", "build", cwd=tmp_path)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert (tmp_path / "build" / "TokenFunction" / "app.py").is_file()
    # Every wheel in the package is pure Python or built for arm64 (today all are pure: no pydantic-core).
    package = tmp_path / "build" / "TokenFunction"
    tags = [line.split(":", 1)[1].strip() for wheel in package.glob("*.dist-info/WHEEL")
            for line in wheel.read_text().splitlines() if line.startswith("Tag:")]
    assert tags and all(tag.endswith("-any") or "aarch64" in tag for tag in tags), tags
    assert all("x86_64" not in so.name for so in package.rglob("*.so"))
    assert (tmp_path / "build" / "SiteDeployerFunction" / "deployer.py").is_file()
    # One package, two handlers: the leash function gets the same code as the API's.
    assert (tmp_path / "build" / "LeashFunction" / "leash.py").is_file()
    assert (tmp_path / "build" / "LeashFunction" / "tokenvend" / "call_ending.py").is_file()
    # The page goes into the deployer's package through the site -> ../../web link: every file of web/, as it is.
    site = tmp_path / "build" / "SiteDeployerFunction" / "site"
    web = {p.relative_to(ROOT / "web"): p.read_bytes() for p in (ROOT / "web").rglob("*") if p.is_file()}
    packaged = {p.relative_to(site): p.read_bytes() for p in site.rglob("*") if p.is_file()}
    assert packaged == web and len(web) >= 5


def test_built_handler_imports_with_only_its_package_and_the_runtime(x86_build: Path, tmp_path: Path) -> None:
    runtime = tmp_path / "runtime"
    runtime.mkdir()
    for package in RUNTIME_PACKAGES:
        source = Path(package.__file__).parent
        (runtime / source.name).symlink_to(source)
    for module in ("six",):
        spec = __import__(module)
        shutil.copy(spec.__file__, runtime / Path(spec.__file__).name)
    function = x86_build / "TokenFunction"
    for name in ("boto3", "botocore"):
        assert not (function / name).exists(), f"{name} comes with the runtime; packaging it only adds weight"
    # Lambda cannot write bytecode into the read-only package: the build ships it, or every cold start compiles.
    assert (function / "tokenvend" / "__pycache__").is_dir() and list((function / "httpx").rglob("*.pyc"))
    env = {
        "PATH": os.environ["PATH"], "AWS_DEFAULT_REGION": "us-east-1", "AWS_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "x", "POWERTOOLS_TRACE_DISABLED": "true",
        **template_function_env(),
    }
    probe = (
        f"import sys; sys.path[:0] = [{str(function)!r}, {str(runtime)!r}]\n"
        "import app\n"
        "assert callable(app.lambda_handler)\n"
        "print('imported', app.settings.model)\n"
    )
    result = subprocess.run([sys.executable, "-I", "-S", "-c", probe], env=env, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "imported gpt-realtime" in result.stdout
    # As deployed (Tracing: Active, inside Lambda): no X-Ray SDK and no pydantic, neither packaged nor imported; the
    # OpenAPI document is the shipped file, under this function's policy.
    for name in ("aws_xray_sdk", "wrapt", "pydantic", "pydantic_core"):
        assert not (function / name).exists(), f"{name} is not needed at run time"
    traced = {k: v for k, v in env.items() if k != "POWERTOOLS_TRACE_DISABLED"} | {"LAMBDA_TASK_ROOT": str(function)}
    # Every route answers from the built package alone (the build drops what the function never imports): AWS is
    # unreachable here, so a metered request ends in 503 after Powertools Parameters and botocore had their say.
    served = ("import json\n"
              "OFFER = 'v=0\\na=ice-ufrag:u\\na=ice-pwd:p\\na=fingerprint:sha-256 A\\na=setup:actpass\\n'"
              " + 'm=audio 9 UDP/TLS/RTP/SAVPF 111\\n'\n"
              "from tokenvend import openapi\n"
              "document = __import__('json').loads(openapi.served(app.settings))\n"
              "print('heavy', sorted(m for m in ('aws_xray_sdk', 'pydantic', 'anyio') if m in sys.modules))\n"
              "print('served', openapi.SHIPPED, sorted(document['paths']))\n"
              "def event(method, path, route, body=None):\n"
              "    return {'version': '2.0', 'routeKey': f'{method} {route}', 'rawPath': path, 'rawQueryString': '',\n"
              "            'headers': {'content-type': 'application/json'}, 'body': body, 'isBase64Encoded': False,\n"
              "            'requestContext': {'http': {'method': method, 'path': path, 'sourceIp': '192.0.2.1'},\n"
              "                               'requestId': 'r', 'stage': '$default'}}\n"
              "class Context:\n"
              "    function_name, memory_limit_in_mb, aws_request_id = 'f', 256, 'r'\n"
              "    invoked_function_arn = 'arn:aws:lambda:us-east-1:123456789012:function:f'\n"
              "for request in (('GET', '/health', '/health'), ('GET', '/options', '/options'),\n"
              "                ('GET', '/openapi.json', '/openapi.json'), ('POST', '/calls', '/calls', '[1]'),\n"
              "                ('POST', '/calls', '/calls', json.dumps({'sdp': OFFER})),\n"
              "                ('POST', '/calls/rtc_1/hangup', '/calls/{call_id}/hangup', '{}'),\n"
              "                ('GET', '/token', '/token'), ('GET', '/nope', '$default')):\n"
              "    print('answer', request[1], app.lambda_handler(event(*request), Context())['statusCode'])\n")
    unreachable = traced | {"AWS_ENDPOINT_URL": "http://127.0.0.1:9", "AWS_MAX_ATTEMPTS": "1"}
    result = subprocess.run([sys.executable, "-I", "-S", "-c", probe + served],
                            env=unreachable, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "heavy []" in result.stdout
    assert f"served {function / 'openapi.json'} ['/calls', '/calls/{{call_id}}/hangup', '/health', '/options', " \
           "'/token', '/user/calls']" in result.stdout
    answers = [line.split()[1:] for line in result.stdout.splitlines() if line.startswith("answer ")]
    assert answers == [["/health", "200"], ["/options", "200"], ["/openapi.json", "200"], ["/calls", "400"],
                       ["/calls", "503"], ["/calls/rtc_1/hangup", "503"], ["/token", "404"], ["/nope", "404"]]


def test_readme_documents_every_parameter() -> None:
    from local.template_stack import load_template

    readme = (ROOT / "README.md").read_text()
    table = readme.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    for name in load_template()["Parameters"]:
        assert f"| `{name}` |" in table, f"README configuration table lacks {name}"
