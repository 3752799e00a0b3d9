"""The sandbox S3 over real HTTP with boto3 (path-style), as bufsync's S3 client meets it: buckets, objects with
ACL, type, metadata and digests, S3's XML errors, Signature Version 4 refused when wrong, anonymous reads of
public-read objects only, the lost answer, the state kept in a folder."""

from __future__ import annotations

import base64
import hashlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import botocore.config
import httpx
import pytest
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import ClientError, ConnectionClosedError

from bufsync.sandbox.s3 import S3Config, S3Server, start

ACCESS, SECRET = "SANDBOXTESTKEY000001", "sandbox-secret-key-for-tests-0123456789"
BUCKET = "u2035-diaries"
KEY = "flow12/practice/diary 4711.pdf"
BODY = "%PDF-1.4 дневник".encode()


def client(server: S3Server, secret: str = SECRET, access: str = ACCESS, region: str = "us-east-1",
           attempts: int = 1) -> Any:
    return boto3.client("s3", endpoint_url=server.url, aws_access_key_id=access, aws_secret_access_key=secret,
                        region_name=region, config=botocore.config.Config(s3={"addressing_style": "path"},
                                                                          retries={"total_max_attempts": attempts,
                                                                                   "mode": "standard"}))


def running(data: str | None = None, **knobs: Any) -> Iterator[tuple[S3Server, Any]]:
    server = start(config=S3Config(credentials={ACCESS: SECRET}, **knobs), data=data)
    try:
        yield server, client(server)
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def s3() -> Iterator[tuple[S3Server, Any]]:
    yield from running()


def code(excinfo: pytest.ExceptionInfo[ClientError]) -> tuple[int, str]:
    response = excinfo.value.response
    return response["ResponseMetadata"]["HTTPStatusCode"], response["Error"]["Code"]


def b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode()


