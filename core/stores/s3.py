"""A vault in any S3-compatible bucket (AWS S3, Huawei OBS, Ceph RGW, MinIO, SeaweedFS).

Credentials come only from the standard AWS chain (environment, profile, instance role): the
store never receives, keeps or prints a secret. Errors are classified here (restic's rule: a
backend knows its own failure modes) and retried by `RetryingStore`, so botocore's own retries
are switched off. Error messages are built from the error code, HTTP status and our location
only — never request headers or the raw response (AWS echoes StringToSign and the access key
id in signature errors).

Each object carries a CRC32 of its bytes in user metadata, computed before upload and checked
after download: a body damaged in transit, on upload or at rest is reported (as transient, so
a re-read can fix a transit error) instead of being handed to the caller. Objects written by
other tools have no such field and are returned unchecked.

S3 Object Lock (`object_lock` = "compliance" | "governance", on a bucket made with Object Lock
enabled, hence versioned): a put given `retain_until` carries that mode and date (whole
seconds, UTC, rounded up, with Content-MD5 as AWS requires), `retain` extends the current
version's date with PutObjectRetention — always naming its VersionId, since some services
otherwise set it on a delete marker — and `delete` removes every version and delete marker
of the key by VersionId (a plain DELETE would only hide it behind a marker), reporting the
versions still retained (`Retained`, with their date) instead of failing on them.
"""

from __future__ import annotations

import base64
import hashlib
import os
import threading
import zlib
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import boto3
import botocore.exceptions as bce
import urllib3
from botocore.config import Config

from core.base.errors import NotFound, ObjectMissing, Retained, StoreError, UserError
from core.stores.base import OBJECT_LOCK_MODES, ObjectInfo, ObjectStore, lock_instant
from core.stores.local import validate_key, validate_prefix

ADDRESSING_STYLES = ("path", "virtual", "auto")
REQUEST_CHECKSUM_MODES = ("when_required", "when_supported")
#: user-metadata field holding the CRC32 (8 hex digits) of the object's bytes
CRC_META = "bv-crc32"

_MISSING_CODES = {"NoSuchKey", "404", "NotFound"}
_AUTH_CODES = {
    "AccessDenied",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "ExpiredToken",
    "InvalidToken",
    "TokenRefreshRequired",
    "InvalidClientTokenId",
    "UnrecognizedClientException",
    "AllAccessDisabled",
    "AccountProblem",
    "403",
}
_TRANSIENT_CODES = {
    "SlowDown",
    "Throttling",
    "ThrottlingException",
    "RequestThrottled",
    "RequestLimitExceeded",
    "TooManyRequests",
    "TooManyRequestsException",
    "ProvisionedThroughputExceededException",
    "RequestTimeout",
    "RequestTimeoutException",
    "InternalError",
    "ServiceUnavailable",
    "OperationAborted",
    "ConditionalRequestConflict",  # AWS: a concurrent conditional write; retry
    "500",
    "502",
    "503",
    "504",
    "429",
}
# Errors that say "this service does not implement If-None-Match on PUT".
_NO_CONDITIONAL_CODES = {"NotImplemented", "InvalidArgument", "InvalidRequest", "501"}


#: everything a boto3 call can raise for reasons outside our code
_FAILURES = (bce.ClientError, bce.BotoCoreError, OSError, urllib3.exceptions.HTTPError)


def _redact(url: str | None) -> str:
    """An endpoint URL without any user:password part, for messages."""
    if not url:
        return "the S3 endpoint"
    parts = urlsplit(url)
    return parts._replace(netloc=parts.netloc.rpartition("@")[2]).geturl()


def _profile_text(profile: str | None) -> str:
    """'AWS profile nosuch' and where the name came from (the option, or the environment)."""
    if profile:
        return f"AWS profile {profile}"
    for variable in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE"):
        if os.environ.get(variable):
            return f"AWS profile {os.environ[variable]} (from {variable})"
    return "AWS profile"


def _error_info(exc: bce.ClientError) -> tuple[str, int, str]:
    err = exc.response.get("Error", {}) or {}
    code = str(err.get("Code", "") or "")
    status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
    message = str(err.get("Message", "") or "")[:200]
    return code, status, message


