"""The sandbox S3 over real HTTP (path-style only), and `start()` for tests and for people trying it.

Operations: ListBuckets (GET /), CreateBucket, HeadBucket, DeleteBucket, PutObject, GetObject, HeadObject,
DeleteObject, GetObjectAcl (GET ?acl). Signed requests carry AWS Signature Version 4 in the Authorization header;
the signature is recomputed with botocore's own signer (S3SigV4Auth over an AWSRequest rebuilt from the signed
headers), never with crypto of our own. A request without Authorization is anonymous: it may GET or HEAD an
object whose ACL is public-read (or public-read-write) and nothing else (403 AccessDenied), which is what makes
a "public-read" check real here. Errors are S3's XML `<Error><Code>…</Code><Message>…</Message>…</Error>`.
Faults (faults.py) are matched on the operation's name ("PutObject", "GetObject", …); a `drop_after_write` on
PutObject stores the object and drops the connection.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import secrets
import zlib
from email.utils import formatdate
from typing import Any
from urllib.parse import unquote
from xml.sax.saxutils import escape

from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from bufsync.sandbox.faults import FaultRule, Faults, serve
from bufsync.sandbox.httpserver import HttpServer, Reply, Request
from bufsync.sandbox.s3.store import CANNED_ACLS, Bucket, Obj, S3Config, Store

XML = "application/xml"
NS = "http://s3.amazonaws.com/doc/2006-03-01/"
AUTH = re.compile(r"^AWS4-HMAC-SHA256\s+Credential=([^,\s]+),\s*SignedHeaders=([^,\s]+),\s*Signature=([0-9a-f]{64})$")
BUCKET_NAME = re.compile(r"^[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]$")
UNSIGNED = ("UNSIGNED-PAYLOAD", "STREAMING-UNSIGNED-PAYLOAD-TRAILER")
CHECKSUMS = {"crc32": lambda b: zlib.crc32(b).to_bytes(4, "big"), "sha256": lambda b: hashlib.sha256(b).digest(),
             "sha1": lambda b: hashlib.sha1(b).digest()}


class S3Error(Exception):
    """One S3 error answer: status, code, message and the extra elements S3 adds (Key, BucketName, …)."""

    def __init__(self, status: int, code: str, message: str, **extra: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.extra = status, code, message, extra


def _xml(status: int, body: str, headers: dict[str, str] | None = None) -> Reply:
    return Reply(status, XML, ('<?xml version="1.0" encoding="UTF-8"?>\n' + body).encode("utf-8"),
                 headers=headers or {})


def _date(moment: float) -> str:
    return formatdate(moment, usegmt=True)


def _iso(moment: float) -> str:
    from datetime import UTC, datetime
    stamp = datetime.fromtimestamp(moment, UTC)
    return stamp.strftime("%Y-%m-%dT%H:%M:%S.") + f"{stamp.microsecond // 1000:03d}Z"


class S3Server(HttpServer):
    def __init__(self, store: Store, host: str = "127.0.0.1", port: int = 0, faults: Faults | None = None) -> None:
        super().__init__(self._route, host, port)
        self.store = store
        self.max_body = max(self.max_body, store.config.max_object_size + 1)
        self.faults = faults or Faults()

    def _route(self, request: Request) -> Reply:
        bucket, key = self._target(request.path)
        operation = self._operation(request, bucket, key)
        with self.store.lock:
            self.store.calls[operation] = self.store.calls.get(operation, 0) + 1

        def failed(kind: str) -> Reply:
            code = "SlowDown" if kind == "http_503" else "InternalError"
            return self._error(S3Error(503 if kind == "http_503" else 500, code,
                                       "Please reduce your request rate." if code == "SlowDown"
                                       else "We encountered an internal error. Please try again."), request.path)
        return serve(self.faults, operation, lambda: self._answer(request, operation, bucket, key), failed)

    @staticmethod
    def _target(path: str) -> tuple[str | None, str | None]:
        parts = path.lstrip("/").split("/", 1)
        bucket = unquote(parts[0]) if parts[0] else None
        key = unquote(parts[1]) if len(parts) > 1 and parts[1] else None
        return bucket, key

    @staticmethod
    def _operation(request: Request, bucket: str | None, key: str | None) -> str:
        method, query = request.method, request.query
        if bucket is None:
            return "ListBuckets" if method == "GET" else f"{method} /"
        if key is None:
            return {"PUT": "CreateBucket", "HEAD": "HeadBucket", "DELETE": "DeleteBucket",
                    "GET": "ListObjects"}.get(method, f"{method} bucket")
        if "acl" in query.split("&") or query.startswith("acl="):
            return {"GET": "GetObjectAcl", "PUT": "PutObjectAcl"}.get(method, f"{method} acl")
        return {"PUT": "PutObject", "GET": "GetObject", "HEAD": "HeadObject",
                "DELETE": "DeleteObject"}.get(method, f"{method} object")

    def _answer(self, request: Request, operation: str, bucket: str | None, key: str | None) -> Reply:
        request_id = secrets.token_hex(8).upper()
        with self.store.lock:
            try:
                signed = self._authenticate(request)
                reply = self._operate(request, operation, bucket, key, signed)
            except S3Error as error:
                if error.status == 404 and bucket and "BucketName" not in error.extra and error.code == "NoSuchBucket":
                    error.extra["BucketName"] = bucket
                reply = self._error(error, request.path, request_id)
        reply.headers.setdefault("x-amz-request-id", request_id)
        reply.headers.setdefault("x-amz-id-2", base64.b64encode(request_id.encode()).decode())
        reply.headers.setdefault("Server", "AmazonS3")
        return reply

    @staticmethod
    def _error(error: S3Error, resource: str, request_id: str = "0") -> Reply:
        extra = "".join(f"<{name}>{escape(value)}</{name}>" for name, value in error.extra.items())
        body = (f"<Error><Code>{error.code}</Code><Message>{escape(error.message)}</Message>{extra}"
                f"<Resource>{escape(resource)}</Resource><RequestId>{request_id}</RequestId></Error>")
        return _xml(error.status, body)

    # -- Signature Version 4 ---------------------------------------------------------------------------
    def _authenticate(self, request: Request) -> bool:
        """Whether the request is signed (and then correctly, else S3Error); False for an anonymous one."""
        header = request.headers.get("authorization")
        if header is None:
            if "X-Amz-Signature=" in request.query or "X-Amz-Credential=" in request.query:
                raise S3Error(501, "NotImplemented", "The sandbox does not take presigned URLs.")
            return False
        config = self.store.config
        match = AUTH.match(header.strip())
        if not match:
            if header.startswith("AWS "):
                raise S3Error(400, "InvalidRequest", "The authorization mechanism you have provided is not "
                                                     "supported. Please use AWS4-HMAC-SHA256.")
            raise S3Error(400, "AuthorizationHeaderMalformed", "The authorization header is malformed.")
        credential, signed_headers, signature = match.groups()
        parts = credential.split("/")
        if len(parts) != 5 or parts[4] != "aws4_request":
            raise S3Error(400, "AuthorizationHeaderMalformed", "The authorization header is malformed; the "
                                                               "Credential is mal-formed.")
        access_key, day, region, service = parts[:4]
        secret = config.credentials.get(access_key)
        if secret is None:
            raise S3Error(403, "InvalidAccessKeyId",
                          "The AWS Access Key Id you provided does not exist in our records.",
                          AWSAccessKeyId=access_key)
        if region != config.region:
            raise S3Error(400, "AuthorizationHeaderMalformed", f"The authorization header is malformed; the "
                          f"region '{region}' is wrong; expecting '{config.region}'", Region=config.region)
        if service != "s3":
            raise S3Error(400, "AuthorizationHeaderMalformed", "The authorization header is malformed; "
                          f"incorrect service '{service}'. This endpoint belongs to 's3'.")
        amz_date = request.headers.get("x-amz-date", "")
        if not re.fullmatch(r"\d{8}T\d{6}Z", amz_date):
            raise S3Error(403, "AccessDenied", "AWS authentication requires a valid Date or x-amz-date header")
        if amz_date[:8] != day:
            raise S3Error(403, "SignatureDoesNotMatch", "The request signature we calculated does not match the "
                          "signature you provided. Check your key and signing method.", AWSAccessKeyId=access_key)
        from calendar import timegm
        from time import strptime
        moment = timegm(strptime(amz_date, "%Y%m%dT%H%M%SZ"))
        now = self.store.now()
        if abs(moment - now) > config.max_skew:
            raise S3Error(403, "RequestTimeTooSkewed", "The difference between the request time and the current "
                          "time is too large.", RequestTime=amz_date, ServerTime=_iso(now),
                          MaxAllowedSkewMilliseconds=str(int(config.max_skew * 1000)))
        names = signed_headers.split(";")
        if "host" not in names:
            raise S3Error(400, "AuthorizationHeaderMalformed", "The authorization header is malformed; "
                                                               "host must be signed.")
        missing = [n for n in names if n not in request.headers]
        if missing:
            raise S3Error(403, "SignatureDoesNotMatch", "The request signature we calculated does not match the "
                          "signature you provided. Check your key and signing method.", AWSAccessKeyId=access_key)
        payload = request.headers.get("x-amz-content-sha256")
        if payload is None:
            raise S3Error(400, "InvalidRequest", "Missing required header for this request: x-amz-content-sha256")
        if payload not in UNSIGNED and not payload.startswith("STREAMING-"):
            if payload != hashlib.sha256(request.body).hexdigest():
                raise S3Error(400, "XAmzContentSHA256Mismatch", "The provided 'x-amz-content-sha256' header does "
                              "not match what was computed.", ClientComputedContentSHA256=payload,
                              S3ComputedContentSHA256=hashlib.sha256(request.body).hexdigest())
        elif payload.startswith("STREAMING-") and payload not in UNSIGNED:
            raise S3Error(501, "NotImplemented", "The sandbox does not take signed aws-chunked uploads.")
        rebuilt = AWSRequest(method=request.method, url=f"http://{request.headers['host']}{request.target}",
                             headers={name: request.headers[name] for name in names}, data=request.body)
        rebuilt.context["timestamp"] = amz_date
        signer = S3SigV4Auth(Credentials(access_key, secret), "s3", region)
        string_to_sign = signer.string_to_sign(rebuilt, signer.canonical_request(rebuilt))
        if not secrets.compare_digest(signer.signature(string_to_sign, rebuilt), signature):
            raise S3Error(403, "SignatureDoesNotMatch", "The request signature we calculated does not match the "
                          "signature you provided. Check your key and signing method.", AWSAccessKeyId=access_key,
                          StringToSign=string_to_sign)
        return True

    # -- operations -------------------------------------------------------------------------------------
    def _operate(self, request: Request, operation: str, bucket: str | None, key: str | None,
                 signed: bool) -> Reply:
        if not signed and operation not in ("GetObject", "HeadObject"):
            raise S3Error(403, "AccessDenied", "Access Denied")
        if operation == "ListBuckets":
            return self._list_buckets()
        assert bucket is not None
        if operation == "CreateBucket":
            return self._create_bucket(request, bucket)
        found = self.store.buckets.get(bucket)
        if found is None:
            raise S3Error(404, "NoSuchBucket", "The specified bucket does not exist", BucketName=bucket)
        if operation == "HeadBucket":
            return Reply(200, XML, b"", headers={"x-amz-bucket-region": self.store.config.region})
        if operation == "DeleteBucket":
            if found.objects:
                raise S3Error(409, "BucketNotEmpty", "The bucket you tried to delete is not empty",
                              BucketName=bucket)
            del self.store.buckets[bucket]
            self.store.save()
            return Reply(204, XML, b"")
        if key is None or operation not in ("PutObject", "GetObject", "HeadObject", "DeleteObject", "GetObjectAcl"):
            raise S3Error(501, "NotImplemented", "A header or query you provided implies functionality that is "
                                                 "not implemented in the sandbox.")
        if operation == "PutObject":
            return self._put_object(request, found, key)
        if operation == "DeleteObject":
            if found.objects.pop(key, None) is not None:
                self.store.save()
            return Reply(204, XML, b"")
        obj = found.objects.get(key)
        if not signed and (obj is None or obj.acl not in ("public-read", "public-read-write")):
            raise S3Error(403, "AccessDenied", "Access Denied")  # S3 says nothing more to a stranger
        if obj is None:
            raise S3Error(404, "NoSuchKey", "The specified key does not exist.", Key=key)
        if operation == "GetObjectAcl":
            return self._acl(obj)
        headers = {"ETag": f'"{obj.etag}"', "Last-Modified": _date(obj.last_modified), "Accept-Ranges": "bytes"}
        headers.update({f"x-amz-meta-{name}": value for name, value in obj.metadata.items()})
        if request.headers.get("x-amz-checksum-mode", "").upper() == "ENABLED":
            headers.update({f"x-amz-checksum-{alg}": value for alg, value in obj.checksums.items()})
            if obj.checksums:
                headers["x-amz-checksum-type"] = "FULL_OBJECT"
        return Reply(200, obj.content_type, self.store.body(obj), headers=headers)

    def _list_buckets(self) -> Reply:
        config = self.store.config
        rows = "".join(f"<Bucket><Name>{escape(name)}</Name><CreationDate>{_iso(b.created)}</CreationDate>"
                       f"<BucketRegion>{config.region}</BucketRegion></Bucket>"
                       for name, b in sorted(self.store.buckets.items()))
        return _xml(200, f'<ListAllMyBucketsResult xmlns="{NS}"><Owner><ID>{config.owner_id}</ID>'
                         f"<DisplayName>{escape(config.owner_name)}</DisplayName></Owner>"
                         f"<Buckets>{rows}</Buckets></ListAllMyBucketsResult>")

    def _canned(self, request: Request) -> str:
        acl = request.headers.get("x-amz-acl", "private")
        if acl not in CANNED_ACLS:
            raise S3Error(400, "InvalidArgument", f"Invalid canned ACL {acl!r}", ArgumentName="x-amz-acl",
                          ArgumentValue=acl)
        return acl

    def _create_bucket(self, request: Request, bucket: str) -> Reply:
        if not BUCKET_NAME.match(bucket) or ".." in bucket or re.fullmatch(r"\d+\.\d+\.\d+\.\d+", bucket):
            raise S3Error(400, "InvalidBucketName", "The specified bucket is not valid.", BucketName=bucket)
        acl = self._canned(request)
        region = self.store.config.region
        location = re.search(rb"<LocationConstraint>([^<]*)</LocationConstraint>", request.body)
        wanted = location.group(1).decode() if location else ""
        if (wanted or "us-east-1") != region:
            if region == "us-east-1" or not wanted:
                raise S3Error(400, "IllegalLocationConstraintException",
                              f"The {wanted or 'unspecified'} location constraint is incompatible for the region "
                              "specific endpoint this request was sent to.")
            raise S3Error(400, "InvalidLocationConstraint", "The specified location-constraint is not valid",
                          LocationConstraint=wanted)
        if bucket in self.store.buckets:
            if region != "us-east-1":  # us-east-1 answers 200 to its owner, for legacy reasons
                raise S3Error(409, "BucketAlreadyOwnedByYou", "Your previous request to create the named bucket "
                              "succeeded and you already own it.", BucketName=bucket)
        else:
            self.store.buckets[bucket] = Bucket(self.store.now(), acl)
            self.store.save()
        return Reply(200, XML, b"", headers={"Location": f"/{bucket}"})

    def _put_object(self, request: Request, bucket: Bucket, key: str) -> Reply:
        config = self.store.config
        if len(key.encode("utf-8")) > 1024:
            raise S3Error(400, "KeyTooLongError", "Your key is too long")
        body = request.body
        if len(body) > config.max_object_size:
            raise S3Error(400, "EntityTooLarge", "Your proposed upload exceeds the maximum allowed size",
                          ProposedSize=str(len(body)), MaxSizeAllowed=str(config.max_object_size))
        acl = self._canned(request)
        md5 = hashlib.md5(body).digest()
        given = request.headers.get("content-md5")
        if given is not None:
            try:
                decoded = base64.b64decode(given, validate=True)
            except binascii.Error:
                decoded = b""
            if len(decoded) != 16:
                raise S3Error(400, "InvalidDigest", "The Content-MD5 you specified was invalid.", Content_MD5=given)
            if decoded != md5:
                raise S3Error(400, "BadDigest", "The Content-MD5 you specified did not match what we received.",
                              ExpectedDigest=given, CalculatedDigest=base64.b64encode(md5).decode())
        checksums: dict[str, str] = {}
        for name, value in request.headers.items():
            if not name.startswith("x-amz-checksum-") or name in ("x-amz-checksum-type", "x-amz-checksum-mode"):
                continue
            algorithm = name[len("x-amz-checksum-"):]
            compute = CHECKSUMS.get(algorithm)
            if compute is None:  # crc32c, crc64nvme: kept, not checked (no library for them in the sandbox)
                checksums[algorithm] = value
                continue
            if value != base64.b64encode(compute(body)).decode():
                raise S3Error(400, "BadDigest", f"The {algorithm.upper()} you specified did not match the "
                                                "calculated checksum.")
            checksums[algorithm] = value
        metadata = {name[len("x-amz-meta-"):]: value for name, value in request.headers.items()
                    if name.startswith("x-amz-meta-")}
        if sum(len(k) + len(v) for k, v in metadata.items()) > config.max_metadata:
            raise S3Error(400, "MetadataTooLarge", "Your metadata headers exceed the maximum allowed metadata size",
                          Size=str(sum(len(k) + len(v) for k, v in metadata.items())),
                          MaxSizeAllowed=str(config.max_metadata))
        sha256 = hashlib.sha256(body).hexdigest()
        self.store.put_body(sha256, body)
        bucket.objects[key] = Obj(size=len(body), etag=md5.hex(), sha256=sha256,
                                  content_type=request.headers.get("content-type") or "binary/octet-stream",
                                  last_modified=float(int(self.store.now())), acl=acl, metadata=metadata,
                                  checksums=checksums)
        self.store.save()
        headers = {"ETag": f'"{md5.hex()}"'}
        headers.update({f"x-amz-checksum-{alg}": value for alg, value in checksums.items()})
        return Reply(200, XML, b"", headers=headers)

    def _acl(self, obj: Obj) -> Reply:
        config = self.store.config
        owner = f"<ID>{config.owner_id}</ID><DisplayName>{escape(config.owner_name)}</DisplayName>"
        grants = [f'<Grant><Grantee xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xsi:type="CanonicalUser">'
                  f"{owner}</Grantee><Permission>FULL_CONTROL</Permission></Grant>"]
        public = {"public-read": ["READ"], "public-read-write": ["READ", "WRITE"]}.get(obj.acl, [])
        grants += [f'<Grant><Grantee xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xsi:type="Group">'
                   f"<URI>http://acs.amazonaws.com/groups/global/AllUsers</URI></Grantee>"
                   f"<Permission>{permission}</Permission></Grant>" for permission in public]
        if obj.acl == "authenticated-read":
            grants.append('<Grant><Grantee xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xsi:type="Group">'
                          "<URI>http://acs.amazonaws.com/groups/global/AuthenticatedUsers</URI></Grantee>"
                          "<Permission>READ</Permission></Grant>")
        return _xml(200, f'<AccessControlPolicy xmlns="{NS}"><Owner>{owner}</Owner>'
                         f"<AccessControlList>{''.join(grants)}</AccessControlList></AccessControlPolicy>")

    def set_faults(self, rules: list[dict[str, Any]] | None = None, clear: bool = False) -> int:
        """Transport faults (faults.py's FaultRule, `function` = an S3 operation name such as "PutObject")."""
        return self.faults.set(rules, clear)


def start(port: int = 0, config: S3Config | None = None, faults: list[FaultRule] | None = None,
          host: str = "127.0.0.1", data: str | None = None) -> S3Server:
    """A running sandbox S3 in a background thread (its `url` is the endpoint_url, its `store` the state); the
    caller shuts it down. `data` is a folder that keeps buckets, objects and credentials across restarts."""
    server = S3Server(Store(config, data), host, port, Faults(list(faults or [])))
    server.serve_in_thread()
    return server


__all__ = ["Obj", "S3Config", "S3Error", "S3Server", "start"]
