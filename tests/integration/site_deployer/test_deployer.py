"""The site-deployer custom resource against a real moto server and a stand-in CloudFormation ResponseURL."""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto.server import ThreadedMotoServer

import deployer

SIGNATURE = "s3cr3t-signature-value"
API_URL = "https://abc123.execute-api.us-east-1.amazonaws.com"
STACK_ID = "arn:aws:cloudformation:us-east-1:123456789012:stack/voice/11111111-2222-3333-4444-555555555555"

# name -> (content, expected Content-Type, expected Cache-Control)
PAGE_POLICY = (b'\n  <meta http-equiv="Content-Security-Policy" content="default-src \'none\'; script-src \'self\'; '
               b"style-src 'self'; img-src 'self' data:; media-src 'self'; connect-src 'self' "
               b"https://abc123.execute-api.us-east-1.amazonaws.com; base-uri 'none'; form-action 'none'\">")
SITE: dict[str, tuple[bytes, str, str]] = {
    "index.html": (b"<!doctype html><title>voice</title>", "text/html; charset=utf-8", "no-cache"),
    "app.js": (b"export const x = 1;\n", "text/javascript; charset=utf-8", "public, max-age=300"),
    "js/audio.mjs": (b"export {};\n", "text/javascript; charset=utf-8", "public, max-age=300"),
    "styles.css": (b"body{margin:0}", "text/css; charset=utf-8", "public, max-age=300"),
    "icon.svg": (b"<svg xmlns='http://www.w3.org/2000/svg'/>", "image/svg+xml", "public, max-age=300"),
    "logo.png": (b"\x89PNG\r\n\x1a\n0000", "image/png", "public, max-age=300"),
    "favicon.ico": (b"\x00\x00\x01\x00", "image/x-icon", "public, max-age=300"),
    "sounds/ding.wav": (b"RIFF\x00\x00\x00\x00WAVE", "audio/wav", "public, max-age=300"),
    "data/voices.json": (b'{"voices": []}', "application/json; charset=utf-8", "public, max-age=300"),
    "site.webmanifest": (b"{}", "application/manifest+json; charset=utf-8", "public, max-age=300"),
    "blob.unknownext": (b"\x01\x02", "application/octet-stream", "public, max-age=300"),
}


# ---------------------------------------------------------------------------------------------------------
# Fixtures


@pytest.fixture(scope="module")
def moto_endpoint() -> Iterator[str]:
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture(autouse=True)
def aws(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_REGION", "us-east-1")


@pytest.fixture
def s3() -> Any:
    return boto3.client("s3")


@pytest.fixture
def bucket(s3: Any) -> str:
    name = f"site-{uuid.uuid4().hex[:16]}"
    s3.create_bucket(Bucket=name)
    return name


@pytest.fixture
def site_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "site"
    for name, (content, _, _) in SITE.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(content)
    # Never published: dotfiles, and a local-development config.json that the generated one replaces.
    (root / ".DS_Store").write_bytes(b"junk")
    (root / ".git").mkdir()
    (root / ".git" / "HEAD").write_text("ref")
    (root / "config.json").write_text('{"tokenUrl": "http://localhost:3000/token"}')
    monkeypatch.setenv("SITE_DIR", str(root))
    return root


@dataclass
class Recorded:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]


class _Recorder(BaseHTTPRequestHandler):
    def do_PUT(self) -> None:
        server: CfnStandIn = self.server  # type: ignore[assignment]
        raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        if server.failures_left > 0:
            server.failures_left -= 1
            self.send_response(503)
            self.end_headers()
            return
        server.responses.append(Recorded(self.path, dict(self.headers.items()), json.loads(raw)))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