# -- buckets -----------------------------------------------------------------------------------------
def test_buckets(s3: tuple[S3Server, Any]) -> None:
    server, c = s3
    assert c.list_buckets()["Buckets"] == []
    assert c.create_bucket(Bucket=BUCKET)["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert c.create_bucket(Bucket=BUCKET)["ResponseMetadata"]["HTTPStatusCode"] == 200  # us-east-1: its owner
    listed = c.list_buckets()
    assert [b["Name"] for b in listed["Buckets"]] == [BUCKET]
    assert listed["Owner"]["ID"] == server.store.config.owner_id
    assert c.head_bucket(Bucket=BUCKET)["ResponseMetadata"]["HTTPHeaders"]["x-amz-bucket-region"] == "us-east-1"
    with pytest.raises(ClientError) as missing:
        c.head_bucket(Bucket="no-such-bucket")
    assert code(missing) == (404, "404")
    for name in ("Bad_Name", "ab", "x" * 64):
        with pytest.raises(ClientError) as bad:
            c.create_bucket(Bucket=name)
        assert code(bad) == (400, "InvalidBucketName")
    with pytest.raises(ClientError) as elsewhere:
        c.create_bucket(Bucket="other", CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    assert code(elsewhere) == (400, "IllegalLocationConstraintException")


def test_delete_bucket(s3: tuple[S3Server, Any]) -> None:
    _, c = s3
    c.create_bucket(Bucket=BUCKET)
    c.put_object(Bucket=BUCKET, Key="k", Body=b"x")
    with pytest.raises(ClientError) as full:
        c.delete_bucket(Bucket=BUCKET)
    assert code(full) == (409, "BucketNotEmpty")
    c.delete_object(Bucket=BUCKET, Key="k")
    assert c.delete_bucket(Bucket=BUCKET)["ResponseMetadata"]["HTTPStatusCode"] == 204
    assert c.list_buckets()["Buckets"] == []


# -- objects ------------------------------------------------------------------------------------------
def test_put_get_head_with_type_metadata_and_digests(s3: tuple[S3Server, Any]) -> None:
    server, c = s3
    c.create_bucket(Bucket=BUCKET)
    put = c.put_object(Bucket=BUCKET, Key=KEY, Body=BODY, ACL="public-read", ContentType="application/pdf",
                       Metadata={"unti-id": "4711", "flow": "12"}, ContentMD5=b64(hashlib.md5(BODY).digest()),
                       ChecksumSHA256=b64(hashlib.sha256(BODY).digest()))
    assert put["ETag"] == f'"{hashlib.md5(BODY).hexdigest()}"'
    assert put["ChecksumSHA256"] == b64(hashlib.sha256(BODY).digest())
    got = c.get_object(Bucket=BUCKET, Key=KEY)
    assert got["Body"].read() == BODY and got["ContentType"] == "application/pdf"
    assert got["Metadata"] == {"unti-id": "4711", "flow": "12"} and got["ETag"] == put["ETag"]
    head = c.head_object(Bucket=BUCKET, Key=KEY)
    assert head["ContentLength"] == len(BODY) and head["ContentType"] == "application/pdf"
    checked = c.get_object(Bucket=BUCKET, Key=KEY, ChecksumMode="ENABLED")
    assert checked["ChecksumSHA256"] == b64(hashlib.sha256(BODY).digest())  # botocore validated it too
    stored = server.store.object(BUCKET, KEY)
    assert stored is not None and stored[0].acl == "public-read" and stored[1] == BODY
    plain = c.put_object(Bucket=BUCKET, Key="plain", Body=b"x")
    assert plain["ETag"] and c.head_object(Bucket=BUCKET, Key="plain")["ContentType"] == "binary/octet-stream"


def test_digest_mismatches_are_refused(s3: tuple[S3Server, Any]) -> None:
    server, c = s3
    c.create_bucket(Bucket=BUCKET)
    cases = [({"ContentMD5": b64(hashlib.md5(b"other").digest())}, "BadDigest"),
             ({"ContentMD5": "not-base64!"}, "InvalidDigest"),
             ({"ChecksumSHA256": b64(hashlib.sha256(b"other").digest())}, "BadDigest"),
             ({"ACL": "public"}, "InvalidArgument")]
    for extra, expected in cases:
        with pytest.raises(ClientError) as refused:
            c.put_object(Bucket=BUCKET, Key=KEY, Body=BODY, **extra)
        assert code(refused) == (400, expected), extra
    assert server.store.object(BUCKET, KEY) is None


def test_size_and_metadata_limits() -> None:
    for _, c in running(max_object_size=10, max_metadata=20):
        c.create_bucket(Bucket=BUCKET)
        with pytest.raises(ClientError) as large:
            c.put_object(Bucket=BUCKET, Key="big", Body=b"x" * 11)
        assert code(large) == (400, "EntityTooLarge")
        with pytest.raises(ClientError) as meta:
            c.put_object(Bucket=BUCKET, Key="meta", Body=b"x", Metadata={"note": "y" * 20})
        assert code(meta) == (400, "MetadataTooLarge")


def test_missing_bucket_and_key_are_xml_errors(s3: tuple[S3Server, Any]) -> None:
    server, c = s3
    with pytest.raises(ClientError) as no_bucket:
        c.put_object(Bucket="no-such-bucket", Key="k", Body=b"x")
    assert code(no_bucket) == (404, "NoSuchBucket")
    assert no_bucket.value.response["Error"]["BucketName"] == "no-such-bucket"
    c.create_bucket(Bucket=BUCKET)
    with pytest.raises(ClientError) as no_key:
        c.get_object(Bucket=BUCKET, Key="nope")
    assert code(no_key) == (404, "NoSuchKey") and no_key.value.response["Error"]["Key"] == "nope"
    with pytest.raises(ClientError) as head:
        c.head_object(Bucket=BUCKET, Key="nope")
    assert code(head) == (404, "404")  # HEAD answers carry no body
    assert c.delete_object(Bucket=BUCKET, Key="nope")["ResponseMetadata"]["HTTPStatusCode"] == 204
    assert server.store.calls["GetObject"] == 1


# -- access ----------------------------------------------------------------------------------------------
def test_anonymous_get_only_of_public_read(s3: tuple[S3Server, Any]) -> None:
    server, c = s3
    c.create_bucket(Bucket=BUCKET)
    c.put_object(Bucket=BUCKET, Key=KEY, Body=BODY, ACL="public-read", ContentType="application/pdf")
    c.put_object(Bucket=BUCKET, Key="private.pdf", Body=BODY)
    public_url = f"{server.url}/{BUCKET}/flow12/practice/diary%204711.pdf"
    got = httpx.get(public_url)
    assert got.status_code == 200 and got.content == BODY and got.headers["content-type"] == "application/pdf"
    assert httpx.head(public_url).status_code == 200
    for url in (f"{server.url}/{BUCKET}/private.pdf", f"{server.url}/{BUCKET}/missing.pdf"):
        refused = httpx.get(url)
        assert refused.status_code == 403 and "<Code>AccessDenied</Code>" in refused.text
        assert refused.headers["content-type"] == "application/xml"
    assert httpx.put(f"{server.url}/{BUCKET}/anon", content=b"x").status_code == 403
    assert httpx.get(f"{server.url}/").status_code == 403
    assert server.store.object(BUCKET, "anon") is None
    c.put_object(Bucket=BUCKET, Key=KEY, Body=BODY)  # overwritten as private: no longer public
    assert httpx.get(public_url).status_code == 403


def test_object_acl_grants(s3: tuple[S3Server, Any]) -> None:
    _, c = s3
    c.create_bucket(Bucket=BUCKET)
    c.put_object(Bucket=BUCKET, Key="public", Body=b"x", ACL="public-read")
    c.put_object(Bucket=BUCKET, Key="private", Body=b"x")
    everyone = "http://acs.amazonaws.com/groups/global/AllUsers"
    grants = c.get_object_acl(Bucket=BUCKET, Key="public")["Grants"]
    assert {(g["Grantee"].get("URI", "owner"), g["Permission"]) for g in grants} == {("owner", "FULL_CONTROL"),
                                                                                    (everyone, "READ")}
    assert [g["Permission"] for g in c.get_object_acl(Bucket=BUCKET, Key="private")["Grants"]] == ["FULL_CONTROL"]


def test_bad_signatures(s3: tuple[S3Server, Any]) -> None:
    server, _ = s3
    for kwargs, expected in (({"secret": "wrong"}, (403, "SignatureDoesNotMatch")),
                             ({"access": "AKIAUNKNOWN"}, (403, "InvalidAccessKeyId")),
                             ({"region": "eu-west-1"}, (400, "AuthorizationHeaderMalformed"))):
        with pytest.raises(ClientError) as refused:
            client(server, **kwargs).list_buckets()
        assert code(refused) == expected


def signed(server: S3Server, method: str, path: str, body: bytes, headers: dict[str, str]) -> AWSRequest:
    """A request signed by botocore, to tamper with before sending."""
    request = AWSRequest(method=method, url=server.url + path, data=body, headers=headers)
    S3SigV4Auth(Credentials(ACCESS, SECRET), "s3", "us-east-1").add_auth(request)
    return request


def send(request: AWSRequest, body: bytes) -> httpx.Response:
    return httpx.request(request.method, request.url, content=body, headers=dict(request.headers.items()))


def test_tampered_requests_are_refused(s3: tuple[S3Server, Any]) -> None:
    server, c = s3
    c.create_bucket(Bucket=BUCKET)
    good = signed(server, "PUT", f"/{BUCKET}/k", b"hello", {"x-amz-meta-who": "me"})
    assert send(good, b"hello").status_code == 200
    swapped = send(signed(server, "PUT", f"/{BUCKET}/k", b"hello", {}), b"HELLO")
    assert swapped.status_code == 400 and "<Code>XAmzContentSHA256Mismatch</Code>" in swapped.text
    changed = signed(server, "PUT", f"/{BUCKET}/k", b"hello", {"x-amz-meta-who": "me"})
    changed.headers.replace_header("x-amz-meta-who", "someone else")
    answer = send(changed, b"hello")
    assert answer.status_code == 403 and "<Code>SignatureDoesNotMatch</Code>" in answer.text
    moved = signed(server, "PUT", f"/{BUCKET}/k", b"hello", {})
    moved.url = server.url + f"/{BUCKET}/elsewhere"
    assert send(moved, b"hello").status_code == 403
    stored = server.store.object(BUCKET, "k")
    assert stored is not None and stored[0].metadata == {"who": "me"}
    assert server.store.object(BUCKET, "elsewhere") is None


def test_clock_skew() -> None:
    for _server, c in running(clock=time.time() + 3600):
        with pytest.raises(ClientError) as skewed:
            c.list_buckets()
        assert code(skewed) == (403, "RequestTimeTooSkewed")


# -- faults and state -----------------------------------------------------------------------------------
def test_lost_answer_after_put(s3: tuple[S3Server, Any]) -> None:
    server, c = s3
    c.create_bucket(Bucket=BUCKET)
    server.set_faults([{"kind": "drop_after_write", "function": "PutObject", "count": 1}])
    with pytest.raises(ConnectionClosedError):
        c.put_object(Bucket=BUCKET, Key=KEY, Body=BODY)
    assert server.store.object(BUCKET, KEY) is not None  # stored, the answer lost
    server.set_faults([{"kind": "drop_after_write", "function": "PutObject", "count": 1}])
    retrying = client(server, attempts=3)
    assert retrying.put_object(Bucket=BUCKET, Key=KEY, Body=BODY, ACL="public-read")["ETag"]
    assert server.store.calls["PutObject"] == 3
    server.set_faults([{"kind": "http_503", "function": "GetObject", "count": 1}])
    with pytest.raises(ClientError) as slow:
        c.get_object(Bucket=BUCKET, Key=KEY)
    assert code(slow) == (503, "SlowDown")


def test_state_survives_a_restart(tmp_path: Path) -> None:
    folder = str(tmp_path / "s3")
    for _, c in running(data=folder):
        c.create_bucket(Bucket=BUCKET)
        c.put_object(Bucket=BUCKET, Key=KEY, Body=BODY, ACL="public-read", Metadata={"unti-id": "4711"})
    server = start(config=S3Config(), data=folder)  # its random keys give way to the saved ones
    try:
        assert server.store.config.credentials == {ACCESS: SECRET}
        got = client(server).get_object(Bucket=BUCKET, Key=KEY)
        assert got["Body"].read() == BODY and got["Metadata"] == {"unti-id": "4711"}
        assert httpx.get(f"{server.url}/{BUCKET}/flow12/practice/diary%204711.pdf").content == BODY
    finally:
        server.shutdown()
        server.server_close()


def test_default_credentials_are_random_per_sandbox() -> None:
    first, second = S3Config(), S3Config()
    (access, secret), = first.credentials.items()
    assert access.startswith("SANDBOX") and len(access) == 20 and len(secret) == 40
    assert first.credentials != second.credentials


def test_default_credentials_are_kept_from_the_first_start(tmp_path: Path) -> None:
    folder = str(tmp_path / "s3")
    first = start(data=folder)
    first.shutdown()
    first.server_close()
    second = start(data=folder)
    try:
        assert second.store.config.credentials == first.store.config.credentials
    finally:
        second.shutdown()
        second.server_close()
