"""CloudFormation custom resource that publishes the static page to its S3 bucket.

Create/Update: upload every file of the packaged site (``site/`` next to this module, or ``SITE_DIR``), each HTML
page with the page's Content-Security-Policy naming this stack's API (``page_policy``), write ``config.json`` from
the resource properties, delete objects that are no longer part of the site, and invalidate the CloudFront
distribution. Delete: empty the bucket (all versions) so the stack can
delete it.

Whatever happens, CloudFormation gets an answer before the Lambda timeout: a stack waiting for a custom
resource that never answers hangs for up to an hour.
"""

from __future__ import annotations

import json
import logging
import mimetypes
import os
import re
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

logger = logging.getLogger("site_deployer")
# The Lambda runtime sets AWS_LAMBDA_LOG_LEVEL from the function's LoggingConfig; INFO otherwise.
logger.setLevel(os.environ.get("AWS_LAMBDA_LOG_LEVEL", "INFO").upper())

CONFIG_KEY = "config.json"
# Entry points must be revalidated on every load so a deploy shows up at once; assets carry no content
# hash in their names, so they may only be cached briefly.
NO_CACHE = "no-cache"
SHORT_CACHE = "public, max-age=300"
# Time kept back from the Lambda timeout to send the FAILED answer.
RESPONSE_MARGIN_MS = 10_000
MAX_REASON_CHARS = 400
UPLOAD_WORKERS = 8

# Explicit, because the runtime's mimetypes tables vary (``.js`` was ``application/javascript`` for years,
# ``.wasm`` and ``.webmanifest`` are missing on older systems).
CONTENT_TYPES: dict[str, str] = {
    ".html": "text/html; charset=utf-8",
    ".htm": "text/html; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".json": "application/json; charset=utf-8",
    ".map": "application/json; charset=utf-8",
    ".webmanifest": "application/manifest+json; charset=utf-8",
    ".txt": "text/plain; charset=utf-8",
    ".xml": "application/xml; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".gif": "image/gif",
    ".webp": "image/webp",
    ".avif": "image/avif",
    ".ico": "image/x-icon",
    ".wav": "audio/wav",
    ".mp3": "audio/mpeg",
    ".ogg": "audio/ogg",
    ".oga": "audio/ogg",
    ".opus": "audio/ogg",
    ".m4a": "audio/mp4",
    ".weba": "audio/webm",
    ".webm": "video/webm",
    ".mp4": "video/mp4",
    ".woff": "font/woff",
    ".woff2": "font/woff2",
    ".ttf": "font/ttf",
    ".otf": "font/otf",
    ".wasm": "application/wasm",
    ".pdf": "application/pdf",
}


class DeployError(Exception):
    """A failure whose message is fit to show in the CloudFormation console as it is."""


@dataclass(frozen=True)
class SiteFile:
    key: str
    path: Path
    content_type: str
    cache_control: str


@dataclass(frozen=True)
class Outcome:
    physical_id: str
    data: dict[str, Any]


# ---------------------------------------------------------------------------------------------------------
# Entry point