class CfnStandIn(ThreadingHTTPServer):
    """Plays the pre-signed S3 URL CloudFormation hands out for the answer."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Recorder)
        self.responses: list[Recorded] = []
        self.failures_left = 0

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}/cfn-response/voice?X-Amz-Expires=7200&X-Amz-Signature={SIGNATURE}"

    @property
    def only(self) -> dict[str, Any]:
        assert len(self.responses) == 1, self.responses
        return self.responses[0].body


@pytest.fixture(scope="module")
def cfn_server() -> Iterator[CfnStandIn]:
    server = CfnStandIn()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def cfn(cfn_server: CfnStandIn) -> CfnStandIn:
    cfn_server.responses.clear()
    cfn_server.failures_left = 0
    return cfn_server


@dataclass
class FakeContext:
    remaining_ms: int = 300_000
    log_stream_name: str = "2026/01/01/[$LATEST]abcdef"
    started: float = field(default_factory=time.monotonic)

    def get_remaining_time_in_millis(self) -> int:
        return max(0, self.remaining_ms - int((time.monotonic() - self.started) * 1000))


def event(cfn: CfnStandIn, request_type: str, physical_id: str | None = None, **props: Any) -> dict[str, Any]:
    evt: dict[str, Any] = {
        "RequestType": request_type,
        "ServiceToken": "arn:aws:lambda:us-east-1:123456789012:function:site-deployer",
        "ResponseURL": cfn.url,
        "StackId": STACK_ID,
        "RequestId": str(uuid.uuid4()),
        "LogicalResourceId": "SiteDeployment",
        "ResourceType": "Custom::SiteDeployment",
        "ResourceProperties": {"ServiceToken": "arn:aws:lambda:us-east-1:123456789012:function:site-deployer", **props},
    }
    if physical_id is not None:
        evt["PhysicalResourceId"] = physical_id
    return evt


def run(evt: dict[str, Any], context: FakeContext | None = None) -> None:
    deployer.handler(evt, context or FakeContext())


def keys(s3: Any, bucket: str) -> set[str]:
    return {o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])}


def config_of(s3: Any, bucket: str) -> dict[str, Any]:
    return json.loads(s3.get_object(Bucket=bucket, Key="config.json")["Body"].read())


def create_distribution(bucket: str) -> str:
    response = boto3.client("cloudfront").create_distribution(
        DistributionConfig={
            "CallerReference": uuid.uuid4().hex,
            "Comment": "test",
            "Enabled": True,
            "Origins": {
                "Quantity": 1,
                "Items": [
                    {
                        "Id": "site",
                        "DomainName": f"{bucket}.s3.us-east-1.amazonaws.com",
                        "S3OriginConfig": {"OriginAccessIdentity": ""},
                    }
                ],
            },
            "DefaultCacheBehavior": {
                "TargetOriginId": "site",
                "ViewerProtocolPolicy": "redirect-to-https",
                "CachePolicyId": "658327ea-f89d-4fab-a63d-7e88639e58f6",
            },
        }
    )
    return str(response["Distribution"]["Id"])


# ---------------------------------------------------------------------------------------------------------
# Create


def test_create_uploads_every_file_with_type_and_cache_headers(
    s3: Any, bucket: str, site_dir: Path, cfn: CfnStandIn
) -> None:
    evt = event(cfn, "Create", BucketName=bucket, ApiUrl=API_URL)
    run(evt)

    answer = cfn.only
    assert answer == {
        "Status": "SUCCESS",
        "Reason": "OK",
        "PhysicalResourceId": f"site-{bucket}",
        "StackId": STACK_ID,
        "RequestId": evt["RequestId"],
        "LogicalResourceId": "SiteDeployment",
        "NoEcho": False,
        "Data": {"FilesUploaded": len(SITE) + 1, "FilesDeleted": 0, "InvalidationId": ""},
    }
    # The pre-signed URL is signed without a Content-Type; sending one would break the signature.
    assert cfn.responses[0].headers.get("Content-Type") == ""
    assert cfn.responses[0].path.startswith("/cfn-response/voice?")

    assert keys(s3, bucket) == set(SITE) | {"config.json"}
    for name, (content, content_type, cache_control) in SITE.items():
        obj = s3.get_object(Bucket=bucket, Key=name)
        if name.endswith(".html"):  # the page, with its policy naming this API's host before anything else
            content = content.replace(b"<!doctype html>", b"<!doctype html>" + PAGE_POLICY)
        assert obj["Body"].read() == content, name
        assert obj["ContentType"] == content_type, name
        assert obj["CacheControl"] == cache_control, name


def test_create_writes_config_json_exactly(s3: Any, bucket: str, site_dir: Path, cfn: CfnStandIn) -> None:
    run(
        event(
            cfn,
            "Create",
            BucketName=bucket,
            ApiUrl=API_URL + "/",
            PublicSettings={"appName": "Voice", "callsUrl": "https://evil.example/calls"},
        )
    )

    assert cfn.only["Status"] == "SUCCESS"
    obj = s3.get_object(Bucket=bucket, Key="config.json")
    assert obj["Body"].read() == (
        b'{\n  "apiUrl": "https://abc123.execute-api.us-east-1.amazonaws.com",\n  "appName": "Voice",\n'
        b'  "callsUrl": "https://abc123.execute-api.us-east-1.amazonaws.com/calls",\n'
        b'  "optionsUrl": "https://abc123.execute-api.us-east-1.amazonaws.com/options",\n'
        b'  "tokenUrl": "https://abc123.execute-api.us-east-1.amazonaws.com/token"\n}\n'
    )
    assert obj["ContentType"] == "application/json; charset=utf-8"
    assert obj["CacheControl"] == "no-cache"


def test_config_json_needs_an_https_api_url(s3: Any, bucket: str, site_dir: Path, cfn: CfnStandIn) -> None:
    run(event(cfn, "Create", BucketName=bucket, ApiUrl="http://abc123.example"))
    assert cfn.only["Status"] == "FAILED"
    assert "ApiUrl" in cfn.only["Reason"]


# ---------------------------------------------------------------------------------------------------------
# Update


def test_update_replaces_changed_files_deletes_removed_ones_and_rewrites_config(
    s3: Any, bucket: str, site_dir: Path, cfn: CfnStandIn
) -> None:
    run(event(cfn, "Create", BucketName=bucket, ApiUrl=API_URL))
    physical_id = cfn.responses[0].body["PhysicalResourceId"]
    # Something put there by hand is not part of the site either.
    s3.put_object(Bucket=bucket, Key="stray/old.txt", Body=b"old")

    (site_dir / "app.js").write_bytes(b"export const x = 2;\n")
    (site_dir / "icon.svg").unlink()
    (site_dir / "sounds" / "ding.wav").unlink()
    (site_dir / "new.css").write_bytes(b"p{}")
    new_api_url = "https://xyz789.execute-api.eu-west-1.amazonaws.com"
    evt = event(cfn, "Update", physical_id=physical_id, BucketName=bucket, ApiUrl=new_api_url)
    evt["OldResourceProperties"] = {"BucketName": bucket, "ApiUrl": API_URL}
    run(evt)

    answer = cfn.responses[1].body
    assert answer["Status"] == "SUCCESS"
    assert answer["PhysicalResourceId"] == physical_id
    assert answer["Data"]["FilesDeleted"] == 3
    assert keys(s3, bucket) == (set(SITE) - {"icon.svg", "sounds/ding.wav"}) | {"new.css", "config.json"}
    assert s3.get_object(Bucket=bucket, Key="app.js")["Body"].read() == b"export const x = 2;\n"
    new_css = s3.get_object(Bucket=bucket, Key="new.css")
    assert (new_css["ContentType"], new_css["CacheControl"]) == ("text/css; charset=utf-8", "public, max-age=300")
    assert config_of(s3, bucket)["callsUrl"] == f"{new_api_url}/calls"


# ---------------------------------------------------------------------------------------------------------
# Delete


def test_delete_empties_the_bucket(s3: Any, bucket: str, site_dir: Path, cfn: CfnStandIn) -> None:
    run(event(cfn, "Create", BucketName=bucket, ApiUrl=API_URL))
    evt = event(cfn, "Delete", physical_id=f"site-{bucket}", BucketName=bucket, ApiUrl=API_URL)
    run(evt)

    answer = cfn.responses[1].body
    assert answer["Status"] == "SUCCESS"
    assert answer["PhysicalResourceId"] == f"site-{bucket}"
    assert answer["RequestId"] == evt["RequestId"]
    assert keys(s3, bucket) == set()
    s3.delete_bucket(Bucket=bucket)  # what CloudFormation does next: it must not fail with BucketNotEmpty


def test_delete_removes_every_version_and_delete_marker(s3: Any, bucket: str, site_dir: Path, cfn: CfnStandIn) -> None:
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    run(event(cfn, "Create", BucketName=bucket, ApiUrl=API_URL))
    (site_dir / "icon.svg").unlink()  # the Update leaves a delete marker behind
    run(event(cfn, "Update", physical_id=f"site-{bucket}", BucketName=bucket, ApiUrl=API_URL))
    before = s3.list_object_versions(Bucket=bucket)
    assert before.get("DeleteMarkers") and len(before["Versions"]) > len(SITE) + 1

    run(event(cfn, "Delete", physical_id=f"site-{bucket}", BucketName=bucket, ApiUrl=API_URL))

    assert [r.body["Status"] for r in cfn.responses] == ["SUCCESS"] * 3
    after = s3.list_object_versions(Bucket=bucket)
    assert not after.get("Versions") and not after.get("DeleteMarkers")
    s3.delete_bucket(Bucket=bucket)


def test_delete_of_a_bucket_that_is_already_gone_succeeds(cfn: CfnStandIn) -> None:
    gone = f"site-{uuid.uuid4().hex[:16]}"
    run(event(cfn, "Delete", physical_id=f"site-{gone}", BucketName=gone, ApiUrl=API_URL))

    assert cfn.only["Status"] == "SUCCESS"
    assert cfn.only["PhysicalResourceId"] == f"site-{gone}"


def test_delete_after_a_create_that_had_no_properties_succeeds(cfn: CfnStandIn) -> None:
    # The rollback of a Create that failed for a missing property must not get stuck in DELETE_FAILED.
    run(event(cfn, "Delete", physical_id="2026/01/01/[$LATEST]abcdef"))

    assert cfn.only["Status"] == "SUCCESS"
    assert cfn.only["PhysicalResourceId"] == "2026/01/01/[$LATEST]abcdef"


# ---------------------------------------------------------------------------------------------------------
# CloudFront


def test_create_and_update_invalidate_the_distribution(s3: Any, bucket: str, site_dir: Path, cfn: CfnStandIn) -> None:
    distribution_id = create_distribution(bucket)
    cloudfront = boto3.client("cloudfront")

    run(event(cfn, "Create", BucketName=bucket, ApiUrl=API_URL, DistributionId=distribution_id))
    run(
        event(
            cfn,
            "Update",
            physical_id=f"site-{bucket}",
            BucketName=bucket,
            ApiUrl=API_URL,
            DistributionId=distribution_id,
        )
    )
    run(event(cfn, "Delete", physical_id=f"site-{bucket}", BucketName=bucket, DistributionId=distribution_id))

    assert [r.body["Status"] for r in cfn.responses] == ["SUCCESS"] * 3
    listed = cloudfront.list_invalidations(DistributionId=distribution_id)["InvalidationList"]
    assert listed["Quantity"] == 2  # Create and Update; a Delete has nothing left to invalidate
    ids = {r.body["Data"]["InvalidationId"] for r in cfn.responses[:2]}
    assert ids == {item["Id"] for item in listed["Items"]}
    for invalidation_id in ids:
        batch = cloudfront.get_invalidation(DistributionId=distribution_id, Id=invalidation_id)
        assert batch["Invalidation"]["InvalidationBatch"]["Paths"]["Items"] == ["/*"]


def test_an_unknown_distribution_fails_after_uploading(s3: Any, bucket: str, site_dir: Path, cfn: CfnStandIn) -> None:
    run(event(cfn, "Create", BucketName=bucket, ApiUrl=API_URL, DistributionId="E0000NOSUCHID"))

    assert cfn.only["Status"] == "FAILED"
    assert cfn.only["Reason"].startswith("CreateInvalidation failed: NoSuchDistribution:")


# ---------------------------------------------------------------------------------------------------------
# Failures: always answered, with a short readable Reason


def assert_readable_failure(answer: dict[str, Any], starts_with: str) -> None:
    assert answer["Status"] == "FAILED"
    assert answer["Reason"].startswith(starts_with), answer["Reason"]
    assert answer["Reason"].endswith("See CloudWatch log stream 2026/01/01/[$LATEST]abcdef.")
    assert "Traceback" not in answer["Reason"] and len(answer["Reason"]) < 600


def test_a_missing_bucket_fails_readably(site_dir: Path, cfn: CfnStandIn) -> None:
    missing = f"site-{uuid.uuid4().hex[:16]}"
    evt = event(cfn, "Create", BucketName=missing, ApiUrl=API_URL)
    run(evt)

    assert_readable_failure(cfn.only, "PutObject failed: NoSuchBucket: The specified bucket does not exist")
    assert cfn.only["PhysicalResourceId"] == f"site-{missing}"
    assert (cfn.only["StackId"], cfn.only["RequestId"]) == (STACK_ID, evt["RequestId"])


@pytest.mark.parametrize(
    ("props", "reason"),
    [
        ({"ApiUrl": API_URL}, "Property BucketName is required."),
        ({"BucketName": "{bucket}"}, "Property ApiUrl is required."),
        ({"BucketName": "{bucket}", "ApiUrl": "  "}, "Property ApiUrl is required."),
        ({"BucketName": "{bucket}", "ApiUrl": "http://plain.example"}, "Property ApiUrl must be an https"),
        ({"BucketName": "{bucket}", "ApiUrl": "javascript:alert(1)"}, "Property ApiUrl must be an https"),
        ({"BucketName": "{bucket}", "ApiUrl": API_URL, "PublicSettings": "x"}, "PublicSettings must be a map"),
    ],
)
def test_bad_properties_fail_readably(
    s3: Any, bucket: str, site_dir: Path, cfn: CfnStandIn, props: dict[str, str], reason: str
) -> None:
    props = {k: v.format(bucket=bucket) if isinstance(v, str) else v for k, v in props.items()}
    run(event(cfn, "Create", **props))

    assert_readable_failure(cfn.only, reason)
    assert keys(s3, bucket) == set()  # nothing half-published


def test_a_failed_update_keeps_the_physical_id(s3: Any, bucket: str, site_dir: Path, cfn: CfnStandIn) -> None:
    run(event(cfn, "Update", physical_id="site-original", BucketName=f"{bucket}-missing", ApiUrl=API_URL))

    assert cfn.only["Status"] == "FAILED"
    assert cfn.only["PhysicalResourceId"] == "site-original"


def test_a_site_without_index_html_fails(s3: Any, bucket: str, site_dir: Path, cfn: CfnStandIn) -> None:
    (site_dir / "index.html").unlink()
    run(event(cfn, "Create", BucketName=bucket, ApiUrl=API_URL))

    assert_readable_failure(cfn.only, "The site folder 'site' has no index.html.")


def test_a_package_without_the_site_folder_fails(
    bucket: str, cfn: CfnStandIn, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SITE_DIR", str(tmp_path / "nowhere"))
    run(event(cfn, "Create", BucketName=bucket, ApiUrl=API_URL))

    assert_readable_failure(cfn.only, "The site folder 'nowhere' is not in the deployment package.")


def test_an_unexpected_error_is_answered_not_raised(
    bucket: str, site_dir: Path, cfn: CfnStandIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    def boom(_: Path) -> list[deployer.SiteFile]:
        raise ValueError("disk on fire")

    monkeypatch.setattr(deployer, "collect_site_files", boom)
    run(event(cfn, "Create", BucketName=bucket, ApiUrl=API_URL))

    assert_readable_failure(cfn.only, "Unexpected ValueError: disk on fire")


def test_an_unknown_request_type_fails(cfn: CfnStandIn) -> None:
    run(event(cfn, "Rename", physical_id="site-x", BucketName="x"))

    assert_readable_failure(cfn.only, "Unknown RequestType 'Rename'.")


def test_work_that_outlasts_the_lambda_answers_failed_in_time(
    bucket: str, site_dir: Path, cfn: CfnStandIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    release = threading.Event()

    def stuck(*_: Any) -> deployer.Outcome:
        release.wait(10)
        raise RuntimeError("released")

    monkeypatch.setattr(deployer, "deploy_site", stuck)
    context = FakeContext(remaining_ms=deployer.RESPONSE_MARGIN_MS + 500)
    started = time.monotonic()
    try:
        run(event(cfn, "Create", BucketName=bucket, ApiUrl=API_URL), context)
    finally:
        release.set()

    assert time.monotonic() - started < 2
    assert_readable_failure(cfn.only, "Timed out after 0 s before the site deployment finished.")
    assert cfn.only["PhysicalResourceId"] == f"site-{bucket}"


def test_the_answer_is_retried_when_the_put_fails(
    s3: Any, bucket: str, site_dir: Path, cfn: CfnStandIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(deployer.time, "sleep", lambda _: None)
    cfn.failures_left = 2
    run(event(cfn, "Create", BucketName=bucket, ApiUrl=API_URL))

    assert cfn.only["Status"] == "SUCCESS"


def test_the_response_url_signature_is_never_logged(
    bucket: str, site_dir: Path, cfn: CfnStandIn, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    run(event(cfn, "Create", BucketName=bucket, ApiUrl=API_URL))
    run(event(cfn, "Create", BucketName=f"{bucket}-missing", ApiUrl=API_URL))

    assert [r.body["Status"] for r in cfn.responses] == ["SUCCESS", "FAILED"]
    ours = [r for r in caplog.records if r.name == "site_deployer"]
    assert ours
    for record in ours:
        assert SIGNATURE not in repr(record.__dict__)
        assert SIGNATURE not in caplog.text


# ---------------------------------------------------------------------------------------------------------
# Content types


@pytest.mark.parametrize(
    ("key", "content_type"),
    [
        ("index.html", "text/html; charset=utf-8"),
        ("a/b/module.JS", "text/javascript; charset=utf-8"),
        ("fonts/x.woff2", "font/woff2"),
        ("x.wasm", "application/wasm"),
        ("clip.mp3", "audio/mpeg"),
        ("photo.jpeg", "image/jpeg"),
        ("LICENSE", "application/octet-stream"),
    ],
)
def test_content_type_for(key: str, content_type: str) -> None:
    assert deployer.content_type_for(key) == content_type


@pytest.mark.parametrize(("page", "policy_after"), [
    (b"<!doctype html>\n<html lang=\"en\">\n<head>\n  <meta charset=\"utf-8\">", b"<head>"),
    (b"<!DOCTYPE html><HTML><HEAD data-x=\"1\"><title>t</title>", b'<HEAD data-x="1">'),
    (b"<!doctype html><html><title>t</title>", b"<html>"),
    (b"<title>t</title>", b""),
])
def test_every_page_gets_its_policy_before_anything_it_governs(page: bytes, policy_after: bytes) -> None:
    from deployer import with_page_policy

    written = with_page_policy(page, API_URL)
    at = written.index(b"<meta http-equiv")
    assert written[:at].rstrip().endswith(policy_after) if policy_after else written[:at].strip() == b""
    assert written.replace(written[at - 3:written.index(b">", at) + 1], b"") == page
    policy = written[at:written.index(b">", at)].decode()
    assert "connect-src 'self' https://abc123.execute-api.us-east-1.amazonaws.com;" in policy
    assert "*" not in policy and "openai" not in policy


# ---------------------------------------------------------------------------------------------------------
# Turnstile: the widget's origin in the page's policy, only when the stack has Turnstile

TURNSTILE_SCRIPT_URL = "https://challenges.cloudflare.com/turnstile/v0/api.js"


def page_meta_policy(s3: Any, bucket: str) -> str:
    page = s3.get_object(Bucket=bucket, Key="index.html")["Body"].read().decode()
    start = page.index('content="') + len('content="')
    return page[start:page.index('"', start)]


def test_with_turnstile_the_page_may_load_the_widget_and_frame_it_from_its_origin_only(
    s3: Any, bucket: str, site_dir: Path, cfn: CfnStandIn
) -> None:
    run(event(cfn, "Create", BucketName=bucket, ApiUrl=API_URL, TurnstileScriptUrl=TURNSTILE_SCRIPT_URL))
    assert cfn.only["Status"] == "SUCCESS"
    policy = page_meta_policy(s3, bucket)
    assert "script-src 'self' https://challenges.cloudflare.com;" in policy
    assert "frame-src https://challenges.cloudflare.com;" in policy
    assert policy.count("challenges.cloudflare.com") == 2  # not in connect-src: the page never fetches from there
    assert "default-src 'none';" in policy and "connect-src 'self' https://abc123." in policy


@pytest.mark.parametrize("script_url", [None, "", "  "])
def test_without_turnstile_the_policy_is_as_before(
    s3: Any, bucket: str, site_dir: Path, cfn: CfnStandIn, script_url: str | None
) -> None:
    props = {"BucketName": bucket, "ApiUrl": API_URL}
    if script_url is not None:
        props["TurnstileScriptUrl"] = script_url
    run(event(cfn, "Create", **props))
    assert cfn.only["Status"] == "SUCCESS"
    assert page_meta_policy(s3, bucket).encode() in PAGE_POLICY
    assert "frame-src" not in page_meta_policy(s3, bucket)


@pytest.mark.parametrize("script_url", [
    "http://challenges.cloudflare.com/turnstile/v0/api.js",
    "javascript:alert(1)",
    "https://challenges.cloudflare.com;script-src */api.js",
    "https://user:pw@challenges.cloudflare.com/turnstile/v0/api.js",
    "https://*.cloudflare.com/turnstile/v0/api.js",
])
def test_a_turnstile_script_url_that_is_not_a_plain_https_host_fails_before_anything_is_published(
    s3: Any, bucket: str, site_dir: Path, cfn: CfnStandIn, script_url: str
) -> None:
    run(event(cfn, "Create", BucketName=bucket, ApiUrl=API_URL, TurnstileScriptUrl=script_url))
    assert_readable_failure(cfn.only, "Property TurnstileScriptUrl must be an https")
    assert keys(s3, bucket) == set()


@pytest.mark.parametrize(("script_url", "origin"), [
    (TURNSTILE_SCRIPT_URL, "https://challenges.cloudflare.com"),
    ("http://127.0.0.1:40123/turnstile/v0/api.js?render=explicit", "http://127.0.0.1:40123"),  # the local stand-in
    ("https://Challenges.Example:8443/x.js", "https://challenges.example:8443"),
])
def test_page_policy_names_the_widgets_origin(script_url: str, origin: str) -> None:
    policy = deployer.page_policy(API_URL, script_url)
    directives = dict(d.strip().split(" ", 1) for d in policy.split(";"))
    assert directives["script-src"] == f"'self' {origin}"
    assert directives["frame-src"] == origin
    assert directives["default-src"] == "'none'" and origin not in directives["connect-src"]
    assert deployer.with_page_policy(b"<head>", API_URL, script_url).decode().count(origin) == 2


@pytest.mark.parametrize("script_url", ["ftp://x.example/a.js", "https://a.example b.example/x.js", "https://"])
def test_page_policy_refuses_what_is_not_an_origin(script_url: str) -> None:
    with pytest.raises(ValueError):
        deployer.page_policy(API_URL, script_url)
