"""The parts of the Университет 2035 clients no real peer here can show: a store that refuses the checksum header
(moto takes it), how an S3 error and an LRS answer's error text are read. The peers' tests are in
tests/integration/portals/test_u2035_peers.py."""

from __future__ import annotations

import hashlib
import io
from typing import Any

import pytest
from botocore.exceptions import ClientError

from bufsync.portals.u2035.lrs import _message
from bufsync.portals.u2035.storage import S3Failed, S3Store


class OldStore:
    """A stand-in for boto3's client: refuses ChecksumSHA256 as an S3-compatible store without it does."""

    def __init__(self, refusal: tuple[str, str]) -> None:
        self.refusal = refusal
        self.puts: list[dict[str, Any]] = []

    def put_object(self, **args: Any) -> dict[str, Any]:
        self.puts.append({**args, "Body": args["Body"].read()})
        if "ChecksumSHA256" in args:
            code, message = self.refusal
            raise ClientError({"Error": {"Code": code, "Message": message},
                               "ResponseMetadata": {"HTTPStatusCode": 501 if code == "NotImplemented" else 400}},
                              "PutObject")
        return {}


def _store(fake: OldStore) -> S3Store:
    store = S3Store("s3.example.org:80", "bucket", "AKIA", "unit-secret-key")
    store._s3 = fake
    return store


def test_a_store_without_the_checksum_header_gets_the_put_again_without_it() -> None:
    fake = OldStore(("NotImplemented", "A header you provided implies functionality that is not implemented: "
                                       "x-amz-checksum-sha256"))
    store = _store(fake)
    data = b"diary"
    store.put("k", io.BytesIO(data), content_type="text/plain", sha256_hex=hashlib.sha256(data).hexdigest(),
              length=len(data))
    assert [("ChecksumSHA256" in p, p["Body"]) for p in fake.puts] == [(True, data), (False, data)]
    assert store.checksum is False
    store.put("k2", data, content_type="text/plain", sha256_hex=hashlib.sha256(data).hexdigest(), length=len(data))
    assert "ChecksumSHA256" not in fake.puts[-1] and len(fake.puts) == 3


def test_a_body_that_does_not_match_its_checksum_is_refused_not_resent() -> None:
    fake = OldStore(("BadDigest", "The SHA256 you specified did not match the calculated checksum."))
    with pytest.raises(S3Failed) as failed:
        _store(fake).put("k", b"x", content_type="text/plain", sha256_hex="00" * 32, length=1)
    assert (failed.value.code, failed.value.transient, len(fake.puts)) == ("BadDigest", False, 1)


def test_the_endpoint_without_a_scheme() -> None:
    assert S3Store("s3.objstor.cloud4u.com:80", "b", "k", "unit-secret-key").endpoint == \
        "http://s3.objstor.cloud4u.com:80"
    assert S3Store("s3.example.org", "b", "k", "unit-secret-key").url("a b.pdf") == \
        "https://s3.example.org/b/a%20b.pdf"


def test_a_5xx_code_is_transient() -> None:
    fake = OldStore(("SlowDown", "Please reduce your request rate."))
    with pytest.raises(S3Failed) as failed:
        _store(fake).put("k", b"x", content_type="text/plain", sha256_hex="00" * 32, length=1)
    assert failed.value.transient is True


@pytest.mark.parametrize(("body", "text", "message"), [
    ({"errorId": "e1", "message": "Invalid statement"}, "", "Invalid statement"),       # Learning Locker
    ({"detail": "Duplicate statement IDs in the list of statements"}, "",
     "Duplicate statement IDs in the list of statements"),                               # ralph
    ({"detail": [{"loc": ["body", 0, "actor"], "msg": "Field required"}]}, "", "body.0.actor: Field required"),
    (None, " <html>Bad Gateway</html> ", "<html>Bad Gateway</html>"),
])
def test_the_lrs_own_words(body: Any, text: str, message: str) -> None:
    assert _message(body, text) == message