class S3Store(ObjectStore):
    """ObjectStore over one bucket and key prefix; one boto3 client shared by all threads."""

    remote = True

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        region: str | None = None,
        endpoint_url: str | None = None,
        profile: str | None = None,
        addressing_style: str | None = "auto",
        request_checksum: str | None = "when_required",
        max_pool_connections: int = 32,
        connect_timeout: float = 10.0,
        read_timeout: float = 60.0,
        object_lock: str | None = None,
        vault: str | None = None,
    ) -> None:
        """`vault` (its name in the catalog) and the endpoint are named in every error."""
        addressing_style = addressing_style or "auto"
        if object_lock is not None and object_lock not in OBJECT_LOCK_MODES:
            raise UserError(
                f"object lock mode must be one of {', '.join(OBJECT_LOCK_MODES)}, "
                f"not {object_lock!r}"
            )
        self.object_lock = object_lock
        request_checksum = request_checksum or "when_required"
        if not bucket:
            raise UserError("an S3 vault needs a bucket name")
        if addressing_style not in ADDRESSING_STYLES:
            raise UserError(
                f"addressing style must be one of {', '.join(ADDRESSING_STYLES)}, "
                f"not {addressing_style!r}"
            )
        if request_checksum not in REQUEST_CHECKSUM_MODES:
            raise UserError(
                f"request checksum must be one of {', '.join(REQUEST_CHECKSUM_MODES)}, "
                f"not {request_checksum!r}"
            )
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        if self.prefix:
            validate_key(self.prefix)
        self.region = region
        self.endpoint_url = endpoint_url
        self.location = f"s3://{bucket}/{self.prefix}" if self.prefix else f"s3://{bucket}"
        self.vault = vault
        self.who = f"vault {vault}" if vault else self.location  # refined once the client exists
        config = Config(
            region_name=region,
            # The defaults (CRC32 headers, aws-chunked bodies) are refused by some S3-compatible
            # services; "when_required" sends checksums only where the API demands them.
            request_checksum_calculation=request_checksum,
            response_checksum_validation=request_checksum,
            # One attempt: RetryingStore owns retries, with backoff the whole engine can see.
            retries={"total_max_attempts": 1, "mode": "standard"},
            max_pool_connections=max_pool_connections,
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            s3={"addressing_style": addressing_style},
            user_agent_extra="blockvault",
        )
        try:
            session = boto3.Session(profile_name=profile) if profile else boto3.Session()
            self._client = session.client("s3", endpoint_url=endpoint_url, config=config)
        except bce.ProfileNotFound:
            raise NotFound(f"{self.who}: {_profile_text(profile)} not found") from None
        except bce.BotoCoreError as exc:
            reason = str(exc).replace(endpoint_url or "\0", _redact(endpoint_url))
            raise UserError(f"cannot set up S3 client for {self.who}: {reason}") from None
        except ValueError:  # botocore's "Invalid endpoint: <url>" would echo any user:password
            raise UserError("invalid S3 endpoint URL (expected http(s)://host[:port])") from None
        endpoint = _redact(getattr(self._client.meta, "endpoint_url", None) or endpoint_url)
        self.who = f"{f'vault {vault} ' if vault else ''}({self.location} at {endpoint})"
        self._conditional_put: bool | None = None  # None: not yet known
        self._lock = threading.Lock()

    # -- helpers -------------------------------------------------------------------------

    def _key(self, key: str) -> str:
        validate_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def _where(self, key: str | None) -> str:
        return f"{self.location}/{key}" if key else self.location

    def _error(self, exc: Exception, action: str, key: str | None = None) -> StoreError:
        """Turn a botocore/urllib3 failure into a StoreError that carries no secret and names
        the vault and its endpoint."""
        error = self._bare_error(exc, action, key)
        if isinstance(error, ObjectMissing):
            return error
        return type(error)(f"{self.who}: {error}", transient=error.transient)

    def _bare_error(self, exc: Exception, action: str, key: str | None) -> StoreError:
        where = self._where(key)
        if isinstance(exc, bce.ClientError):
            code, status, message = _error_info(exc)
            if code in _MISSING_CODES or (status == 404 and code not in ("NoSuchBucket",)):
                return ObjectMissing(f"no object {where}")
            if code == "NoSuchBucket":
                return StoreError(f"bucket {self.bucket!r} does not exist ({self.location})")
            if code in _AUTH_CODES or status == 403:
                return StoreError(
                    f"access denied to {self.location} (check credentials): {action} "
                    f"failed with {code or status}"
                )
            transient = code in _TRANSIENT_CODES or status >= 500 or status == 429
            detail = f"{code} (HTTP {status})" + (f": {message}" if message else "")
            return StoreError(f"{action} {where} failed: {detail}", transient=transient)
        if isinstance(exc, (bce.NoCredentialsError, bce.PartialCredentialsError)):
            return StoreError(
                f"no usable AWS credentials for {self.location} (set AWS_ACCESS_KEY_ID and "
                "AWS_SECRET_ACCESS_KEY, a profile, or an instance role)"
            )
        if isinstance(exc, bce.CredentialRetrievalError | bce.TokenRetrievalError):
            return StoreError(f"cannot obtain AWS credentials for {self.location}", transient=True)
        if isinstance(exc, bce.SSLError) and "CERTIFICATE_VERIFY" in str(exc):
            return StoreError(f"TLS certificate of {_redact(self.endpoint_url)} not trusted")
        if isinstance(
            exc,
            bce.ConnectionError
            | bce.HTTPClientError
            | bce.IncompleteReadError
            | bce.ChecksumError
            | bce.FlexibleChecksumError
            | OSError
            | urllib3.exceptions.HTTPError,
        ):
            return StoreError(
                f"{action} {where} failed: {type(exc).__name__} (connection or transfer)",
                transient=True,
            )
        return StoreError(f"{action} {where} failed: {type(exc).__name__}")

    def _call(self, action: str, key: str | None, fn: Any, **kwargs: Any) -> Any:
        try:
            return fn(**kwargs)
        except _FAILURES as exc:
            raise self._error(exc, action, key) from None

    # -- ObjectStore ---------------------------------------------------------------------

    def _lock_args(self, data: bytes, retain_until: datetime | None) -> dict[str, Any]:
        """The Object Lock headers of a put (none without a mode, or for a date now past)."""
        if not self.object_lock or retain_until is None:
            return {}
        until = lock_instant(retain_until)
        if until <= datetime.now(UTC):
            return {}
        return {
            "ObjectLockMode": self.object_lock.upper(),
            "ObjectLockRetainUntilDate": until,
            "ContentMD5": base64.b64encode(hashlib.md5(data).digest()).decode(),
        }

    def put(
        self,
        key: str,
        data: bytes,
        *,
        create_only: bool = False,
        retain_until: datetime | None = None,
    ) -> bool:
        """Upload `data`; create_only uses If-None-Match, or head-then-put where unsupported.
        With `retain_until` (Object Lock), an object create_only finds already there has its
        retention extended to that date instead (a reused chunk of a locked backup)."""
        full = self._key(key)
        args = {
            "Bucket": self.bucket,
            "Key": full,
            "Body": bytes(data),
            "Metadata": {CRC_META: f"{zlib.crc32(data):08x}"},
            **self._lock_args(data, retain_until),
        }
        if not create_only:
            self._call("writing", key, self._client.put_object, **args)
            return True
        if self._conditional_put is not False:
            try:
                self._client.put_object(IfNoneMatch="*", **args)
                self._conditional_put = True
                return True
            except bce.ClientError as exc:
                code, status, _ = _error_info(exc)
                if code == "PreconditionFailed" or status == 412:
                    self._conditional_put = True
                    if retain_until is not None:
                        self.retain(key, retain_until)
                    return False
                if self._conditional_put is None and (
                    code in _NO_CONDITIONAL_CODES or status == 501
                ):
                    # Service does not implement conditional PUT: fall back for this store.
                    with self._lock:
                        self._conditional_put = False
                else:
                    raise self._error(exc, "writing", key) from None
            except _FAILURES as exc:
                raise self._error(exc, "writing", key) from None
        # Fallback: HEAD then PUT. Racy: two writers can both see "absent" and the later PUT
        # wins. Acceptable because blockvault keys are content ids or unique manifest ids, so
        # concurrent writers of one key write the same bytes (I6); the window is one round trip.
        if self.exists(key):
            if retain_until is not None:
                self.retain(key, retain_until)
            return False
        self._call("writing", key, self._client.put_object, **args)
        return True

    def get(self, key: str, *, max_bytes: int | None = None) -> bytes:
        """Download and check the CRC32 recorded at upload, when there is one."""
        full = self._key(key)
        resp = self._call("reading", key, self._client.get_object, Bucket=self.bucket, Key=full)
        body = resp["Body"]
        try:
            length = int(resp.get("ContentLength") or 0)
            if max_bytes is not None and length > max_bytes:
                raise StoreError(
                    f"reading {self._where(key)}: {length} bytes, more than the {max_bytes} allowed"
                )
            data = body.read() if max_bytes is None else body.read(max_bytes + 1)
            if max_bytes is not None and len(data) > max_bytes:
                raise StoreError(f"reading {self._where(key)}: more than {max_bytes} bytes")
        except _FAILURES as exc:
            raise self._error(exc, "reading", key) from None
        finally:
            body.close()
        expected = (resp.get("Metadata") or {}).get(CRC_META)
        if expected is not None and expected.lower() != f"{zlib.crc32(data):08x}":
            raise StoreError(
                f"reading {self._where(key)}: CRC32 mismatch (damaged in transit or at rest)",
                transient=True,
            )
        return data

    def exists(self, key: str) -> bool:
        try:
            self._call(
                "checking", key, self._client.head_object, Bucket=self.bucket, Key=self._key(key)
            )
            return True
        except ObjectMissing:
            return False

    def delete(self, key: str) -> None:
        if not self.object_lock:
            self._call(
                "deleting", key, self._client.delete_object, Bucket=self.bucket, Key=self._key(key)
            )
            return
        full = self._key(key)
        held: list[datetime] = []
        for version_id in self._versions(key):
            try:
                self._client.delete_object(Bucket=self.bucket, Key=full, VersionId=version_id)
            except bce.ClientError as exc:
                code, status, _ = _error_info(exc)
                if code in ("NoSuchVersion", "NoSuchKey") or status == 404:
                    continue  # gone meanwhile
                until = self._version_retention(full, version_id) if status == 403 else None
                if until is None:
                    raise self._error(exc, "deleting", key) from None
                held.append(until)
            except _FAILURES as exc:
                raise self._error(exc, "deleting", key) from None
        if held:
            until = max(held)
            raise Retained(
                f"{self._where(key)} is retained by S3 Object Lock until "
                f"{until:%Y-%m-%d %H:%M:%S} UTC",
                until=until,
            )

    def _versions(self, key: str) -> list[str]:
        """Every VersionId of exactly this key, delete markers included."""
        full = self._key(key)
        found: list[str] = []
        paginator = self._client.get_paginator("list_object_versions")
        try:
            for page in paginator.paginate(Bucket=self.bucket, Prefix=full):
                for item in [*page.get("Versions", ()), *page.get("DeleteMarkers", ())]:
                    if item.get("Key") == full and item.get("VersionId"):
                        found.append(str(item["VersionId"]))
        except _FAILURES as exc:
            raise self._error(exc, "listing versions of", key) from None
        return found

    def _version_retention(self, full: str, version_id: str) -> datetime | None:
        """The future retain-until date of one version, or None (none, past, or unknown)."""
        try:
            found = self._client.get_object_retention(
                Bucket=self.bucket, Key=full, VersionId=version_id
            )
        except _FAILURES:
            return None
        until = (found.get("Retention") or {}).get("RetainUntilDate")
        if isinstance(until, datetime) and until > datetime.now(UTC):
            return until.astimezone(UTC)
        return None

    def retain(self, key: str, until: datetime) -> datetime | None:
        """PutObjectRetention on the current version (by its VersionId), only forward."""
        if not self.object_lock:
            return None
        full = self._key(key)
        until = lock_instant(until)
        head = self._call("checking", key, self._client.head_object, Bucket=self.bucket, Key=full)
        current = head.get("ObjectLockRetainUntilDate")
        current = current.astimezone(UTC) if isinstance(current, datetime) else None
        if current is not None and current >= until:
            return current
        if until <= datetime.now(UTC):
            return current
        mode = str(head.get("ObjectLockMode") or self.object_lock).upper()
        args: dict[str, Any] = {
            "Bucket": self.bucket,
            "Key": full,
            "Retention": {"Mode": mode, "RetainUntilDate": until},
        }
        if head.get("VersionId"):
            args["VersionId"] = head["VersionId"]
        self._call("extending the retention of", key, self._client.put_object_retention, **args)
        return until

    def retained_until(self, key: str) -> datetime | None:
        if not self.object_lock:
            return None
        head = self._call(
            "checking", key, self._client.head_object, Bucket=self.bucket, Key=self._key(key)
        )
        until = head.get("ObjectLockRetainUntilDate")
        if isinstance(until, datetime) and until > datetime.now(UTC):
            return until.astimezone(UTC)
        return None

    #: not `ordered_listing`: AWS lists keys in UTF-8 byte order, but SeaweedFS lists folder
    #: by folder ("a/b" before "a-c"), so a resumed listing cannot skip by the last key

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Page through ListObjectsV2 (1000 keys a page) under the store prefix."""
        validate_prefix(prefix)
        base = f"{self.prefix}/" if self.prefix else ""
        paginator = self._client.get_paginator("list_objects_v2")
        pages = paginator.paginate(Bucket=self.bucket, Prefix=base + prefix)
        try:
            for page in pages:
                for item in page.get("Contents", ()):
                    name = item["Key"][len(base) :]
                    yield ObjectInfo(
                        key=name, size=int(item["Size"]), mtime=item["LastModified"].timestamp()
                    )
        except _FAILURES as exc:
            raise self._error(exc, "listing", prefix or None) from None

    def close(self) -> None:
        self._client.close()

    # -- extras --------------------------------------------------------------------------

    def ensure_object_lock(self) -> bool:
        """`vault add --object-lock`: make the bucket with Object Lock enabled if it is missing
        (True), else check it has Object Lock enabled and no default retention rule (which
        would lock blockvault's own short-lived objects: locks, sessions, trash). UserError
        with the reason otherwise."""
        try:
            found = self._client.get_object_lock_configuration(Bucket=self.bucket)
        except bce.ClientError as exc:
            code, status, _ = _error_info(exc)
            if code == "NoSuchBucket":
                return self._create_bucket(object_lock=True)
            if code == "ObjectLockConfigurationNotFoundError" or status == 404:
                found = {}
            else:
                raise self._error(exc, "checking the Object Lock configuration of") from None
        except _FAILURES as exc:
            raise self._error(exc, "checking the Object Lock configuration of") from None
        config = found.get("ObjectLockConfiguration") or {}
        if config.get("ObjectLockEnabled") != "Enabled":
            raise UserError(
                f"bucket {self.bucket!r} does not have S3 Object Lock enabled (it can only be "
                "turned on when a bucket is made): give a new bucket name, which vault add "
                "then creates with Object Lock"
            )
        rule = (config.get("Rule") or {}).get("DefaultRetention")
        if rule:
            unit = "days" if rule.get("Days") else "years"
            span = f"{rule.get('Days') or rule.get('Years')} {unit}"
            raise UserError(
                f"bucket {self.bucket!r} has a default retention rule ({rule.get('Mode')}, "
                f"{span}): it would lock blockvault's own short-lived objects (locks, sessions, "
                "trash) too; remove the rule, blockvault dates each locked backup itself"
            )
        return False

    def _create_bucket(self, *, object_lock: bool = False) -> bool:
        args: dict[str, Any] = {"Bucket": self.bucket}
        if object_lock:
            args["ObjectLockEnabledForBucket"] = True
        region = self._client.meta.region_name
        if region and region != "us-east-1":
            args["CreateBucketConfiguration"] = {"LocationConstraint": region}
        try:
            self._client.create_bucket(**args)
            return True
        except bce.ClientError as exc:
            code, _, _ = _error_info(exc)
            if code == "BucketAlreadyOwnedByYou":
                return False
            raise self._error(exc, "creating bucket") from None
        except _FAILURES as exc:
            raise self._error(exc, "creating bucket") from None

    def ensure_bucket(self) -> bool:
        """Create the bucket if it is missing (tests, `vault add --create`); True if created."""
        try:
            self._client.head_bucket(Bucket=self.bucket)
            return False
        except bce.ClientError as exc:
            code, status, _ = _error_info(exc)
            if status != 404 and code not in ("NoSuchBucket", "NotFound", "404"):
                raise self._error(exc, "checking bucket") from None
        except _FAILURES as exc:
            raise self._error(exc, "checking bucket") from None
        return self._create_bucket()