def handler(event: Mapping[str, Any], context: Any) -> None:
    request_type = str(event.get("RequestType", ""))
    logger.info(
        "custom resource request",
        extra={
            "request_type": request_type,
            "logical_resource_id": event.get("LogicalResourceId"),
            "request_id": event.get("RequestId"),
            # Only the host: the query string of the ResponseURL is a pre-signed credential.
            "response_host": urlsplit(str(event.get("ResponseURL", ""))).hostname,
        },
    )
    if not event.get("ResponseURL"):
        logger.error("no ResponseURL in the event: not a CloudFormation request, nothing to answer")
        return

    fallback_id = _fallback_physical_id(event, context)
    budget_s = max(0.0, (context.get_remaining_time_in_millis() - RESPONSE_MARGIN_MS) / 1000)
    result: dict[str, Any] = {}

    def work() -> None:
        try:
            result["outcome"] = _dispatch(event)
        except BaseException as exc:  # every failure must become a FAILED answer, not a silent thread death
            result["error"] = exc

    # A worker thread, so that a stuck S3 or CloudFront call cannot outlive the time left to answer.
    worker = threading.Thread(target=work, name="site-deployer", daemon=True)
    worker.start()
    worker.join(budget_s)

    if worker.is_alive():
        reason = f"Timed out after {budget_s:.0f} s before the site deployment finished."
        logger.error("deployment timed out", extra={"budget_s": budget_s})
        _send(event, context, "FAILED", fallback_id, _with_log_hint(reason, context))
    elif "error" in result:
        exc = result["error"]
        logger.error("deployment failed", exc_info=exc)
        _send(event, context, "FAILED", fallback_id, _with_log_hint(_readable(exc), context))
    else:
        outcome: Outcome = result["outcome"]
        logger.info("deployment succeeded", extra={"physical_id": outcome.physical_id, **outcome.data})
        _send(event, context, "SUCCESS", outcome.physical_id, "OK", outcome.data)


def _dispatch(event: Mapping[str, Any]) -> Outcome:
    request_type = event.get("RequestType")
    props: Mapping[str, Any] = event.get("ResourceProperties") or {}
    if request_type in ("Create", "Update"):
        return deploy_site(props, str(event.get("RequestId", "")))
    if request_type == "Delete":
        return empty_site(props, str(event.get("PhysicalResourceId", "")))
    raise DeployError(f"Unknown RequestType {request_type!r}.")


def _fallback_physical_id(event: Mapping[str, Any], context: Any) -> str:
    # A failed Update must keep the current id; a failed Create still needs some id for the rollback Delete.
    if event.get("PhysicalResourceId"):
        return str(event["PhysicalResourceId"])
    bucket = (event.get("ResourceProperties") or {}).get("BucketName")
    if bucket:
        return physical_id_for(str(bucket))
    return str(getattr(context, "log_stream_name", "") or f"site-{event.get('LogicalResourceId', 'deployment')}")


def physical_id_for(bucket: str) -> str:
    # Stable across updates of the same bucket; a new bucket gets a new id, so CloudFormation then sends a
    # Delete for the old one, which empties the bucket that is being replaced.
    return f"site-{bucket}"


# ---------------------------------------------------------------------------------------------------------
# Create / Update


def deploy_site(props: Mapping[str, Any], request_id: str) -> Outcome:
    bucket = _required(props, "BucketName")
    config = build_config(props)
    script_url = turnstile_script_url(props)
    site_dir = site_directory()
    files = collect_site_files(site_dir)

    s3 = _client("s3")
    # Assets before pages: a viewer must never get a new index.html that points at files not yet there.
    assets = [f for f in files if f.cache_control != NO_CACHE]
    pages = [f for f in files if f.cache_control == NO_CACHE]
    _upload_all(s3, bucket, assets)
    _upload_all(s3, bucket, pages, lambda html: with_page_policy(html, config["apiUrl"], script_url))
    s3.put_object(
        Bucket=bucket,
        Key=CONFIG_KEY,
        Body=config_body(config),
        ContentType=CONTENT_TYPES[".json"],
        CacheControl=NO_CACHE,
    )

    wanted = {f.key for f in files} | {CONFIG_KEY}
    stale = [key for key in _list_keys(s3, bucket) if key not in wanted]
    _delete_objects(s3, bucket, [{"Key": key} for key in stale])

    distribution_id = str(props.get("DistributionId") or "").strip()
    invalidation_id = invalidate(distribution_id, request_id) if distribution_id else ""

    return Outcome(
        physical_id=physical_id_for(bucket),
        data={"FilesUploaded": len(files) + 1, "FilesDeleted": len(stale), "InvalidationId": invalidation_id},
    )


