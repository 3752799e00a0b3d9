"""The Университет 2035 file store: any S3-compatible storage over boto3 (docs/portals/u2035.md). A statement
refers to a file by its public `fileUrl` (`<public base>/<bucket>/<key>`) with the file's SHA-256 and length, so
a file is put before the statement that names it goes out.

Why these choices:
- Path-style addressing and signature v4: what the CDO client does against cloud4u, and what every S3-compatible
  store (and moto) takes; virtual-hosted names need DNS for each bucket.
- `public-read` by default: the LRS's readers fetch `fileUrl` without credentials. A store that refuses ACLs
  answers AccessControlListNotSupported; `acl=None` sends none.
- The SHA-256 goes in the object's metadata (`x-amz-meta-sha256`, read back by `head`) and, where the store
  checks it, as ChecksumSHA256 (the store rejects a body that does not match). A store that does not know the
  checksum header refuses it once; then the put is sent again without it and this client stops sending it.
- botocore's own checksums (CRC32 trailers on every upload since botocore 1.36) only when an operation needs
  them: many S3-compatible stores refuse aws-chunked uploads.
- Few, quick retries (botocore's standard mode, `attempts` in all): the outbox retries later with its own backoff.

Errors are S3Failed with the store's own code and message (InvalidAccessKeyId, SignatureDoesNotMatch, NoSuchBucket,
AccessDenied, ...), or Unreachable / Timeout when no answer came; `transient` says whether a later try may do.
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
import time
import uuid
from typing import Any, BinaryIO, TypeVar
from urllib.parse import quote

import boto3
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectTimeoutError,
    HTTPClientError,
    ParamValidationError,
    ReadTimeoutError,
)
from botocore.exceptions import ConnectionError as BotoConnectionError

from bufsync.secrets import redact, register

T = TypeVar("T")
SHA256_META = "sha256"
CHECK_PREFIX = "bufsync-check/"
# the store's codes that mean "later may work"; any 5xx as well
TRANSIENT_CODES = frozenset({"SlowDown", "RequestTimeout", "InternalError", "ServiceUnavailable", "Throttling",
                             "ThrottlingException", "RequestLimitExceeded", "OperationAborted", "Unreachable",
                             "Timeout"})
MISSING_CODES = frozenset({"404", "NoSuchKey", "NotFound"})


class S3Failed(Exception):
    """A store's refusal or no answer: `code` (the store's own, or Unreachable / Timeout / InvalidParameter /
    Mismatch), its `message`, and whether a later try may succeed (`transient`)."""

    def __init__(self, code: str, message: str, transient: bool) -> None:
        self.code = code
        self.message = redact(message)
        self.transient = transient
        super().__init__(f"{code}: {self.message}")


class S3Store:
    """One bucket of one S3-compatible store.

    endpoint: `https://s3.example.org` (no scheme: https, or http for a `:80` endpoint as CDO's default
    `s3.objstor.cloud4u.com:80`). public_base: where readers fetch objects, when not the endpoint itself."""

    def __init__(self, endpoint: str, bucket: str, access_key: str, secret_key: str, *, region: str = "us-east-1",
                 acl: str | None = "public-read", public_base: str | None = None, timeout: float = 30.0,
                 attempts: int = 3) -> None:
        register(secret_key)
        if "://" not in endpoint:
            endpoint = ("http://" if endpoint.rstrip("/").endswith(":80") else "https://") + endpoint
        self.endpoint = endpoint.rstrip("/")
        self.bucket = bucket
        self.acl = acl
        self.public_base = (public_base or self.endpoint).rstrip("/")
        self.checksum = True  # False once the store refused the checksum header
        options: dict[str, Any] = {
            "signature_version": "s3v4", "s3": {"addressing_style": "path"}, "region_name": region,
            "connect_timeout": timeout, "read_timeout": timeout,
            "retries": {"max_attempts": attempts, "mode": "standard"},
        }
        # botocore >= 1.36 only (setup.cfg allows 1.34): older ones add no checksum of their own anyway
        for name in ("request_checksum_calculation", "response_checksum_validation"):
            if name in Config.OPTION_DEFAULTS:
                options[name] = "when_required"
        # SSL_CERT_FILE is honoured as bufsync.tls does for the httpx clients (botocore reads only AWS_CA_BUNDLE)
        self._s3: Any = boto3.session.Session().client(
            "s3", endpoint_url=self.endpoint, aws_access_key_id=access_key, aws_secret_access_key=secret_key,
            config=Config(**options), verify=os.environ.get("SSL_CERT_FILE") or None)

    def close(self) -> None:
        self._s3.close()

    def __enter__(self) -> S3Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- objects -----------------------------------------------------------------------------------------------
    def put(self, key: str, data: bytes | BinaryIO, *, content_type: str, sha256_hex: str, length: int) -> None:
        """Store `data` (bytes, or a seekable binary file positioned at the start) under `key`."""
        body: BinaryIO = io.BytesIO(data) if isinstance(data, bytes | bytearray) else data
        start = body.tell()
        args: dict[str, Any] = {"Bucket": self.bucket, "Key": key, "Body": body, "ContentType": content_type,
                                "ContentLength": length, "Metadata": {SHA256_META: sha256_hex.lower()}}
        if self.acl:
            args["ACL"] = self.acl
        if self.checksum:
            try:
                self._call(f"PutObject {key}", lambda: self._s3.put_object(
                    **args, ChecksumSHA256=base64.b64encode(bytes.fromhex(sha256_hex)).decode()))
                return
            except S3Failed as exc:
                if not _checksum_refused(exc):
                    raise
                self.checksum = False
                body.seek(start)
        self._call(f"PutObject {key}", lambda: self._s3.put_object(**args))

    def head(self, key: str) -> dict[str, Any] | None:
        """`{length, sha256, etag, content_type}` of the object (sha256 from its metadata, None when it was put
        by someone else); None when there is no such object (a HEAD's answer has no body: a missing bucket looks
        the same, and `check` or `put` tells it apart)."""
        try:
            found = self._call(f"HeadObject {key}", lambda: self._s3.head_object(Bucket=self.bucket, Key=key))
        except S3Failed as exc:
            if exc.code in MISSING_CODES:
                return None
            raise
        return {"length": int(found.get("ContentLength") or 0), "sha256": (found.get("Metadata") or {}).get(
                SHA256_META), "etag": str(found.get("ETag") or "").strip('"'), "content_type": found.get("ContentType")}

    def get(self, key: str) -> bytes:
        def read() -> bytes:
            stream = self._s3.get_object(Bucket=self.bucket, Key=key)["Body"]
            try:
                return bytes(stream.read())
            finally:
                stream.close()
        return self._call(f"GetObject {key}", read)

    def delete(self, key: str) -> None:
        """Remove the object (S3 answers the same whether it existed or not)."""
        self._call(f"DeleteObject {key}", lambda: self._s3.delete_object(Bucket=self.bucket, Key=key))

    def url(self, key: str) -> str:
        """The public `fileUrl` a statement carries: `<public_base or endpoint>/<bucket>/<key>`, the key
        percent-encoded but for its slashes."""
        return f"{self.public_base}/{quote(self.bucket)}/{quote(key, safe='/~')}"

    def check(self) -> str:
        """The connection check: put a small object (with the ACL), read it back, compare, delete it. Proves the
        keys, the signature, the bucket and write access at once (listing buckets would prove only the keys).
        Raises S3Failed; returns what was done, for the wizard to show."""
        data = f"bufsync connection check {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}\n".encode()
        digest = hashlib.sha256(data).hexdigest()
        key = f"{CHECK_PREFIX}{uuid.uuid4().hex}.txt"
        self.put(key, data, content_type="text/plain", sha256_hex=digest, length=len(data))
        try:
            found = self.head(key)
            if found is None or found["length"] != len(data) or found["sha256"] != digest:
                raise S3Failed("Mismatch", f"{key}: the store describes the object it was given as {found}", False)
            back = self.get(key)
            if back != data:
                raise S3Failed("Mismatch", f"{key}: {len(back)} bytes read back differ from the "
                                           f"{len(data)} written", False)
        finally:
            try:
                self.delete(key)
            except S3Failed:
                pass  # the first failure is the one to tell; a check object left behind is harmless
        return f"{self.bucket}: wrote, read back and deleted {key} ({len(data)} bytes, ACL {self.acl or 'none'})"

    # -- plumbing ----------------------------------------------------------------------------------------------
    def _call(self, what: str, call: Any) -> Any:
        try:
            return call()
        except ClientError as exc:
            error = exc.response.get("Error") or {}
            status = int((exc.response.get("ResponseMetadata") or {}).get("HTTPStatusCode") or 0)
            code = str(error.get("Code") or status or "Unknown")
            message = str(error.get("Message") or "")
            raise S3Failed(code, f"{what}: {message}" if message else what,
                           code in TRANSIENT_CODES or status >= 500) from None
        except (ConnectTimeoutError, ReadTimeoutError) as exc:
            raise S3Failed("Timeout", f"{what}: {exc}", True) from None
        except (BotoConnectionError, HTTPClientError) as exc:
            raise S3Failed("Unreachable", f"{what}: {exc}", True) from None
        except ParamValidationError as exc:
            raise S3Failed("InvalidParameter", f"{what}: {exc}", False) from None
        except BotoCoreError as exc:
            raise S3Failed(type(exc).__name__, f"{what}: {exc}", False) from None


def _checksum_refused(exc: S3Failed) -> bool:
    """The store does not take x-amz-checksum-sha256 (an older S3-compatible one), as opposed to a body that
    does not match it (BadDigest, InvalidRequest 'Value for x-amz-checksum-sha256 header is invalid')."""
    text = exc.message.lower()
    return exc.code in ("NotImplemented", "InvalidArgument", "InvalidRequest", "UnsupportedHeader") \
        and "checksum" in text and "invalid" not in text and "mismatch" not in text
