"""Open the store a vault row describes; the one place that knows every backend."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from core.base.errors import UserError
from core.stores.base import ObjectStore
from core.stores.local import LocalStore
from core.stores.retry import RetryingStore

S3_SPEC_FIELDS = (
    "bucket",
    "prefix",
    "region",
    "endpoint_url",
    "profile",
    "addressing_style",
    "request_checksum",
    "object_lock",
    "vault",
)


def parse_s3_url(url: str) -> tuple[str, str]:
    """Split "s3://bucket/some/prefix" into ("bucket", "some/prefix"); UserError if malformed."""
    if not isinstance(url, str) or not url.startswith("s3://"):
        raise UserError(f"not an S3 URL (expected s3://bucket/prefix): {url!r}")
    parts = urlsplit(url)
    bucket = parts.netloc
    if not bucket:
        raise UserError(f"S3 URL has no bucket: {url!r}")
    if "@" in bucket or ":" in bucket:
        # never echo the URL here: it may hold a secret
        raise UserError("S3 URL must not hold credentials or a port (use --endpoint-url)")
    if parts.query or parts.fragment:
        raise UserError(f"S3 URL must not have a query or fragment: {url!r}")
    if not (3 <= len(bucket) <= 63) or not all(c.isalnum() or c in "-._" for c in bucket):
        raise UserError(f"invalid bucket name {bucket!r} in {url!r}")
    prefix = parts.path.strip("/")
    segments = prefix.split("/") if prefix else []
    if any(s in ("", ".", "..") for s in segments):
        raise UserError(f"S3 prefix has an empty, '.' or '..' segment: {url!r}")
    return bucket, prefix


def open_store(spec: dict[str, Any], **retry_options: Any) -> ObjectStore:
    """Build the backend for `spec` ({"kind": "local", "path"} or {"kind": "s3", ...}) and wrap
    it in RetryingStore; `retry_options` go to the wrapper (attempts, on_retry, ...).
    """
    kind = spec.get("kind")
    if kind == "local":
        if not spec.get("path"):
            raise UserError("a local vault needs a path")
        inner: ObjectStore = LocalStore(spec["path"])
    elif kind == "s3":
        from core.stores.s3 import S3Store  # boto3 is slow to import: only when needed

        options = {f: spec.get(f) for f in S3_SPEC_FIELDS}
        inner = S3Store(
            options.pop("bucket") or "",
            options.pop("prefix") or "",
            **options,
        )
    else:
        raise UserError(f"unknown vault kind {kind!r} (expected 'local' or 's3')")
    return RetryingStore(inner, **retry_options)