def page_policy(api_url: str, turnstile_script_url: str = "") -> str:
    """The page's Content-Security-Policy: its own files, and connections to its own origin and the API's own host
    only (WebRTC media is not governed by connect-src, and the page never fetches from OpenAI). It goes into each
    page as a <meta>, because only the deploy knows both hosts: the template's response headers policy cannot name
    the API (the API's CORS names the distribution, so the distribution naming the API would be a cycle). The header
    policy carries what a <meta> cannot (frame-ancestors) and no connect-src of its own.

    With Turnstile (`turnstile_script_url`, the widget's api.js), its origin, and only then: the script from there,
    and the widget's iframe, which the real one serves from the same origin."""
    parts = urlsplit(api_url)
    origin = f"{parts.scheme}://{parts.netloc}"
    scripts, frames = "script-src 'self'", ""
    if turnstile_script_url:
        widget = script_origin(turnstile_script_url)
        scripts, frames = f"{scripts} {widget}", f" frame-src {widget};"
    return (f"default-src 'none'; {scripts}; style-src 'self'; img-src 'self' data:; media-src 'self'; "
            f"connect-src 'self' {origin};{frames} base-uri 'none'; form-action 'none'")


# A host name or an IPv4 address, and an optional port: nothing that could end a CSP directive or add a source.
_HOST = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?(?::[0-9]{1,5})?")


def script_origin(script_url: str) -> str:
    """The origin of a script URL, as a CSP source; ValueError for anything but a plain http(s) URL."""
    parts = urlsplit(script_url)
    if parts.scheme not in ("https", "http") or not _HOST.fullmatch(parts.netloc):
        raise ValueError(f"not an http(s) URL of a host: {script_url[:100]!r}")
    return f"{parts.scheme}://{parts.netloc.lower()}"


def turnstile_script_url(props: Mapping[str, Any]) -> str:
    """The widget script the page may load: empty without Turnstile (a property left out is the same)."""
    value = str(props.get("TurnstileScriptUrl") or "").strip()
    if not value:
        return ""
    _https_url(value, "TurnstileScriptUrl")
    try:
        script_origin(value)
    except ValueError:
        raise DeployError(f"Property TurnstileScriptUrl must be an https:// URL of a host, got {value[:100]!r}.") \
            from None
    return value


# Where the policy goes: first thing in <head>; where a page leaves its <head> (or <html>) implied, right after what
# precedes it, which HTML's parser puts in the head all the same.
_OPENERS = [re.compile(rb"<head(\s[^>]*)?>", re.IGNORECASE), re.compile(rb"<html(\s[^>]*)?>", re.IGNORECASE),
            re.compile(rb"<!doctype[^>]*>", re.IGNORECASE)]


def with_page_policy(html: bytes, api_url: str, turnstile_script_url: str = "") -> bytes:
    """The page with its policy before anything it governs."""
    at = next((match.end() for opener in _OPENERS if (match := opener.search(html))), 0)
    policy = page_policy(api_url, turnstile_script_url)
    meta = f'\n  <meta http-equiv="Content-Security-Policy" content="{policy}">'.encode()
    return html[:at] + meta + html[at:]


def build_config(props: Mapping[str, Any]) -> dict[str, Any]:
    """The public settings the page reads at start-up. Nothing secret may ever be passed here."""
    config: dict[str, Any] = {}
    extra = props.get("PublicSettings") or {}
    if not isinstance(extra, Mapping):
        raise DeployError("PublicSettings must be a map of public settings.")
    config.update(extra)
    # The API's URLs win over PublicSettings so that a stray key there cannot redirect the page.
    api_url = _https_url(_required(props, "ApiUrl"), "ApiUrl").rstrip("/")
    config.update({"apiUrl": api_url, "callsUrl": f"{api_url}/calls", "optionsUrl": f"{api_url}/options",
                   "tokenUrl": f"{api_url}/token"})
    return config


def config_body(config: Mapping[str, Any]) -> bytes:
    return (json.dumps(config, indent=2, sort_keys=True) + "\n").encode()


def site_directory() -> Path:
    return Path(os.environ.get("SITE_DIR") or Path(__file__).resolve().parent / "site")


def collect_site_files(site_dir: Path) -> list[SiteFile]:
    if not site_dir.is_dir():
        raise DeployError(f"The site folder {site_dir.name!r} is not in the deployment package.")
    files = [
        SiteFile(
            key=key,
            path=path,
            content_type=content_type_for(key),
            cache_control=NO_CACHE if key == CONFIG_KEY or key.endswith((".html", ".htm")) else SHORT_CACHE,
        )
        for key, path in _walk(site_dir)
        # config.json is generated per stack; a copy in web/ is for local runs only.
        if key != CONFIG_KEY
    ]
    if not any(f.key == "index.html" for f in files):
        raise DeployError(f"The site folder {site_dir.name!r} has no index.html.")
    return sorted(files, key=lambda f: f.key)


def _walk(root: Path) -> Iterator[tuple[str, Path]]:
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        # Dotfiles (.DS_Store, .gitkeep, editor folders) are never part of the page.
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and d != "__pycache__")
        for name in sorted(filenames):
            if not name.startswith("."):
                path = Path(dirpath, name)
                yield path.relative_to(root).as_posix(), path


def content_type_for(key: str) -> str:
    suffix = Path(key).suffix.lower()
    if suffix in CONTENT_TYPES:
        return CONTENT_TYPES[suffix]
    guessed, _ = mimetypes.guess_type(key)
    return guessed or "application/octet-stream"


def _upload_all(s3: Any, bucket: str, files: list[SiteFile],
                transform: Callable[[bytes], bytes] | None = None) -> None:
    def upload(f: SiteFile) -> None:
        body = f.path.read_bytes()
        if transform is not None and f.content_type.startswith("text/html"):
            body = transform(body)
        s3.put_object(
            Bucket=bucket,
            Key=f.key,
            Body=body,
            ContentType=f.content_type,
            CacheControl=f.cache_control,
        )

    with ThreadPoolExecutor(max_workers=UPLOAD_WORKERS) as pool:
        # list() re-raises the first upload error here.
        list(pool.map(upload, files))


def _list_keys(s3: Any, bucket: str) -> Iterator[str]:
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for obj in page.get("Contents", []):
            yield obj["Key"]


def invalidate(distribution_id: str, request_id: str) -> str:
    cloudfront = _client("cloudfront")
    response = cloudfront.create_invalidation(
        DistributionId=distribution_id,
        InvalidationBatch={
            "Paths": {"Quantity": 1, "Items": ["/*"]},
            # The RequestId makes a retried invocation reuse the same invalidation instead of adding one.
            "CallerReference": request_id or f"site-{time.time_ns()}",
        },
    )
    return str(response["Invalidation"]["Id"])


# ---------------------------------------------------------------------------------------------------------
# Delete


def empty_site(props: Mapping[str, Any], physical_id: str) -> Outcome:
    bucket = str(props.get("BucketName") or "").strip()
    if not bucket:
        # The Create never got as far as a bucket (the rollback of a bad template): nothing to clean up.
        return Outcome(physical_id=physical_id, data={"ObjectsDeleted": 0})
    s3 = _client("s3")
    try:
        deleted = empty_bucket(s3, bucket)
    except ClientError as exc:
        if _error_code(exc) != "NoSuchBucket":
            raise
        # Already gone: failing here would only leave the stack in DELETE_FAILED.
        deleted = 0
    return Outcome(physical_id=physical_id or physical_id_for(bucket), data={"ObjectsDeleted": deleted})


def empty_bucket(s3: Any, bucket: str) -> int:
    """Delete every object version and delete marker; on an unversioned bucket that is every object."""
    # Deleting while paginating would shift the pages under the paginator: collect first, then delete.
    targets = [
        {"Key": item["Key"], "VersionId": item["VersionId"]}
        for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket)
        for item in [*page.get("Versions", []), *page.get("DeleteMarkers", [])]
    ]
    return _delete_objects(s3, bucket, targets)


def _delete_objects(s3: Any, bucket: str, objects: list[dict[str, str]]) -> int:
    for start in range(0, len(objects), 1000):  # DeleteObjects takes at most 1000 keys
        batch = objects[start : start + 1000]
        response = s3.delete_objects(Bucket=bucket, Delete={"Objects": batch, "Quiet": True})
        errors = response.get("Errors") or []
        if errors:
            first = errors[0]
            raise DeployError(
                f"Could not delete {len(errors)} object(s) from {bucket}, "
                f"e.g. {first.get('Key')}: {first.get('Code')} {first.get('Message', '')}".strip()
            )
    return len(objects)


# ---------------------------------------------------------------------------------------------------------
# Helpers


def _client(service: str) -> Any:
    # Bounded timeouts so one hung connection cannot eat the whole budget; standard retries for throttling.
    config = Config(connect_timeout=5, read_timeout=30, retries={"mode": "standard", "max_attempts": 5})
    return boto3.client(service, config=config)


def _required(props: Mapping[str, Any], name: str) -> str:
    value = str(props.get(name) or "").strip()
    if not value:
        raise DeployError(f"Property {name} is required.")
    return value


def _https_url(value: str, name: str) -> str:
    parts = urlsplit(value)
    if parts.scheme != "https" or not parts.hostname:
        raise DeployError(f"Property {name} must be an https:// URL, got {value[:100]!r}.")
    return value


def _error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _readable(exc: BaseException) -> str:
    if isinstance(exc, DeployError):
        return str(exc)
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        operation = getattr(exc, "operation_name", "AWS call")
        return f"{operation} failed: {error.get('Code', 'Error')}: {error.get('Message', '')}".strip()
    if isinstance(exc, BotoCoreError):
        return f"AWS call failed: {exc}"
    return f"Unexpected {type(exc).__name__}: {exc}"


def _with_log_hint(reason: str, context: Any) -> str:
    reason = reason if len(reason) <= MAX_REASON_CHARS else reason[: MAX_REASON_CHARS - 3] + "..."
    stream = getattr(context, "log_stream_name", "")
    return f"{reason} See CloudWatch log stream {stream}." if stream else reason


def _send(
    event: Mapping[str, Any],
    context: Any,
    status: str,
    physical_id: str,
    reason: str,
    data: Mapping[str, Any] | None = None,
) -> None:
    body = json.dumps(
        {
            "Status": status,
            "Reason": reason,
            "PhysicalResourceId": physical_id,
            "StackId": event.get("StackId"),
            "RequestId": event.get("RequestId"),
            "LogicalResourceId": event.get("LogicalResourceId"),
            "NoEcho": False,
            "Data": dict(data or {}),
        }
    ).encode()
    url = str(event["ResponseURL"])
    if urlsplit(url).scheme not in ("https", "http"):
        logger.error("ResponseURL is not an http(s) URL; cannot answer")
        return
    request = urllib.request.Request(  # noqa: S310 - the scheme is checked just above
        url,
        data=body,
        method="PUT",
        # An empty Content-Type: the pre-signed URL is signed without one, and urllib would add a form type.
        headers={"Content-Type": ""},
    )
    for attempt in range(1, 4):
        try:
            with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
                logger.info("response sent", extra={"status": status, "http_status": response.status})
                return
        except OSError as exc:  # URLError and HTTPError included
            # Never log the URL itself: it carries the signature.
            logger.warning("sending the response failed", extra={"attempt": attempt, "error": type(exc).__name__})
            if context.get_remaining_time_in_millis() < 3_000:
                break
            time.sleep(attempt)
    logger.error("could not deliver the response to CloudFormation", extra={"status": status})
